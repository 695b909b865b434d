//! Durable storage: the Raft log, the hard state, and the state machine (the applied message log).
//!
//! [`LogStore`] is what the runtime writes through; `memory` and `sqlite` implement it, and one
//! conformance suite (`conformance`) runs against both.
//!
//! Owns the on-disk format and every durability guarantee listed on [`LogStore`]. It may not touch the
//! Raft core's state, tokio, the network or the HTTP API: callers (the runtime's storage thread, the
//! HTTP readers, the simulator) hand it batches and ask it questions.

use crate::raft::{Entry, HardState, LogId, LogIndex, SnapshotMeta, Term};
use flotilla_shared::api::{Member, MessageEntry};

pub mod memory;
mod recent_terms;
pub mod sqlite;

#[cfg(test)]
mod conformance;

/// A storage failure. Fatal to the node: the runtime stops rather than run on a disk it cannot trust.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The disk or the file system refused something, said in one line naming the file.
    #[error("{0}")]
    Io(String),
    /// SQLite failed (the file itself is not damaged).
    #[error(transparent)]
    Sqlite(Box<Failed<rusqlite::Error>>),
    /// A file-system call failed.
    #[error(transparent)]
    File(Box<Failed<std::io::Error>>),
    /// The data belongs to another node or cluster, or is not Flotilla's: never reset silently.
    #[error("{0}")]
    Mismatch(String),
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// A write that would break a guarantee below (a hole in the log, rewriting applied entries, a
    /// term going backwards): a bug in the caller. Nothing of the batch was written.
    #[error("invalid write: {0}")]
    Invalid(String),
}

/// What failed: `doing` something with `file`, and the error underneath. Boxed in [`StorageError`] so
/// that results carrying one stay small.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {doing}: {source}")]
pub struct Failed<E: std::error::Error + 'static> {
    pub file: String,
    pub doing: String,
    #[source]
    pub source: E,
}

impl<E: std::error::Error + 'static> Failed<E> {
    pub fn new(file: impl ToString, doing: impl ToString, source: E) -> Box<Self> {
        Box::new(Self {
            file: file.to_string(),
            doing: doing.to_string(),
            source,
        })
    }
}

/// What a node finds on disk when it starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InitialState {
    pub hard_state: HardState,
    /// The last durable log entry (index 0, term 0 when the log is empty).
    pub last: LogId,
    /// The state machine has applied every entry up to here.
    pub applied: LogIndex,
    /// The last entry the latest snapshot covers (index 0: none); see [`LogStore::snapshot`].
    pub snapshot: LogId,
    /// The first entry still in the log (`snapshot.index + 1` or lower: a short tail is kept).
    pub first_index: LogIndex,
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
    Duplicate { index: LogIndex, original: LogId },
}

