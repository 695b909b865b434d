//! The HTTP API (warp): the client API, admin API, Raft RPC, SSE events and metrics.
//!
//! One catch-all filter hands every request to [`route`], so that every answer, errors included, is
//! built in one place and is JSON `{"error","message"}` with the right status.

// `Err(Response)` is the early answer of a handler step; it is built once per request, so boxing it
// would buy nothing.
#![allow(clippy::result_large_err)]

use crate::events::EventHub;
use crate::guard::{constant_time_eq, AllowedOrigins};
use crate::metrics::Metrics;
use crate::raft::{LogIndex, NodeId, Payload, ReadError, TransferError};
use crate::runtime::{ProposeOutcome, Request};
use crate::storage::StorageError;
use crate::transport::{
    OrderGate, Partition, ADVERTISE_HEADER, CLUSTER_TOKEN_HEADER, STREAM_HEADER,
};
use crate::validation::{self, Reason, Rejected};
use bytes::{Buf, Bytes};
use flotilla_shared::api::{
    ErrorBody, MessageEntry, MessagesPage, PartitionRequest, Status, SubmitRequest, SubmitResponse,
    TimingRequest, TransferRequest, LEADER_HEADER,
};
use flotilla_shared::rpc::Envelope;
use futures_util::{FutureExt as _, Stream, StreamExt};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use warp::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

/// Marks a request one node forwarded to another, so it is never forwarded twice.
pub const FORWARDED_HEADER: &str = "x-flotilla-forwarded";
/// Raft RPC bodies are bounded too (appends are capped well below this by the core's config).
const RAFT_BODY_LIMIT: usize = 64 << 20;
/// Longest a Raft request waits for the core's durable reply.
const RAFT_REPLY_WAIT: Duration = Duration::from_secs(2);
/// Pause between attempts while no leader is known.
const LEADER_RETRY: Duration = Duration::from_millis(15);
/// Most recent events a new `/v1/events` subscriber may ask to replay.
const MAX_HISTORY: usize = crate::events::HISTORY_CAPACITY;

/// Reads of the state machine, served from a storage reader off the runtime's task.
pub trait StateReader: Send + Sync + 'static {
    fn messages(
        &self,
        from: LogIndex,
        up_to: LogIndex,
        limit: usize,
    ) -> Result<Vec<MessageEntry>, StorageError>;
}

pub struct Api {
    pub id: NodeId,
    pub peers: BTreeMap<NodeId, String>,
    /// `X-Raft-Leader` for each node.
    pub leader_hints: LeaderHints,
    /// Requests naming another `Origin` are refused: they come from web pages.
    pub origins: AllowedOrigins,
    pub inbox: mpsc::Sender<Request>,
    pub status: watch::Receiver<Arc<Status>>,
    pub events: EventHub,
    pub metrics: Arc<Metrics>,
    pub partition: Arc<Partition>,
    pub order: OrderGate,
    pub reader: Arc<dyn StateReader>,
    pub client: reqwest::Client,
    pub admin_token: Option<String>,
    pub cluster_token: Option<String>,
    pub max_body: usize,
    /// How long a request body may take to arrive once the handler reads it.
    pub read_timeout: Duration,
    /// Most `/v1/events` streams open at once.
    pub max_event_streams: usize,
    /// How long a client request may take before it is answered `504 timeout`.
    pub request_timeout: Duration,
    /// How long to wait for a leader before answering `503 no_leader`.
    pub leader_wait: Duration,
}

/// The warp filter serving every route.
pub fn routes(
    api: Arc<Api>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::any()
        .map(move || api.clone())
        .and(warp::method())
        .and(warp::path::full())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(
            |api: Arc<Api>,
             method: Method,
             path: warp::path::FullPath,
             query: String,
             headers,
             body| async move {
                let call = Call {
                    method,
                    path: path.as_str().to_owned(),
                    query,
                    headers,
                };
                route(&api, call, body).await
            },
        )
}

struct Call {
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
}

