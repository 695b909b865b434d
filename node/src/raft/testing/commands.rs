//! The script's commands: each line parsed into its words and `key=value` pairs, and run on the scenario.

use super::*;

/// A command's arguments: positional words and `key=value` pairs.
struct Args {
    words: Vec<String>,
    keys: BTreeMap<String, String>,
}

impl Args {
    fn parse(rest: &[&str]) -> Self {
        let mut words = Vec::new();
        let mut keys = BTreeMap::new();
        for arg in rest {
            match arg.split_once('=') {
                Some((k, v)) => {
                    keys.insert(k.to_string(), v.to_string());
                }
                None => words.push(arg.to_string()),
            }
        }
        Self { words, keys }
    }

    fn ids(&self) -> Result<Vec<NodeId>, String> {
        self.words
            .iter()
            .map(|w| {
                w.parse()
                    .map(NodeId)
                    .map_err(|_| format!("bad node id {w:?}"))
            })
            .collect()
    }

    fn id(&self) -> Result<NodeId, String> {
        match self.ids()?.as_slice() {
            [id] => Ok(*id),
            _ => Err("expected one node id".into()),
        }
    }

    fn key<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, String> {
        self.keys
            .get(key)
            .map(|v| v.parse().map_err(|_| format!("bad value for {key}: {v:?}")))
            .transpose()
    }
}

