//! The core's view of the log: the durable log (read through [`LogRead`]) plus an in-memory tail that
//! holds every entry not yet durable and a window of recent durable ones (etcd-raft's `raftLog`).

use super::{Entry, LogId, LogIndex, LogRead, Term};
use std::collections::VecDeque;

pub struct RaftLog<S: LogRead> {
    storage: S,
    /// `cache[i]` has index `cache_first + i`; it always holds every entry after `durable`.
    cache: VecDeque<Entry>,
    cache_first: LogIndex,
    last: LogId,
    /// The log is durable on this node's disk up to here.
    pub durable: LogIndex,
    /// The first entry not yet handed out for writing in a `Ready`.
    pub unstable_from: LogIndex,
    pub commit: LogIndex,
    /// Entries up to here were handed out to be applied.
    pub applied: LogIndex,
    max_cached: usize,
    /// The last entry the latest snapshot covers (Raft §7): its term is known even once compacted.
    snapshot: LogId,
    /// The first entry still in the log; earlier ones live only in the snapshot.
    first: LogIndex,
}

impl<S: LogRead> RaftLog<S> {
    pub fn new(
        storage: S,
        last: LogId,
        commit: LogIndex,
        applied: LogIndex,
        max_cached: usize,
    ) -> Self {
        Self {
            storage,
            cache: VecDeque::new(),
            cache_first: last.index.next(),
            last,
            durable: last.index,
            unstable_from: last.index.next(),
            commit,
            applied,
            max_cached,
            snapshot: LogId::default(),
            first: LogIndex(1),
        }
    }

    /// Starts from a snapshot found on disk: entries before `first` are compacted away.
    pub fn restore_snapshot(&mut self, snapshot: LogId, first: LogIndex) {
        self.snapshot = snapshot;
        self.first = first.max(LogIndex(1));
    }

    /// A snapshot now covers the log up to `snapshot` (its entries may stay until compacted).
    pub fn snapshot_taken(&mut self, snapshot: LogId) {
        self.snapshot = self.snapshot.max(snapshot);
    }

    /// Entries before `first` are gone from the log (compacted into the snapshot).
    pub fn compacted(&mut self, first: LogIndex) {
        self.first = self.first.max(first.min(self.snapshot.index.next()));
    }

    pub fn snapshot(&self) -> LogId {
        self.snapshot
    }

    pub fn first_index(&self) -> LogIndex {
        self.first
    }

    /// Replaces the log's prefix with an installed snapshot (Raft §7): entries after it stay only if
    /// the log holds its last entry; commit and applied move up to it.
    pub fn install_snapshot(&mut self, snapshot: LogId) {
        let retain = self.matches(snapshot.index, snapshot.term);
        if retain {
            while self
                .cache
                .front()
                .is_some_and(|entry| entry.index <= snapshot.index)
            {
                self.cache.pop_front();
            }
            self.cache_first = self
                .cache
                .front()
                .map_or(self.last.index.next(), |entry| entry.index);
            self.durable = self.durable.max(snapshot.index);
            self.unstable_from = self.unstable_from.max(snapshot.index.next());
        } else {
            self.cache.clear();
            self.cache_first = snapshot.index.next();
            self.last = snapshot;
            self.durable = snapshot.index;
            self.unstable_from = snapshot.index.next();
        }
        self.snapshot = snapshot;
        self.first = snapshot.index.next();
        self.commit = self.commit.max(snapshot.index);
        self.applied = self.applied.max(snapshot.index);
    }

    pub fn last(&self) -> LogId {
        self.last
    }

    pub fn last_index(&self) -> LogIndex {
        self.last.index
    }

    /// The term of the entry at `index`; `Some(Term(0))` for index 0; `None` past the end, or before
    /// the snapshot's last entry (compacted away).
    pub fn term(&self, index: LogIndex) -> Option<Term> {
        if index.0 == 0 {
            return Some(Term(0));
        }
        if index > self.last.index {
            return None;
        }
        if index == self.snapshot.index {
            return Some(self.snapshot.term);
        }
        if index >= self.cache_first {
            return self
                .cache
                .get((index.0 - self.cache_first.0) as usize)
                .map(|e| e.term);
        }
        if index < self.first {
            return None;
        }
        self.storage.term(index)
    }

    /// Whether the log holds an entry at `index` with `term` (Raft §5.3 consistency check).
    pub fn matches(&self, index: LogIndex, term: Term) -> bool {
        self.term(index) == Some(term)
    }

    /// Raft §5.4.1: a log is more up to date if its last term is later, or equal with a longer log.
    pub fn is_up_to_date(&self, last_index: LogIndex, last_term: Term) -> bool {
        (last_term, last_index) >= (self.last.term, self.last.index)
    }

