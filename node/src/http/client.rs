//! The client API: submitting messages and reading them back (`/v1/messages`).

use super::error::json;
use super::leader::{forward, is_forwarded, Forwarded};
use super::request::{parse_json, parse_query};
use super::{Api, ApiError, Call, LEADER_RETRY};
use crate::raft::{LogIndex, Payload, ReadError, Term};
use crate::runtime::{ProposeOutcome, Request};
use crate::validation;
use bytes::Bytes;
use flotilla_shared::api::{MessagesPage, SubmitRequest, SubmitResponse};
use std::time::Instant;
use tokio::sync::oneshot;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

pub(super) async fn submit(api: &Api, call: &Call, body: Bytes) -> Response {
    let received = Instant::now();
    let request: SubmitRequest = match parse_json(&body) {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    if let Err(rejected) = validation::check_submit(&request) {
        api.metrics.rejections.record("request", None, &rejected);
        return ApiError::rejected(&rejected).into_response();
    }
    // A retry of an applied request is answered at apply time (the state machine's unique request_id
    // reports the original); a lookup here first would cost every submit a disk read and a thread hop.
    let deadline = received + api.request_timeout;
    let leader_deadline = received + api.leader_wait;
    loop {
        let (reply, answer) = oneshot::channel();
        let payload = Payload::Message {
            text: request.text.clone(),
            request_id: request.request_id.clone(),
        };
        let proposal = Request::Propose {
            payload,
            received,
            reply,
        };
        if api.inbox.send(proposal).await.is_err() {
            return ApiError::shutting_down().into_response();
        }
        let outcome = match tokio::time::timeout_at(deadline.into(), answer).await {
            Ok(Ok(outcome)) => outcome,
            // The runtime let go of the waiter: it stopped, and the entry may be in the log.
            Ok(Err(_)) => {
                return ApiError::timeout(
                    "the node stopped before the outcome was known (retry with the same request_id)",
                )
                .into_response()
            }
            Err(_) => {
                return ApiError::timeout(format!(
                    "not committed within {} ms; the outcome is unknown (retry with the same request_id)",
                    api.request_timeout.as_millis()
                ))
                .into_response()
            }
        };
        let leader_known = match outcome {
            ProposeOutcome::Committed { index, term } => {
                let body = SubmitResponse {
                    index,
                    term,
                    leader_id: Some(api.id),
                    duplicate: false,
                };
                return api.with_leader_header(json(StatusCode::CREATED, &body), Some(api.id));
            }
            ProposeOutcome::Duplicate { index, term } => return duplicate(api, index, term),
            ProposeOutcome::Stopping => return ApiError::shutting_down().into_response(),
            ProposeOutcome::Overloaded { pending, limit } => {
                let error = ApiError::overloaded(format!(
                    "the leader holds {pending} entries not yet committed or on its disk \
                     (limit {limit}); the message was not appended, retry later"
                ));
                return api.with_leader_header(error.into_response(), Some(api.id));
            }
            // Certainly not applied: trying again cannot apply it twice.
            ProposeOutcome::Overwritten => true,
            ProposeOutcome::TransferInProgress { .. } => false,
            ProposeOutcome::NotLeader { leader } => match leader.filter(|_| !is_forwarded(call)) {
                Some(leader) if leader != api.id && !api.partition.contains(leader) => {
                    match forward(api, leader, call, Some(body.clone()), deadline).await {
                        Forwarded::Answer(response) => return response,
                        Forwarded::NotAppended | Forwarded::Unreachable => false,
                        Forwarded::Lost(why) => {
                            return ApiError::timeout(format!(
                                "forwarded to leader {leader} but no answer came ({why}); the outcome is unknown"
                            ))
                            .into_response()
                        }
                    }
                }
                _ => false,
            },
        };
        let now = Instant::now();
        if now >= deadline || (!leader_known && now >= leader_deadline) {
            let error = if leader_known {
                ApiError::timeout(
                    "the entry was replaced by a new leader's and retries ran out of time",
                )
            } else {
                api.no_leader()
            };
            return error.into_response();
        }
        tokio::time::sleep(LEADER_RETRY).await;
    }
}

fn duplicate(api: &Api, index: LogIndex, term: Term) -> Response {
    let leader_id = api.status.borrow().leader_id;
    let body = SubmitResponse {
        index,
        term,
        leader_id,
        duplicate: true,
    };
    api.with_leader_header(json(StatusCode::OK, &body), None)
}

struct PageQuery {
    from: LogIndex,
    limit: usize,
    stale: bool,
}

fn parse_page_query(query: &str) -> Result<PageQuery, ApiError> {
    let mut page = PageQuery {
        from: LogIndex(1),
        limit: 100,
        stale: false,
    };
    for (key, value) in parse_query(query)? {
        match key.as_str() {
            "from" => {
                page.from = LogIndex(value.parse().map_err(|_| {
                    ApiError::bad_query(format!(
                        "from must be a non-negative integer, got {value:?}"
                    ))
                })?)
            }
            "limit" => {
                page.limit = value
                    .parse()
                    .ok()
                    .filter(|limit| (1..=1000).contains(limit))
                    .ok_or_else(|| {
                        ApiError::bad_query(format!("limit must be 1 to 1000, got {value:?}"))
                    })?
            }
            "stale" => {
                page.stale = match value.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(ApiError::bad_query(format!(
                            "stale must be true or false, got {value:?}"
                        )))
                    }
                }
            }
            _ => {
                return Err(ApiError::bad_query(format!(
                    "unknown query parameter {key:?}"
                )))
            }
        }
    }
    Ok(page)
}