impl Env {
    /// Runs one command line; returns what it printed.
    pub(super) fn run(&mut self, line: &str) -> Result<String, String> {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let Some((cmd, rest)) = parts.split_first() else {
            return Err("empty command".into());
        };
        let args = Args::parse(rest);
        let mut out = String::new();
        match *cmd {
            "add-nodes" => self.add_nodes(&args)?,
            "snapshot" => {
                let id = args.id()?;
                let keep: u64 = args.key("keep")?.unwrap_or(0);
                self.snapshot(id, keep, &mut out)?;
            }
            "campaign" => {
                let id = args.id()?;
                let node = self.node(id)?;
                let deadline = node
                    .core
                    .as_ref()
                    .map_or(0, |c| c.status().election_deadline_ms);
                node.now_ms = node.now_ms.max(deadline);
                let now = node.now_ms;
                self.core(id)?.tick(now);
                writeln!(out, "{id}: clock at {now} ms").ok();
            }
            "tick" => {
                let usage = "tick ID MS | tick all MS";
                let who = args.words.first().ok_or(usage)?;
                let ms: u64 = args
                    .words
                    .get(1)
                    .and_then(|w| w.parse().ok())
                    .ok_or(usage)?;
                let ids: Vec<NodeId> = if who == "all" {
                    self.nodes.keys().copied().collect()
                } else {
                    vec![NodeId(who.parse().map_err(|_| "bad node id")?)]
                };
                // Every named clock moves by the same amount, in node order; a crashed node's clock
                // moves too (it restarts at that time) but there is no core to tick.
                let mut clocks = Vec::new();
                for id in ids {
                    let node = self.node(id)?;
                    node.now_ms += ms;
                    let now = node.now_ms;
                    match node.core.as_mut() {
                        Some(core) => {
                            core.tick(now);
                            clocks.push(format!("{id}: clock at {now} ms"));
                        }
                        None => clocks.push(format!("{id}: clock at {now} ms (crashed)")),
                    }
                }
                writeln!(out, "{}", clocks.join(", ")).ok();
            }
            "process-ready" => {
                for id in args.ids()? {
                    self.process_ready(id, &mut out)?;
                }
            }
            "deliver-msgs" => {
                for id in args.ids()? {
                    self.deliver(id, &mut out)?;
                }
            }
            "drop-msgs" => {
                let to: Option<u64> = args.key("to")?;
                let from: Option<u64> = args.key("from")?;
                let (dropped, kept): (Vec<_>, Vec<_>) = self.queue.drain(..).partition(|m| {
                    to.is_none_or(|t| m.to.0 == t) && from.is_none_or(|f| m.from.0 == f)
                });
                self.queue = kept;
                for m in dropped {
                    writeln!(out, "dropped {}", fmt_message(&m)).ok();
                }
            }
            "reverse-msgs" => {
                let to: Option<u64> = args.key("to")?;
                let picked: Vec<usize> = (0..self.queue.len())
                    .filter(|&i| to.is_none_or(|t| self.queue[i].to.0 == t))
                    .collect();
                let reversed: Vec<Envelope> = picked
                    .iter()
                    .rev()
                    .map(|&i| self.queue[i].clone())
                    .collect();
                for (&i, m) in picked.iter().zip(reversed) {
                    self.queue[i] = m;
                }
                writeln!(out, "{} queued messages reversed", picked.len()).ok();
            }
            "stabilize" => self.stabilize(&mut out)?,
            "partition" => {
                self.isolated.extend(args.ids()?);
                let isolated = self.isolated.clone();
                let before = self.queue.len();
                self.queue
                    .retain(|m| !isolated.contains(&m.to) && !isolated.contains(&m.from));
                writeln!(
                    out,
                    "isolated {:?}; {} queued messages dropped",
                    isolated.iter().map(|i| i.0).collect::<Vec<_>>(),
                    before - self.queue.len()
                )
                .ok();
            }
            "heal" => {
                self.isolated.clear();
                writeln!(out, "healed").ok();
            }
            "propose" => {
                let id = NodeId(
                    args.words
                        .first()
                        .and_then(|w| w.parse().ok())
                        .ok_or("propose ID TEXT")?,
                );
                let text = args.words[1..].join(" ").trim_matches('"').to_string();
                let result = self.core(id)?.propose(Payload::Message {
                    text,
                    request_id: None,
                });
                match result {
                    Ok(p) => writeln!(out, "proposed at {}/{}", p.index, p.term),
                    Err(e) => writeln!(out, "error: {e}"),
                }
                .ok();
            }
            "read-index" => {
                let id = args.id()?;
                let ctx: u64 = args.key("ctx")?.ok_or("read-index ID ctx=N")?;
                match self.core(id)?.read_index(ctx) {
                    Ok(()) => writeln!(out, "read ctx={ctx} pending"),
                    Err(e) => writeln!(out, "error: {e}"),
                }
                .ok();
            }
            "transfer-leadership" => {
                let id = args.id()?;
                let to: u64 = args.key("to")?.ok_or("transfer-leadership ID to=N")?;
                match self.core(id)?.transfer_leadership(NodeId(to)) {
                    Ok(()) => writeln!(out, "transfer to {to} started"),
                    Err(e) => writeln!(out, "error: {e}"),
                }
                .ok();
            }
            "wipe" => {
                // The node's disk is lost too: it comes back blank on `restart`.
                let id = args.id()?;
                let node = self.node(id)?;
                if node.core.is_some() {
                    return Err(format!("crash node {id} before wiping its disk"));
                }
                *node.disk.borrow_mut() = MemoryStore::new();
                writeln!(out, "{id}: disk wiped").ok();
            }
            "crash" => {
                let id = args.id()?;
                self.node(id)?.core = None;
                let before = self.queue.len();
                self.queue.retain(|m| m.to != id);
                writeln!(
                    out,
                    "{id} crashed; {} queued messages to it dropped",
                    before - self.queue.len()
                )
                .ok();
            }
            "restart" => {
                let id = args.id()?;
                let node = self.node(id)?;
                let disk = node
                    .disk
                    .borrow()
                    .initial_state()
                    .map_err(|e| e.to_string())?;
                let restored = Restored {
                    hard_state: disk.hard_state,
                    last: disk.last,
                    applied: disk.applied,
                    snapshot: node.disk.borrow().snapshot().map_err(|e| e.to_string())?,
                    first_index: disk.first_index,
                };
                let mut core = Raft::new(
                    node.config.clone(),
                    node.disk.clone(),
                    restored,
                    node.now_ms,
                )
                .map_err(|e| e.to_string())?;
                core.restore_membership(stored_membership(
                    &node.disk,
                    &node.seed,
                    disk.hard_state.commit,
                ));
                node.core = Some(core);
                let hs = disk.hard_state;
                writeln!(
                    out,
                    "{id} restarted from disk: term={} vote={} commit={} last={}/{} applied={}",
                    hs.term,
                    hs.voted_for.map_or("-".into(), |v| v.to_string()),
                    hs.commit,
                    disk.last.index,
                    disk.last.term,
                    disk.applied
                )
                .ok();
            }
            "status" => {
                let id = args.id()?;
                let s = self.core(id)?.status();
                writeln!(
                    out,
                    "{id}: {} term={} vote={} leader={} commit={} applied={} last={}/{} persisted={}",
                    s.role.as_str(),
                    s.term,
                    s.voted_for.map_or("-".into(), |v| v.to_string()),
                    s.leader.map_or("-".into(), |v| v.to_string()),
                    s.commit,
                    s.applied,
                    s.last.index,
                    s.last.term,
                    s.persisted
                )
                .ok();
                for (peer, (matched, next)) in &s.progress {
                    writeln!(out, "  progress {peer}: match={matched} next={next}").ok();
                }
            }
            "add-member" | "add-learner" => {
                let usage = "add-member LEADER ID";
                let ids = args.ids()?;
                let [leader, id] = ids[..] else {
                    return Err(usage.into());
                };
                if !self.nodes.contains_key(&id) {
                    self.add_joining_node(id)?;
                    writeln!(out, "{id} started, waiting to be added").ok();
                }
                let role = if *cmd == "add-learner" {
                    MemberRole::Learner
                } else {
                    MemberRole::Voter
                };
                let member = Member {
                    id,
                    addr: format!("n{id}:1"),
                    role,
                };
                match self
                    .core(leader)?
                    .propose_membership(MembershipChange::Add(member))
                {
                    Ok(index) => writeln!(out, "configuration at {index}"),
                    Err(e) => writeln!(out, "error: {e}"),
                }
                .ok();
            }
            "remove-member" => {
                let ids = args.ids()?;
                let [leader, id] = ids[..] else {
                    return Err("remove-member LEADER ID".into());
                };
                match self
                    .core(leader)?
                    .propose_membership(MembershipChange::Remove(id))
                {
                    Ok(index) => writeln!(out, "configuration at {index}"),
                    Err(e) => writeln!(out, "error: {e}"),
                }
                .ok();
            }
            "members" => {
                let id = args.id()?;
                let core = self.core(id)?;
                let config = core.membership();
                writeln!(
                    out,
                    "{id}: {} at {} {}",
                    transcript::fmt_members(&config.members, &config.promoting),
                    config.index,
                    if core.membership_committed() {
                        "committed"
                    } else {
                        "in force"
                    }
                )
                .ok();
            }
            "log" => {
                let id = args.id()?;
                let core = self.core(id)?;
                let status = core.status();
                let entries = core.log_entries(status.first_index, status.last.index);
                if status.snapshot.index > LogIndex::ZERO {
                    let snapshot = status.snapshot;
                    write!(out, "{id}: snapshot {}/{}, ", snapshot.index, snapshot.term).ok();
                } else {
                    write!(out, "{id}: ").ok();
                }
                writeln!(out, "{}", fmt_entries(&entries, true)).ok();
            }
            other => return Err(format!("unknown command {other:?}")),
        }
        Ok(out)
    }

