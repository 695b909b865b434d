//! The Raft core: deterministic and free of I/O.
//!
//! Owns the Raft protocol: roles, terms, votes, the in-memory log and its commit and apply points,
//! per-follower progress, reads and leadership transfer. It may not touch tokio, sockets, SQLite, the
//! wall clock or ambient randomness, nor any other module of the node but `validation` (the checks every
//! message passes): the caller drives it:
//!
//! - inputs: [`Raft::tick`] (time is a number of milliseconds), [`Raft::step`] (a message from a peer),
//!   [`Raft::propose`], [`Raft::read_index`], [`Raft::transfer_leadership`], [`Raft::persisted`]
//!   ("durable up to N"), [`Raft::set_timing`], [`Raft::report_unreachable`];
//! - output: [`Raft::ready`] returns one [`Ready`] per round.
//!
//! The caller's loop, in this order (etcd-raft's `Ready` contract, Raft thesis §3.8):
//! 1. take `ready()`;
//! 2. send `ready.messages` now (the leader's appends go out in parallel with its own disk write, thesis
//!    §10.2.1);
//! 3. durably write `ready.hard_state` and `ready.entries` (one transaction, one fsync); writing entries
//!    whose first index is at or below the stored last index first deletes the stored entries from that
//!    index on;
//! 4. then, and only then, send `ready.persisted_messages` (a campaign's vote requests, vote and append
//!    responses) and call [`Raft::persisted`] with the last written entry's index and term;
//! 5. apply `ready.committed` in order; they are always locally durable already;
//! 6. answer `ready.reads` (their index is applied once `committed` of this and earlier rounds is) and fail
//!    `ready.failed_reads`.
//!
//! Snapshots (Raft §7, `core/snapshot.rs`): the caller takes them and compacts the log (and tells the
//! core: [`Raft::snapshot_taken`], [`Raft::log_compacted`]); a leader asks in `ready.snapshot_sends` for
//! chunks of its latest snapshot to be read and sent to followers whose next entries are compacted away;
//! a follower asks in `ready.snapshot_ops` for received chunks to be staged and the image installed,
//! in order with the round's writes (step 3) and before `persisted_messages` go out.
//!
//! Proposals and other changes between two `ready()` calls are coalesced: appends to followers are built
//! when `ready()` is called, so many proposals share one append and one fsync.

pub use flotilla_shared::event::{EventKind, Role};
pub use flotilla_shared::rpc::{Entry, Envelope, Message, Payload};
pub use flotilla_shared::{LogIndex, NodeId, Term};

/// The index and term of one log entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogId {
    pub index: LogIndex,
    pub term: Term,
}

/// What must be durable before voting or acknowledging (Raft Figure 2, "persistent state").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: Term,
    pub voted_for: Option<NodeId>,
    /// Persisted lazily, so a restarted node need not wait for a leader to re-apply what it knew.
    pub commit: LogIndex,
}

/// Read access to the durable log. The core keeps every entry that is not yet durable (and a window of
/// recent durable ones) in memory and reads older entries through this trait.
///
/// Implementations are infallible by contract: a storage error is fatal to the node, so an
/// implementation that meets one ends the process (or the simulated node) itself.
pub trait LogRead {
    /// The term of the durable entry at `index`; `Some(Term(0))` for index 0; `None` past the end.
    fn term(&self, index: LogIndex) -> Option<Term>;
    /// Durable entries in `lo..=hi`, stopping early (but always returning at least one entry when
    /// `lo <= hi` and `lo` exists) once `max_bytes` of [`Entry::approx_size`] is reached.
    fn entries(&self, lo: LogIndex, hi: LogIndex, max_bytes: usize) -> Vec<Entry>;
}

/// What a snapshot holds besides the state machine's image (Raft §7): the last entry it covers and the
/// configuration in force there. `last.index` 0 means no snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotMeta {
    pub last: LogId,
    /// The configuration in force at `last` (until configuration entries exist: the seed one).
    pub members: Vec<flotilla_shared::api::Member>,
    /// The log index of that configuration's entry (0: the seed configuration).
    pub config_index: LogIndex,
    /// The image's size, in [`flotilla_shared::rpc::snapshot_record_bytes`] units.
    pub bytes: u64,
}

/// Everything a core is started from: what the node found on disk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    pub hard_state: HardState,
    /// The last durable entry (index 0, term 0 for an empty log).
    pub last: LogId,
    /// The state machine has applied up to here; the core hands out entries after it.
    pub applied: LogIndex,
    /// The latest snapshot; entries before `first_index` live only in it.
    pub snapshot: SnapshotMeta,
    pub first_index: LogIndex,
}

