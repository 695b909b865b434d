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
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The last entry covered by the latest snapshot (0: none yet).
    #[serde(default)]
    pub snapshot_index: LogIndex,
    #[serde(default)]
    pub snapshot_term: Term,
    /// The first index still in the log; earlier entries live only in the snapshot.
    #[serde(default)]
    pub first_log_index: LogIndex,
    /// The configuration in force (Raft §6); empty on a node started with `--join` that was not added yet.
    #[serde(default)]
    pub members: Vec<Member>,
    /// The log index of the configuration in force (0: the seed configuration from `--peers`).
    #[serde(default)]
    pub config_index: LogIndex,
    /// Faults on this node's outgoing links, per peer (admin API); healed links are not listed.
    #[serde(default)]
    pub link_faults: Vec<LinkFaultStatus>,
    #[serde(default)]
    pub disk_write_delay_ms: u64,
}

/// One member of the cluster's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    pub id: NodeId,
    /// `HOST:PORT` (or a URL) where the member answers Raft RPCs and clients.
    pub addr: String,
    pub role: MemberRole,
}

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    /// Counts in elections and commit quorums.
    #[default]
    Voter,
    /// Receives the log but does not vote or count towards a quorum (thesis §4.2.1).
    Learner,
}

/// `POST /v1/admin/members`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMemberRequest {
    pub id: NodeId,
    pub addr: String,
    /// `voter` (the default) is added as a learner, caught up, then promoted.
    #[serde(default)]
    pub role: MemberRole,
}

/// The answer to a membership change, once its final configuration is committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersResponse {
    pub config_index: LogIndex,
    pub members: Vec<Member>,
}

/// `POST /v1/admin/snapshot`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotResponse {
    pub snapshot_index: LogIndex,
    pub snapshot_term: Term,
}

/// Faults on one outgoing link (`PUT /v1/admin/links/{peer}`). `loss` is a probability in `[0, 1]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkFault {
    #[serde(default)]
    pub cut: bool,
    #[serde(default)]
    pub delay_ms: u64,
    #[serde(default)]
    pub jitter_ms: u64,
    #[serde(default)]
    pub loss: f64,
}

/// `validate` refuses NaN, so equality is an equivalence on every accepted value.
impl Eq for LinkFault {}

impl LinkFault {
    /// Checks the values describe a fault a node can apply.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.loss) {
            return Err(format!("loss must be within 0.0..=1.0, got {}", self.loss));
        }
        if self.delay_ms > 60_000 || self.jitter_ms > 60_000 {
            return Err(format!(
                "delay_ms and jitter_ms must be at most 60000, got {} and {}",
                self.delay_ms, self.jitter_ms
            ));
        }
        Ok(())
    }

    /// Whether this fault changes nothing (a healed link).
    pub fn is_healed(&self) -> bool {
        *self == LinkFault::default()
    }
}

/// One faulty link in `/v1/status` and `GET /v1/admin/links`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkFaultStatus {
    pub to: NodeId,
    #[serde(flatten)]
    pub fault: LinkFault,
}

/// `PUT /v1/admin/disk`
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskFaultRequest {
    pub write_delay_ms: u64,
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
    fn link_faults_are_validated() {
        let fault: LinkFault = serde_json::from_str(r#"{"delay_ms":100,"loss":0.5}"#).unwrap();
        assert!(fault.validate().is_ok());
        assert!(!fault.is_healed());
        assert!(LinkFault { loss: 1.5, ..fault }.validate().is_err());
        assert!(LinkFault {
            loss: f64::NAN,
            ..fault
        }
        .validate()
        .is_err());
        assert!(serde_json::from_str::<LinkFault>(r#"{"lost":0.5}"#).is_err());
        assert!(LinkFault::default().is_healed());
    }

    #[test]
    fn an_older_status_without_the_new_fields_still_reads() {
        let status: Status = serde_json::from_value(serde_json::json!({
            "id": 1, "role": "leader", "term": 2, "voted_for": 1, "leader_id": 1,
            "commit_index": 3, "last_applied": 3, "last_log_index": 3, "last_log_term": 2,
            "peers": []
        }))
        .unwrap();
        assert_eq!(status.first_log_index, LogIndex(0));
        assert!(status.members.is_empty());
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
