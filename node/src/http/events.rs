//! `/v1/events`: the node's events as Server-Sent Events, after a replay of recent ones.

use super::request::parse_query;
use super::{Api, ApiError, Call};
use crate::events::EventStream;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use warp::http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use warp::reply::Response;
use warp::Reply;

/// Most recent events a new `/v1/events` subscriber may ask to replay.
const MAX_HISTORY: usize = crate::events::HISTORY_CAPACITY;

pub(super) fn events(api: &Api, call: &Call) -> Response {
    match subscribe(api, call) {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

fn subscribe(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let mut history = 0;
    for (key, value) in parse_query(&call.query)? {
        match (key.as_str(), value.parse::<usize>()) {
            ("history", Ok(count)) => history = count.min(MAX_HISTORY),
            _ => {
                return Err(ApiError::bad_query(format!(
                    "expected history=<count>, got {key}={value}"
                )))
            }
        }
    }
    let Some(stream) = api.events.try_subscribe(history, api.max_event_streams) else {
        return Err(ApiError::too_many_streams(format!(
            "this node serves at most {} event streams at once (--max-event-streams)",
            api.max_event_streams
        )));
    };
    let mut response = warp::reply::stream(SseFrames::new(stream, KEEP_ALIVE)).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// A comment line goes out after this long without an event, so that proxies and clients see the
/// stream alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Most bytes of events written as one body chunk.
const MAX_CHUNK: usize = 64 * 1024;

/// The subscriber's events as body chunks: every event already waiting goes out in one chunk (one
/// write, not one per event: a busy leader publishes thousands a second), each in the frame it was
/// serialized to once for every subscriber.
struct SseFrames {
    events: EventStream,
    keep_alive: Duration,
    idle: Pin<Box<Sleep>>,
}

impl SseFrames {
    fn new(events: EventStream, keep_alive: Duration) -> Self {
        Self {
            events,
            keep_alive,
            idle: Box::pin(tokio::time::sleep(keep_alive)),
        }
    }
}

impl Stream for SseFrames {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let mut chunk = BytesMut::new();
        let mut ended = false;
        while chunk.len() < MAX_CHUNK {
            match this.events.poll_next_unpin(cx) {
                Poll::Ready(Some(event)) => chunk.extend_from_slice(&event.frame),
                Poll::Ready(None) => {
                    ended = true;
                    break;
                }
                Poll::Pending => break,
            }
        }
        if !chunk.is_empty() {
            this.idle.as_mut().reset(Instant::now() + this.keep_alive);
            return Poll::Ready(Some(Ok(chunk.freeze())));
        }
        if ended {
            return Poll::Ready(None);
        }
        if this.idle.as_mut().poll(cx).is_ready() {
            this.idle.as_mut().reset(Instant::now() + this.keep_alive);
            return Poll::Ready(Some(Ok(Bytes::from_static(b":\n\n"))));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::events::EventHub;
    use flotilla_shared::event::EventKind;
    use flotilla_shared::{LogIndex, NodeId};

    fn commit(index: u64) -> EventKind {
        EventKind::CommitAdvanced {
            commit_index: LogIndex(index),
        }
    }

    async fn next_text(frames: &mut SseFrames) -> String {
        let chunk = frames.next().await.expect("a chunk").expect("infallible");
        String::from_utf8(chunk.to_vec()).expect("UTF-8")
    }

    #[tokio::test]
    async fn waiting_events_go_out_as_one_chunk_and_an_idle_stream_says_it_is_alive() {
        let hub = EventHub::new(NodeId(1), Clock::new());
        hub.publish_all([commit(1), commit(2), commit(3)]);
        let mut frames = SseFrames::new(hub.subscribe(10), Duration::from_millis(50));
        let text = next_text(&mut frames).await;
        let ids: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("id:")).collect();
        assert_eq!(
            ids,
            ["1", "2", "3"],
            "three events in one chunk, in order: {text:?}"
        );
        assert!(
            text.starts_with("data:{") && text.ends_with("\n\n"),
            "{text:?}"
        );

        assert_eq!(
            next_text(&mut frames).await,
            ":\n\n",
            "a keep-alive comment"
        );
        hub.publish(commit(4));
        let text = next_text(&mut frames).await;
        assert!(
            text.contains("\"commit_index\":4") && text.ends_with("id:4\n\n"),
            "{text:?}"
        );
    }

    #[tokio::test]
    async fn a_dropped_subscriber_gets_what_was_queued_then_the_end() {
        let hub = EventHub::new(NodeId(1), Clock::new());
        let mut frames = SseFrames::new(hub.subscribe(0), Duration::from_secs(60));
        hub.publish(commit(1));
        drop(hub);
        assert!(next_text(&mut frames).await.contains("id:1"));
        assert!(
            frames.next().await.is_none(),
            "the stream ends with the hub"
        );
    }
}