async fn route<S, B>(api: &Api, call: Call, body: S) -> Response
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    if let Err(response) = check_origin(api, &call.headers) {
        return body_left_unread(&call, response);
    }
    let segments: Vec<&str> = call.path.trim_matches('/').split('/').collect();
    let method = call.method.clone();
    match (method, segments.as_slice()) {
        (Method::POST, ["v1", "messages"]) => match read_body(api, &call, body, api.max_body).await
        {
            Ok(bytes) => submit(api, &call, bytes).await,
            Err(response) => response,
        },
        (Method::GET, ["v1", "messages"]) => list_messages(api, &call).await,
        (Method::GET, ["v1", "status"]) => json(StatusCode::OK, &*api.status.borrow().clone()),
        (Method::GET, ["v1", "events"]) => events(api, &call),
        (Method::GET, ["metrics"]) => {
            let status = api.status.borrow().clone();
            let mut response = api.metrics.render(&status).into_response();
            response.headers_mut().insert(
                "content-type",
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            response
        }
        (method, ["v1", "admin", ..]) => {
            if let Err(response) = check_admin(api, &call.headers) {
                return body_left_unread(&call, response);
            }
            let body = match read_body(api, &call, body, api.max_body).await {
                Ok(bytes) => bytes,
                Err(response) => return response,
            };
            match (method, &segments[2..]) {
                (Method::POST, ["partition"]) => set_partition(api, &body).await,
                (Method::DELETE, ["partition"]) => apply_partition(api, BTreeSet::new()).await,
                (Method::POST, ["transfer-leadership"]) => transfer(api, &call, body).await,
                (Method::PUT, ["timing"]) => set_timing(api, &body).await,
                (_, ["partition" | "transfer-leadership" | "timing"]) => method_not_allowed(&call),
                _ => not_found(&call),
            }
        }
        (Method::POST, ["raft", name]) => {
            // Checked before a byte of the body is read: without the token, a large body costs nothing.
            if let Err(response) = check_cluster_token(api, &call.headers) {
                return body_left_unread(&call, response);
            }
            if let Some(hint) = call.headers.get(ADVERTISE_HEADER) {
                api.leader_hints.learn(hint, &api.peers);
            }
            match read_body(api, &call, body, RAFT_BODY_LIMIT).await {
                Ok(bytes) => raft_rpc(api, &call, name, &bytes).await,
                Err(response) => response,
            }
        }
        (_, ["v1", "messages" | "status" | "events"] | ["metrics"] | ["raft", _]) => {
            method_not_allowed(&call)
        }
        _ => not_found(&call),
    }
}

// ---------------------------------------------------------------------------------------------
// Answers

pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    json(
        status,
        &ErrorBody {
            error: code.into(),
            message: message.into(),
        },
    )
}

fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

fn not_found(call: &Call) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {} {}", call.method, call.path),
    )
}

fn method_not_allowed(call: &Call) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not supported on {}", call.method, call.path),
    )
}

fn storage_failed(failure: &StorageError) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "storage_error",
        failure.to_string(),
    )
}

/// Reads a whole body of at most `limit` bytes, which must arrive within `api.read_timeout`. A declared
/// length over the limit is refused before anything is read.
async fn read_body<S, B>(api: &Api, call: &Call, body: S, limit: usize) -> Result<Bytes, Response>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    read_whole_body(api, call, body, limit)
        .await
        .map_err(|response| body_left_unread(call, response))
}

