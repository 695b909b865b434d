//! The simulated network: random delay (hence reordering), loss, duplication and per-direction cuts.

use crate::raft::rng::SplitMix64;
use crate::raft::{Envelope, NodeId};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

/// How the network misbehaves, in parts per thousand and milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkFaults {
    pub loss_per_mille: u64,
    pub duplicate_per_mille: u64,
    pub delay_ms: (u64, u64),
}

impl NetworkFaults {
    pub const CALM: Self = Self {
        loss_per_mille: 0,
        duplicate_per_mille: 0,
        delay_ms: (1, 10),
    };
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    deliver_at_ms: u64,
    seq: u64,
    envelope: EnvelopeOrd,
}

/// Envelopes ordered only by the fields above them: the sequence number makes every key unique.
#[derive(Debug, PartialEq, Eq)]
struct EnvelopeOrd(Envelope);

impl PartialOrd for EnvelopeOrd {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for EnvelopeOrd {
    fn cmp(&self, _other: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

pub struct Network {
    in_flight: BinaryHeap<Reverse<InFlight>>,
    next_seq: u64,
    /// Directed links that drop everything: `(from, to)`.
    cut: BTreeSet<(NodeId, NodeId)>,
    pub faults: NetworkFaults,
    pub sent: u64,
    pub dropped: u64,
}

impl Network {
    pub fn new(faults: NetworkFaults) -> Self {
        Self {
            in_flight: BinaryHeap::new(),
            next_seq: 0,
            cut: BTreeSet::new(),
            faults,
            sent: 0,
            dropped: 0,
        }
    }

    pub fn send(&mut self, rng: &mut SplitMix64, now_ms: u64, envelope: Envelope) {
        self.sent += 1;
        if self.cut.contains(&(envelope.from, envelope.to))
            || rng.chance(self.faults.loss_per_mille, 1000)
        {
            self.dropped += 1;
            return;
        }
        let copies = if rng.chance(self.faults.duplicate_per_mille, 1000) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let (lo, hi) = self.faults.delay_ms;
            let deliver_at_ms = now_ms + rng.range_inclusive(lo, hi);
            self.next_seq += 1;
            let envelope = envelope.clone();
            self.in_flight.push(Reverse(InFlight {
                deliver_at_ms,
                seq: self.next_seq,
                envelope: EnvelopeOrd(envelope),
            }));
        }
    }

    /// The next message due at or before `now_ms`. A link cut while the message was in flight drops it.
    pub fn next_due(&mut self, now_ms: u64) -> Option<Envelope> {
        loop {
            let due = self
                .in_flight
                .peek()
                .is_some_and(|Reverse(m)| m.deliver_at_ms <= now_ms);
            if !due {
                return None;
            }
            let Reverse(message) = self.in_flight.pop()?;
            let envelope = message.envelope.0;
            if self.cut.contains(&(envelope.from, envelope.to)) {
                self.dropped += 1;
                continue;
            }
            return Some(envelope);
        }
    }

    pub fn cut_one_way(&mut self, from: NodeId, to: NodeId) {
        self.cut.insert((from, to));
    }

    pub fn isolate(&mut self, node: NodeId, all: &[NodeId]) {
        for other in all.iter().filter(|o| **o != node) {
            self.cut.insert((node, *other));
            self.cut.insert((*other, node));
        }
    }

    /// Splits the cluster in two groups that cannot talk to each other.
    pub fn split(&mut self, group: &[NodeId], all: &[NodeId]) {
        for a in group {
            for b in all.iter().filter(|b| !group.contains(b)) {
                self.cut.insert((*a, *b));
                self.cut.insert((*b, *a));
            }
        }
    }

    /// Removes every cut to and from `node`.
    pub fn reconnect(&mut self, node: NodeId) {
        self.cut.retain(|(from, to)| *from != node && *to != node);
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    pub fn cuts(&self) -> usize {
        self.cut.len()
    }
}