/// The durable store of one node.
///
/// Guarantees every implementation gives (checked by the conformance suite):
/// - `write` is atomic and durable when it returns: all of the batch or none of it survives a crash;
/// - the log has no holes: entries are contiguous from index 1 to `last`;
/// - `request_id`s are unique in the state machine: a second entry with the same id applies as
///   [`ApplyOutcome::Duplicate`];
/// - the applied index never goes backwards and never passes the last durable entry;
/// - snapshots (Raft §7): the state machine's image at a snapshot index is every message applied up to
///   it (their request ids are the dedupe state), so it never changes once taken and stays readable
///   through [`LogStore::messages`]; compaction removes log entries, never messages; installing a
///   staged image replaces the state machine and the log in one transaction (a crash leaves the old
///   state or the new one).
pub trait LogStore: Send {
    fn initial_state(&self) -> Result<InitialState, StorageError>;
    fn write(&mut self, batch: WriteBatch<'_>) -> Result<Vec<ApplyOutcome>, StorageError>;
    /// `write`, also handing the outcomes of the batch's applies to `decided` once they are written
    /// (readers see them), which may be before the rest of the batch is durable: a store may commit
    /// the applies of entries already in its durable log in a transaction of their own first, so that
    /// answering their clients waits for no fsync. Each part is all-or-nothing; should a crash fall
    /// between them, the applies stand on their own (their entries are durable) and nothing was acted
    /// on for the rest.
    fn write_applies_first(
        &mut self,
        batch: WriteBatch<'_>,
        decided: &mut dyn FnMut(&[ApplyOutcome]),
    ) -> Result<Vec<ApplyOutcome>, StorageError> {
        let outcomes = self.write(batch)?;
        decided(&outcomes);
        Ok(outcomes)
    }
    /// Whether writing `batch` waits for no fsync, so that it is quick enough for a caller to do on
    /// its own thread instead of handing it to a writer thread. A store that cannot tell says no.
    fn writes_without_fsync(&self, _batch: &WriteBatch<'_>) -> bool {
        false
    }
    /// The term of the entry at `index`; `Some(Term(0))` for index 0; `None` past the end.
    fn term(&self, index: LogIndex) -> Result<Option<Term>, StorageError>;
    /// Entries in `lo..=hi`, stopping once `max_bytes` (by `Entry::approx_size`) is reached, but always at
    /// least one when `lo` exists.
    fn entries(
        &self,
        lo: LogIndex,
        hi: LogIndex,
        max_bytes: usize,
    ) -> Result<Vec<Entry>, StorageError>;
    /// Applied messages with `from <= index <= up_to`, at most `limit` of them, in index order.
    fn messages(
        &self,
        from: LogIndex,
        up_to: LogIndex,
        limit: usize,
    ) -> Result<Vec<MessageEntry>, StorageError>;
    /// Where a `request_id` was applied, if it was.
    fn find_request(&self, request_id: &str) -> Result<Option<LogId>, StorageError>;
    /// The latest snapshot's metadata (`last.index` 0: none yet).
    fn snapshot(&self) -> Result<SnapshotMeta, StorageError>;
    /// Records a snapshot at `at`, an applied entry at or after the latest snapshot, with the
    /// configuration in force there; durable when it returns. Reads only the state machine, which writes
    /// after `at` leave alone.
    fn take_snapshot(
        &mut self,
        at: LogId,
        members: &[Member],
        config_index: LogIndex,
    ) -> Result<SnapshotMeta, StorageError>;
    /// Removes the log entries up to `up_to` (at most the snapshot's index); their messages stay in
    /// the state machine. Returns the first index left in the log.
    fn compact(&mut self, up_to: LogIndex) -> Result<LogIndex, StorageError>;
    /// Adds one received chunk of a snapshot image to the staging area, after what is there; `offset`
    /// 0 starts the staging area afresh. Records come in index order, above any staged one.
    fn stage_snapshot(&mut self, offset: u64, records: &[MessageEntry])
        -> Result<(), StorageError>;
    /// Replaces the state machine with the staged image of `meta`, in one transaction: the log keeps
    /// the entries after `meta.last` only if it holds `meta.last` itself (Raft §7), commit and applied
    /// move to `meta.last`, the staging area is emptied.
    fn install_snapshot(&mut self, meta: &SnapshotMeta) -> Result<(), StorageError>;
}

/// Checks a snapshot request against the stored state (both stores enforce the same rules).
pub(crate) fn check_take_snapshot(
    stored: &InitialState,
    at: LogId,
    stored_term: Option<Term>,
) -> Result<(), StorageError> {
    if at.index > stored.applied {
        return Err(StorageError::Invalid(format!(
            "a snapshot at {} but the state machine has applied up to {}",
            at.index, stored.applied
        )));
    }
    if at.index < stored.snapshot.index {
        return Err(StorageError::Invalid(format!(
            "a snapshot at {} is older than the latest one at {}",
            at.index, stored.snapshot.index
        )));
    }
    let known = if at.index == stored.snapshot.index {
        Some(stored.snapshot.term)
    } else {
        stored_term
    };
    if known != Some(at.term) {
        return Err(StorageError::Invalid(format!(
            "a snapshot at {} of term {}, but that entry is of term {}",
            at.index,
            at.term,
            known.map_or_else(|| "unknown".to_string(), |t| t.to_string())
        )));
    }
    Ok(())
}

/// Checks a compaction request against the stored state.
pub(crate) fn check_compact(stored: &InitialState, up_to: LogIndex) -> Result<(), StorageError> {
    if up_to > stored.snapshot.index {
        return Err(StorageError::Invalid(format!(
            "compacting up to {} past the latest snapshot at {}",
            up_to, stored.snapshot.index
        )));
    }
    Ok(())
}

/// What a [`WriteBatch`] does to a store, worked out and checked before anything is written, so both
/// stores enforce the same rules and a refused batch leaves no trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WritePlan {
    /// Delete stored entries from this index on before inserting the batch's entries.
    pub truncate_from: Option<LogIndex>,
    /// The last entry once the batch is written.
    pub last: LogId,
    /// The applied index once the batch is written.
    pub applied: LogIndex,
}

