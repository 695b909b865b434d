//! The HTTP API (warp): the client API, admin API, Raft RPC, SSE events and metrics.
//!
//! Owns the routes and every answer they give: one catch-all filter hands each request to [`route`],
//! so that every answer, errors included, is built in one place ([`ApiError`] for errors, JSON
//! `{"error","message"}` with the right status). It may not touch the core or storage directly: it
//! asks the runtime through its inbox, reads status from the runtime's watch channel, and reads
//! messages through a [`StateReader`] off the runtime's task.

// `Err(Response)` is the early answer of a handler step; it is built once per request, so boxing it
// would buy nothing.
#![allow(clippy::result_large_err)]

mod admin;
mod client;
mod error;
mod events;
mod leader;
mod members;
mod metrics;
mod raft;
mod request;

pub use error::ApiError;
pub use leader::{advertise_hint, LeaderHints};

use crate::events::EventHub;
use crate::faults::Faults;
use crate::guard::AllowedOrigins;
use crate::metrics::Metrics;
use crate::raft::{LogIndex, NodeId};
use crate::runtime::Request;
use crate::storage::StorageError;
use crate::transport::client::Pools;
use crate::transport::{OrderGate, Partition, PeerDirectory, ADVERTISE_HEADER};
use bytes::Buf;
use error::json;
use flotilla_shared::api::{MessageEntry, Status};
use futures_util::Stream;
use request::{body_left_unread, check_cluster_token, check_origin, read_body};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use warp::http::{HeaderMap, Method, StatusCode};
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
    /// The other members, as the configuration in force says.
    pub peers: PeerDirectory,
    /// `X-Raft-Leader` for each node.
    pub leader_hints: LeaderHints,
    /// Requests naming another `Origin` are refused: they come from web pages.
    pub origins: AllowedOrigins,
    pub inbox: mpsc::Sender<Request>,
    pub status: watch::Receiver<Arc<Status>>,
    pub events: EventHub,
    pub metrics: Arc<Metrics>,
    pub partition: Arc<Partition>,
    /// Link faults: the Raft route applies this node's outgoing link faults to the replies it sends.
    pub faults: Arc<Faults>,
    pub order: OrderGate,
    pub reader: Arc<dyn StateReader>,
    /// Connections for client requests forwarded to the leader.
    pub forward_pools: Pools,
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
    if let Err(error) = check_origin(api, &call.headers) {
        return body_left_unread(&call, error);
    }
    let segments: Vec<&str> = call.path.trim_matches('/').split('/').collect();
    let method = call.method.clone();
    match (method, segments.as_slice()) {
        (Method::POST, ["v1", "messages"]) => match read_body(api, &call, body, api.max_body).await
        {
            Ok(bytes) => client::submit(api, &call, bytes).await,
            Err(response) => response,
        },
        (Method::GET, ["v1", "messages"]) => client::list_messages(api, &call).await,
        (Method::GET, ["v1", "status"]) => json(StatusCode::OK, &*api.status.borrow().clone()),
        (Method::GET, ["v1", "events"]) => events::events(api, &call),
        (Method::GET, ["metrics"]) => metrics::metrics(api),
        (method, ["v1", "admin", ..]) => {
            if let Err(error) = admin::check_admin(api, &call.headers) {
                return body_left_unread(&call, error);
            }
            let body = match read_body(api, &call, body, api.max_body).await {
                Ok(bytes) => bytes,
                Err(response) => return response,
            };
            match (method, &segments[2..]) {
                (Method::POST, ["partition"]) => admin::set_partition(api, &body).await,
                (Method::DELETE, ["partition"]) => {
                    admin::apply_partition(api, BTreeSet::new()).await
                }
                (Method::POST, ["transfer-leadership"]) => admin::transfer(api, &call, body).await,
                (Method::PUT, ["timing"]) => admin::set_timing(api, &body).await,
                (Method::GET, ["links"]) => admin::list_links(api),
                (Method::PUT, ["links", peer]) => admin::set_link(api, peer, Some(&body)).await,
                (Method::DELETE, ["links", peer]) => admin::set_link(api, peer, None).await,
                (Method::PUT, ["disk"]) => admin::set_disk(api, &body).await,
                (Method::POST, ["members"]) => members::add(api, &call, body).await,
                (Method::DELETE, ["members", id]) => members::remove(api, &call, id, body).await,
                (Method::POST, ["snapshot"]) => admin::take_snapshot(api).await,
                (
                    _,
                    ["partition"
                    | "transfer-leadership"
                    | "timing"
                    | "links"
                    | "disk"
                    | "members"
                    | "snapshot"]
                    | ["links" | "members", _],
                ) => ApiError::method_not_allowed(&call.method, &call.path).into_response(),
                _ => ApiError::not_found(&call.method, &call.path).into_response(),
            }
        }
        (Method::POST, ["raft", name]) => {
            // Checked before a byte of the body is read: without the token, a large body costs nothing.
            if let Err(error) = check_cluster_token(api, &call.headers) {
                return body_left_unread(&call, error);
            }
            if let Some(hint) = call.headers.get(ADVERTISE_HEADER) {
                api.leader_hints.learn(hint, &api.peers.read());
            }
            match read_body(api, &call, body, RAFT_BODY_LIMIT).await {
                Ok(bytes) => raft::raft_rpc(api, &call, name, &bytes).await,
                Err(response) => response,
            }
        }
        (_, ["v1", "messages" | "status" | "events"] | ["metrics"] | ["raft", _]) => {
            ApiError::method_not_allowed(&call.method, &call.path).into_response()
        }
        _ => ApiError::not_found(&call.method, &call.path).into_response(),
    }
}
