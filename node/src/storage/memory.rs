//! An in-memory [`LogStore`]: the simulator's disk, and the reference the SQLite store is tested against.
//!
//! Every `write` is atomic (checked in full before anything changes) and "durable" the moment it
//! returns. To simulate a crash, keep a clone of the store taken after the last completed write: that
//! clone is exactly what a real disk would hold.
//!
//! Sharing one store between the writer and the core's [`LogRead`]:
//! - single-threaded (the deterministic simulator): `Rc<RefCell<MemoryStore>>` implements `LogRead`;
//!   write through `borrow_mut()` between core calls;
//! - across threads: [`SharedMemoryStore`] (an `Arc<Mutex<_>>`) implements both `LogStore` and
//!   `LogRead`; its clones share one store.

use super::{
    apply_outcome, check_compact, check_take_snapshot, plan_write, take_within_bytes, ApplyOutcome,
    InitialState, LogStore, StorageError, WriteBatch,
};
use crate::raft::{Entry, HardState, LogId, LogIndex, LogRead, Payload, SnapshotMeta, Term};
use flotilla_shared::api::{Member, MessageEntry};
use flotilla_shared::rpc::snapshot_record_bytes;
use std::cell::RefCell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};

/// A whole node's durable state, in memory. `Clone` copies it (a snapshot of "the disk").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryStore {
    hard_state: HardState,
    /// `log[i]` has index `snapshot.last.index + 1 - kept + i`, where `kept` entries the snapshot
    /// covers are still in the log (the tail compaction keeps).
    log: Vec<Entry>,
    /// Index of `log[0]` (1 until the first compaction).
    first_index: LogIndex,
    applied: LogIndex,
    /// The state machine: applied messages in index order.
    messages: Vec<MessageEntry>,
    requests: HashMap<String, LogId>,
    snapshot: SnapshotMeta,
    /// Chunks of a snapshot being received, not yet installed.
    staged: Vec<MessageEntry>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self {
            first_index: LogIndex(1),
            ..Self::default()
        }
    }

    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    pub fn applied(&self) -> LogIndex {
        self.applied
    }

    pub fn last(&self) -> LogId {
        self.log.last().map_or(self.snapshot.last, |entry| LogId {
            index: entry.index,
            term: entry.term,
        })
    }

    pub fn first_index(&self) -> LogIndex {
        self.first_index.max(LogIndex(1))
    }

    /// The log from `first_index()` on, for invariant checks.
    pub fn log(&self) -> &[Entry] {
        &self.log
    }

    /// The whole state machine, for invariant checks.
    pub fn applied_messages(&self) -> &[MessageEntry] {
        &self.messages
    }

    fn entry(&self, index: LogIndex) -> Option<&Entry> {
        let position = usize::try_from(index.0.checked_sub(self.first_index().0)?).ok()?;
        self.log.get(position)
    }

    fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == LogIndex::ZERO {
            return Some(Term(0));
        }
        if index == self.snapshot.last.index {
            return Some(self.snapshot.last.term);
        }
        self.entry(index).map(|entry| entry.term)
    }

    fn entries_in(&self, lo: LogIndex, hi: LogIndex, max_bytes: usize) -> Vec<Entry> {
        let lo = lo.max(self.first_index());
        let run = (lo.0..=hi.0)
            .map_while(|index| self.entry(LogIndex(index)))
            .map(|entry| Ok::<_, Infallible>(entry.clone()));
        match take_within_bytes(run, max_bytes) {
            Ok(entries) => entries,
            Err(never) => match never {},
        }
    }

    fn apply(&mut self, entry: &Entry) -> ApplyOutcome {
        let earlier = match &entry.payload {
            Payload::Message {
                request_id: Some(id),
                ..
            } => self.requests.get(id).copied(),
            _ => None,
        };
        let outcome = apply_outcome(entry, earlier);
        if let (ApplyOutcome::Applied { .. }, Payload::Message { text, request_id }) =
            (&outcome, &entry.payload)
        {
            let id = LogId {
                index: entry.index,
                term: entry.term,
            };
            if let Some(request_id) = request_id {
                self.requests.insert(request_id.clone(), id);
            }
            self.messages.push(MessageEntry {
                index: entry.index,
                term: entry.term,
                text: text.clone(),
                request_id: request_id.clone(),
            });
        }
        outcome
    }
}

