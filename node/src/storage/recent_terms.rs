//! The terms of the newest log entries, kept in memory.
//!
//! Every applied entry is checked against the durable log (its term must be the stored one). Asking
//! SQLite for each cost a read transaction per entry, about a tenth of a follower's CPU under load;
//! terms change rarely, so the newest entries' terms fit in a few runs.

use crate::raft::{Entry, LogId, LogIndex, Term};

/// Terms of the log from some index up to its last entry, as runs of equal terms. Older indexes are
/// not known here (the caller reads them from disk).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RecentTerms {
    /// `(first index of the run, term)`, ascending; the last run ends at `last`.
    runs: Vec<(LogIndex, Term)>,
    last: LogIndex,
}

/// Enough for the terms of any realistic recent history; the oldest run goes first.
const MAX_RUNS: usize = 256;

impl RecentTerms {
    /// Knows only the last entry of a log that ends at `last`.
    pub fn new(last: LogId) -> Self {
        let runs = if last.index == LogIndex::ZERO {
            Vec::new()
        } else {
            vec![(last.index, last.term)]
        };
        Self {
            runs,
            last: last.index,
        }
    }

    /// The term at `index`, if it is among the entries known here.
    pub fn get(&self, index: LogIndex) -> Option<Term> {
        let first = self.runs.first()?.0;
        if index < first || index > self.last {
            return None;
        }
        let run = self.runs.partition_point(|&(start, _)| start <= index) - 1;
        Some(self.runs[run].1)
    }

    /// Follows a durable write: entries from `from` on were deleted (if any), then `entries`
    /// (contiguous, starting at `from` or just past the old last) were appended.
    pub fn record_write(&mut self, truncate_from: Option<LogIndex>, entries: &[Entry]) {
        if let Some(from) = truncate_from {
            self.runs.retain(|&(start, _)| start < from);
            self.last = LogIndex(from.0.saturating_sub(1));
        }
        for entry in entries {
            debug_assert_eq!(entry.index, self.last.next());
            if self.runs.last().map(|&(_, term)| term) != Some(entry.term) {
                if self.runs.len() == MAX_RUNS {
                    self.runs.remove(0);
                }
                self.runs.push((entry.index, entry.term));
            }
            self.last = entry.index;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::Payload;

    fn entries(from: u64, terms: &[u64]) -> Vec<Entry> {
        terms
            .iter()
            .enumerate()
            .map(|(i, &term)| Entry {
                index: LogIndex(from + i as u64),
                term: Term(term),
                payload: Payload::Noop,
            })
            .collect()
    }

    #[test]
    fn knows_appended_entries_and_nothing_older_than_it_was_told() {
        let mut terms = RecentTerms::new(LogId {
            index: LogIndex(10),
            term: Term(2),
        });
        assert_eq!(terms.get(LogIndex(9)), None);
        assert_eq!(terms.get(LogIndex(10)), Some(Term(2)));
        terms.record_write(None, &entries(11, &[2, 3, 3, 5]));
        let known: Vec<_> = (9..=15).map(|i| terms.get(LogIndex(i))).collect();
        assert_eq!(
            known,
            [
                None,
                Some(Term(2)),
                Some(Term(2)),
                Some(Term(3)),
                Some(Term(3)),
                Some(Term(5)),
                None
            ]
        );
    }

    #[test]
    fn truncation_forgets_the_deleted_entries_and_learns_their_replacements() {
        let mut terms = RecentTerms::new(LogId::default());
        assert_eq!(terms.get(LogIndex(1)), None);
        terms.record_write(None, &entries(1, &[1, 1, 2, 2]));
        terms.record_write(Some(LogIndex(3)), &entries(3, &[3]));
        let known: Vec<_> = (1..=5).map(|i| terms.get(LogIndex(i))).collect();
        assert_eq!(
            known,
            [Some(Term(1)), Some(Term(1)), Some(Term(3)), None, None]
        );

        // Truncating below everything known starts over from the new entries.
        terms.record_write(Some(LogIndex(1)), &entries(1, &[4]));
        assert_eq!(terms.get(LogIndex(1)), Some(Term(4)));
        assert_eq!(terms.get(LogIndex(2)), None);
    }

    #[test]
    fn keeps_a_bounded_number_of_runs_and_forgets_the_oldest() {
        let mut terms = RecentTerms::new(LogId::default());
        let many: Vec<u64> = (1..=(MAX_RUNS as u64 + 10)).collect();
        terms.record_write(None, &entries(1, &many));
        assert_eq!(terms.get(LogIndex(10)), None);
        assert_eq!(terms.get(LogIndex(11)), Some(Term(11)));
        let last = MAX_RUNS as u64 + 10;
        assert_eq!(terms.get(LogIndex(last)), Some(Term(last)));
    }
}