pub(super) async fn list_messages(api: &Api, call: &Call) -> Response {
    let page = match parse_page_query(&call.query) {
        Ok(page) => page,
        Err(error) => return error.into_response(),
    };
    let read_point = if page.stale {
        api.status.borrow().last_applied
    } else {
        match linearizable_read_point(api, call).await {
            Ok(index) => index,
            Err(response) => return response,
        }
    };
    let reader = api.reader.clone();
    // The window is [from, from+limit) as asked (index 0 holds no entry, but still counts in it).
    let last = LogIndex(page.from.0.saturating_add(page.limit as u64 - 1)).min(read_point);
    let from = page.from.max(LogIndex(1));
    let read = tokio::task::spawn_blocking(move || reader.messages(from, last, page.limit)).await;
    match read {
        Ok(Ok(entries)) => api.with_leader_header(
            json(
                StatusCode::OK,
                &MessagesPage {
                    commit_index: read_point,
                    entries,
                },
            ),
            None,
        ),
        Ok(Err(e)) => ApiError::storage(&e).into_response(),
        Err(e) => ApiError::internal(e.to_string()).into_response(),
    }
}

/// ReadIndex through the leader (thesis §6.4): this node's read point if it leads, else the leader
/// answers the whole read. Returns a response when the read was answered elsewhere or failed.
async fn linearizable_read_point(api: &Api, call: &Call) -> Result<LogIndex, Response> {
    let started = Instant::now();
    let deadline = started + api.request_timeout;
    let leader_deadline = started + api.leader_wait;
    loop {
        let (reply, answer) = oneshot::channel();
        if api.inbox.send(Request::Read { reply }).await.is_err() {
            return Err(ApiError::shutting_down().into_response());
        }
        match tokio::time::timeout_at(deadline.into(), answer).await {
            Ok(Ok(Ok(index))) => return Ok(index),
            Ok(Ok(Err(ReadError::NotLeader { leader }))) => {
                if let Some(leader) = leader
                    .filter(|&l| l != api.id && !is_forwarded(call) && !api.partition.contains(l))
                {
                    match forward(api, leader, call, None, deadline).await {
                        Forwarded::Answer(response) => return Err(response),
                        Forwarded::Lost(why) => {
                            return Err(ApiError::timeout(format!(
                                "read forwarded to leader {leader} got no answer: {why}"
                            ))
                            .into_response())
                        }
                        Forwarded::NotAppended | Forwarded::Unreachable => {}
                    }
                }
            }
            Ok(Err(_)) => return Err(ApiError::shutting_down().into_response()),
            Err(_) => {
                return Err(ApiError::timeout(
                    "leadership could not be confirmed in time for the read",
                )
                .into_response())
            }
        }
        if Instant::now() >= leader_deadline {
            return Err(api.no_leader().into_response());
        }
        tokio::time::sleep(LEADER_RETRY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_queries_are_percent_decoded() {
        let page = parse_page_query("from=%31%30&limit=5&st%61le=tru%65").unwrap();
        assert_eq!(page.from, LogIndex(10));
        assert_eq!(page.limit, 5);
        assert!(page.stale);
        // Decoded values are checked like any other: an encoded bad value names what it decoded to.
        let error = parse_page_query("limit=%30").err().unwrap();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert_eq!(error.code, "bad_query");
        assert_eq!(error.message, r#"limit must be 1 to 1000, got "0""#);
    }

    #[test]
    fn bad_page_queries_get_the_same_answers_as_before() {
        let message = |query| parse_page_query(query).err().unwrap().message;
        assert_eq!(
            message("from=-1"),
            r#"from must be a non-negative integer, got "-1""#
        );
        assert_eq!(
            message("limit=1001"),
            r#"limit must be 1 to 1000, got "1001""#
        );
        assert_eq!(
            message("stale=yes"),
            r#"stale must be true or false, got "yes""#
        );
        assert_eq!(message("page=2"), r#"unknown query parameter "page""#);
        let defaults = parse_page_query("").unwrap();
        assert_eq!(
            (defaults.from, defaults.limit, defaults.stale),
            (LogIndex(1), 100, false)
        );
    }
}