/// Checks `batch` against the stored state and says what writing it means.
///
/// `stored_term` reads the term of a stored entry (only called for indexes at or below `stored.last`).
pub(crate) fn plan_write(
    stored: &InitialState,
    batch: &WriteBatch<'_>,
    mut stored_term: impl FnMut(LogIndex) -> Result<Option<Term>, StorageError>,
) -> Result<WritePlan, StorageError> {
    if let Some(next) = batch.hard_state {
        check_hard_state(&stored.hard_state, &next)?;
    }

    let mut plan = WritePlan {
        truncate_from: None,
        last: stored.last,
        applied: stored.applied,
    };
    if let (Some(first), Some(last)) = (batch.entries.first(), batch.entries.last()) {
        for (offset, entry) in batch.entries.iter().enumerate() {
            if entry.index.0 != first.index.0 + offset as u64 {
                return Err(StorageError::Invalid(format!(
                    "entries are not contiguous: entry {offset} of the batch has index {}, expected {}",
                    entry.index,
                    first.index.0 + offset as u64
                )));
            }
        }
        if first.index < stored.first_index.max(stored.snapshot.index.next()) {
            return Err(StorageError::Invalid(format!(
                "the batch starts at index {}, inside the snapshot at {}",
                first.index, stored.snapshot.index
            )));
        }
        if first.index.0 == 0 || first.index > stored.last.index.next() {
            return Err(StorageError::Invalid(format!(
                "the batch starts at index {} but the log ends at {}: the log would have a hole",
                first.index, stored.last.index
            )));
        }
        if first.index <= stored.last.index {
            // Raft §5.4 (Leader Completeness): a committed entry is never deleted or replaced. Entries
            // the state machine applied, or the durable commit index covers, may only be rewritten
            // with themselves (same index and term means the same entry, §5.3 Log Matching).
            let protected = stored
                .applied
                .max(stored.hard_state.commit)
                .min(stored.last.index);
            for index in first.index.0..=protected.0 {
                let old = stored_term(LogIndex(index))?;
                let new = batch
                    .entries
                    .get((index - first.index.0) as usize)
                    .map(|entry| entry.term);
                if new.is_none() || new != old {
                    return Err(StorageError::Invalid(format!(
                        "the batch would delete or replace entry {index} (term {}), which is \
                         committed (applied {}, commit {})",
                        old.unwrap_or_default(),
                        stored.applied,
                        stored.hard_state.commit
                    )));
                }
            }
            plan.truncate_from = Some(first.index);
        }
        plan.last = LogId {
            index: last.index,
            term: last.term,
        };
    }

    for entry in batch.apply {
        if entry.index != plan.applied.next() {
            return Err(StorageError::Invalid(format!(
                "applying entry {} but the state machine has applied up to {}: entries apply once, in order",
                entry.index, plan.applied
            )));
        }
        let durable_term = match batch.entries.first() {
            Some(first) if entry.index >= first.index => batch
                .entries
                .get((entry.index.0 - first.index.0) as usize)
                .map(|e| e.term),
            _ if entry.index <= plan.last.index => stored_term(entry.index)?,
            _ => None,
        };
        if durable_term != Some(entry.term) {
            return Err(StorageError::Invalid(format!(
                "applying entry {} (term {}) that is not in the durable log (there: {})",
                entry.index,
                entry.term,
                durable_term.map_or_else(|| "nothing".to_string(), |t| format!("term {t}"))
            )));
        }
        plan.applied = entry.index;
    }
    Ok(plan)
}

