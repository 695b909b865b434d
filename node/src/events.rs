//! The event hub: stamps the core's and the runtime's events and fans them out to `/v1/events`
//! subscribers.
//!
//! Each event is serialized once and shared, and only once someone may read it: while nobody
//! subscribes, events wait unserialized in the history (a busy leader publishes several per client
//! write). Every subscriber has a bounded queue; one that falls behind is dropped rather than allowed
//! to slow the node. A bounded ring of recent events lets a newly opened visualizer replay history and
//! see the current state at once.

use crate::clock::Clock;
use bytes::Bytes;
use flotilla_shared::event::{Event, EventKind};
use flotilla_shared::NodeId;
use std::collections::VecDeque;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Recent events kept for replay to new subscribers.
pub const HISTORY_CAPACITY: usize = 10_000;
/// Events queued per subscriber before it counts as too slow and is dropped.
const SUBSCRIBER_QUEUE: usize = 4_096;

/// One event, serialized once, as the Server-Sent Events frame every subscriber is sent
/// (`data:<json>\nid:<seq>\n\n`).
#[derive(Clone, Debug)]
pub struct PublishedEvent {
    pub seq: u64,
    pub frame: Bytes,
}

const DATA_FIELD: &[u8] = b"data:";

impl PublishedEvent {
    /// The event's JSON: the frame between `data:` and `\nid:<seq>\n\n`.
    #[cfg(test)]
    pub fn json(&self) -> &str {
        let digits = self.seq.checked_ilog10().map_or(1, |log| log as usize + 1);
        let end = self.frame.len() - ("\nid:".len() + digits + "\n\n".len());
        std::str::from_utf8(&self.frame[DATA_FIELD.len()..end]).unwrap_or_default()
    }
}

#[derive(Clone)]
pub struct EventHub {
    node: NodeId,
    clock: Clock,
    inner: Arc<Mutex<HubState>>,
}

struct HubState {
    next_seq: u64,
    history: VecDeque<Recent>,
    subscribers: Vec<mpsc::Sender<PublishedEvent>>,
    dropped_subscribers: u64,
}

/// One event of the history: serialized when it was published to subscribers, or when first replayed.
enum Recent {
    Unpublished(Event),
    Published(PublishedEvent),
}

impl Recent {
    /// The serialized event, serializing it now if nobody had read it yet (`None`: it cannot be).
    fn published(&mut self) -> Option<PublishedEvent> {
        if let Recent::Unpublished(event) = self {
            *self = Recent::Published(serialize(event)?);
        }
        match self {
            Recent::Published(published) => Some(published.clone()),
            Recent::Unpublished(_) => None,
        }
    }
}

fn serialize(event: &Event) -> Option<PublishedEvent> {
    let mut frame = Vec::with_capacity(192);
    frame.extend_from_slice(DATA_FIELD);
    match serde_json::to_writer(&mut frame, event) {
        Ok(()) => {
            // JSON escapes newlines inside strings, so the data field is one line.
            write!(frame, "\nid:{}\n\n", event.seq).ok();
            Some(PublishedEvent {
                seq: event.seq,
                frame: frame.into(),
            })
        }
        Err(error) => {
            tracing::error!(%error, "could not serialize an event");
            None
        }
    }
}

