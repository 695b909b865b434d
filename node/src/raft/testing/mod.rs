//! Scenario tests: small scripts driving a few cores, checked against golden transcripts.
//!
//! Modelled on etcd-raft's datadriven interaction tests. Each file in `testdata/` is a sequence of
//! blocks:
//!
//! ```text
//! # a comment
//! campaign 1
//! ----
//! <what the command printed>
//! ```
//!
//! The harness runs every command and compares what it printed with the text under `----`.
//! `UPDATE_GOLDEN=1 cargo test -p flotilla-node --lib raft::testing` rewrites the files with the actual
//! output; review the diff, it is the test.
//!
//! Commands (node ids are numbers; every node's clock starts at 0):
//! - `add-nodes N [pre-vote=B] [check-quorum=B] [max-append-entries=K]`: voters 1..=N, fixed seeds.
//! - `campaign ID`: advance ID's clock to its election deadline (PreVote first, if on).
//! - `tick ID MS`: advance ID's clock by MS milliseconds and tick its core.
//! - `tick all MS`: advance every node's clock by MS milliseconds (crashed ones too), ticking each live
//!   core in node order: time passes for the whole cluster, so timeouts fire wherever they are due.
//! - `process-ready ID...`: take each node's Ready, print it, write it to the node's disk, then queue
//!   its messages (the persisted ones after the write, Raft thesis §3.8).
//! - `deliver-msgs ID...`: step every queued message addressed to the named nodes, printing each.
//! - `drop-msgs [to=ID] [from=ID]`: discard queued messages (all, or those matching).
//! - `reverse-msgs [to=ID]`: reverse the order of the queued messages (all, or those to ID), as a
//!   network that delivers the later ones first.
//! - `stabilize`: process-ready and deliver-msgs on all nodes until nothing is left to do.
//! - `partition ID...`: drop all traffic to and from these nodes (now and later); `heal` undoes it.
//! - `propose ID TEXT`, `read-index ID ctx=N`, `transfer-leadership ID to=N`.
//! - `crash ID`: the node loses everything not written to its disk; `restart ID` restores from disk;
//!   `wipe ID` (crashed nodes only) empties its disk first, as a lost disk would.
//! - `status ID`, `log ID`: print the core's state, or its log (durable or not).
//! - `add-member LEADER ID` / `add-learner LEADER ID`: ask LEADER to add ID as a voter (a learner
//!   promoted once caught up) or a learner; an ID not yet in the scenario starts as a joining node (no
//!   configuration). `remove-member LEADER ID`; `members ID` prints the configuration in force.
//! - `snapshot ID [keep=K]`: take a snapshot of ID's state machine at its applied index and compact
//!   its log, keeping K entries behind it (Raft §7). Snapshot chunks a leader asks for are read from
//!   its disk, `snapshot-chunk-bytes` (48 unless `add-nodes` says otherwise) at a time, and sent with
//!   the Ready's messages; chunks a follower stages and images it installs are written with the Ready.

mod transcript;

use super::*;
use crate::storage::memory::MemoryStore;
use crate::storage::{LogStore, WriteBatch};
use flotilla_shared::api::{Member, MemberRole};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::rc::Rc;
use transcript::{fmt_entries, fmt_event, fmt_message};

type Disk = Rc<RefCell<MemoryStore>>;

struct Node {
    config: Config,
    /// The configuration the node starts from while its log holds none.
    seed: Configuration,
    disk: Disk,
    /// `None` while crashed.
    core: Option<Raft<Disk>>,
    now_ms: u64,
}

