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

mod commands;
mod golden;
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
