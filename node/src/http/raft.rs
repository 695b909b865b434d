//! Raft RPC between nodes (`/raft/<message>`): validated envelopes handed to the runtime in order,
//! answered once the reply is durable. The reply travels on this node's link back to the sender, so
//! that link's faults apply to it here.

use super::error::json;
use super::{Api, ApiError, Call, RAFT_REPLY_WAIT};
use crate::faults::Fate;
use crate::raft::membership::Stranger;
use crate::raft::NodeId;
use crate::runtime::Request;
use crate::transport::{dropped, OrderGate, STREAM_HEADER};
use crate::validation::{self, Reason, Rejected};
use flotilla_shared::rpc::{Envelope, Message};
use tokio::sync::oneshot;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

pub(super) async fn raft_rpc(api: &Api, call: &Call, name: &str, body: &[u8]) -> Response {
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
    // A node may not know every member yet: one waiting to be added knows none, and a lagging one may
    // miss the entries that added this term's leader or a candidate. Appends from a node that may lead
    // (no other leader known in its term, or a higher term) and vote requests pass here; the core checks
    // them again, against its configurations.
    let may_lead = || {
        let status = api.status.borrow();
        Stranger {
            joining: status.members.is_empty(),
            term: status.term,
            leader: status.leader_id,
        }
        .may_send_log(&envelope)
    };
    let campaign = matches!(envelope.message, Message::RequestVote(_));
    if let Err(rejected) = validation::check_envelope(&envelope, api.id, |id| {
        api.peers.contains(id) || campaign || may_lead()
    }) {
        return refuse(api, Some(from), rejected);
    }
    if api.partition.contains(from) {
        return ApiError::partitioned(format!("node {} isolates itself from node {from}", api.id))
            .into_response();
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
        return ApiError::shutting_down().into_response();
    }
    match tokio::time::timeout(RAFT_REPLY_WAIT, answer).await {
        Ok(Ok(Ok(Some(reply)))) => match api.faults.fate(from) {
            Fate::Deliver => json(StatusCode::OK, &reply),
            Fate::Delay(delay) => {
                tokio::time::sleep(delay).await;
                json(StatusCode::OK, &reply)
            }
            Fate::Drop(reason) => {
                dropped(&api.events, &reply, reason);
                StatusCode::NO_CONTENT.into_response()
            }
        },
        // Counted and logged where the core refused it (the runtime).
        Ok(Ok(Err(rejected))) => ApiError::rejected(&rejected).into_response(),
        _ => StatusCode::NO_CONTENT.into_response(),
    }
}

/// Counts and (rate-limited) logs a Raft message refused here, and answers it.
fn refuse(api: &Api, from: Option<NodeId>, rejected: Rejected) -> Response {
    api.metrics
        .rejections
        .record("raft message", from, &rejected);
    ApiError::rejected(&rejected).into_response()
}
