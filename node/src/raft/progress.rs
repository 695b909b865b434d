//! What a leader knows about one follower's log (etcd-raft's `Progress`).

use super::LogIndex;
use std::collections::VecDeque;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// The follower's match point is unknown: one append at a time until one succeeds.
    Probe,
    /// The follower is known to match: appends are pipelined, up to the in-flight bound.
    Replicate,
}

#[derive(Clone, Debug)]
pub struct Progress {
    pub match_index: LogIndex,
    pub next_index: LogIndex,
    pub state: ProgressState,
    /// Last index of each append in flight (Replicate state), oldest first.
    pub inflight: VecDeque<LogIndex>,
    /// In Probe state: an append went out and no response came back yet.
    pub probe_sent: bool,
    /// When the leader last heard from this follower in its term (CheckQuorum, thesis §6.2).
    pub last_heard_ms: u64,
    /// Heartbeat rounds since an append in flight was last acknowledged: appends lost in the
    /// network are noticed this way and the follower is probed again.
    pub stalled_heartbeats: u32,
}

impl Progress {
    pub fn new(last: LogIndex, now_ms: u64) -> Self {
        Self {
            match_index: LogIndex::ZERO,
            next_index: last.next(),
            state: ProgressState::Probe,
            inflight: VecDeque::new(),
            probe_sent: false,
            last_heard_ms: now_ms,
            stalled_heartbeats: 0,
        }
    }

    pub fn become_probe(&mut self) {
        self.state = ProgressState::Probe;
        self.next_index = self.match_index.next();
        self.inflight.clear();
        self.probe_sent = false;
        self.stalled_heartbeats = 0;
    }

    pub fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next_index = self.match_index.next();
        self.probe_sent = false;
        self.stalled_heartbeats = 0;
    }

    /// Records an acknowledged match; returns whether the match index moved.
    pub fn maybe_update(&mut self, index: LogIndex) -> bool {
        while self.inflight.front().is_some_and(|last| *last <= index) {
            self.inflight.pop_front();
            self.stalled_heartbeats = 0;
        }
        if index > self.match_index {
            self.match_index = index;
            self.next_index = self.next_index.max(index.next());
            self.stalled_heartbeats = 0;
            true
        } else {
            false
        }
    }

    pub fn inflight_full(&self, max: usize) -> bool {
        self.inflight.len() >= max
    }

    /// Whether an append carrying entries up to `last` may go out now: in Probe one at a time, in
    /// Replicate while fewer than `max_inflight` are unanswered.
    pub fn may_send_append(&self, last: LogIndex, max_inflight: usize) -> bool {
        match self.state {
            ProgressState::Probe => !self.probe_sent && self.match_index < last,
            ProgressState::Replicate => {
                self.next_index <= last && !self.inflight_full(max_inflight)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_frees_inflight_and_moves_next() {
        let mut pr = Progress::new(LogIndex(10), 0);
        pr.become_replicate();
        pr.inflight.extend([LogIndex(12), LogIndex(14)]);
        pr.next_index = LogIndex(15);
        assert!(pr.maybe_update(LogIndex(12)));
        assert_eq!(pr.inflight, [LogIndex(14)]);
        assert_eq!(pr.next_index, LogIndex(15));
        assert!(!pr.maybe_update(LogIndex(11)));
        pr.become_probe();
        assert_eq!(pr.next_index, LogIndex(13));
        assert!(pr.inflight.is_empty());
    }
}