async fn read_whole_body<S, B>(
    api: &Api,
    call: &Call,
    mut body: S,
    limit: usize,
) -> Result<Bytes, Response>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body is over the limit of {limit} bytes"),
        )
    };
    let declared = call
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
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
                        return Err(error(
                            StatusCode::REQUEST_TIMEOUT,
                            "request_timeout",
                            format!(
                                "the request body did not arrive within {} ms",
                                api.read_timeout.as_millis()
                            ),
                        ))
                    }
                }
            }
        };
        let Some(chunk) = next else { break };
        let mut chunk = chunk.map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("could not read the request body: {e}"),
            )
        })?;
        if collected.len() + chunk.remaining() > limit {
            return Err(too_large());
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
fn body_left_unread(call: &Call, mut response: Response) -> Response {
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
fn check_origin(api: &Api, headers: &HeaderMap) -> Result<(), Response> {
    match headers.get(header::ORIGIN) {
        Some(origin) if !api.origins.allows(origin.as_bytes()) => Err(error(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "requests from web pages are refused: this node serves only its own clients and peers",
        )),
        _ => Ok(()),
    }
}

/// With a cluster token set, Raft RPCs must carry it.
fn check_cluster_token(api: &Api, headers: &HeaderMap) -> Result<(), Response> {
    let Some(expected) = &api.cluster_token else {
        return Ok(());
    };
    match headers.get(CLUSTER_TOKEN_HEADER) {
        None => Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing cluster token",
        )),
        Some(given) if !constant_time_eq(given.as_bytes(), expected.as_bytes()) => Err(error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "wrong cluster token",
        )),
        Some(_) => Ok(()),
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("invalid JSON body: {e}"),
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Leader discovery and forwarding

/// `<id> <advertise-url>`: the `X-Raft-Leader` value naming a node, which peers also send each other.
pub fn advertise_hint(id: NodeId, advertise: &str) -> String {
    format!("{id} {advertise}")
}

/// Longest advertise hint a peer may send.
const MAX_HINT_LEN: usize = 512;

/// The `X-Raft-Leader` value naming each node. Peers' advertise URLs are learned from the hints their
/// Raft RPCs carry; until one arrives, the peer address stands in.
pub struct LeaderHints(RwLock<BTreeMap<NodeId, HeaderValue>>);

impl LeaderHints {
    pub fn new(id: NodeId, advertise: &str, peers: &BTreeMap<NodeId, String>) -> Self {
        let urls = peers
            .iter()
            .map(|(&peer, addr)| (peer, format!("http://{addr}")))
            .chain([(id, advertise.to_string())]);
        let hints = urls
            .filter_map(|(node, url)| {
                Some((
                    node,
                    HeaderValue::from_str(&advertise_hint(node, &url)).ok()?,
                ))
            })
            .collect();
        Self(RwLock::new(hints))
    }

    pub fn get(&self, node: NodeId) -> Option<HeaderValue> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&node)
            .cloned()
    }

    /// Takes a peer's own `<id> <url>` from an authenticated Raft RPC. Only a known peer's, and only a
    /// plain URL; the map is written only when the hint changed (no allocation otherwise).
    pub fn learn(&self, hint: &HeaderValue, peers: &BTreeMap<NodeId, String>) {
        let bytes = hint.as_bytes();
        if bytes.len() > MAX_HINT_LEN {
            return;
        }
        let Some(space) = bytes.iter().position(|&b| b == b' ') else {
            return;
        };
        let (id, url) = (&bytes[..space], &bytes[space + 1..]);
        let Some(id) = std::str::from_utf8(id)
            .ok()
            .and_then(|id| id.parse::<u64>().ok())
            .map(NodeId)
        else {
            return;
        };
        let plain_url = (url.starts_with(b"http://") || url.starts_with(b"https://"))
            && url.iter().all(|&b| b.is_ascii_graphic());
        if !peers.contains_key(&id) || !plain_url {
            return;
        }
        let known = self.0.read().unwrap_or_else(PoisonError::into_inner);
        if known.get(&id).is_some_and(|value| value == hint) {
            return;
        }
        drop(known);
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, hint.clone());
    }
}

impl Api {
    fn with_leader_header(&self, mut response: Response, leader: Option<NodeId>) -> Response {
        let hint = leader.or_else(|| self.status.borrow().leader_id);
        if let Some(value) = hint.and_then(|leader| self.leader_hints.get(leader)) {
            response.headers_mut().insert(LEADER_HEADER, value);
        }
        response
    }
}

enum Forwarded {
    Answer(Response),
    /// The leader answered that it certainly did not append the request: safe to try again.
    NotAppended,
    /// The leader could not be reached before anything was sent: safe to try again.
    Unreachable,
    /// The request may have reached the leader, but no answer came.
    Lost(String),
}