/// A few cores, their disks and a message queue: everything a scenario script manipulates.
#[derive(Default)]
struct Env {
    nodes: BTreeMap<NodeId, Node>,
    /// Messages in flight, in the order they were sent.
    queue: Vec<Envelope>,
    isolated: BTreeSet<NodeId>,
    /// Most bytes of messages in one snapshot chunk (0: the default, 48).
    snapshot_chunk_bytes: u64,
}

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
    fn node(&mut self, id: NodeId) -> Result<&mut Node, String> {
        self.nodes
            .get_mut(&id)
            .ok_or_else(|| format!("no node {id}"))
    }

    fn core(&mut self, id: NodeId) -> Result<&mut Raft<Disk>, String> {
        self.node(id)?
            .core
            .as_mut()
            .ok_or_else(|| format!("node {id} is crashed"))
    }

    fn run(&mut self, line: &str) -> Result<String, String> {
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

    /// A node started to join: no configuration until a leader's arrives.
    fn add_joining_node(&mut self, id: NodeId) -> Result<(), String> {
        let mut config = Config::new(id, vec![id]);
        config.seed = 1;
        let disk: Disk = Rc::new(RefCell::new(MemoryStore::new()));
        let now_ms = self.nodes.values().map(|n| n.now_ms).max().unwrap_or(0);
        let mut core = Raft::new(config.clone(), disk.clone(), Restored::default(), now_ms)
            .map_err(|e| e.to_string())?;
        core.restore_membership(Configuration::default());
        self.nodes.insert(
            id,
            Node {
                seed: Configuration::default(),
                config,
                disk,
                core: Some(core),
                now_ms,
            },
        );
        Ok(())
    }

    /// Takes a snapshot at `id`'s applied index and compacts its log, keeping `keep` entries.
    fn snapshot(&mut self, id: NodeId, keep: u64, out: &mut String) -> Result<(), String> {
        let node = self.node(id)?;
        let Some(core) = node.core.as_mut() else {
            return Err(format!("node {id} is crashed"));
        };
        let applied = node.disk.borrow().applied();
        let term = core
            .log_term(applied)
            .ok_or("the applied entry's term is unknown")?;
        let at = LogId {
            index: applied,
            term,
        };
        let config = core
            .snapshot_configuration(applied)
            .cloned()
            .ok_or("the configuration at the applied index is not held")?;
        let mut disk = node.disk.borrow_mut();
        let meta = disk
            .take_snapshot(at, &config.members, config.index)
            .map_err(|e| e.to_string())?;
        let first = disk
            .compact(LogIndex(applied.0.saturating_sub(keep)))
            .map_err(|e| e.to_string())?;
        drop(disk);
        writeln!(
            out,
            "snapshot at {}/{} ({} bytes); log starts at {first}",
            meta.last.index, meta.last.term, meta.bytes
        )
        .ok();
        core.snapshot_taken(meta);
        core.log_compacted(first);
        Ok(())
    }

    /// One round of the caller's loop from the module docs of `raft`, printed.
    fn process_ready(&mut self, id: NodeId, out: &mut String) -> Result<(), String> {
        let node = self.node(id)?;
        let Some(core) = node.core.as_mut() else {
            return Err(format!("node {id} is crashed"));
        };
        let ready = core.ready();
        let header_at = out.len();
        writeln!(out, "> {id} handling Ready").ok();
        let body_at = out.len();
        for event in &ready.events {
            if let Some(text) = fmt_event(event) {
                writeln!(out, "  {id}: {text}").ok();
            }
        }
        if let Some(hs) = ready.hard_state {
            writeln!(
                out,
                "  hard_state term={} vote={} commit={}",
                hs.term,
                hs.voted_for.map_or("-".into(), |v| v.to_string()),
                hs.commit
            )
            .ok();
        }
        if !ready.entries.is_empty() {
            writeln!(out, "  entries {}", fmt_entries(&ready.entries, true)).ok();
        }
        if !ready.committed.is_empty() {
            writeln!(out, "  committed {}", fmt_entries(&ready.committed, true)).ok();
        }
        for read in &ready.reads {
            writeln!(out, "  read ready ctx={} index={}", read.ctx, read.index).ok();
        }
        for ctx in &ready.failed_reads {
            writeln!(out, "  read failed ctx={ctx}").ok();
        }
        let chunk_bytes = match self.snapshot_chunk_bytes {
            0 => 48,
            bytes => bytes,
        };
        let node = self.nodes.get_mut(&id).ok_or("no such node")?;
        let Some(core) = node.core.as_mut() else {
            return Err(format!("node {id} is crashed"));
        };
        let mut messages = ready.messages;
        for send in ready.snapshot_sends {
            let disk = node.disk.borrow();
            let (records, bytes) = crate::storage::read_image_chunk(
                |lo, hi, limit| disk.messages(lo, hi, limit),
                send.after,
                send.meta.last.index,
                chunk_bytes,
            )
            .map_err(|e| e.to_string())?;
            let chunk = send.into_envelope(id, records, bytes).0;
            core.snapshot_chunk_read(&chunk);
            messages.push(chunk);
        }
        for m in &messages {
            writeln!(out, "  send {}", fmt_message(m)).ok();
        }
        // Step 3: one durable write, then report it and release the persisted messages.
        node.disk
            .borrow_mut()
            .write(WriteBatch {
                hard_state: ready.hard_state,
                entries: &ready.entries,
                apply: &ready.committed,
            })
            .map_err(|e| format!("disk write failed on {id}: {e}"))?;
        for op in ready.snapshot_ops {
            let mut disk = node.disk.borrow_mut();
            match op {
                SnapshotOp::Stage { offset, records } => {
                    writeln!(out, "  stage {} messages at offset {offset}", records.len()).ok();
                    disk.stage_snapshot(offset, &records)
                }
                SnapshotOp::Install(meta) => {
                    writeln!(
                        out,
                        "  install snapshot {}/{}",
                        meta.last.index, meta.last.term
                    )
                    .ok();
                    disk.install_snapshot(&meta)
                }
            }
            .map_err(|e| format!("snapshot write failed on {id}: {e}"))?;
        }
        if let Some(last) = ready.entries.last() {
            core.persisted(LogId {
                index: last.index,
                term: last.term,
            });
        }
        for m in &ready.persisted_messages {
            writeln!(out, "  send after persist {}", fmt_message(m)).ok();
        }
        if out.len() == body_at {
            // Only timer resets and the like: not worth a line in the transcript.
            out.truncate(header_at);
            writeln!(out, "> {id} handling Ready: nothing to show").ok();
        }
        let isolated = &self.isolated;
        self.queue.extend(
            messages
                .into_iter()
                .chain(ready.persisted_messages)
                .filter(|m| !isolated.contains(&m.from) && !isolated.contains(&m.to)),
        );
        Ok(())
    }

    fn deliver(&mut self, id: NodeId, out: &mut String) -> Result<(), String> {
        let (mine, rest): (Vec<_>, Vec<_>) = self.queue.drain(..).partition(|m| m.to == id);
        self.queue = rest;
        let Some(core) = self.node(id)?.core.as_mut() else {
            for m in mine {
                writeln!(out, "lost (crashed) {}", fmt_message(&m)).ok();
            }
            return Ok(());
        };
        for m in mine {
            writeln!(out, "{}", fmt_message(&m)).ok();
            core.step(m);
        }
        Ok(())
    }

    fn stabilize(&mut self, out: &mut String) -> Result<(), String> {
        for _round in 0..100 {
            let mut busy = false;
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for id in &ids {
                let has_ready = self.nodes[id].core.as_ref().is_some_and(|c| c.has_ready());
                if has_ready {
                    busy = true;
                    let mut round = String::new();
                    self.process_ready(*id, &mut round)?;
                    if !round.ends_with("nothing to show\n") {
                        out.push_str(&round);
                    }
                }
            }
            for id in &ids {
                if self.queue.iter().any(|m| m.to == *id) {
                    busy = true;
                    self.deliver(*id, out)?;
                }
            }
            if !busy {
                return Ok(());
            }
        }
        Err("not stable after 100 rounds".into())
    }
}