impl LogStore for MemoryStore {
    fn initial_state(&self) -> Result<InitialState, StorageError> {
        Ok(InitialState {
            hard_state: self.hard_state,
            last: self.last(),
            applied: self.applied,
            snapshot: self.snapshot.last,
            first_index: self.first_index(),
        })
    }

    fn write(&mut self, batch: WriteBatch<'_>) -> Result<Vec<ApplyOutcome>, StorageError> {
        let plan = plan_write(&self.initial_state()?, &batch, |index| {
            Ok(self.term_at(index))
        })?;
        if let Some(hard_state) = batch.hard_state {
            self.hard_state = hard_state;
        }
        if let Some(from) = plan.truncate_from {
            let keep = from.0.saturating_sub(self.first_index().0);
            self.log
                .truncate(usize::try_from(keep).unwrap_or(usize::MAX));
        }
        self.log.extend_from_slice(batch.entries);
        let outcomes = batch.apply.iter().map(|entry| self.apply(entry)).collect();
        self.applied = plan.applied;
        debug_assert_eq!(self.last(), plan.last);
        Ok(outcomes)
    }

    fn term(&self, index: LogIndex) -> Result<Option<Term>, StorageError> {
        Ok(self.term_at(index))
    }

    fn entries(
        &self,
        lo: LogIndex,
        hi: LogIndex,
        max_bytes: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self.entries_in(lo, hi, max_bytes))
    }

    fn messages(
        &self,
        from: LogIndex,
        up_to: LogIndex,
        limit: usize,
    ) -> Result<Vec<MessageEntry>, StorageError> {
        let start = self
            .messages
            .partition_point(|message| message.index < from);
        Ok(self.messages[start..]
            .iter()
            .take_while(|message| message.index <= up_to)
            .take(limit)
            .cloned()
            .collect())
    }

    fn find_request(&self, request_id: &str) -> Result<Option<LogId>, StorageError> {
        Ok(self.requests.get(request_id).copied())
    }

    fn snapshot(&self) -> Result<SnapshotMeta, StorageError> {
        Ok(self.snapshot.clone())
    }

    fn take_snapshot(
        &mut self,
        at: LogId,
        members: &[Member],
        config_index: LogIndex,
    ) -> Result<SnapshotMeta, StorageError> {
        check_take_snapshot(&self.initial_state()?, at, self.term_at(at.index))?;
        let previous = self.snapshot.last.index;
        let start = self.messages.partition_point(|m| m.index <= previous);
        let added: u64 = self.messages[start..]
            .iter()
            .take_while(|m| m.index <= at.index)
            .map(snapshot_record_bytes)
            .sum();
        self.snapshot = SnapshotMeta {
            last: at,
            members: members.to_vec(),
            config_index,
            bytes: self.snapshot.bytes + added,
        };
        Ok(self.snapshot.clone())
    }

    fn compact(&mut self, up_to: LogIndex) -> Result<LogIndex, StorageError> {
        check_compact(&self.initial_state()?, up_to)?;
        let first = self.first_index();
        if up_to >= first {
            let drop = usize::try_from(up_to.0 - first.0 + 1).unwrap_or(usize::MAX);
            self.log.drain(..drop.min(self.log.len()));
            self.first_index = up_to.next();
        }
        Ok(self.first_index())
    }

    fn stage_snapshot(
        &mut self,
        offset: u64,
        records: &[MessageEntry],
    ) -> Result<(), StorageError> {
        if offset == 0 {
            self.staged.clear();
        }
        if let (Some(last), Some(first)) = (self.staged.last(), records.first()) {
            if first.index <= last.index {
                return Err(StorageError::Invalid(format!(
                    "staging message {} after {}: the image must come in index order",
                    first.index, last.index
                )));
            }
        }
        self.staged.extend_from_slice(records);
        Ok(())
    }

    fn install_snapshot(&mut self, meta: &SnapshotMeta) -> Result<(), StorageError> {
        if let Some(beyond) = self.staged.last().filter(|m| m.index > meta.last.index) {
            return Err(StorageError::Invalid(format!(
                "the staged image holds message {} past the snapshot's last entry {}",
                beyond.index, meta.last.index
            )));
        }
        // Raft §7: entries after the snapshot stay only if the log holds its last entry.
        let retain = self.entry(meta.last.index).map(|e| e.term) == Some(meta.last.term);
        if retain {
            let drop =
                usize::try_from(meta.last.index.0 + 1 - self.first_index().0).unwrap_or(usize::MAX);
            self.log.drain(..drop.min(self.log.len()));
        } else {
            self.log.clear();
        }
        self.first_index = meta.last.index.next();
        self.messages = std::mem::take(&mut self.staged);
        self.requests.clear();
        for message in &self.messages {
            if let Some(request_id) = &message.request_id {
                // The first application of an id wins, as when applying.
                self.requests.entry(request_id.clone()).or_insert(LogId {
                    index: message.index,
                    term: message.term,
                });
            }
        }
        self.applied = meta.last.index;
        self.hard_state.commit = self.hard_state.commit.max(meta.last.index);
        self.snapshot = meta.clone();
        Ok(())
    }
}

