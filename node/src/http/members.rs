//! Membership changes (`/v1/admin/members`): add a member, remove one. Answered once the final
//! configuration is committed; forwarded to the leader like a submit.

use super::error::json;
use super::leader::{forward, is_forwarded, Forwarded};
use super::request::parse_json;
use super::{Api, ApiError, Call, LEADER_RETRY};
use crate::raft::{MembershipChange, MembershipError, NodeId};
use crate::runtime::Request;
use crate::validation;
use bytes::Bytes;
use flotilla_shared::api::{AddMemberRequest, Member};
use std::time::Instant;
use tokio::sync::oneshot;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

/// `POST /v1/admin/members`
pub(super) async fn add(api: &Api, call: &Call, body: Bytes) -> Response {
    let request: AddMemberRequest = match parse_json(&body) {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    let member = Member {
        id: request.id,
        addr: request.addr,
        role: request.role,
    };
    if let Err(rejected) = validation::check_member(&member) {
        return ApiError::rejected(&rejected).into_response();
    }
    change(api, call, body, MembershipChange::Add(member)).await
}

/// `DELETE /v1/admin/members/{id}`
pub(super) async fn remove(api: &Api, call: &Call, id: &str, body: Bytes) -> Response {
    let id = match id
        .parse::<u64>()
        .map_err(|e| e.to_string())
        .and_then(NodeId::new)
    {
        Ok(id) => id,
        Err(why) => {
            return ApiError::bad_request(format!("member id {id:?}: {why}")).into_response()
        }
    };
    change(api, call, body, MembershipChange::Remove(id)).await
}

async fn change(api: &Api, call: &Call, body: Bytes, change: MembershipChange) -> Response {
    let received = Instant::now();
    let deadline = received + api.request_timeout;
    let leader_deadline = received + api.leader_wait;
    loop {
        let (reply, answer) = oneshot::channel();
        let request = Request::ChangeMembers {
            change: change.clone(),
            reply,
        };
        if api.inbox.send(request).await.is_err() {
            return ApiError::shutting_down().into_response();
        }
        let outcome = match tokio::time::timeout_at(deadline.into(), answer).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => return ApiError::shutting_down().into_response(),
            Err(_) => {
                return ApiError::timeout(format!(
                    "the change was not in force and committed within {} ms; it may still \
                     complete (GET /v1/status shows the members)",
                    api.request_timeout.as_millis()
                ))
                .into_response()
            }
        };
        let error = match outcome {
            Ok(done) => return api.with_leader_header(json(StatusCode::OK, &done), Some(api.id)),
            Err(error) => error,
        };
        match error {
            MembershipError::NotLeader { leader } => {
                if let Some(leader) = leader.filter(|&l| l != api.id && !is_forwarded(call)) {
                    match forward(api, leader, call, Some(body.clone()), deadline).await {
                        Forwarded::Answer(response) => return response,
                        Forwarded::NotAppended | Forwarded::Unreachable => {}
                        Forwarded::Lost(why) => {
                            return ApiError::timeout(format!(
                                "forwarded to leader {leader} but no answer came ({why}); the \
                                 change may still complete"
                            ))
                            .into_response()
                        }
                    }
                }
            }
            // Both pass within moments: wait for them like for a leader.
            MembershipError::TransferInProgress { .. } | MembershipError::LeaderNotReady(_) => {}
            MembershipError::ChangeInProgress(why) => {
                return ApiError::new(StatusCode::CONFLICT, "change_in_progress", why)
                    .into_response()
            }
            MembershipError::UnknownMember(id) => {
                return ApiError::new(
                    StatusCode::NOT_FOUND,
                    "unknown_member",
                    format!("node {id} is not a member of this cluster"),
                )
                .into_response()
            }
            error @ MembershipError::AlreadyMember { .. } => {
                return ApiError::new(StatusCode::CONFLICT, "member_exists", error.to_string())
                    .into_response()
            }
            error @ MembershipError::LastVoter(_) => {
                return ApiError::new(StatusCode::CONFLICT, "last_voter", error.to_string())
                    .into_response()
            }
        }
        if Instant::now() >= leader_deadline.min(deadline) {
            return api.no_leader().into_response();
        }
        tokio::time::sleep(LEADER_RETRY).await;
    }
}