async fn forward(
    api: &Api,
    leader: NodeId,
    call: &Call,
    body: Option<Bytes>,
    deadline: Instant,
) -> Forwarded {
    let Some(addr) = api.peers.get(&leader) else {
        return Forwarded::Unreachable;
    };
    let mut url = format!("http://{addr}{}", call.path);
    if !call.query.is_empty() {
        url.push('?');
        url.push_str(&call.query);
    }
    let timeout = deadline.saturating_duration_since(Instant::now());
    let mut request = api
        .client
        .request(call.method.clone(), url)
        .timeout(timeout.max(Duration::from_millis(1)))
        .header(FORWARDED_HEADER, api.id.to_string());
    for name in ["content-type", "authorization"] {
        if let Some(value) = call.headers.get(name) {
            request = request.header(name, value);
        }
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    match request.send().await {
        Ok(answer) => {
            let status = answer.status();
            let content_type = answer.headers().get("content-type").cloned();
            // The leader names itself with its own advertise URL.
            let leader_hint = answer.headers().get(LEADER_HEADER).cloned();
            match answer.bytes().await {
                Ok(bytes) if status == StatusCode::SERVICE_UNAVAILABLE && not_appended(&bytes) => {
                    Forwarded::NotAppended
                }
                Ok(bytes) => {
                    let mut response = Response::new(bytes.into());
                    *response.status_mut() = status;
                    if let Some(content_type) = content_type {
                        response.headers_mut().insert("content-type", content_type);
                    }
                    match leader_hint {
                        Some(hint) => {
                            response.headers_mut().insert(LEADER_HEADER, hint);
                            Forwarded::Answer(response)
                        }
                        None => Forwarded::Answer(api.with_leader_header(response, Some(leader))),
                    }
                }
                Err(e) => Forwarded::Lost(e.to_string()),
            }
        }
        Err(e) if e.is_connect() => Forwarded::Unreachable,
        Err(e) => Forwarded::Lost(e.to_string()),
    }
}

/// Error codes a node answers only for a request it certainly did not append (contract: `503` means
/// not appended). Any other answer is passed on, never retried: its write may be in the log.
const NOT_APPENDED_CODES: [&str; 2] = ["no_leader", "shutting_down"];

fn not_appended(body: &[u8]) -> bool {
    serde_json::from_slice::<ErrorBody>(body)
        .is_ok_and(|answer| NOT_APPENDED_CODES.contains(&answer.error.as_str()))
}

fn is_forwarded(call: &Call) -> bool {
    call.headers.contains_key(FORWARDED_HEADER)
}

fn no_leader(api: &Api) -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "no_leader",
        format!(
            "no leader reachable from node {} within {} ms",
            api.id,
            api.leader_wait.as_millis()
        ),
    )
}

/// Only for requests that certainly did not reach the log.
fn stopping() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "shutting_down",
        "the node is stopping",
    )
}

fn timed_out(message: impl Into<String>) -> Response {
    error(StatusCode::GATEWAY_TIMEOUT, "timeout", message)
}

// ---------------------------------------------------------------------------------------------
// Client API

