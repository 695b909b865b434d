//! Snapshots (Raft §7): what the core knows of the latest snapshot, a leader's transfers of it to
//! followers whose next entries it compacted away, and a follower receiving and installing one.
//!
//! The core moves no bytes. A leader asks (`Ready::snapshot_sends`) for chunks to be read and sent to
//! a follower, up to [`SNAPSHOT_CHUNKS_IN_FLIGHT`] unanswered at a time, so that reading, sending and
//! the follower's writing overlap instead of taking turns. A chunk's end is known once it is read
//! ([`Raft::snapshot_chunk_read`]); the next one starts there. When the oldest unanswered chunk has
//! had no answer for an election timeout's minimum, the leader goes back to where the follower's copy
//! stands and sends from there again. A follower checks each chunk's term like an append's, asks for
//! it to be staged (`Ready::snapshot_ops`) and answers once it is written; the chunk marked `done` is
//! installed the same way, after which the follower continues from the snapshot's last entry. A chunk
//! that does not continue the follower's copy (one after a lost one, a resend, one after a cut) is
//! answered with where that copy stands, so the transfer resumes there (a restarted follower has no
//! copy: the transfer starts over).

use super::*;
use crate::raft::membership::Configuration;
use flotilla_shared::rpc::{snapshot_record_bytes, InstallSnapshot, InstallSnapshotResponse};
use std::collections::btree_map;

/// Most bytes of messages (by `snapshot_record_bytes`) one chunk carries; at least one message.
pub const MAX_SNAPSHOT_CHUNK_BYTES: usize = 512 * 1024;
/// Most chunks of one transfer sent and not yet answered. With [`MAX_SNAPSHOT_CHUNK_BYTES`] this
/// bounds what a transfer holds in memory on either side, whatever the snapshot's size.
pub const SNAPSHOT_CHUNKS_IN_FLIGHT: usize = 4;

/// A follower answered a heartbeat at its match point that its log ends before it: its disk was wiped
/// (it lost what Raft assumes durable). Only a heartbeat sent after the match was acknowledged names
/// that point, so this is no late answer to an older append. Its progress starts over from what it
/// holds, which for a leader that compacted those entries means a snapshot. Lowering a match point
/// never commits anything. Returns whether that was the case.
pub(super) fn forgot_acknowledged_entries(
    pr: &mut Progress,
    resp: &flotilla_shared::rpc::AppendEntriesResponse,
) -> bool {
    match (resp.conflict_index, resp.conflict_term) {
        (Some(hint), None) if resp.index == pr.match_index && hint <= pr.match_index => {
            pr.match_index = hint.prev();
            pr.become_probe();
            true
        }
        _ => false,
    }
}

/// The snapshot side of the core's state.
#[derive(Default)]
pub(super) struct Snapshots {
    /// The latest snapshot this node holds (taken or installed); `last.index` 0: none.
    pub(super) latest: SnapshotMeta,
    /// Leader: transfers under way, per follower.
    sending: BTreeMap<NodeId, Sending>,
    /// Follower: the snapshot being received.
    receiving: Option<Receiving>,
    ops: Vec<SnapshotOp>,
    sends: Vec<SnapshotSend>,
}

/// A place in a snapshot image: `offset` bytes into it, after message `after`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Position {
    offset: u64,
    after: LogIndex,
}

/// A transfer to one follower.
struct Sending {
    term: Term,
    meta: SnapshotMeta,
    /// Where the follower's copy ends, as far as its answers tell.
    held: Position,
    /// Chunks asked for and not answered yet, in order: the first starts at `held`, each next one
    /// where the one before it ends.
    in_flight: VecDeque<InFlight>,
    /// Refusals naming `held` since the window last moved (see `refused`).
    refusals: usize,
}

struct InFlight {
    start: Position,
    /// Where it ends, once read.
    end: Option<Position>,
    sent_ms: u64,
}

impl Sending {
    fn new(term: Term, meta: SnapshotMeta) -> Self {
        Self {
            term,
            meta,
            held: Position::default(),
            in_flight: VecDeque::new(),
            refusals: 0,
        }
    }

    /// Where the next chunk starts, if one may go out now: the window has room and the chunk
    /// before it is read (not the last one).
    fn next_start(&self) -> Option<Position> {
        match self.in_flight.back() {
            None => Some(self.held),
            Some(_) if self.in_flight.len() >= SNAPSHOT_CHUNKS_IN_FLIGHT => None,
            Some(last) => last.end.filter(|end| end.offset < self.meta.bytes),
        }
    }

