//! What only a leader holds: per-follower progress, the heartbeat timer, a leadership transfer under
//! way, pending request ids and ReadIndex reads; and the questions answered from that state alone.

use super::*;
use crate::raft::Configuration;

pub(super) struct LeaderState {
    pub(super) progress: BTreeMap<NodeId, Progress>,
    pub(super) heartbeat_due_ms: u64,
    pub(super) transfer: Option<Transfer>,
    /// Uncommitted entries by `request_id`, so that a retry does not append the same command twice.
    pub(super) pending_requests: BTreeMap<String, LogId>,
    pub(super) reads: VecDeque<PendingRead>,
    /// The last ReadIndex heartbeat round started; rounds are numbered from 1.
    pub(super) read_round: u64,
    /// A heartbeat round for reads should go out with the next `ready()`.
    pub(super) read_round_due: bool,
    /// Whether an entry of this term has committed (required before serving reads, thesis §6.4).
    pub(super) committed_in_term: bool,
}

impl LeaderState {
    /// A new leader: every follower probed from just past the leader's last entry.
    pub(super) fn new(peers: &[NodeId], last: LogIndex, now_ms: u64, heartbeat_ms: u64) -> Self {
        Self {
            progress: peers
                .iter()
                .map(|p| (*p, Progress::new(last, now_ms)))
                .collect(),
            heartbeat_due_ms: now_ms + heartbeat_ms,
            transfer: None,
            pending_requests: BTreeMap::new(),
            reads: VecDeque::new(),
            read_round: 0,
            read_round_due: false,
            committed_in_term: false,
        }
    }

    /// Voters heard from within `lease_ms`, the leader included (CheckQuorum, thesis §6.2).
    pub(super) fn active_voters(
        &self,
        now_ms: u64,
        lease_ms: u64,
        config: &Configuration,
        me: NodeId,
    ) -> usize {
        usize::from(config.is_voter(me))
            + self
                .progress
                .iter()
                .filter(|(id, pr)| {
                    config.is_voter(**id) && now_ms.saturating_sub(pr.last_heard_ms) < lease_ms
                })
                .count()
    }

    /// The read round a periodic heartbeat should carry: reads still unconfirmed ride on it again, as
    /// their round's messages may have been lost; 0 when there are none.
    pub(super) fn unconfirmed_read_round(&self) -> u64 {
        let unconfirmed = self
            .reads
            .iter()
            .any(|r| !r.confirmed && r.round != 0 && r.round <= self.read_round);
        if unconfirmed {
            self.read_round
        } else {
            0
        }
    }

    /// Remembers the request ids of uncommitted `entries`, so that a retry finds its entry.
    pub(super) fn remember_pending(&mut self, entries: Vec<Entry>) {
        for entry in entries {
            if let Payload::Message {
                request_id: Some(id),
                ..
            } = entry.payload
            {
                let at = LogId {
                    index: entry.index,
                    term: entry.term,
                };
                self.pending_requests.insert(id, at);
            }
        }
    }

    /// Commit moved to `index` (`of_this_term`: the entry there is of the leader's term). Request ids
    /// committed are no longer pending; on the term's first commit, the reads that waited for it take
    /// that index, and a read round is due if there are followers to ask.
    pub(super) fn committed(&mut self, index: LogIndex, of_this_term: bool, has_peers: bool) {
        self.pending_requests.retain(|_, id| id.index > index);
        if !of_this_term || self.committed_in_term {
            return;
        }
        self.committed_in_term = true;
        let round = self.read_round + 1;
        let mut waited = false;
        for read in self.reads.iter_mut().filter(|r| r.index.is_none()) {
            read.index = Some(index);
            read.round = round;
            waited = true;
        }
        if waited && has_peers {
            self.read_round_due = true;
        }
    }

    /// Whether `ready()` has appends or a read round to send.
    pub(super) fn has_appends_to_send(&self, last: LogIndex, max_inflight: usize) -> bool {
        self.read_round_due
            || self
                .progress
                .values()
                .any(|pr| pr.may_send_append(last, max_inflight))
    }
}
