//! Durable storage: the Raft log, the hard state, and the state machine (the applied message log).
//!
//! [`LogStore`] is what the runtime writes through; `memory` and `sqlite` implement it, and one
//! conformance suite (`conformance`) runs against both.

use crate::raft::{Entry, HardState, LogId, LogIndex, Term};
use flotilla_shared::api::MessageEntry;

/// A storage failure. Fatal to the node: the runtime stops rather than run on a disk it cannot trust.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{0}")]
    Io(String),
    /// The data belongs to another node or cluster, or is not Flotilla's: never reset silently.
    #[error("{0}")]
    Mismatch(String),
    #[error("corrupt data: {0}")]
    Corrupt(String),
}

/// What a node finds on disk when it starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InitialState {
    pub hard_state: HardState,
    /// The last durable log entry (index 0, term 0 when the log is empty).
    pub last: LogId,
    /// The state machine has applied every entry up to here.
    pub applied: LogIndex,
}

/// One durable write: one transaction and one fsync.
#[derive(Clone, Copy, Debug, Default)]
pub struct WriteBatch<'a> {
    pub hard_state: Option<HardState>,
    /// New log entries in index order. If the first is at or below the stored last index, the stored
    /// entries from that index on are deleted first (they conflicted with the leader's).
    pub entries: &'a [Entry],
    /// Committed entries to apply to the state machine, in order, each already in the durable log.
    pub apply: &'a [Entry],
}

/// What applying one entry did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// A no-op entry: nothing for the state machine.
    Noop { index: LogIndex },
    /// A new message became part of the state machine.
    Applied { index: LogIndex, term: Term },
    /// Its `request_id` was applied before at `original`: nothing changed (the first application wins).
    Duplicate {
        index: LogIndex,
        original: LogId,
    },
}

/// The durable store of one node.
///
/// Guarantees every implementation gives (checked by the conformance suite):
/// - `write` is atomic and durable when it returns: all of the batch or none of it survives a crash;
/// - the log has no holes: entries are contiguous from index 1 to `last`;
/// - `request_id`s are unique in the state machine: a second entry with the same id applies as
///   [`ApplyOutcome::Duplicate`];
/// - the applied index never goes backwards and never passes the last durable entry.
pub trait LogStore: Send {
    fn initial_state(&self) -> Result<InitialState, StorageError>;
    fn write(&mut self, batch: WriteBatch<'_>) -> Result<Vec<ApplyOutcome>, StorageError>;
    /// The term of the entry at `index`; `Some(Term(0))` for index 0; `None` past the end.
    fn term(&self, index: LogIndex) -> Result<Option<Term>, StorageError>;
    /// Entries in `lo..=hi`, stopping once `max_bytes` (by `Entry::approx_size`) is reached, but always at
    /// least one when `lo` exists.
    fn entries(&self, lo: LogIndex, hi: LogIndex, max_bytes: usize) -> Result<Vec<Entry>, StorageError>;
    /// Applied messages with `from <= index <= up_to`, at most `limit` of them, in index order.
    fn messages(&self, from: LogIndex, up_to: LogIndex, limit: usize) -> Result<Vec<MessageEntry>, StorageError>;
    /// Where a `request_id` was applied, if it was.
    fn find_request(&self, request_id: &str) -> Result<Option<LogId>, StorageError>;
}
