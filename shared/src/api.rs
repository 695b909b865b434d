//! The client and admin HTTP API's bodies (`/v1/...`).

use crate::event::Role;
use crate::ids::{LogIndex, NodeId, Term};
use serde::{Deserialize, Serialize};

/// Header a follower adds when it forwards a request to the leader: `<id> <advertise-url>`.
pub const LEADER_HEADER: &str = "X-Raft-Leader";

/// `POST /v1/messages`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `201` for a new entry, `200` with `duplicate: true` for a `request_id` seen before.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitResponse {
    pub index: LogIndex,
    pub term: Term,
    pub leader_id: Option<NodeId>,
    #[serde(default)]
    pub duplicate: bool,
}

/// One committed message, as `GET /v1/messages` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageEntry {
    pub index: LogIndex,
    pub term: Term,
    pub text: String,
    pub request_id: Option<String>,
}

/// `GET /v1/messages?from=&limit=&stale=`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagesPage {
    /// The read point: the page holds every message entry in `[from, from+limit)` up to it.
    pub commit_index: LogIndex,
    pub entries: Vec<MessageEntry>,
}

/// `GET /v1/status`: one consistent snapshot of a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub id: NodeId,
    pub role: Role,
    pub term: Term,
    pub voted_for: Option<NodeId>,
    pub leader_id: Option<NodeId>,
    pub commit_index: LogIndex,
    pub last_applied: LogIndex,
    pub last_log_index: LogIndex,
    pub last_log_term: Term,
    /// Durable (fsynced) up to this index.
    #[serde(default)]
    pub persisted_index: LogIndex,
    pub peers: Vec<PeerStatus>,
    /// Peers this node currently isolates itself from (admin partition).
    #[serde(default)]
    pub isolated_from: Vec<NodeId>,
    #[serde(default)]
    pub heartbeat_ms: u64,
    #[serde(default)]
    pub election_timeout_ms: [u64; 2],
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub id: NodeId,
    pub addr: String,
    /// Only meaningful on a leader.
    pub match_index: LogIndex,
    /// Only meaningful on a leader.
    pub next_index: LogIndex,
    /// Whether the last RPC to this peer got an answer.
    pub reachable: bool,
}

/// Every error answer: `{"error": code, "message": words}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
}

/// `POST /v1/admin/partition`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionRequest {
    pub isolate_from: Vec<NodeId>,
}

/// `POST /v1/admin/transfer-leadership`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    pub to: NodeId,
}

/// `PUT /v1/admin/timing`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimingRequest {
    pub heartbeat_ms: u64,
    pub election_timeout_ms: [u64; 2],
}

impl TimingRequest {
    /// Checks the values make a working cluster: heartbeats well inside the election timeout.
    pub fn validate(&self) -> Result<(), String> {
        let [min, max] = self.election_timeout_ms;
        if self.heartbeat_ms == 0 {
            return Err("heartbeat_ms must be at least 1".into());
        }
        if min > max {
            return Err(format!(
                "election_timeout_ms must be [min, max] with min <= max, got [{min}, {max}]"
            ));
        }
        if min <= self.heartbeat_ms {
            return Err(format!(
                "election timeout minimum ({min} ms) must be greater than heartbeat_ms ({} ms)",
                self.heartbeat_ms
            ));
        }
        if max > 600_000 {
            return Err(format!(
                "election timeout maximum ({max} ms) is over 10 minutes"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submit_rejects_unknown_fields_and_wrong_types() {
        assert!(serde_json::from_str::<SubmitRequest>(r#"{"text":"hi"}"#).is_ok());
        assert!(serde_json::from_str::<SubmitRequest>(r#"{"text":5}"#).is_err());
        assert!(serde_json::from_str::<SubmitRequest>(r#"{"txt":"hi"}"#).is_err());
    }

    #[test]
    fn timing_is_validated() {
        let ok = TimingRequest {
            heartbeat_ms: 50,
            election_timeout_ms: [150, 300],
        };
        assert!(ok.validate().is_ok());
        let inverted = TimingRequest {
            election_timeout_ms: [300, 150],
            ..ok.clone()
        };
        assert!(inverted.validate().is_err());
        let slow_heartbeat = TimingRequest {
            heartbeat_ms: 200,
            ..ok
        };
        assert!(slow_heartbeat.validate().is_err());
    }
}