async fn submit(api: &Api, call: &Call, body: Bytes) -> Response {
    let received = Instant::now();
    let request: SubmitRequest = match parse_json(&body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    if let Err(rejected) = validation::check_submit(&request) {
        api.metrics.rejections.record("request", None, &rejected);
        return rejection(&rejected);
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
            return stopping();
        }
        let outcome = match tokio::time::timeout_at(deadline.into(), answer).await {
            Ok(Ok(outcome)) => outcome,
            // The runtime let go of the waiter: it stopped, and the entry may be in the log.
            Ok(Err(_)) => {
                return timed_out(
                    "the node stopped before the outcome was known (retry with the same request_id)",
                )
            }
            Err(_) => {
                return timed_out(format!(
                    "not committed within {} ms; the outcome is unknown (retry with the same request_id)",
                    api.request_timeout.as_millis()
                ))
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
            ProposeOutcome::Stopping => return stopping(),
            ProposeOutcome::Overloaded { pending, limit } => {
                return api.with_leader_header(
                    error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "overloaded",
                        format!(
                            "the leader holds {pending} entries not yet committed or on its disk \
                             (limit {limit}); the message was not appended, retry later"
                        ),
                    ),
                    Some(api.id),
                )
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
                            return timed_out(format!(
                                "forwarded to leader {leader} but no answer came ({why}); the outcome is unknown"
                            ))
                        }
                    }
                }
                _ => false,
            },
        };
        let now = Instant::now();
        if now >= deadline || (!leader_known && now >= leader_deadline) {
            return if leader_known {
                timed_out("the entry was replaced by a new leader's and retries ran out of time")
            } else {
                no_leader(api)
            };
        }
        tokio::time::sleep(LEADER_RETRY).await;
    }
}

fn duplicate(api: &Api, index: LogIndex, term: crate::raft::Term) -> Response {
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

fn parse_page_query(query: &str) -> Result<PageQuery, Response> {
    let mut page = PageQuery {
        from: LogIndex(1),
        limit: 100,
        stale: false,
    };
    let bad = |message: String| error(StatusCode::BAD_REQUEST, "bad_query", message);
    for (key, value) in parse_query(query) {
        match key.as_str() {
            "from" => {
                page.from = LogIndex(value.parse().map_err(|_| {
                    bad(format!(
                        "from must be a non-negative integer, got {value:?}"
                    ))
                })?)
            }
            "limit" => {
                page.limit = value
                    .parse()
                    .ok()
                    .filter(|limit| (1..=1000).contains(limit))
                    .ok_or_else(|| bad(format!("limit must be 1 to 1000, got {value:?}")))?
            }
            "stale" => {
                page.stale = match value.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(bad(format!("stale must be true or false, got {value:?}"))),
                }
            }
            _ => return Err(bad(format!("unknown query parameter {key:?}"))),
        }
    }
    Ok(page)
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

async fn list_messages(api: &Api, call: &Call) -> Response {
    let page = match parse_page_query(&call.query) {
        Ok(page) => page,
        Err(response) => return response,
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
        Ok(Err(e)) => storage_failed(&e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
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
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the node is stopping",
            ));
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
                            return Err(timed_out(format!(
                                "read forwarded to leader {leader} got no answer: {why}"
                            )))
                        }
                        Forwarded::NotAppended | Forwarded::Unreachable => {}
                    }
                }
            }
            Ok(Err(_)) => {
                return Err(error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "shutting_down",
                    "the node is stopping",
                ))
            }
            Err(_) => {
                return Err(timed_out(
                    "leadership could not be confirmed in time for the read",
                ))
            }
        }
        if Instant::now() >= leader_deadline {
            return Err(no_leader(api));
        }
        tokio::time::sleep(LEADER_RETRY).await;
    }
}

fn events(api: &Api, call: &Call) -> Response {
    let mut history = 0;
    for (key, value) in parse_query(&call.query) {
        match (key.as_str(), value.parse::<usize>()) {
            ("history", Ok(count)) => history = count.min(MAX_HISTORY),
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_query",
                    format!("expected history=<count>, got {key}={value}"),
                )
            }
        }
    }
    let Some(stream) = api.events.try_subscribe(history, api.max_event_streams) else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            format!(
                "this node serves at most {} event streams at once (--max-event-streams)",
                api.max_event_streams
            ),
        );
    };
    let stream = stream.map(|event| {
        Ok::<_, Infallible>(
            warp::sse::Event::default()
                .id(event.seq.to_string())
                .data(&*event.json),
        )
    });
    warp::sse::reply(warp::sse::keep_alive().stream(stream)).into_response()
}

// ---------------------------------------------------------------------------------------------
// Admin API

