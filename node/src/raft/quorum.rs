//! Quorum math: pure functions over the voters' state.

use super::{LogIndex, NodeId};
use std::collections::BTreeMap;

/// How many voters make a majority of `voters` (Raft §5.2).
pub fn majority(voters: usize) -> usize {
    voters / 2 + 1
}

/// The highest index that a majority has reached, given every voter's match index (Raft §5.3).
pub fn committed_index(mut matches: Vec<LogIndex>) -> LogIndex {
    if matches.is_empty() {
        return LogIndex::ZERO;
    }
    matches.sort_unstable_by(|a, b| b.cmp(a));
    matches[majority(matches.len()) - 1]
}

/// The outcome of an election so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    Won,
    Lost,
    Pending,
}

/// Tallies `votes` (voter → granted) among `voters` voters.
pub fn vote_result(voters: usize, votes: &BTreeMap<NodeId, bool>) -> VoteResult {
    let granted = votes.values().filter(|granted| **granted).count();
    let denied = votes.len() - granted;
    let needed = majority(voters);
    if granted >= needed {
        VoteResult::Won
    } else if denied > voters - needed {
        VoteResult::Lost
    } else {
        VoteResult::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_of_odd_and_even_clusters() {
        assert_eq!(majority(1), 1);
        assert_eq!(majority(3), 2);
        assert_eq!(majority(4), 3);
        assert_eq!(majority(5), 3);
    }

    #[test]
    fn committed_index_is_the_majority_match() {
        let idx = |v: &[u64]| committed_index(v.iter().map(|i| LogIndex(*i)).collect());
        assert_eq!(idx(&[5]), LogIndex(5));
        assert_eq!(idx(&[5, 3, 1]), LogIndex(3));
        assert_eq!(idx(&[1, 9, 9, 2, 3]), LogIndex(3));
        assert_eq!(idx(&[2, 2, 7, 7]), LogIndex(2));
    }

    #[test]
    fn vote_result_needs_a_majority_either_way() {
        let votes = |v: &[(u64, bool)]| v.iter().map(|(id, g)| (NodeId(*id), *g)).collect();
        assert_eq!(vote_result(3, &votes(&[(1, true)])), VoteResult::Pending);
        assert_eq!(
            vote_result(3, &votes(&[(1, true), (2, true)])),
            VoteResult::Won
        );
        assert_eq!(
            vote_result(3, &votes(&[(1, true), (2, false)])),
            VoteResult::Pending
        );
        assert_eq!(
            vote_result(3, &votes(&[(1, true), (2, false), (3, false)])),
            VoteResult::Lost
        );
        assert_eq!(
            vote_result(5, &votes(&[(1, true), (2, false), (3, false)])),
            VoteResult::Pending
        );
    }
}