fn check_hard_state(stored: &HardState, next: &HardState) -> Result<(), StorageError> {
    // Raft §5.1: terms only grow.
    if next.term < stored.term {
        return Err(StorageError::Invalid(format!(
            "the term would go back from {} to {}",
            stored.term, next.term
        )));
    }
    // Raft §5.2: at most one vote per term, and a vote once cast is remembered.
    if next.term == stored.term && stored.voted_for.is_some() && next.voted_for != stored.voted_for
    {
        return Err(StorageError::Invalid(format!(
            "the vote in term {} would change from {:?} to {:?}",
            stored.term, stored.voted_for, next.voted_for
        )));
    }
    Ok(())
}

/// What applying `entry` does, given where its `request_id` (if any) was applied before.
pub(crate) fn apply_outcome(entry: &Entry, earlier: Option<LogId>) -> ApplyOutcome {
    match (&entry.payload, earlier) {
        // A configuration took effect when appended; applying it changes no state.
        (crate::raft::Payload::Noop | crate::raft::Payload::Configuration { .. }, _) => {
            ApplyOutcome::Noop { index: entry.index }
        }
        (crate::raft::Payload::Message { .. }, Some(original)) => ApplyOutcome::Duplicate {
            index: entry.index,
            original,
        },
        (crate::raft::Payload::Message { .. }, None) => ApplyOutcome::Applied {
            index: entry.index,
            term: entry.term,
        },
    }
}

/// The entries of a contiguous run (as `next` yields them from `lo` on) that fit in `max_bytes`, at
/// least one.
pub(crate) fn take_within_bytes<E>(
    entries: impl IntoIterator<Item = Result<Entry, E>>,
    max_bytes: usize,
) -> Result<Vec<Entry>, E> {
    let mut taken = Vec::new();
    let mut bytes = 0usize;
    for entry in entries {
        let entry = entry?;
        let size = entry.approx_size();
        if !taken.is_empty() && bytes.saturating_add(size) > max_bytes {
            break;
        }
        bytes = bytes.saturating_add(size);
        taken.push(entry);
    }
    Ok(taken)
}

/// Reads one chunk of a snapshot image: the messages after `after` up to `last` (through `read`, a
/// paged reader of the state machine), at most `max_bytes` of them by
/// [`flotilla_shared::rpc::snapshot_record_bytes`] but at least one. Returns them and their size.
pub fn read_image_chunk<E>(
    mut read: impl FnMut(LogIndex, LogIndex, usize) -> Result<Vec<MessageEntry>, E>,
    after: LogIndex,
    last: LogIndex,
    max_bytes: u64,
) -> Result<(Vec<MessageEntry>, u64), E> {
    /// Messages read per query while filling a chunk.
    const READ_PAGE: usize = 512;
    let mut records = Vec::new();
    let mut bytes = 0u64;
    let mut next = after.next();
    'fill: while next <= last {
        let page = read(next, last, READ_PAGE)?;
        let Some(tail) = page.last() else {
            break;
        };
        next = tail.index.next();
        for record in page {
            let size = flotilla_shared::rpc::snapshot_record_bytes(&record);
            if !records.is_empty() && bytes + size > max_bytes {
                break 'fill;
            }
            bytes += size;
            records.push(record);
        }
    }
    Ok((records, bytes))
}
