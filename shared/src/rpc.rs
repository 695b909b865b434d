//! Raft RPCs between nodes. The core produces and consumes these; the transport carries them as JSON.
//!
//! Every message travels in an [`Envelope`]. Requests (`RequestVote`, `AppendEntries`, `InstallSnapshot`,
//! `TimeoutNow`) are
//! POSTed to the peer; the HTTP response body carries the reply envelope, if the receiver produced one.

use crate::api::{Member, MessageEntry};
use crate::ids::{LogIndex, NodeId, Term};
use serde::{Deserialize, Serialize};

/// One Raft message from one node to another. `term` is the sender's current term (Raft §5.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub from: NodeId,
    pub to: NodeId,
    pub term: Term,
    /// Per-sender sequence number, so the receiver's `message_received` and the sender's events name
    /// the same message (`0`: not numbered, an older node).
    #[serde(default)]
    pub msg: u64,
    pub message: Message,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    RequestVote(RequestVote),
    RequestVoteResponse(RequestVoteResponse),
    AppendEntries(AppendEntries),
    AppendEntriesResponse(AppendEntriesResponse),
    TimeoutNow,
    InstallSnapshot(InstallSnapshot),
    InstallSnapshotResponse(InstallSnapshotResponse),
}

impl Message {
    /// The snake_case name used in logs, transcripts and the RPC path (`/raft/<name>`).
    pub fn name(&self) -> &'static str {
        match self {
            Message::RequestVote(_) => "request_vote",
            Message::RequestVoteResponse(_) => "request_vote_response",
            Message::AppendEntries(_) => "append_entries",
            Message::AppendEntriesResponse(_) => "append_entries_response",
            Message::TimeoutNow => "timeout_now",
            Message::InstallSnapshot(_) => "install_snapshot",
            Message::InstallSnapshotResponse(_) => "install_snapshot_response",
        }
    }

    /// Whether this message is a reply to a request (it travels back in the request's HTTP response).
    pub fn is_response(&self) -> bool {
        matches!(
            self,
            Message::RequestVoteResponse(_)
                | Message::AppendEntriesResponse(_)
                | Message::InstallSnapshotResponse(_)
        )
    }
}

/// A vote request (Raft §5.2), or a PreVote probe (thesis §9.6) when `pre_vote` is set. For a PreVote the
/// envelope's term is the term the candidate *would* campaign in; nobody's term changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestVote {
    pub pre_vote: bool,
    pub last_log_index: LogIndex,
    pub last_log_term: Term,
    /// Set when campaigning because the leader asked (TimeoutNow): voters ignore their leader lease.
    #[serde(default)]
    pub leadership_transfer: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestVoteResponse {
    pub pre_vote: bool,
    pub granted: bool,
    /// Why the vote was denied, in words ("candidate log older"), for the visualizer and logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Log replication and heartbeat (Raft §5.3). A heartbeat is an append with no entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendEntries {
    pub prev_log_index: LogIndex,
    pub prev_log_term: Term,
    pub entries: Vec<Entry>,
    pub leader_commit: LogIndex,
    /// Non-zero on heartbeats sent to confirm leadership for ReadIndex; echoed in the response.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub read_ctx: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendEntriesResponse {
    pub success: bool,
    /// On success, the index of the last entry known to match the leader's log.
    /// On rejection, the `prev_log_index` of the rejected request.
    pub index: LogIndex,
    /// Fast backtracking hint on rejection (thesis §5.3): the first index of the conflicting term, or
    /// one past the follower's last index when its log is too short.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict_index: Option<LogIndex>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict_term: Option<Term>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub read_ctx: u64,
}

/// One chunk of a snapshot (Raft §7): the state machine's image at `last_index` (of `last_term`), sent
/// to a follower whose next entries the leader has compacted away. The image is the applied messages up
/// to `last_index` in index order (request ids with them: the dedupe state); the chunk carries those
/// after `after`, and starts at byte `offset` of `total_bytes` (sizes by [`snapshot_record_bytes`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallSnapshot {
    pub last_index: LogIndex,
    pub last_term: Term,
    /// The configuration in force at `last_index` and the index of its entry (0: the seed one).
    #[serde(default)]
    pub members: Vec<Member>,
    #[serde(default)]
    pub config_index: LogIndex,
    pub total_bytes: u64,
    pub offset: u64,
    /// The chunk's records all have indexes above this one (the previous chunk's last).
    pub after: LogIndex,
    pub records: Vec<MessageEntry>,
    /// The last chunk: the follower installs the image once it is written.
    pub done: bool,
}

/// The answer to one chunk. `next_offset`/`next_after` is where the follower wants the next chunk to
/// start: past this one when it was taken, or where the follower's own copy stands when it was not
/// (a resend, a chunk after a cut, another snapshot), so the leader resumes there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallSnapshotResponse {
    pub last_index: LogIndex,
    pub success: bool,
    pub next_offset: u64,
    pub next_after: LogIndex,
    /// The follower holds the whole image now (installed, or its log already covered it).
    pub done: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The size a message takes in a snapshot image, the unit of `offset` and `total_bytes`.
pub fn snapshot_record_bytes(record: &MessageEntry) -> u64 {
    16 + record.text.len() as u64 + record.request_id.as_ref().map_or(0, |id| id.len() as u64)
}

/// A log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub index: LogIndex,
    pub term: Term,
    pub payload: Payload,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Payload {
    /// Appended by every new leader so that entries of earlier terms can commit (Raft §5.4.2, §8).
    Noop,
    /// A client message: the state machine's only command.
    Message {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
    },
    /// A cluster configuration (Raft §6): every member with the address peers reach it at, so any
    /// member can reach any other. It takes effect on each node as soon as it is in its log.
    Configuration {
        members: Vec<Member>,
        /// Learners to promote to voters once they have caught up (an add with role `voter` that is
        /// not finished yet).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        promoting: Vec<NodeId>,
    },
}

impl Entry {
    /// An estimate of the entry's size on the wire, for batching limits.
    pub fn approx_size(&self) -> usize {
        let payload = match &self.payload {
            Payload::Noop => 0,
            Payload::Configuration { members, promoting } => {
                members.iter().map(|m| m.addr.len() + 16).sum::<usize>() + promoting.len() * 8
            }
            Payload::Message { text, request_id } => {
                text.len() + request_id.as_ref().map_or(0, String::len)
            }
        };
        payload + 48
    }
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips_through_json() {
        let envelope = Envelope {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(3),
            msg: 7,
            message: Message::AppendEntries(AppendEntries {
                prev_log_index: LogIndex(4),
                prev_log_term: Term(2),
                entries: vec![Entry {
                    index: LogIndex(5),
                    term: Term(3),
                    payload: Payload::Message {
                        text: "hi".into(),
                        request_id: Some("r1".into()),
                    },
                }],
                leader_commit: LogIndex(4),
                read_ctx: 0,
            }),
        };
        let json = serde_json::to_string(&envelope).unwrap();
        assert!(json.contains(r#""type":"append_entries""#), "{json}");
        assert_eq!(serde_json::from_str::<Envelope>(&json).unwrap(), envelope);
    }
}