    fn add_nodes(&mut self, args: &Args) -> Result<(), String> {
        let n: u64 = args
            .words
            .first()
            .and_then(|w| w.parse().ok())
            .ok_or("add-nodes N")?;
        let voters: Vec<NodeId> = (1..=n).map(NodeId).collect();
        for id in &voters {
            let mut config = Config::new(*id, voters.clone());
            config.seed = 1;
            if let Some(v) = args.key("pre-vote")? {
                config.pre_vote = v;
            }
            if let Some(v) = args.key("check-quorum")? {
                config.check_quorum = v;
            }
            if let Some(v) = args.key("max-append-entries")? {
                config.max_append_entries = v;
            }
            if let Some(v) = args.key("snapshot-chunk-bytes")? {
                self.snapshot_chunk_bytes = v;
            }
            let disk: Disk = Rc::new(RefCell::new(MemoryStore::new()));
            let mut core = Raft::new(config.clone(), disk.clone(), Restored::default(), 0)
                .map_err(|e| e.to_string())?;
            let seed = Configuration::seed(voters.iter().map(|v| (*v, format!("n{v}:1"))));
            core.restore_membership(seed.clone());
            self.nodes.insert(
                *id,
                Node {
                    seed,
                    config,
                    disk,
                    core: Some(core),
                    now_ms: 0,
                },
            );
        }
        Ok(())
    }
}
