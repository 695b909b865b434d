//! The cluster as the desktop sees it, derived only from what the nodes report: their events and
//! status snapshots. Pure: no egui, no network, no clock (time is passed in).
//!
//! Owns what is known of the cluster, the recording (timeline) and the view's position in it (live,
//! paused, replay). May not touch the UI, the backend or the app: they depend on it, never the other
//! way round.

pub mod checks;
mod clock;
pub mod diagram;
mod failover;
mod faults;
mod flight;
mod membership;
mod message;
mod pairs;
mod presenter;
pub mod scenario;
mod snapshots;
mod state;
mod timeline;

pub use clock::ClockOffsets;
pub use failover::{Failover, Failovers};
pub use faults::{fault_words, link_fault};
pub use flight::{drop_words, Arrival, Drawn, FADE_MS, UNKNOWN_HOLD_MS, UNKNOWN_STOP};
pub use membership::{CatchUp, ConfigView, MAX_NODES};
pub use message::{message_of, FlightKind, Message, Reported};
pub use pairs::{MessagePair, MessagePairs, PairEnd};
pub use presenter::{Presenter, DELAY_MS, MAX_LAG_MS};
pub use snapshots::{bytes_words, SnapshotTransfer, SnapshotView};
pub use state::{flight_ms, ClusterState, Flight, NodeView, ProcessState, SubmitRecord};
pub use timeline::{Record, Timeline};

use flotilla_shared::event::Event;
use flotilla_shared::NodeId;

/// Where the view stands: following the live cluster, or looking at a recorded moment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ViewMode {
    Live,
    /// Frozen at the record with this position (absolute, see `Timeline::position`).
    Paused {
        position: u64,
    },
    /// Replaying from the recording: the view clock runs at `speed` times real time.
    Replay {
        clock_ms: f64,
        speed: f64,
    },
}

/// Everything the UI draws: the live state, the recording, and which moment is shown.
pub struct ClusterModel {
    /// The truth as soon as it is known, in the order it was learned.
    pub live: ClusterState,
    pub timeline: Timeline,
    pub mode: ViewMode,
    /// What the live view draws: the truth a moment later, in causal order (see `presenter`).
    presenter: Presenter,
    /// The frozen state for a paused view, with the position it was computed for.
    replayed: Option<(u64, ClusterState)>,
    /// A replay tells the recording through a presenter of its own, so it keeps causal order as the
    /// live view does.
    replaying: Option<Replaying>,
}

/// A replay's presenter and the next recorded position to hand it.
struct Replaying {
    presenter: Presenter,
    next: u64,
}

impl ClusterModel {
    pub fn new(nodes: &[NodeId]) -> Self {
        Self::with_capacity(nodes, timeline::DEFAULT_CAPACITY)
    }

    pub fn with_capacity(nodes: &[NodeId], capacity: usize) -> Self {
        let live = ClusterState::new(nodes);
        Self {
            timeline: Timeline::new(live.clone(), capacity),
            presenter: Presenter::new(live.clone()),
            live,
            mode: ViewMode::Live,
            replayed: None,
            replaying: None,
        }
    }

    /// Applies one record to the live state and appends it to the recording.
    pub fn record(&mut self, record: Record) {
        self.live.apply(&record);
        self.presenter.push(record.clone(), self.timeline.end());
        self.timeline.push(record);
    }

    /// Moves the live view to `now_ms`; call once a frame, whatever the view mode.
    pub fn advance(&mut self, now_ms: u64) {
        self.presenter.advance(now_ms);
    }

    /// The clock offsets between the nodes' streams the live view corrects for.
    pub fn clock_offsets(&self) -> &ClockOffsets {
        self.presenter.clocks()
    }

    /// The live view as drawn at the last [`Self::advance`].
    pub fn shown(&self) -> &ClusterState {
        self.presenter.shown()
    }

    /// When the live view next changes by itself, if anything is waiting to be drawn.
    pub fn next_change_ms(&self) -> Option<u64> {
        self.presenter.next_change_ms()
    }

    /// The newest record the live view has drawn, with everything before it.
    pub fn drawn_position(&self) -> u64 {
        let newest = self.timeline.end().saturating_sub(1);
        self.presenter
            .drawn_through()
            .map_or(newest, |drawn| drawn.clamp(self.timeline.start(), newest))
    }

    /// The newest record the current view has drawn: what the event list may show.
    pub fn shown_position(&self) -> u64 {
        match (self.mode, &self.replaying) {
            (ViewMode::Live, _) => self.drawn_position(),
            (ViewMode::Paused { position }, _) => position,
            (ViewMode::Replay { clock_ms, .. }, replaying) => replaying
                .as_ref()
                .and_then(|replaying| replaying.presenter.drawn_through())
                .unwrap_or_else(|| self.timeline.position_at_time(clock_ms as u64)),
        }
    }