fn check_admin(api: &Api, headers: &HeaderMap) -> Result<(), Response> {
    let Some(expected) = &api.admin_token else {
        return Err(error(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "the admin API is disabled: start the node with --admin-token",
        ));
    };
    let Some(given) = headers.get("authorization") else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing Authorization: Bearer <token>",
        ));
    };
    let given = given.to_str().unwrap_or_default();
    match given.strip_prefix("Bearer ") {
        Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "wrong admin token",
        )),
        None => Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authorization must be: Bearer <token>",
        )),
    }
}

async fn ask<T>(
    api: &Api,
    make: impl FnOnce(oneshot::Sender<T>) -> Request,
) -> Result<T, Response> {
    let (reply, answer) = oneshot::channel();
    let stopping = || {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the node is stopping",
        )
    };
    api.inbox.send(make(reply)).await.map_err(|_| stopping())?;
    answer.await.map_err(|_| stopping())
}

async fn set_partition(api: &Api, body: &[u8]) -> Response {
    let request: PartitionRequest = match parse_json(body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    let mut peers = BTreeSet::new();
    for id in request.isolate_from {
        if id == api.id {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_peer",
                format!("node {id} cannot isolate itself"),
            );
        }
        if !api.peers.contains_key(&id) {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_peer",
                format!("node {id} is not a peer of node {}", api.id),
            );
        }
        peers.insert(id);
    }
    apply_partition(api, peers).await
}

async fn apply_partition(api: &Api, isolate_from: BTreeSet<NodeId>) -> Response {
    let ids: Vec<NodeId> = isolate_from.iter().copied().collect();
    match ask(api, |reply| Request::SetPartition {
        isolate_from,
        reply,
    })
    .await
    {
        Ok(()) => json(StatusCode::OK, &HashMap::from([("isolated_from", ids)])),
        Err(response) => response,
    }
}

async fn transfer(api: &Api, call: &Call, body: Bytes) -> Response {
    let request: TransferRequest = match parse_json(&body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    let to = request.to;
    match ask(api, |reply| Request::Transfer { to, reply }).await {
        Ok(Ok(())) => json(
            StatusCode::ACCEPTED,
            &HashMap::from([("transferring_to", to)]),
        ),
        Ok(Err(TransferError::UnknownNode(id))) => error(
            StatusCode::BAD_REQUEST,
            "bad_peer",
            format!("node {id} is not a member of this cluster"),
        ),
        Ok(Err(TransferError::NotLeader { leader })) => {
            if let Some(leader) = leader.filter(|&l| l != api.id && !is_forwarded(call)) {
                let deadline = Instant::now() + api.request_timeout;
                if let Forwarded::Answer(response) =
                    forward(api, leader, call, Some(body), deadline).await
                {
                    return response;
                }
            }
            api.with_leader_header(
                error(
                    StatusCode::CONFLICT,
                    "not_leader",
                    format!("node {} is not the leader and could not reach one", api.id),
                ),
                leader,
            )
        }
        Err(response) => response,
    }
}

async fn set_timing(api: &Api, body: &[u8]) -> Response {
    let request: TimingRequest = match parse_json(body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    if let Err(message) = request.validate() {
        return error(StatusCode::BAD_REQUEST, "bad_timing", message);
    }
    let [min, max] = request.election_timeout_ms;
    let heartbeat_ms = request.heartbeat_ms;
    let result = ask(api, |reply| Request::SetTiming {
        heartbeat_ms,
        election_timeout_ms: (min, max),
        reply,
    })
    .await;
    match result {
        Ok(Ok(())) => json(StatusCode::OK, &request),
        Ok(Err(message)) => error(StatusCode::BAD_REQUEST, "bad_timing", message),
        Err(response) => response,
    }
}

// ---------------------------------------------------------------------------------------------
// Raft RPC

async fn raft_rpc(api: &Api, call: &Call, name: &str, body: &[u8]) -> Response {
    let envelope: Envelope = match serde_json::from_slice(body) {
        Ok(envelope) => envelope,
        Err(e) => {
            let rejected = Rejected::new(Reason::BadJson, format!("invalid Raft message: {e}"));
            return refuse(api, None, rejected);
        }
    };
    let from = envelope.from;
    if envelope.message.name() != name {
        let rejected = Rejected::new(
            Reason::WrongRoute,
            format!(
                "a {} message was sent to /raft/{name}",
                envelope.message.name()
            ),
        );
        return refuse(api, Some(from), rejected);
    }
    // Checked before anything else sees it: a message a correct peer cannot have sent is refused whole.
    if let Err(rejected) =
        validation::check_envelope(&envelope, api.id, |id| api.peers.contains_key(&id))
    {
        return refuse(api, Some(from), rejected);
    }
    if api.partition.contains(from) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "partitioned",
            format!("node {} isolates itself from node {from}", api.id),
        );
    }
    let stream = call
        .headers
        .get(STREAM_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(OrderGate::parse);
    if let Some((incarnation, seq)) = stream {
        api.order.wait_turn(from, incarnation, seq).await;
    }
    let (reply, answer) = oneshot::channel();
    let step = Request::Step {
        envelope,
        reply: Some(reply),
    };
    let sent = api.inbox.send(step).await;
    if let Some((incarnation, seq)) = stream {
        api.order.done(from, incarnation, seq);
    }
    if sent.is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the node is stopping",
        );
    }
    match tokio::time::timeout(RAFT_REPLY_WAIT, answer).await {
        Ok(Ok(Ok(Some(reply)))) => json(StatusCode::OK, &reply),
        // Counted and logged where the core refused it (the runtime).
        Ok(Ok(Err(rejected))) => rejection(&rejected),
        _ => StatusCode::NO_CONTENT.into_response(),
    }
}