    /// Entries in `lo..=hi`, at most `max_entries` and about `max_bytes` (always one if `lo` exists).
    pub fn entries(
        &self,
        lo: LogIndex,
        hi: LogIndex,
        max_entries: usize,
        max_bytes: usize,
    ) -> Vec<Entry> {
        let hi = hi.min(self.last.index);
        let mut out = Vec::new();
        // Entries compacted away are not in the log (the caller sends a snapshot instead).
        if lo > hi || lo.0 == 0 || max_entries == 0 || lo < self.first.min(self.cache_first) {
            return out;
        }
        let hi = LogIndex(hi.0.min(lo.0.saturating_add(max_entries as u64 - 1)));
        let mut bytes = 0usize;
        if lo < self.cache_first {
            let stored_hi = hi.min(self.cache_first.prev());
            out = self.storage.entries(lo, stored_hi, max_bytes);
            bytes = out.iter().map(Entry::approx_size).sum();
            let complete = out.last().is_some_and(|e| e.index == stored_hi);
            if !complete || stored_hi == hi {
                return out;
            }
        }
        let from = lo.max(self.cache_first);
        if from > hi {
            return out;
        }
        let start = (from.0 - self.cache_first.0) as usize;
        let end = ((hi.0 - self.cache_first.0) as usize + 1).min(self.cache.len());
        if start >= end {
            return out;
        }
        // Sized once: appends of thousands of entries otherwise regrow (and copy) the vector a dozen
        // times.
        out.reserve(end - start);
        for entry in self.cache.range(start..end) {
            let size = entry.approx_size();
            if !out.is_empty() && bytes + size > max_bytes {
                break;
            }
            bytes += size;
            out.push(entry.clone());
        }
        out
    }

    /// Appends `entries` (contiguous, starting at or below `last + 1`), first removing every entry
    /// from the first one's index on. Returns the index after which entries were removed, if any.
    ///
    /// Entries that would leave a hole or remove a committed entry are refused whole, the log
    /// unchanged: they come from a peer, and the boundary checks should have stopped them already.
    pub fn truncate_and_append(&mut self, entries: Vec<Entry>) -> Result<Option<LogIndex>, String> {
        let Some(first) = entries.first().map(|e| e.index) else {
            return Ok(None);
        };
        if first.0 == 0 || first > self.last.index.next() {
            return Err(format!(
                "append at {first} would leave a hole after {}",
                self.last.index
            ));
        }
        if let Some((at, entry)) = entries
            .iter()
            .enumerate()
            .find(|(at, e)| e.index.0 != first.0 + *at as u64)
        {
            return Err(format!(
                "entry {at} of an append at {first} has index {}: the log would have a hole",
                entry.index
            ));
        }
        // Raft §5.4 (Leader Completeness): committed entries are never removed.
        if first <= self.last.index && first <= self.commit {
            return Err(format!(
                "truncating at {first} would remove committed entries (commit {})",
                self.commit
            ));
        }
        let mut truncated = None;
        if first <= self.last.index {
            truncated = Some(first.prev());
            if first < self.cache_first {
                // Everything cached goes; what is left below `first` is durable and read from storage.
                self.cache.clear();
                self.cache_first = first;
            } else {
                self.cache.truncate((first.0 - self.cache_first.0) as usize);
            }
            self.durable = self.durable.min(first.prev());
            self.unstable_from = self.unstable_from.min(first);
        }
        if self.cache.is_empty() {
            self.cache_first = first;
        }
        if let Some(last) = entries.last() {
            self.last = LogId {
                index: last.index,
                term: last.term,
            };
        }
        self.cache.extend(entries);
        Ok(truncated)
    }

    /// Appends one entry right after the last (a leader's own proposal): no vector per entry.
    pub fn append(&mut self, entry: Entry) {
        assert_eq!(
            entry.index,
            self.last.index.next(),
            "append must follow the last entry"
        );
        if self.cache.is_empty() {
            self.cache_first = entry.index;
        }
        self.last = LogId {
            index: entry.index,
            term: entry.term,
        };
        self.cache.push_back(entry);
    }

    /// Entries not yet handed out for writing; marks them handed out.
    pub fn take_unstable(&mut self) -> Vec<Entry> {
        if self.unstable_from > self.last.index {
            return Vec::new();
        }
        let from = (self.unstable_from.0 - self.cache_first.0) as usize;
        let out: Vec<Entry> = self.cache.range(from..).cloned().collect();
        self.unstable_from = self.last.index.next();
        out
    }

    pub fn has_unstable(&self) -> bool {
        self.unstable_from <= self.last.index
    }

    /// The caller wrote entries up to `last` durably. Stale reports (the entry was since replaced) are
    /// ignored. Returns whether the durable index moved.
    pub fn persisted(&mut self, last: LogId) -> bool {
        // Only what was handed out can be on disk; same index and term means the same log up to there
        // (Raft §5.3, Log Matching).
        if last.index >= self.unstable_from
            || last.index <= self.durable
            || !self.matches(last.index, last.term)
        {
            return false;
        }
        self.durable = last.index;
        self.compact_cache();
        true
    }

    /// Keeps every non-durable entry and at most `max_cached` durable ones.
    fn compact_cache(&mut self) {
        let over = self.cache.len().saturating_sub(self.max_cached);
        let durable_cached = (self.durable.0 + 1).saturating_sub(self.cache_first.0) as usize;
        let drop = over.min(durable_cached);
        if drop > 0 {
            self.cache.drain(..drop);
            self.cache_first = LogIndex(self.cache_first.0 + drop as u64);
        }
    }