    /// The follower holds the image up to `held` (an accepted chunk's answer): the chunks before it
    /// are answered.
    fn accepted(&mut self, held: Position) {
        if held.offset <= self.held.offset {
            // A late answer: a later one already said more.
            return;
        }
        self.held = held;
        self.refusals = 0;
        while self
            .in_flight
            .front()
            .is_some_and(|chunk| chunk.start.offset < held.offset)
        {
            self.in_flight.pop_front();
        }
    }

    /// The follower refused a chunk that does not continue its copy, which ends at `held`. Unless
    /// the window already starts there, it starts there now. If it does, the refused chunk is one
    /// sent after the first (or an answer from before the window went back): once as many refusals
    /// came as chunks follow the first, the first one was lost (or came late and was refused too)
    /// and goes again; until then it may still arrive. A first chunk alone is waited for (the retry
    /// timeout in `maybe_send_snapshot` covers its loss).
    fn refused(&mut self, held: Position) {
        let starts_there = self.in_flight.front().is_some_and(|c| c.start == held);
        if starts_there {
            self.refusals += 1;
            let following = self.in_flight.len() - 1;
            if following == 0 || self.refusals < following {
                return;
            }
        }
        self.held = held;
        self.refusals = 0;
        self.in_flight.clear();
    }
}

/// What this follower holds of a snapshot being received.
struct Receiving {
    meta: SnapshotMeta,
    offset: u64,
    after: LogIndex,
}

impl Snapshots {
    /// Whether this leader (of `term`) is sending `peer` a snapshot: its append answers then only
    /// say it is alive; the snapshot's answers decide what it is sent next.
    pub(super) fn sending_to(&self, peer: NodeId, term: Term) -> bool {
        self.sending.get(&peer).is_some_and(|s| s.term == term)
    }

    pub(super) fn restored(latest: SnapshotMeta) -> Self {
        Self {
            latest,
            ..Self::default()
        }
    }

    pub(super) fn has_ready(&self) -> bool {
        !self.ops.is_empty() || !self.sends.is_empty()
    }

    pub(super) fn take_ready(&mut self, ready: &mut Ready) {
        ready.snapshot_ops = std::mem::take(&mut self.ops);
        ready.snapshot_sends = std::mem::take(&mut self.sends);
    }
}

impl<S: LogRead> Raft<S> {
    // ----- inputs -----

    /// The caller took a snapshot at `meta.last` (durably). Log entries up to it may now be compacted.
    pub fn snapshot_taken(&mut self, meta: SnapshotMeta) {
        if meta.last.index <= self.snapshots.latest.last.index {
            return;
        }
        self.log.snapshot_taken(meta.last);
        self.events.push(EventKind::SnapshotTaken {
            index: meta.last.index,
            term: meta.last.term,
            bytes: meta.bytes,
        });
        self.snapshots.latest = meta;
    }

    /// The caller removed the log entries before `first` (all covered by the latest snapshot).
    pub fn log_compacted(&mut self, first: LogIndex) {
        let before = self.log.first_index();
        self.log.compacted(first);
        if self.log.first_index() > before {
            self.events.push(EventKind::LogCompacted {
                first_log_index: self.log.first_index(),
            });
        }
        self.debug_validate();
    }

    /// The latest snapshot this node holds (`last.index` 0: none).
    pub fn latest_snapshot(&self) -> &SnapshotMeta {
        &self.snapshots.latest
    }

    /// The first entry still in the log; earlier ones live only in the snapshot.
    pub fn first_log_index(&self) -> LogIndex {
        self.log.first_index()
    }

    // ----- leader -----

    /// `peer` needs entries this leader compacted away: asks for the next chunk of its latest snapshot
    /// to be read and sent, if the transfer's window has room for it. Appends to `peer` wait until it
    /// is installed. Returns whether a chunk was asked for.
    pub(super) fn maybe_send_snapshot(&mut self, peer: NodeId) -> bool {
        let (term, now) = (self.term, self.now_ms);
        let retry_ms = self.config.election_timeout_ms.0;
        let latest = &self.snapshots.latest;
        let RoleState::Leader(leader) = &mut self.role else {
            return false;
        };
        let Some(pr) = leader.progress.get_mut(&peer) else {
            return false;
        };
        if latest.last.index == LogIndex::ZERO {
            return false;
        }
        let sending = match self.snapshots.sending.entry(peer) {
            // A transfer started in an earlier term, or of an older snapshot, starts over.
            btree_map::Entry::Occupied(entry)
                if entry.get().term == term && entry.get().meta.last == latest.last =>
            {
                entry.into_mut()
            }
            btree_map::Entry::Occupied(mut entry) => {
                entry.insert(Sending::new(term, latest.clone()));
                entry.into_mut()
            }
            btree_map::Entry::Vacant(entry) => entry.insert(Sending::new(term, latest.clone())),
        };
        // No appends until the follower holds the snapshot (its answers decide what is next).
        if pr.state == ProgressState::Replicate {
            pr.become_probe();
        }
        pr.probe_sent = true;
        // The oldest chunk out got no answer in time: it or its answer is lost, and what follows it
        // cannot be taken. Go back to what the follower holds.
        if sending
            .in_flight
            .front()
            .is_some_and(|oldest| now >= oldest.sent_ms.saturating_add(retry_ms))
        {
            sending.in_flight.clear();
            sending.refusals = 0;
        }
        let Some(start) = sending.next_start() else {
            return false;
        };
        sending.in_flight.push_back(InFlight {
            start,
            end: None,
            sent_ms: now,
        });
        let send = SnapshotSend {
            to: peer,
            term,
            meta: sending.meta.clone(),
            offset: start.offset,
            after: start.after,
            msg: 0,
        };
        let msg = self.next_msg();
        self.snapshots.sends.push(SnapshotSend { msg, ..send });
        true
    }

