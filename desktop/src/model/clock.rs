//! Clock offsets between the nodes' streams, estimated from numbered messages: each stamps its events
//! with its own clock (containers, remote machines), so a receive may seem to come before its send.
//!
//! For a message from a to b, `received_at - sent_at = latency + (clock_b - clock_a)`. The quickest
//! recent message each way bounds both: `clock_b - clock_a ≈ (min_ab - min_ba) / 2`, as NTP does.
//! Offsets are taken relative to the lowest node id reachable through pairs that talk both ways.

use super::message::{message_of, Reported};
use flotilla_shared::event::{Event, EventKind};
use flotilla_shared::NodeId;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Unmatched sends and receives remembered, each; older ones are forgotten.
const MAX_UNMATCHED: usize = 20_000;
/// Samples per direction the minimum is taken over: recent enough to follow a drifting clock.
const WINDOW: usize = 32;
/// Differences below this are rounding (milliseconds on both ends) and are not corrected.
const NOISE_MS: i64 = 2;

/// A numbered message: `(sender, msg)`.
type MessageKey = (NodeId, u64);
/// The other node of a message's end, and that end's time.
type End = (NodeId, u64);

#[derive(Clone, Debug, Default)]
pub struct ClockOffsets {
    /// `(from, msg) -> (to, sent_at)` of numbered sends whose receive was not seen yet.
    sends: HashMap<MessageKey, End>,
    /// `(from, msg) -> (to, received_at)` of receives whose send was not seen yet.
    receives: HashMap<MessageKey, End>,
    /// Insertion order of both maps with what was inserted, to bound them.
    order: VecDeque<(MessageKey, End, bool)>,
    /// Recent `received_at - sent_at` per direction `(from, to)`.
    samples: BTreeMap<(NodeId, NodeId), VecDeque<i64>>,
    /// Each node's clock minus the reference clock.
    offsets: BTreeMap<NodeId, i64>,
}

impl ClockOffsets {
    /// How far `node`'s clock runs ahead of the reference clock (ms; negative: behind).
    pub fn offset(&self, node: NodeId) -> i64 {
        self.offsets.get(&node).copied().unwrap_or(0)
    }

    /// Each node's clock minus the reference clock, for the nodes estimated so far.
    pub fn all(&self) -> &BTreeMap<NodeId, i64> {
        &self.offsets
    }

    /// `at_ms` of `node`'s clock on the reference clock.
    pub fn corrected(&self, node: NodeId, at_ms: u64) -> u64 {
        at_ms.saturating_add_signed(-self.offset(node))
    }

    /// Learns from one event; returns whether an offset changed.
    pub fn observe(&mut self, event: &Event) -> bool {
        let sample = match &event.kind {
            EventKind::MessageReceived { from, msg, .. } if *msg != 0 => {
                let key = (*from, *msg);
                match self.sends.remove(&key) {
                    Some((to, sent_at)) if to == event.node => {
                        Some((*from, event.node, event.at_ms as i64 - sent_at as i64))
                    }
                    _ => {
                        self.remember(key, (event.node, event.at_ms), true);
                        None
                    }
                }
            }
            _ => match message_of(event) {
                Some(message) if message.msg != 0 && message.reported == Reported::AtSend => {
                    let key = (event.node, message.msg);
                    match self.receives.remove(&key) {
                        Some((to, received_at)) if to == message.to => Some((
                            event.node,
                            message.to,
                            received_at as i64 - event.at_ms as i64,
                        )),
                        _ => {
                            self.remember(key, (message.to, event.at_ms), false);
                            None
                        }
                    }
                }
                _ => None,
            },
        };
        let Some((from, to, difference)) = sample else {
            return false;
        };
        let window = self.samples.entry((from, to)).or_default();
        window.push_back(difference);
        if window.len() > WINDOW {
            window.pop_front();
        }
        self.recompute()
    }

    fn remember(&mut self, key: MessageKey, value: End, received: bool) {
        let map = if received {
            &mut self.receives
        } else {
            &mut self.sends
        };
        // A node restarting numbers from 1 again: the newer message wins.
        map.insert(key, value);
        self.order.push_back((key, value, received));
        while self.order.len() > 2 * MAX_UNMATCHED {
            let Some((old, value, received)) = self.order.pop_front() else {
                break;
            };
            let map = if received {
                &mut self.receives
            } else {
                &mut self.sends
            };
            // Unless the key was reused since (matched, or a restarted node's new message).
            if map.get(&old) == Some(&value) {
                map.remove(&old);
            }
        }
    }

    fn minimum(&self, from: NodeId, to: NodeId) -> Option<i64> {
        self.samples.get(&(from, to))?.iter().min().copied()
    }

    /// Walks from the lowest node over pairs heard both ways; returns whether an offset changed.
    fn recompute(&mut self) -> bool {
        let nodes: Vec<NodeId> = self
            .samples
            .keys()
            .flat_map(|(a, b)| [*a, *b])
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut offsets = BTreeMap::new();
        let Some(reference) = nodes.first().copied() else {
            return false;
        };
        offsets.insert(reference, 0i64);
        let mut queue = VecDeque::from([reference]);
        while let Some(a) = queue.pop_front() {
            for b in &nodes {
                if offsets.contains_key(b) {
                    continue;
                }
                if let (Some(ab), Some(ba)) = (self.minimum(a, *b), self.minimum(*b, a)) {
                    let pair = (ab - ba) / 2;
                    let pair = if pair.abs() < NOISE_MS { 0 } else { pair };
                    offsets.insert(*b, offsets[&a] + pair);
                    queue.push_back(*b);
                }
            }
        }
        // A node heard only one way keeps what was known of it.
        for (node, offset) in &self.offsets {
            offsets.entry(*node).or_insert(*offset);
        }
        let changed = offsets != self.offsets;
        self.offsets = offsets;
        changed
    }
}