/// What a restarted node's configuration is restored from: the newest configuration entry on its disk
/// at or below `commit`, else its seed.
fn stored_membership(disk: &Disk, seed: &Configuration, commit: LogIndex) -> Configuration {
    disk.entries(LogIndex(1), commit, usize::MAX)
        .iter()
        .rev()
        .find_map(Configuration::from_entry)
        .unwrap_or_else(|| seed.clone())
}

/// Runs one script; returns the file as it should read (commands with their actual output).
fn run_script(script: &str) -> Result<String, String> {
    let mut env = Env::default();
    let mut rewritten = String::new();
    let mut lines = script.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            rewritten.push_str(line);
            rewritten.push('\n');
            continue;
        }
        // Skip the old expected output: `----` up to the next blank line.
        if lines.peek().is_some_and(|l| l.trim() == "----") {
            lines.next();
            while lines.peek().is_some_and(|l| !l.trim().is_empty()) {
                lines.next();
            }
        }
        let output = env.run(trimmed).unwrap_or_else(|e| format!("error: {e}\n"));
        rewritten.push_str(trimmed);
        rewritten.push_str("\n----\n");
        rewritten.push_str(if output.is_empty() { "ok\n" } else { &output });
        // Blocks are separated by one blank line: keep the script's own, or add one.
        if lines.peek().is_some_and(|l| !l.trim().is_empty()) {
            rewritten.push('\n');
        }
    }
    Ok(rewritten)
}

fn check_golden(name: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/raft/testing/testdata")
        .join(format!("{name}.txt"));
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let actual = run_script(&expected).unwrap_or_else(|e| panic!("{name}: {e}"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &actual)
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return;
    }
    if actual != expected {
        let first_diff = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{name}: transcript differs from {} at line {} (rerun with UPDATE_GOLDEN=1 and review the diff)\n\
             expected: {:?}\nactual:   {:?}",
            path.display(),
            first_diff + 1,
            expected.lines().nth(first_diff),
            actual.lines().nth(first_diff)
        );
    }
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        $(#[test] fn $name() { check_golden(stringify!($name)); })*
    };
}

scenarios!(
    election_replication,
    figure8,
    prevote,
    check_quorum,
    leadership_transfer,
    read_index,
    vote_denied,
    log_conflict,
    membership_single_node,
    membership_remove_leader,
    membership_partition,
    membership_racing,
    membership_removed_votes,
    membership_truncated,
    snapshot_install_during_append,
    snapshot_stale,
    snapshot_old_term,
    snapshot_wiped_follower,
    snapshot_pipelined_lost_chunk,
    snapshot_pipelined_reordered,
    snapshot_pipelined_unanswered,
);

#[test]
fn unknown_commands_are_reported_not_ignored() {
    let out = run_script("frobnicate 1\n").unwrap();
    assert!(
        out.contains("error: unknown command \"frobnicate\""),
        "{out}"
    );
}