impl LogRead for MemoryStore {
    fn term(&self, index: LogIndex) -> Option<Term> {
        self.term_at(index)
    }

    fn entries(&self, lo: LogIndex, hi: LogIndex, max_bytes: usize) -> Vec<Entry> {
        self.entries_in(lo, hi, max_bytes)
    }
}

/// The simulator's sharing: the core reads while the test harness writes between core calls.
impl LogRead for Rc<RefCell<MemoryStore>> {
    fn term(&self, index: LogIndex) -> Option<Term> {
        self.borrow().term_at(index)
    }

    fn entries(&self, lo: LogIndex, hi: LogIndex, max_bytes: usize) -> Vec<Entry> {
        self.borrow().entries_in(lo, hi, max_bytes)
    }
}

/// One [`MemoryStore`] shared across threads: clones write and read the same store.
#[derive(Clone, Debug, Default)]
pub struct SharedMemoryStore(Arc<Mutex<MemoryStore>>);

impl SharedMemoryStore {
    pub fn new(store: MemoryStore) -> Self {
        Self(Arc::new(Mutex::new(store)))
    }

    /// A copy of what is on "disk" now (what survives a crash at this moment).
    pub fn snapshot(&self) -> MemoryStore {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryStore> {
        // A panic while holding the lock cannot leave a half-done write: `write` checks everything
        // before it changes anything.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl LogStore for SharedMemoryStore {
    fn initial_state(&self) -> Result<InitialState, StorageError> {
        self.lock().initial_state()
    }

    fn write(&mut self, batch: WriteBatch<'_>) -> Result<Vec<ApplyOutcome>, StorageError> {
        self.lock().write(batch)
    }

    fn term(&self, index: LogIndex) -> Result<Option<Term>, StorageError> {
        Ok(self.lock().term_at(index))
    }

    fn entries(
        &self,
        lo: LogIndex,
        hi: LogIndex,
        max_bytes: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self.lock().entries_in(lo, hi, max_bytes))
    }

    fn messages(
        &self,
        from: LogIndex,
        up_to: LogIndex,
        limit: usize,
    ) -> Result<Vec<MessageEntry>, StorageError> {
        self.lock().messages(from, up_to, limit)
    }

    fn find_request(&self, request_id: &str) -> Result<Option<LogId>, StorageError> {
        self.lock().find_request(request_id)
    }

    fn snapshot(&self) -> Result<SnapshotMeta, StorageError> {
        self.lock().snapshot()
    }

    fn take_snapshot(
        &mut self,
        at: LogId,
        members: &[Member],
        config_index: LogIndex,
    ) -> Result<SnapshotMeta, StorageError> {
        self.lock().take_snapshot(at, members, config_index)
    }

    fn compact(&mut self, up_to: LogIndex) -> Result<LogIndex, StorageError> {
        self.lock().compact(up_to)
    }

    fn stage_snapshot(
        &mut self,
        offset: u64,
        records: &[MessageEntry],
    ) -> Result<(), StorageError> {
        self.lock().stage_snapshot(offset, records)
    }

    fn install_snapshot(&mut self, meta: &SnapshotMeta) -> Result<(), StorageError> {
        self.lock().install_snapshot(meta)
    }
}

impl LogRead for SharedMemoryStore {
    fn term(&self, index: LogIndex) -> Option<Term> {
        self.lock().term_at(index)
    }

    fn entries(&self, lo: LogIndex, hi: LogIndex, max_bytes: usize) -> Vec<Entry> {
        self.lock().entries_in(lo, hi, max_bytes)
    }
}