    /// The caller read a chunk a `SnapshotSend` asked for, and sends it as `chunk`: the next one may
    /// be asked for, starting where it ends.
    pub fn snapshot_chunk_read(&mut self, chunk: &Envelope) {
        let Message::InstallSnapshot(is) = &chunk.message else {
            return;
        };
        let Some(sending) = self.snapshots.sending.get_mut(&chunk.to) else {
            return;
        };
        if sending.term != chunk.term || sending.meta.last.index != is.last_index {
            return;
        }
        let start = Position {
            offset: is.offset,
            after: is.after,
        };
        let Some(read) = sending
            .in_flight
            .iter_mut()
            .find(|c| c.start == start && c.end.is_none())
        else {
            // Asked for before the window went back: it goes out, but what follows is decided anew.
            return;
        };
        read.end = Some(Position {
            offset: is.offset + is.records.iter().map(snapshot_record_bytes).sum::<u64>(),
            after: is.records.last().map_or(is.after, |r| r.index),
        });
        self.maybe_send_snapshot(chunk.to);
    }

    pub(super) fn handle_install_snapshot_response(
        &mut self,
        from: NodeId,
        resp: InstallSnapshotResponse,
    ) -> Result<(), Rejected> {
        let (term, now) = (self.term, self.now_ms);
        let RoleState::Leader(leader) = &mut self.role else {
            return Ok(());
        };
        let Some(sending) = self.snapshots.sending.get_mut(&from) else {
            return Ok(());
        };
        if sending.term != term || resp.last_index != sending.meta.last.index {
            // An answer to a transfer this leader gave up on.
            return Ok(());
        }
        if resp.next_offset > sending.meta.bytes || resp.next_after > sending.meta.last.index {
            return Err(Rejected::new(
                Reason::UnknownReply,
                format!(
                    "install_snapshot response from node {from} wants offset {} after {} of a \
                     snapshot of {} bytes up to {}",
                    resp.next_offset, resp.next_after, sending.meta.bytes, sending.meta.last.index
                ),
            ));
        }
        let Some(pr) = leader.progress.get_mut(&from) else {
            return Ok(());
        };
        pr.last_heard_ms = now;
        if resp.done {
            // Raft §7: the follower's log now matches up to the snapshot; appends go on from there.
            let index = resp.last_index;
            self.snapshots.sending.remove(&from);
            let moved = pr.maybe_update(index);
            pr.become_probe();
            self.events.push(EventKind::AppendAcked {
                msg: 0,
                from,
                term,
                match_index: pr.match_index,
            });
            if moved {
                self.maybe_commit();
            }
            return Ok(());
        }
        let held = Position {
            offset: resp.next_offset,
            after: resp.next_after,
        };
        if resp.success {
            sending.accepted(held);
        } else {
            sending.refused(held);
        }
        // The window may have room now.
        self.maybe_send_snapshot(from);
        Ok(())
    }

    // ----- follower -----

    fn respond_install(&mut self, to: NodeId, response: InstallSnapshotResponse) {
        let msg = self.next_msg();
        self.persisted_messages.push(Envelope {
            msg,
            from: self.id,
            to,
            term: self.term,
            message: Message::InstallSnapshotResponse(response),
        });
    }

    /// A request of a stale term (Raft §5.1): refused, with this node's term in the answer.
    pub(super) fn refuse_install(&mut self, to: NodeId, is: &InstallSnapshot, reason: String) {
        self.respond_install(
            to,
            InstallSnapshotResponse {
                last_index: is.last_index,
                success: false,
                next_offset: 0,
                next_after: LogIndex::ZERO,
                done: false,
                reason: Some(reason),
            },
        );
    }