    /// The next entries to apply: committed and locally durable.
    pub fn next_committed(&self, max_bytes: usize) -> Vec<Entry> {
        let hi = self.commit.min(self.durable);
        if hi <= self.applied {
            return Vec::new();
        }
        self.entries(self.applied.next(), hi, usize::MAX, max_bytes)
    }

    pub fn has_next_committed(&self) -> bool {
        self.commit.min(self.durable) > self.applied
    }

    /// The first index of the term of the entry at `index`, looking no further back than `floor`.
    pub fn first_index_of_term_at(&self, index: LogIndex, floor: LogIndex) -> LogIndex {
        let Some(term) = self.term(index) else {
            return index;
        };
        let mut first = index;
        while first.prev() > floor && first.0 > 1 && self.term(first.prev()) == Some(term) {
            first = first.prev();
        }
        first
    }

    /// The last index at or below `index` whose term is at most `term`, and that term.
    pub fn last_index_with_term_at_most(&self, index: LogIndex, term: Term) -> (LogIndex, Term) {
        let mut at = index.min(self.last.index);
        loop {
            let t = self.term(at).unwrap_or_default();
            if t <= term || at.0 == 0 {
                return (at, t);
            }
            at = at.prev();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::Payload;
    use crate::storage::memory::MemoryStore;
    use crate::storage::{LogStore, WriteBatch};
    use std::cell::RefCell;
    use std::rc::Rc;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index: LogIndex(index),
            term: Term(term),
            payload: Payload::Noop,
        }
    }

    #[test]
    fn durable_entries_leave_the_cache_and_are_read_from_storage() {
        let disk = Rc::new(RefCell::new(MemoryStore::new()));
        let mut log = RaftLog::new(disk.clone(), LogId::default(), LogIndex(0), LogIndex(0), 2);
        log.truncate_and_append((1..=5).map(|i| entry(i, 1)).collect())
            .expect("appends at 1");
        let unstable = log.take_unstable();
        assert_eq!(unstable.len(), 5);
        assert!(
            !log.persisted(LogId {
                index: LogIndex(9),
                term: Term(1)
            }),
            "never handed out"
        );
        disk.borrow_mut()
            .write(WriteBatch {
                hard_state: None,
                entries: &unstable,
                apply: &[],
            })
            .expect("write");
        assert!(log.persisted(LogId {
            index: LogIndex(5),
            term: Term(1)
        }));
        assert_eq!(
            log.cache.len(),
            2,
            "only the window of durable entries stays in memory"
        );
        let all = log.entries(LogIndex(1), LogIndex(5), usize::MAX, usize::MAX);
        assert_eq!(
            all.iter().map(|e| e.index.0).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        assert_eq!(log.term(LogIndex(2)), Some(Term(1)));
        // A conflict below the cached window: everything from there goes, durable drops with it.
        assert_eq!(
            log.truncate_and_append(vec![entry(3, 2)]),
            Ok(Some(LogIndex(2)))
        );
        assert_eq!(
            (log.last(), log.durable),
            (
                LogId {
                    index: LogIndex(3),
                    term: Term(2)
                },
                LogIndex(2)
            )
        );
        assert_eq!(log.take_unstable(), vec![entry(3, 2)]);
        // A stale report for the replaced entry is ignored.
        assert!(!log.persisted(LogId {
            index: LogIndex(3),
            term: Term(1)
        }));
    }

    /// Raft §5.4: a committed entry is never removed; entries that would leave a hole are refused too.
    /// Both are refused whole, with the log as it was (they come from peers: no panic).
    #[test]
    fn truncating_committed_entries_or_leaving_holes_is_refused_5_4() {
        let disk = Rc::new(RefCell::new(MemoryStore::new()));
        let mut log = RaftLog::new(disk, LogId::default(), LogIndex(0), LogIndex(0), 8);
        log.truncate_and_append(vec![entry(1, 1), entry(2, 1)])
            .expect("appends at 1");
        log.commit = LogIndex(2);
        let before = log.entries(LogIndex(1), LogIndex(2), usize::MAX, usize::MAX);
        let refused = [
            vec![entry(2, 2)],
            vec![entry(1, 2), entry(2, 2), entry(3, 2)],
            vec![entry(7, 2)],
            vec![entry(0, 2)],
            vec![entry(3, 2), entry(5, 2)],
            vec![entry(3, 2), entry(3, 2)],
        ];
        for entries in refused {
            let error = log
                .truncate_and_append(entries.clone())
                .expect_err("refused");
            assert!(
                error.contains("committed") || error.contains("hole"),
                "{entries:?}: {error}"
            );
            assert_eq!(
                log.last(),
                LogId {
                    index: LogIndex(2),
                    term: Term(1)
                }
            );
            assert_eq!(
                log.entries(LogIndex(1), LogIndex(2), usize::MAX, usize::MAX),
                before
            );
        }
        assert_eq!(
            log.truncate_and_append(vec![entry(3, 2)]),
            Ok(None),
            "right after the last entry"
        );
    }
}
