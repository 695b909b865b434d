//! The simulated network: random delay (hence reordering), loss, duplication and per-direction cuts;
//! with the `mangled` profile also corruption a receiver can tell (see [`super::hostile::mangle`]) and
//! replays of messages sent long before.

use super::hostile;
use crate::raft::rng::SplitMix64;
use crate::raft::{Envelope, NodeId};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, VecDeque};

/// How the network misbehaves, in parts per thousand and milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkFaults {
    pub loss_per_mille: u64,
    pub duplicate_per_mille: u64,
    pub delay_ms: (u64, u64),
    /// Messages corrupted in transit so that their receiver must refuse them (needs [`Network::mangling`]).
    pub mangle_per_mille: u64,
    /// Sends that also deliver again, up to `REPLAY_DELAY_MS` later, a message sent earlier.
    pub replay_per_mille: u64,
}

impl NetworkFaults {
    pub const CALM: Self = Self {
        loss_per_mille: 0,
        duplicate_per_mille: 0,
        delay_ms: (1, 10),
        mangle_per_mille: 0,
        replay_per_mille: 0,
    };
}

/// How late a replayed message may arrive.
const REPLAY_DELAY_MS: (u64, u64) = (20, 800);
/// Sent messages kept for replays.
const REPLAY_MEMORY: usize = 256;

/// A message on the wire, and where it really goes: a mangled envelope may name another receiver.
#[derive(Debug, PartialEq, Eq)]
pub struct Delivery {
    pub route: (NodeId, NodeId),
    pub envelope: Envelope,
    /// Corrupted in transit: its receiver must refuse it.
    pub mangled: bool,
}

/// The `mangled` profile's own randomness (so the other profiles draw exactly as before) and memory.
struct Mangling {
    rng: SplitMix64,
    members: Vec<NodeId>,
    recent: VecDeque<Envelope>,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    deliver_at_ms: u64,
    seq: u64,
    envelope: EnvelopeOrd,
}

/// Envelopes ordered only by the fields above them: the sequence number makes every key unique.
#[derive(Debug, PartialEq, Eq)]
struct EnvelopeOrd(Delivery);

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
    pub mangled: u64,
    pub replayed: u64,
    mangling: Option<Mangling>,
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
            mangled: 0,
            replayed: 0,
            mangling: None,
        }
    }

    /// Lets `mangle_per_mille` and `replay_per_mille` act, drawing from their own `seed`.
    pub fn mangling(&mut self, seed: u64, members: Vec<NodeId>) {
        self.mangling = Some(Mangling {
            rng: SplitMix64::new(seed),
            members,
            recent: VecDeque::new(),
        });
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
        let route = (envelope.from, envelope.to);
        for _ in 0..copies {
            let (lo, hi) = self.faults.delay_ms;
            let deliver_at_ms = now_ms + rng.range_inclusive(lo, hi);
            let (envelope, mangled) = self.maybe_mangle(&envelope);
            self.push(deliver_at_ms, route, envelope, mangled);
        }
        self.maybe_replay(now_ms, envelope);
    }

    fn push(
        &mut self,
        deliver_at_ms: u64,
        route: (NodeId, NodeId),
        envelope: Envelope,
        mangled: bool,
    ) {
        self.next_seq += 1;
        self.in_flight.push(Reverse(InFlight {
            deliver_at_ms,
            seq: self.next_seq,
            envelope: EnvelopeOrd(Delivery {
                route,
                envelope,
                mangled,
            }),
        }));
    }

    fn maybe_mangle(&mut self, envelope: &Envelope) -> (Envelope, bool) {
        let per_mille = self.faults.mangle_per_mille;
        if let Some(m) = self.mangling.as_mut().filter(|_| per_mille > 0) {
            if m.rng.chance(per_mille, 1000) {
                self.mangled += 1;
                return (hostile::mangle(envelope, &mut m.rng, &m.members), true);
            }
        }
        (envelope.clone(), false)
    }

    /// Remembers `envelope`, and now and then sends one remembered before again, late.
    fn maybe_replay(&mut self, now_ms: u64, envelope: Envelope) {
        let per_mille = self.faults.replay_per_mille;
        let Some(m) = self.mangling.as_mut().filter(|_| per_mille > 0) else {
            return;
        };
        if m.recent.len() == REPLAY_MEMORY {
            m.recent.pop_front();
        }
        m.recent.push_back(envelope);
        if !m.rng.chance(per_mille, 1000) {
            return;
        }
        let at = m.rng.range_inclusive(0, m.recent.len() as u64 - 1) as usize;
        let old = m.recent[at].clone();
        let deliver_at_ms = now_ms + m.rng.range_inclusive(REPLAY_DELAY_MS.0, REPLAY_DELAY_MS.1);
        self.replayed += 1;
        self.push(deliver_at_ms, (old.from, old.to), old, false);
    }

    /// The next message due at or before `now_ms`. A link cut while the message was in flight drops it.
    pub fn next_due(&mut self, now_ms: u64) -> Option<Delivery> {
        loop {
            let due = self
                .in_flight
                .peek()
                .is_some_and(|Reverse(m)| m.deliver_at_ms <= now_ms);
            if !due {
                return None;
            }
            let Reverse(message) = self.in_flight.pop()?;
            let delivery = message.envelope.0;
            if self.cut.contains(&delivery.route) {
                self.dropped += 1;
                continue;
            }
            return Some(delivery);
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