    /// One chunk of the leader's snapshot (Raft §7). Its term is this node's (checked by the caller).
    pub(super) fn handle_install_snapshot(
        &mut self,
        from: NodeId,
        is: InstallSnapshot,
    ) -> Result<(), Rejected> {
        if matches!(self.role, RoleState::Leader(_)) {
            // Raft §5.2 (Election Safety) makes this impossible; answer rather than trust the sender.
            let reason = format!("node {} leads term {}", self.id, self.term);
            self.refuse_install(from, &is, reason);
            return Ok(());
        }
        if !matches!(self.role, RoleState::Follower { leader: Some(l) } if l == from) {
            self.become_follower(self.term, Some(from));
        } else {
            self.leader_heard_ms = Some(self.now_ms);
            self.reset_election_timer();
        }
        let last = LogId {
            index: is.last_index,
            term: is.last_term,
        };
        // Raft §7: a snapshot the committed log already covers brings nothing (its last entry is in
        // this log with that term, Log Matching); the follower goes on from its own log.
        if last.index <= self.log.commit {
            self.respond_install(
                from,
                InstallSnapshotResponse {
                    last_index: last.index,
                    success: true,
                    next_offset: is.total_bytes,
                    next_after: last.index,
                    done: true,
                    reason: None,
                },
            );
            return Ok(());
        }
        let held = match &self.snapshots.receiving {
            Some(r) if r.meta.last == last && r.meta.bytes == is.total_bytes => (r.offset, r.after),
            _ => (0, LogIndex::ZERO),
        };
        if is.offset != 0 && (is.offset, is.after) != held {
            let reason = format!(
                "chunk at offset {} after {}, but this copy holds {} bytes up to {}",
                is.offset, is.after, held.0, held.1
            );
            self.respond_install(
                from,
                InstallSnapshotResponse {
                    last_index: last.index,
                    success: false,
                    next_offset: held.0,
                    next_after: held.1,
                    done: false,
                    reason: Some(reason),
                },
            );
            return Ok(());
        }
        let bytes: u64 = is.records.iter().map(snapshot_record_bytes).sum();
        let offset = is.offset + bytes;
        let after = is.records.last().map_or(is.after, |r| r.index);
        let meta = SnapshotMeta {
            last,
            members: is.members,
            config_index: is.config_index,
            bytes: is.total_bytes,
        };
        self.snapshots.ops.push(SnapshotOp::Stage {
            offset: is.offset,
            records: is.records,
        });
        if !is.done {
            self.snapshots.receiving = Some(Receiving {
                meta,
                offset,
                after,
            });
        } else {
            self.install_snapshot(from, meta);
        }
        self.respond_install(
            from,
            InstallSnapshotResponse {
                last_index: last.index,
                success: true,
                next_offset: offset,
                next_after: after,
                done: is.done,
                reason: None,
            },
        );
        Ok(())
    }

    /// The whole image is staged: it replaces this node's state (the caller installs it atomically,
    /// before the answer goes out) and the log continues from its last entry.
    fn install_snapshot(&mut self, from: NodeId, meta: SnapshotMeta) {
        self.snapshots.receiving = None;
        let commit_before = self.log.commit;
        self.log.install_snapshot(meta.last);
        self.events.push(EventKind::SnapshotInstalled {
            from,
            index: meta.last.index,
            term: meta.last.term,
            bytes: meta.bytes,
        });
        if self.log.commit > commit_before {
            self.events.push(EventKind::CommitAdvanced {
                commit_index: self.log.commit,
            });
        }
        self.events.push(EventKind::LogCompacted {
            first_log_index: self.log.first_index(),
        });
        self.snapshots.ops.push(SnapshotOp::Install(meta.clone()));
        self.snapshots.latest = meta;
        // The image replaces the log up to it, configuration entries included: its configuration is
        // the newest at or below the new commit index.
        let before = self.membership().clone();
        self.restore_membership(Configuration::new(
            self.snapshots.latest.members.clone(),
            Vec::new(),
            self.snapshots.latest.config_index,
        ));
        if *self.membership() != before {
            self.announce_membership();
        }
    }

    /// The snapshot's invariants: the log continues it, and it is committed and applied.
    pub(super) fn validate_snapshot(&self) -> Result<(), String> {
        let snapshot = self.log.snapshot();
        if snapshot.index > self.log.commit || snapshot.index > self.log.applied {
            return Err(format!(
                "snapshot at {} past commit {} or applied {}",
                snapshot.index, self.log.commit, self.log.applied
            ));
        }
        if self.log.first_index() > snapshot.index.next() {
            return Err(format!(
                "the log starts at {}, leaving a gap after the snapshot at {}",
                self.log.first_index(),
                snapshot.index
            ));
        }
        if self.log.last_index() < snapshot.index {
            return Err(format!(
                "the log ends at {} before the snapshot at {}",
                self.log.last_index(),
                snapshot.index
            ));
        }
        Ok(())
    }
}