    /// Records taken in but not drawn in the live view yet.
    pub fn backlog(&self) -> usize {
        self.presenter.backlog()
    }

    pub fn apply_event(&mut self, event: Event) {
        self.record(Record::Event(event));
    }

    /// The state to draw now.
    pub fn view(&mut self) -> &ClusterState {
        let position = match self.mode {
            ViewMode::Live => return self.presenter.shown(),
            ViewMode::Paused { position } => position,
            ViewMode::Replay { clock_ms, .. } => match &self.replaying {
                Some(replaying) => return replaying.presenter.shown(),
                None => self.timeline.position_at_time(clock_ms as u64),
            },
        };
        let fresh = matches!(&self.replayed, Some((at, _)) if *at == position);
        if !fresh {
            self.replayed = Some((position, self.timeline.state_at(position)));
        }
        match &self.replayed {
            Some((_, state)) => state,
            None => self.presenter.shown(),
        }
    }

    /// The state to draw and the recording, borrowed together.
    pub fn view_and_timeline(&mut self) -> (&ClusterState, &Timeline) {
        self.view();
        let view = match (&self.mode, &self.replaying, &self.replayed) {
            (ViewMode::Replay { .. }, Some(replaying), _) => replaying.presenter.shown(),
            (ViewMode::Live, _, _) | (_, _, None) => self.presenter.shown(),
            (_, _, Some((_, state))) => state,
        };
        (view, &self.timeline)
    }

    /// The cluster-clock time the view shows, given the wall clock `now_ms`.
    pub fn view_time_ms(&self, now_ms: u64) -> u64 {
        match self.mode {
            ViewMode::Live => now_ms,
            ViewMode::Paused { position } => self.timeline.time_of(position).unwrap_or(now_ms),
            ViewMode::Replay { clock_ms, .. } => clock_ms as u64,
        }
    }

    /// Freezes the view at the moment the live view was drawing.
    pub fn pause(&mut self) {
        self.mode = ViewMode::Paused {
            position: self.drawn_position(),
        };
        self.replaying = None;
    }

    pub fn go_live(&mut self) {
        self.mode = ViewMode::Live;
        self.replayed = None;
        self.replaying = None;
    }

    /// Moves a paused view by `delta` records, staying inside the recording.
    pub fn step(&mut self, delta: i64) {
        let current = match self.mode {
            ViewMode::Live => self.drawn_position(),
            ViewMode::Paused { position } => position,
            ViewMode::Replay { clock_ms, .. } => self.timeline.position_at_time(clock_ms as u64),
        };
        let target = (current as i64 + delta).clamp(
            self.timeline.start() as i64,
            self.timeline.end().saturating_sub(1) as i64,
        );
        self.mode = ViewMode::Paused {
            position: target.max(0) as u64,
        };
        self.replaying = None;
    }

    /// Starts replaying from the paused position at `speed` times real time.
    pub fn replay(&mut self, speed: f64) {
        let position = match self.mode {
            ViewMode::Paused { position } => position,
            ViewMode::Replay { clock_ms, .. } => self.timeline.position_at_time(clock_ms as u64),
            ViewMode::Live => self.timeline.start(),
        };
        let clock_ms = self.timeline.time_of(position).unwrap_or(0) as f64;
        self.mode = ViewMode::Replay { clock_ms, speed };
        self.replaying = Some(Replaying {
            presenter: Presenter::new(self.timeline.state_at(position)),
            next: position + 1,
        });
        self.feed_replay(clock_ms as u64);
    }

    /// Advances a replay by `elapsed_ms` of real time; once the recording is told to its end, the
    /// view goes live.
    pub fn advance_replay(&mut self, elapsed_ms: f64) {
        if let ViewMode::Replay { clock_ms, speed } = self.mode {
            let next = clock_ms + elapsed_ms * speed;
            self.mode = ViewMode::Replay {
                clock_ms: next,
                speed,
            };
            self.feed_replay(next as u64);
            let told = self.replaying.as_ref().is_none_or(|replaying| {
                replaying.next >= self.timeline.end()
                    && replaying.presenter.next_change_ms().is_none()
            });
            if told {
                self.go_live();
            }
        }
    }

    /// Hands the replay's presenter every recorded record up to `clock_ms`, then moves it there.
    fn feed_replay(&mut self, clock_ms: u64) {
        let Some(replaying) = &mut self.replaying else {
            return;
        };
        // Records dropped from the front of a full recording are skipped.
        replaying.next = replaying.next.max(self.timeline.start());
        while let Some(record) = self.timeline.get(replaying.next) {
            if record.at_ms() > clock_ms {
                break;
            }
            replaying.presenter.push(record.clone(), replaying.next);
            replaying.next += 1;
        }
        replaying.presenter.advance(clock_ms);
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod causal_stream_tests;
#[cfg(test)]
mod causal_tests;
#[cfg(test)]
mod wire_tests;
