//! `/v1/events`: the node's events as Server-Sent Events, after a replay of recent ones.

use super::request::parse_query;
use super::{Api, ApiError, Call};
use futures_util::StreamExt;
use std::convert::Infallible;
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
    let stream = stream.map(|event| {
        Ok::<_, Infallible>(
            warp::sse::Event::default()
                .id(event.seq.to_string())
                .data(&*event.json),
        )
    });
    Ok(warp::sse::reply(warp::sse::keep_alive().stream(stream)).into_response())
}
