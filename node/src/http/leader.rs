//! Leader discovery and forwarding: the `X-Raft-Leader` hint naming each node, and a follower passing
//! a client request on to the leader.

use super::error::NOT_APPENDED_CODES;
use super::{Api, ApiError, Call, FORWARDED_HEADER};
use crate::raft::NodeId;
use crate::transport::client::SendError;
use bytes::Bytes;
use flotilla_shared::api::{ErrorBody, LEADER_HEADER};
use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};
use warp::http::header::{AUTHORIZATION, CONTENT_TYPE};
use warp::http::{HeaderName, HeaderValue, StatusCode};
use warp::reply::Response;

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
    pub(super) fn with_leader_header(
        &self,
        mut response: Response,
        leader: Option<NodeId>,
    ) -> Response {
        let hint = leader.or_else(|| self.status.borrow().leader_id);
        if let Some(value) = hint.and_then(|leader| self.leader_hints.get(leader)) {
            response.headers_mut().insert(LEADER_HEADER, value);
        }
        response
    }

    /// `503 no_leader`, naming how long this node waited for one.
    pub(super) fn no_leader(&self) -> ApiError {
        ApiError::no_leader(format!(
            "no leader reachable from node {} within {} ms",
            self.id,
            self.leader_wait.as_millis()
        ))
    }
}

pub(super) enum Forwarded {
    Answer(Response),
    /// The leader answered that it certainly did not append the request: safe to try again.
    NotAppended,
    /// The leader could not be reached before anything was sent: safe to try again.
    Unreachable,
    /// The request may have reached the leader, but no answer came.
    Lost(String),
}

pub(super) async fn forward(
    api: &Api,
    leader: NodeId,
    call: &Call,
    body: Option<Bytes>,
    deadline: Instant,
) -> Forwarded {
    let Some(addr) = api.peers.get(leader) else {
        return Forwarded::Unreachable;
    };
    let mut path = call.path.clone();
    if !call.query.is_empty() {
        path.push('?');
        path.push_str(&call.query);
    }
    let mut headers = Vec::with_capacity(3);
    if let Ok(id) = HeaderValue::from_str(&api.id.to_string()) {
        headers.push((HeaderName::from_static(FORWARDED_HEADER), id));
    }
    for name in [CONTENT_TYPE, AUTHORIZATION] {
        if let Some(value) = call.headers.get(&name) {
            headers.push((name, value.clone()));
        }
    }
    let timeout = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    let pool = api.forward_pools.get(&addr);
    let answer = match pool
        .send(call.method.clone(), &path, &headers, body, timeout)
        .await
    {
        Ok(answer) => answer,
        Err(SendError::NotSent(_)) => return Forwarded::Unreachable,
        Err(lost @ (SendError::Lost(_) | SendError::TimedOut { .. })) => {
            return Forwarded::Lost(lost.to_string())
        }
    };
    if answer.status == StatusCode::SERVICE_UNAVAILABLE && not_appended(&answer.body) {
        return Forwarded::NotAppended;
    }
    let mut response = Response::new(answer.body.into());
    *response.status_mut() = answer.status;
    if let Some(content_type) = answer.headers.get(CONTENT_TYPE) {
        response
            .headers_mut()
            .insert(CONTENT_TYPE, content_type.clone());
    }
    // The leader names itself with its own advertise URL.
    match answer.headers.get(LEADER_HEADER) {
        Some(hint) => {
            response.headers_mut().insert(LEADER_HEADER, hint.clone());
            Forwarded::Answer(response)
        }
        None => Forwarded::Answer(api.with_leader_header(response, Some(leader))),
    }
}

fn not_appended(body: &[u8]) -> bool {
    serde_json::from_slice::<ErrorBody>(body)
        .is_ok_and(|answer| NOT_APPENDED_CODES.contains(&answer.error.as_str()))
}

pub(super) fn is_forwarded(call: &Call) -> bool {
    call.headers.contains_key(FORWARDED_HEADER)
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