impl EventHub {
    pub fn new(node: NodeId, clock: Clock) -> Self {
        Self {
            node,
            clock,
            inner: Arc::new(Mutex::new(HubState {
                next_seq: 1,
                history: VecDeque::with_capacity(HISTORY_CAPACITY),
                subscribers: Vec::new(),
                dropped_subscribers: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        // A panic while holding this lock leaves only a queue behind: keep serving.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn publish_all(&self, kinds: impl IntoIterator<Item = EventKind>) {
        let at_ms = self.clock.now_ms();
        let mut state = self.lock();
        for kind in kinds {
            let event = Event {
                node: self.node,
                seq: state.next_seq,
                at_ms,
                kind,
            };
            state.next_seq += 1;
            if state.history.len() == HISTORY_CAPACITY {
                state.history.pop_front();
            }
            if state.subscribers.is_empty() {
                state.history.push_back(Recent::Unpublished(event));
                continue;
            }
            let Some(published) = serialize(&event) else {
                continue;
            };
            state
                .history
                .push_back(Recent::Published(published.clone()));
            let before = state.subscribers.len();
            state
                .subscribers
                .retain(|subscriber| subscriber.try_send(published.clone()).is_ok());
            let dropped = before - state.subscribers.len();
            if dropped > 0 {
                state.dropped_subscribers += dropped as u64;
                tracing::warn!(dropped, "dropped slow or closed event subscribers");
            }
        }
    }

    pub fn publish(&self, kind: EventKind) {
        self.publish_all([kind]);
    }

    /// Subscribes, first replaying up to `history` recent events; no event is missed or repeated
    /// between the replay and the live stream.
    pub fn subscribe(&self, history: usize) -> EventStream {
        self.try_subscribe(history, usize::MAX)
            .expect("an unbounded hub always takes a subscriber")
    }

    /// Subscribes like `subscribe` unless `max` subscribers are already listening.
    pub fn try_subscribe(&self, history: usize, max: usize) -> Option<EventStream> {
        let mut state = self.lock();
        // Streams whose client went away count no more (publishing also prunes them, but only when
        // it next runs).
        state
            .subscribers
            .retain(|subscriber| !subscriber.is_closed());
        if state.subscribers.len() >= max {
            return None;
        }
        let (sender, receiver) = mpsc::channel(SUBSCRIBER_QUEUE);
        let skip = state.history.len().saturating_sub(history);
        let replay = state
            .history
            .iter_mut()
            .skip(skip)
            .filter_map(Recent::published)
            .collect();
        state.subscribers.push(sender);
        Some(EventStream { replay, receiver })
    }

    pub fn subscriber_count(&self) -> usize {
        self.lock().subscribers.len()
    }

    pub fn dropped_subscribers(&self) -> u64 {
        self.lock().dropped_subscribers
    }
}

/// A subscriber's events: the replayed history, then live events until the hub drops it.
pub struct EventStream {
    replay: VecDeque<PublishedEvent>,
    receiver: mpsc::Receiver<PublishedEvent>,
}

impl futures_util::Stream for EventStream {
    type Item = PublishedEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(event) = self.replay.pop_front() {
            return Poll::Ready(Some(event));
        }
        self.receiver.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_shared::LogIndex;
    use futures_util::StreamExt;

    fn commit(index: u64) -> EventKind {
        EventKind::CommitAdvanced {
            commit_index: LogIndex(index),
        }
    }

    #[tokio::test]
    async fn subscriber_gets_history_then_live_events_in_order() {
        let hub = EventHub::new(NodeId(1), Clock::new());
        hub.publish_all([commit(1), commit(2), commit(3)]);
        let mut stream = hub.subscribe(2);
        hub.publish(commit(4));
        let mut seqs = Vec::new();
        for _ in 0..3 {
            seqs.push(stream.next().await.unwrap().seq);
        }
        assert_eq!(seqs, vec![2, 3, 4]);
    }

    /// Events published while nobody listened are serialized on replay, as they would have been live.
    #[tokio::test]
    async fn events_published_unheard_replay_as_their_json() {
        let hub = EventHub::new(NodeId(3), Clock::new());
        hub.publish_all([commit(7), commit(8)]);
        assert!(matches!(hub.lock().history[0], Recent::Unpublished(_)));
        let mut stream = hub.subscribe(10);
        let first = stream.next().await.unwrap();
        let event: Event = serde_json::from_str(first.json()).unwrap();
        assert_eq!(
            (event.node, event.seq, event.kind),
            (NodeId(3), 1, commit(7))
        );
        // A second subscriber replays the same text, serialized once.
        let mut again = hub.subscribe(10);
        let replayed = again.next().await.unwrap();
        assert_eq!(replayed.frame.as_ptr(), first.frame.as_ptr());
        assert_eq!(
            &first.frame[..],
            format!("data:{}\nid:1\n\n", first.json()).as_bytes()
        );
        hub.publish(commit(9));
        assert!(matches!(hub.lock().history[2], Recent::Published(_)));
    }

    #[tokio::test]
    async fn slow_subscriber_is_dropped_and_publishing_never_blocks() {
        let hub = EventHub::new(NodeId(1), Clock::new());
        let _slow = hub.subscribe(0);
        for index in 0..(SUBSCRIBER_QUEUE as u64 + 10) {
            hub.publish(commit(index));
        }
        assert_eq!(hub.subscriber_count(), 0);
        assert_eq!(hub.dropped_subscribers(), 1);
    }

    #[tokio::test]
    async fn subscribers_beyond_the_cap_are_refused_until_one_leaves() {
        let hub = EventHub::new(NodeId(1), Clock::new());
        let first = hub.try_subscribe(0, 2).expect("first");
        let _second = hub.try_subscribe(0, 2).expect("second");
        assert!(hub.try_subscribe(0, 2).is_none());
        drop(first);
        assert!(hub.try_subscribe(0, 2).is_some());
    }

    #[test]
    fn history_is_bounded() {
        let hub = EventHub::new(NodeId(1), Clock::new());
        for index in 0..(HISTORY_CAPACITY as u64 + 5) {
            hub.publish(commit(index));
        }
        assert_eq!(hub.lock().history.len(), HISTORY_CAPACITY);
        let first = hub.lock().history.front_mut().unwrap().published().unwrap();
        assert_eq!(first.seq, 6);
    }
}