/// A linearizable read that may now be served: the state machine has applied up to `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    pub ctx: u64,
    pub index: LogIndex,
}

/// One round of output. See the module docs for the order in which the caller acts on it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// Changed hard state to write together with `entries`.
    pub hard_state: Option<HardState>,
    /// New entries to write durably, in index order.
    pub entries: Vec<Entry>,
    /// Send now.
    pub messages: Vec<Envelope>,
    /// Send only after `hard_state` and `entries` of this round are durable (thesis §3.8): replies
    /// that promise what was written, and vote requests that act on a new term.
    pub persisted_messages: Vec<Envelope>,
    /// Committed, locally durable entries to apply, in order.
    pub committed: Vec<Entry>,
    pub reads: Vec<ReadState>,
    /// Reads that can no longer be served here (leadership lost): the caller answers them with an error.
    pub failed_reads: Vec<u64>,
    pub events: Vec<EventKind>,
    /// Snapshot writes to do after this round's entries, in order, before `persisted_messages` go out.
    pub snapshot_ops: Vec<SnapshotOp>,
    /// Snapshot chunks to read and send now (leader).
    pub snapshot_sends: Vec<SnapshotSend>,
}

/// A write a follower receiving a snapshot asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotOp {
    /// Add a chunk to the staging area (`offset` 0: start it afresh).
    Stage {
        offset: u64,
        records: Vec<flotilla_shared::api::MessageEntry>,
    },
    /// Replace the state machine with the staged image, atomically.
    Install(SnapshotMeta),
}

impl SnapshotSend {
    /// The `InstallSnapshot` carrying `records` (the chunk read for this request, `bytes` long) from
    /// node `from`; whether it is the last chunk.
    pub fn into_envelope(
        self,
        from: NodeId,
        records: Vec<flotilla_shared::api::MessageEntry>,
        bytes: u64,
    ) -> (Envelope, bool) {
        let done = self.offset + bytes >= self.meta.bytes;
        let message = Message::InstallSnapshot(flotilla_shared::rpc::InstallSnapshot {
            last_index: self.meta.last.index,
            last_term: self.meta.last.term,
            members: self.meta.members,
            config_index: self.meta.config_index,
            total_bytes: self.meta.bytes,
            offset: self.offset,
            after: self.after,
            records,
            done,
        });
        let envelope = Envelope {
            from,
            to: self.to,
            term: self.term,
            msg: self.msg,
            message,
        };
        (envelope, done)
    }
}

/// A chunk of this leader's snapshot `meta` to read (the messages after `after`, from byte `offset`)
/// and send to `to` as an `InstallSnapshot` of `term`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotSend {
    pub to: NodeId,
    pub term: Term,
    pub meta: SnapshotMeta,
    pub offset: u64,
    pub after: LogIndex,
    /// The chunk's message number (the sender's per-message sequence).
    pub msg: u64,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        *self == Ready::default()
    }
}

mod config;
mod core;
mod log;
pub mod membership;
mod progress;
mod quorum;
pub mod rng;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

pub use self::config::{Config, ConfigError};
#[cfg(any(test, feature = "sim"))]
pub use self::core::PlantedBug;
pub use self::core::{Raft, MAX_SNAPSHOT_CHUNK_BYTES};
pub use self::membership::{Configuration, MembershipChange, MembershipError};

/// A proposal was not accepted; nothing was appended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("leadership is being transferred to node {to}")]
    TransferInProgress { to: NodeId },
}

/// A proposal the leader accepted: it sits at `index` in `term`, not yet committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proposal {
    pub index: LogIndex,
    pub term: Term,
    /// The `request_id` was already pending in the log: no new entry was appended and `index` is the
    /// earlier entry's.
    pub already_pending: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("node {0} is not a member of this cluster")]
    UnknownNode(NodeId),
}

/// A consistent snapshot of the core's state, for `/v1/status`, metrics and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreStatus {
    pub id: NodeId,
    pub role: Role,
    pub term: Term,
    pub voted_for: Option<NodeId>,
    pub leader: Option<NodeId>,
    pub commit: LogIndex,
    pub applied: LogIndex,
    pub last: LogId,
    pub persisted: LogIndex,
    /// Per peer (not self): `(match_index, next_index)`; meaningful on a leader only.
    pub progress: std::collections::BTreeMap<NodeId, (LogIndex, LogIndex)>,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: (u64, u64),
    /// Current election deadline, in the caller's clock.
    pub election_deadline_ms: u64,
    pub snapshot: LogId,
    pub first_index: LogIndex,
}
