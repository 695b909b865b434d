//! What became of a message drawn in the air: it landed (its receiver reported taking it in), it was
//! dropped (its sender reported it lost, and why), or nobody said yet. Only a `message_received`
//! makes a dot land; everything else stops short of the receiver.

use super::state::{ClusterState, Flight};
use flotilla_shared::event::DropReason;
use flotilla_shared::NodeId;

/// How a dropped or unknown dot fades out once it stopped.
pub const FADE_MS: u64 = 600;
/// How long a dot whose arrival nobody reported waits short of its receiver before it fades: a
/// receive may still come (a slow link), or never (a dead receiver, a gap in its stream).
pub const UNKNOWN_HOLD_MS: u64 = 3_000;
/// Where along the edge a dot with an unknown arrival stops (it nears this and never passes it):
/// visibly short of the receiver.
pub const UNKNOWN_STOP: f32 = 0.8;

/// The end of a message's story, as far as the nodes told it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// The receiver reported taking it in (`message_received`, or an ack reported by its receiver):
    /// the dot lands at `end_ms`.
    Lands,
    /// The sender reported it lost: the dot stops at `end_ms` where it died and fades.
    Dropped(DropReason),
    /// Neither yet: the dot flies towards the receiver (most of the way within `travel_ms`), slows
    /// to a stop short of it, holds until `end_ms`, then fades. `msg == 0` means the sender does not
    /// number its messages (an older node).
    Unknown,
}

/// A dot as drawn at one moment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Drawn {
    /// 0.0 at the sender, 1.0 at the receiver.
    pub progress: f32,
    /// 1.0 opaque, fading towards 0.0 after the dot stopped.
    pub alpha: f32,
    /// Whether the dot is at its receiver: only a reported arrival gets there.
    pub landed: bool,
}

/// Where a dropped message stops: at the sender for what never left it, on the link for what a
/// fault lost on the way, at the receiver's door for what found nobody answering.
pub fn drop_stop(reason: DropReason) -> f32 {
    match reason {
        DropReason::QueueFull => 0.12,
        DropReason::Partition | DropReason::LinkCut | DropReason::Loss => 0.5,
        DropReason::Unreachable | DropReason::Timeout => 0.85,
    }
}

/// The words for a drop reason, on hover and in the event list.
pub fn drop_words(reason: DropReason) -> &'static str {
    match reason {
        DropReason::Partition => "dropped: the nodes are partitioned",
        DropReason::LinkCut => "dropped: the link is cut",
        DropReason::Loss => "dropped: lost on a lossy link",
        DropReason::QueueFull => "dropped: the peer's send queue was full",
        DropReason::Unreachable => "dropped: the peer could not be reached",
        DropReason::Timeout => "dropped: the peer did not answer in time",
    }
}

fn fraction(now_ms: u64, start_ms: u64, span_ms: u64) -> f32 {
    ((now_ms.saturating_sub(start_ms)) as f32 / span_ms.max(1) as f32).clamp(0.0, 1.0)
}

impl Flight {
    /// The dot at `now_ms`, or `None` when it is not drawn (not left yet, landed, faded).
    pub fn drawn(&self, now_ms: u64) -> Option<Drawn> {
        if now_ms < self.start_ms {
            return None;
        }
        let stopped = |along: f32| {
            if now_ms > self.end_ms + FADE_MS {
                return None;
            }
            let alpha = if now_ms <= self.end_ms {
                1.0
            } else {
                1.0 - (now_ms - self.end_ms) as f32 / FADE_MS as f32
            };
            Some(Drawn {
                progress: along,
                alpha,
                landed: false,
            })
        };
        match self.arrival {
            Arrival::Lands => self.progress(now_ms).map(|progress| Drawn {
                progress,
                alpha: 1.0,
                landed: progress >= 1.0,
            }),
            Arrival::Dropped(reason) => stopped(
                drop_stop(reason) * fraction(now_ms, self.start_ms, self.end_ms - self.start_ms),
            ),
            // Still on its way as far as anyone knows: it slows as it nears the stop, so a slow
            // link's dot keeps moving while it waits for its receive.
            Arrival::Unknown => {
                let travelled = now_ms.saturating_sub(self.start_ms) as f32;
                let span = self.travel_ms.max(1) as f32;
                stopped(UNKNOWN_STOP * (1.0 - (-2.0 * travelled / span).exp()))
            }
        }
    }

    /// The last moment the dot is drawn at all.
    pub fn gone_ms(&self) -> u64 {
        match self.arrival {
            Arrival::Lands => self.end_ms,
            Arrival::Dropped(_) | Arrival::Unknown => self.end_ms + FADE_MS,
        }
    }

    /// What became of the message, in words for the hover text.
    pub fn arrival_words(&self, receiver_down: Option<&str>) -> String {
        match self.arrival {
            Arrival::Lands => format!("taken in after {} ms", self.end_ms - self.start_ms),
            Arrival::Dropped(reason) => drop_words(reason).to_string(),
            Arrival::Unknown if self.msg == 0 => {
                "arrival unknown: the sender does not number its messages (an older node)".into()
            }
            Arrival::Unknown => match receiver_down {
                Some(why) => format!("arrival unknown: node {} is {why}", self.to),
                None => "in flight, arrival not reported (yet)".into(),
            },
        }
    }
}

impl ClusterState {
    /// The newest flight of message `msg` from `from` to `to` whose end is not known yet, settled
    /// as `arrival` at `end_ms`. Returns whether there was one.
    pub(crate) fn settle(
        &mut self,
        from: NodeId,
        to: NodeId,
        msg: u64,
        arrival: Arrival,
        end_ms: u64,
    ) -> bool {
        if msg == 0 {
            return false;
        }
        let Some(flight) = self.flights.iter_mut().rev().find(|flight| {
            flight.from == from
                && flight.to == to
                && flight.msg == msg
                && flight.arrival == Arrival::Unknown
        }) else {
            return false;
        };
        settle_flight(flight, arrival, end_ms);
        true
    }
}

/// Gives a flight its known end; never before it left.
pub(crate) fn settle_flight(flight: &mut Flight, arrival: Arrival, end_ms: u64) {
    flight.arrival = arrival;
    flight.end_ms = end_ms.max(flight.start_ms + 1);
}
