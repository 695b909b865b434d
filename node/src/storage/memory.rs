//! An in-memory [`LogStore`]: the simulator's disk, and the reference the SQLite store is tested against.
//!
//! Every `write` is atomic (checked in full before anything changes) and "durable" the moment it
//! returns. To simulate a crash, keep a clone of the store taken after the last completed write: that
//! clone is exactly what a real disk would hold.
//!
//! Sharing one store between the writer and the core's [`LogRead`] (the deterministic simulator,
//! single-threaded): `Rc<RefCell<MemoryStore>>` implements `LogRead`; write through `borrow_mut()`
//! between core calls.

use super::{
    apply_outcome, plan_write, take_within_bytes, ApplyOutcome, InitialState, LogStore,
    StorageError, WriteBatch,
};
use crate::raft::{Entry, HardState, LogId, LogIndex, LogRead, Payload, Term};
use flotilla_shared::api::MessageEntry;
use std::cell::RefCell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::rc::Rc;

/// A whole node's durable state, in memory. `Clone` copies it (a snapshot of "the disk").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryStore {
    hard_state: HardState,
    /// `log[i]` has index `i + 1`.
    log: Vec<Entry>,
    applied: LogIndex,
    /// The state machine: applied messages in index order.
    messages: Vec<MessageEntry>,
    requests: HashMap<String, LogId>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    pub fn applied(&self) -> LogIndex {
        self.applied
    }

    pub fn last(&self) -> LogId {
        self.log.last().map_or(LogId::default(), |entry| LogId {
            index: entry.index,
            term: entry.term,
        })
    }

    /// The whole durable log, for invariant checks.
    pub fn log(&self) -> &[Entry] {
        &self.log
    }

    /// The whole state machine, for invariant checks.
    pub fn applied_messages(&self) -> &[MessageEntry] {
        &self.messages
    }

    fn entry(&self, index: LogIndex) -> Option<&Entry> {
        let position = usize::try_from(index.0.checked_sub(1)?).ok()?;
        self.log.get(position)
    }

    fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == LogIndex::ZERO {
            return Some(Term(0));
        }
        self.entry(index).map(|entry| entry.term)
    }

    fn entries_in(&self, lo: LogIndex, hi: LogIndex, max_bytes: usize) -> Vec<Entry> {
        let lo = lo.max(LogIndex(1));
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
            self.log
                .truncate(usize::try_from(from.0 - 1).unwrap_or(usize::MAX));
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
