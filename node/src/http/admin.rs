//! The admin API (`/v1/admin/...`, bearer token): partitions, link and disk faults, leadership
//! transfer, timing, snapshots.

use super::error::json;
use super::leader::{forward, is_forwarded, Forwarded};
use super::request::parse_json;
use super::Call;
use super::{Api, ApiError};
use crate::faults::MAX_DISK_WRITE_DELAY_MS;
use crate::guard::constant_time_eq;
use crate::raft::{NodeId, TransferError};
use crate::runtime::Request;
use bytes::Bytes;
use flotilla_shared::api::{
    DiskFaultRequest, LinkFault, LinkFaultStatus, PartitionRequest, TimingRequest, TransferRequest,
};
use std::collections::{BTreeSet, HashMap};
use std::time::Instant;
use tokio::sync::oneshot;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;
use warp::Reply;

pub(super) fn check_admin(api: &Api, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &api.admin_token else {
        return Err(ApiError::admin_disabled());
    };
    let Some(given) = headers.get("authorization") else {
        return Err(ApiError::unauthorized(
            "missing Authorization: Bearer <token>",
        ));
    };
    let given = given.to_str().unwrap_or_default();
    match given.strip_prefix("Bearer ") {
        Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::forbidden("wrong admin token")),
        None => Err(ApiError::unauthorized(
            "Authorization must be: Bearer <token>",
        )),
    }
}

/// Asks the runtime and waits for its answer.
async fn ask<T>(
    api: &Api,
    make: impl FnOnce(oneshot::Sender<T>) -> Request,
) -> Result<T, ApiError> {
    let (reply, answer) = oneshot::channel();
    api.inbox
        .send(make(reply))
        .await
        .map_err(|_| ApiError::shutting_down())?;
    answer.await.map_err(|_| ApiError::shutting_down())
}

pub(super) async fn set_partition(api: &Api, body: &[u8]) -> Response {
    let request: PartitionRequest = match parse_json(body) {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    let mut peers = BTreeSet::new();
    for id in request.isolate_from {
        if id == api.id {
            return ApiError::bad_peer(format!("node {id} cannot isolate itself")).into_response();
        }
        if !api.peers.contains(id) {
            return ApiError::bad_peer(format!("node {id} is not a peer of node {}", api.id))
                .into_response();
        }
        peers.insert(id);
    }
    apply_partition(api, peers).await
}

pub(super) async fn apply_partition(api: &Api, isolate_from: BTreeSet<NodeId>) -> Response {
    let ids: Vec<NodeId> = isolate_from.iter().copied().collect();
    match ask(api, |reply| Request::SetPartition {
        isolate_from,
        reply,
    })
    .await
    {
        Ok(()) => json(StatusCode::OK, &HashMap::from([("isolated_from", ids)])),
        Err(error) => error.into_response(),
    }
}

pub(super) async fn transfer(api: &Api, call: &Call, body: Bytes) -> Response {
    let request: TransferRequest = match parse_json(&body) {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    let to = request.to;
    match ask(api, |reply| Request::Transfer { to, reply }).await {
        Ok(Ok(())) => json(
            StatusCode::ACCEPTED,
            &HashMap::from([("transferring_to", to)]),
        ),
        Ok(Err(TransferError::UnknownNode(id))) => {
            ApiError::bad_peer(format!("node {id} is not a member of this cluster")).into_response()
        }
        Ok(Err(TransferError::NotLeader { leader })) => {
            if let Some(leader) = leader.filter(|&l| l != api.id && !is_forwarded(call)) {
                let deadline = Instant::now() + api.request_timeout;
                if let Forwarded::Answer(response) =
                    forward(api, leader, call, Some(body), deadline).await
                {
                    return response;
                }
            }
            let error = ApiError::not_leader(format!(
                "node {} is not the leader and could not reach one",
                api.id
            ));
            api.with_leader_header(error.into_response(), leader)
        }
        Err(error) => error.into_response(),
    }
}

pub(super) async fn set_timing(api: &Api, body: &[u8]) -> Response {
    let request: TimingRequest = match parse_json(body) {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    if let Err(message) = request.validate() {
        return ApiError::bad_timing(message).into_response();
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
        Ok(Err(message)) => ApiError::bad_timing(message).into_response(),
        Err(error) => error.into_response(),
    }
}

pub(super) fn list_links(api: &Api) -> Response {
    json(StatusCode::OK, &api.faults.links())
}

/// `PUT /v1/admin/links/{peer}` (with the fault) and `DELETE` (`fault: None`, healed).
pub(super) async fn set_link(api: &Api, peer: &str, fault: Option<&[u8]>) -> Response {
    let to = match link_peer(api, peer) {
        Ok(to) => to,
        Err(error) => return error.into_response(),
    };
    let fault: LinkFault = match fault.map(parse_json).transpose() {
        Ok(fault) => fault.unwrap_or_default(),
        Err(error) => return error.into_response(),
    };
    if let Err(message) = fault.validate() {
        return ApiError::bad_fault(message).into_response();
    }
    match ask(api, |reply| Request::SetLinkFault { to, fault, reply }).await {
        Ok(()) => json(StatusCode::OK, &LinkFaultStatus { to, fault }),
        Err(error) => error.into_response(),
    }
}

/// The peer a link path names: a node id this node has a link to.
fn link_peer(api: &Api, peer: &str) -> Result<NodeId, ApiError> {
    let id = peer.parse::<u64>().map(NodeId).map_err(|_| {
        ApiError::bad_peer(format!("{peer:?} is not a node id (a positive integer)"))
    })?;
    if id == api.id {
        return Err(ApiError::bad_peer(format!(
            "node {id} has no link to itself"
        )));
    }
    if !api.peers.contains(id) {
        return Err(ApiError::unknown_peer(format!(
            "node {id} is not a peer of node {}",
            api.id
        )));
    }
    Ok(id)
}

pub(super) async fn set_disk(api: &Api, body: &[u8]) -> Response {
    let request: DiskFaultRequest = match parse_json(body) {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    let write_delay_ms = request.write_delay_ms;
    if write_delay_ms > MAX_DISK_WRITE_DELAY_MS {
        return ApiError::bad_fault(format!(
            "write_delay_ms must be at most {MAX_DISK_WRITE_DELAY_MS}, got {write_delay_ms}"
        ))
        .into_response();
    }
    match ask(api, |reply| Request::SetDiskFault {
        write_delay_ms,
        reply,
    })
    .await
    {
        Ok(()) => json(StatusCode::OK, &request),
        Err(error) => error.into_response(),
    }
}

/// `POST /v1/admin/snapshot`: a snapshot of this node's state machine at its applied index, now.
pub(super) async fn take_snapshot(api: &Api) -> Response {
    match ask(api, |reply| Request::TakeSnapshot { reply }).await {
        Ok(Ok(taken)) => json(StatusCode::OK, &taken),
        Ok(Err(why)) => ApiError::new(StatusCode::CONFLICT, "nothing_applied", why).into_response(),
        Err(error) => error.into_response(),
    }
}
