//! Shared request plumbing: reading bodies within their limits and deadline, the Origin and cluster
//! token guards, and parsing JSON bodies and query strings.

use super::{Api, ApiError, Call};
use crate::guard::constant_time_eq;
use crate::transport::CLUSTER_TOKEN_HEADER;
use bytes::{Buf, Bytes};
use futures_util::{FutureExt as _, Stream, StreamExt};
use warp::http::{header, HeaderMap, HeaderValue};
use warp::reply::Response;

/// Reads a whole body of at most `limit` bytes, which must arrive within `api.read_timeout`. A declared
/// length over the limit is refused before anything is read.
pub async fn read_body<S, B>(
    api: &Api,
    call: &Call,
    body: S,
    limit: usize,
) -> Result<Bytes, Response>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    read_whole_body(api, call, body, limit)
        .await
        .map_err(|error| body_left_unread(call, error))
}

async fn read_whole_body<S, B>(
    api: &Api,
    call: &Call,
    mut body: S,
    limit: usize,
) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let declared = call
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::payload_too_large(limit));
    }
    let mut collected = Vec::new();
    // The deadline's timer is set only if the body is not already here (small bodies arrive with
    // their headers).
    let mut deadline = None;
    loop {
        let next = match body.next().now_or_never() {
            Some(next) => next,
            None => {
                let deadline =
                    *deadline.get_or_insert_with(|| tokio::time::Instant::now() + api.read_timeout);
                match tokio::time::timeout_at(deadline, body.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        return Err(ApiError::request_timeout(format!(
                            "the request body did not arrive within {} ms",
                            api.read_timeout.as_millis()
                        )))
                    }
                }
            }
        };
        let Some(chunk) = next else { break };
        let mut chunk = chunk
            .map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))?;
        if collected.len() + chunk.remaining() > limit {
            return Err(ApiError::payload_too_large(limit));
        }
        while chunk.has_remaining() {
            let piece = chunk.chunk();
            collected.extend_from_slice(piece);
            let advanced = piece.len();
            chunk.advance(advanced);
        }
    }
    Ok(Bytes::from(collected))
}

/// An answer given before the request's body was read ends the connection: what is left of the body
/// would otherwise be read as the next request. Saying so lets the client open a new connection
/// instead of sending its next request on one that is closing.
pub fn body_left_unread(call: &Call, answer: impl warp::Reply) -> Response {
    let mut response = answer.into_response();
    let has_body = call.headers.contains_key(header::TRANSFER_ENCODING)
        || call
            .headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0");
    if has_body {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Refuses requests from web pages: a browser names the page's origin in `Origin`, and the node serves
/// no pages of its own (see `AllowedOrigins`).
pub fn check_origin(api: &Api, headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.get(header::ORIGIN) {
        Some(origin) if !api.origins.allows(origin.as_bytes()) => Err(ApiError::cross_origin()),
        _ => Ok(()),
    }
}

/// With a cluster token set, Raft RPCs must carry it.
pub fn check_cluster_token(api: &Api, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &api.cluster_token else {
        return Ok(());
    };
    match headers.get(CLUSTER_TOKEN_HEADER) {
        None => Err(ApiError::unauthorized("missing cluster token")),
        Some(given) if !constant_time_eq(given.as_bytes(), expected.as_bytes()) => {
            Err(ApiError::forbidden("wrong cluster token"))
        }
        Some(_) => Ok(()),
    }
}

pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// The query string's `key=value` pairs in order, percent-decoded (`+` is a space).
pub fn parse_query(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str(query)
        .map_err(|e| ApiError::bad_query(format!("invalid query string: {e}")))
}
