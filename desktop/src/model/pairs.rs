//! Each numbered message's two ends in the recording: its send and its receive (or drop), so the
//! event list and the timeline can show them as one pair.

use super::clock::ClockOffsets;
use super::flight::drop_words;
use super::message::{message_of, Reported};
use flotilla_shared::event::{DropReason, Event, EventKind};
use flotilla_shared::NodeId;
use std::collections::{HashMap, VecDeque};

/// Messages remembered; older ones have scrolled out of any list long before.
const MAX_PAIRS: usize = 50_000;

/// How a message ended, and where in the recording that was told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairEnd {
    /// `at_ms` on the sender's clock (offsets corrected).
    Received { at_ms: u64, position: u64 },
    Dropped {
        at_ms: u64,
        reason: DropReason,
        position: u64,
    },
}

impl PairEnd {
    fn position(&self) -> u64 {
        match self {
            PairEnd::Received { position, .. } | PairEnd::Dropped { position, .. } => *position,
        }
    }
}

/// One numbered message as far as the recording tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessagePair {
    pub from: NodeId,
    pub to: NodeId,
    pub msg: u64,
    /// The send's time (sender's clock) and position, when a send event reported it.
    pub sent: Option<(u64, u64)>,
    /// What the send event called it (`append_sent`, ...).
    pub sent_as: Option<&'static str>,
    pub end: Option<PairEnd>,
}

#[derive(Clone, Debug, Default)]
pub struct MessagePairs {
    /// Each pair with the serial it was created under.
    pairs: HashMap<(NodeId, u64), (u64, MessagePair)>,
    /// Pairs in creation order, to forget the oldest.
    order: VecDeque<((NodeId, u64), u64)>,
    serial: u64,
    clocks: ClockOffsets,
}

/// The `(sender, msg)` an event is one end of, with the other node.
fn ends_of(event: &Event) -> Option<(NodeId, u64, NodeId)> {
    match &event.kind {
        EventKind::MessageReceived { from, msg, .. } => Some((*from, *msg, event.node)),
        EventKind::MessageDropped { to, msg, .. } => Some((event.node, *msg, *to)),
        _ => message_of(event)
            .filter(|message| message.reported == Reported::AtSend)
            .map(|message| (event.node, message.msg, message.to)),
    }
    .filter(|(_, msg, _)| *msg != 0)
}

impl MessagePairs {
    /// Takes in the event recorded at `position`.
    pub fn observe(&mut self, event: &Event, position: u64) {
        self.clocks.observe(event);
        let Some((from, msg, other)) = ends_of(event) else {
            return;
        };
        let key = (from, msg);
        let fresh = || MessagePair {
            from,
            to: other,
            msg,
            sent: None,
            sent_as: None,
            end: None,
        };
        let at_ms = self.clocks.corrected(event.node, event.at_ms);
        let is_send = !matches!(
            event.kind,
            EventKind::MessageReceived { .. } | EventKind::MessageDropped { .. }
        );
        // A restarted node numbers from 1 again: a second send starts a new pair (a receive recorded
        // before its send, from a stream running ahead, keeps its pair).
        let replace = is_send
            && self
                .pairs
                .get(&key)
                .is_some_and(|(_, pair)| pair.sent.is_some());
        if replace || !self.pairs.contains_key(&key) {
            self.serial += 1;
            self.pairs.insert(key, (self.serial, fresh()));
            self.order.push_back((key, self.serial));
            while self.order.len() > MAX_PAIRS {
                if let Some((old, serial)) = self.order.pop_front() {
                    if self
                        .pairs
                        .get(&old)
                        .is_some_and(|(kept, _)| *kept == serial)
                    {
                        self.pairs.remove(&old);
                    }
                }
            }
        }
        let Some((_, pair)) = self.pairs.get_mut(&key) else {
            return;
        };
        match &event.kind {
            EventKind::MessageReceived { .. } => {
                pair.end = Some(PairEnd::Received { at_ms, position });
            }
            EventKind::MessageDropped { reason, .. } => {
                pair.end = Some(PairEnd::Dropped {
                    at_ms,
                    reason: *reason,
                    position,
                });
            }
            kind => {
                pair.sent = Some((at_ms, position));
                pair.sent_as = Some(kind.name());
            }
        }
    }

    /// The pair `event` is one end of.
    pub fn of_event(&self, event: &Event) -> Option<&MessagePair> {
        let (from, msg, _) = ends_of(event)?;
        self.pairs.get(&(from, msg)).map(|(_, pair)| pair)
    }

    /// The other end of `event`'s message in words, telling nothing recorded after `until`.
    pub fn describe_other_end(&self, event: &Event, until: u64) -> Option<String> {
        let pair = self.of_event(event)?;
        let end = pair.end.filter(|end| end.position() <= until);
        let words = match &event.kind {
            EventKind::MessageReceived { .. } => match pair.sent {
                Some((sent_ms, _)) => {
                    let received_ms = match pair.end {
                        Some(PairEnd::Received { at_ms, .. }) => at_ms,
                        _ => sent_ms,
                    };
                    format!(
                        "<- sent as {} by node {}, {} ms in flight",
                        pair.sent_as.unwrap_or("message"),
                        pair.from,
                        received_ms.saturating_sub(sent_ms)
                    )
                }
                None => format!("<- its send by node {} is not in the recording", pair.from),
            },
            EventKind::MessageDropped { .. } => match pair.sent {
                Some((sent_ms, _)) => format!(
                    "<- sent as {} {} ms earlier",
                    pair.sent_as.unwrap_or("message"),
                    match pair.end {
                        Some(PairEnd::Dropped { at_ms, .. }) => at_ms.saturating_sub(sent_ms),
                        _ => 0,
                    }
                ),
                None => "<- a reply no event reports sending".into(),
            },
            _ => {
                let sent_ms = pair.sent.map_or(0, |(at, _)| at);
                match end {
                    Some(PairEnd::Received { at_ms, .. }) => format!(
                        "-> taken in by node {} after {} ms",
                        pair.to,
                        at_ms.saturating_sub(sent_ms)
                    ),
                    Some(PairEnd::Dropped { reason, .. }) => format!("-> {}", drop_words(reason)),
                    None => "-> arrival not reported (yet)".into(),
                }
            }
        };
        Some(words)
    }
}