/// Counts and (rate-limited) logs a Raft message refused here, and answers it.
fn refuse(api: &Api, from: Option<NodeId>, rejected: Rejected) -> Response {
    api.metrics
        .rejections
        .record("raft message", from, &rejected);
    rejection(&rejected)
}

/// `400` for input wrong in itself, `409` for input wrong for this node's state.
fn rejection(rejected: &Rejected) -> Response {
    let status = if rejected.reason.is_malformed() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::CONFLICT
    };
    error(status, rejected.reason.code(), rejected.detail.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_advertise_urls_replace_their_addresses_in_leader_hints() {
        let peers = BTreeMap::from([(NodeId(2), "node2:5000".to_string())]);
        let hints = LeaderHints::new(NodeId(1), "http://127.0.0.1:6500", &peers);
        let hint = |id| {
            hints
                .get(NodeId(id))
                .map(|v| v.to_str().unwrap().to_string())
        };
        assert_eq!(hint(1).as_deref(), Some("1 http://127.0.0.1:6500"));
        assert_eq!(hint(2).as_deref(), Some("2 http://node2:5000"));

        hints.learn(&HeaderValue::from_static("2 http://127.0.0.1:6501"), &peers);
        assert_eq!(hint(2).as_deref(), Some("2 http://127.0.0.1:6501"));
        // Unknown nodes, this node itself, and anything but a plain URL are ignored.
        for bad in [
            "3 http://127.0.0.1:6502",
            "1 http://evil.example",
            "2 javascript:alert(1)",
            "2 http://a b",
            "x http://127.0.0.1:1",
            "2",
        ] {
            hints.learn(&HeaderValue::from_str(bad).unwrap(), &peers);
        }
        assert_eq!(hint(1).as_deref(), Some("1 http://127.0.0.1:6500"));
        assert_eq!(hint(2).as_deref(), Some("2 http://127.0.0.1:6501"));
        assert_eq!(hint(3), None);
    }

    #[test]
    fn only_answers_that_say_not_appended_are_retried() {
        let body = |code: &str| format!(r#"{{"error":"{code}","message":"m"}}"#).into_bytes();
        assert!(not_appended(&body("no_leader")));
        assert!(not_appended(&body("shutting_down")));
        assert!(!not_appended(&body("overloaded")));
        assert!(!not_appended(&body("timeout")));
        assert!(!not_appended(b"not json"));
    }
}
