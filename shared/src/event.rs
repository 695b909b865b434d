//! Events: every notable step of a node, as the core and the runtime report it.
//!
//! The SSE stream (`GET /v1/events`), the desktop's animation and the core's test transcripts all read
//! this one type. On the wire an event is one flat JSON object: `{"node","seq","at_ms","kind",...}`.

use crate::api::{LinkFault, Member};
use crate::ids::{LogIndex, NodeId, Term};
use serde::{Deserialize, Serialize};

/// An event stamped by the node that emitted it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub node: NodeId,
    /// Per-node sequence number, starting at 1 on each process start; gaps mean events were dropped.
    pub seq: u64,
    /// Milliseconds since the Unix epoch, on the emitting node's clock.
    pub at_ms: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    #[default]
    Follower,
    /// Probing with PreVote: the term has not been raised yet (thesis §9.6).
    PreCandidate,
    Candidate,
    Leader,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre_candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        }
    }
}

/// What happened. Node ids named `from`/`to` follow the message's direction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    RoleChanged {
        role: Role,
        term: Term,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        leader_id: Option<NodeId>,
    },
    TermChanged {
        term: Term,
    },
    /// The emitting node (a candidate) asked `to` for a vote.
    VoteRequested {
        to: NodeId,
        term: Term,
        pre_vote: bool,
        last_log_index: LogIndex,
        last_log_term: Term,
        /// The message's per-sender sequence number (`0`: not known, an older node).
        #[serde(default, skip_serializing_if = "is_zero")]
        msg: u64,
    },
    /// The emitting node granted its vote to `to` (the candidate).
    VoteGranted {
        to: NodeId,
        term: Term,
        pre_vote: bool,
        /// The message's per-sender sequence number (`0`: not known, an older node).
        #[serde(default, skip_serializing_if = "is_zero")]
        msg: u64,
    },
    /// The emitting node denied its vote to `to`, with the reason in words.
    VoteDenied {
        to: NodeId,
        term: Term,
        pre_vote: bool,
        reason: String,
        /// The message's per-sender sequence number (`0`: not known, an older node).
        #[serde(default, skip_serializing_if = "is_zero")]
        msg: u64,
    },
    /// The emitting node (the leader) sent an append to `to`; `entries == 0` is a heartbeat.
    AppendSent {
        to: NodeId,
        term: Term,
        prev_log_index: LogIndex,
        entries: u64,
        commit: LogIndex,
        /// The message's per-sender sequence number (`0`: not known, an older node).
        #[serde(default, skip_serializing_if = "is_zero")]
        msg: u64,
    },
    /// The emitting node (the leader) received a successful append response from `from`; `msg` is the
    /// response's own sequence number on `from`.
    AppendAcked {
        from: NodeId,
        term: Term,
        match_index: LogIndex,
        /// The message's per-sender sequence number (`0`: not known, an older node).
        #[serde(default, skip_serializing_if = "is_zero")]
        msg: u64,
    },
    /// The emitting node rejected an append from `to` (its leader) and says why.
    AppendRejected {
        to: NodeId,
        term: Term,
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hint_index: Option<LogIndex>,
        /// The message's per-sender sequence number (`0`: not known, an older node).
        #[serde(default, skip_serializing_if = "is_zero")]
        msg: u64,
    },
    /// Entries `first..=last` (all of `term`) were added to the emitting node's log, not yet durable.
    EntryAppended {
        first: LogIndex,
        last: LogIndex,
        term: Term,
    },
    /// Entries after `index` were removed from the emitting node's log: they conflicted with the leader's.
    LogTruncated {
        index: LogIndex,
    },
    /// The emitting node's log is durable (fsynced) up to `index`.
    EntryPersisted {
        index: LogIndex,
    },
    CommitAdvanced {
        commit_index: LogIndex,
    },
    /// Entries up to `index` were applied to the state machine.
    Applied {
        index: LogIndex,
    },
    /// A new election deadline, in the same clock as `at_ms`.
    ElectionTimerReset {
        deadline_ms: u64,
        timeout_ms: u64,
    },
    /// An election timeout fired and the node starts a (pre-)campaign.
    ElectionTimeout {
        term: Term,
    },
    /// A leader stepped down because it has not heard from a majority within an election timeout.
    CheckQuorumFailed {
        term: Term,
    },
    /// The leader asked `to` to campaign at once (leadership transfer).
    TimeoutNowSent {
        to: NodeId,
        term: Term,
        /// The message's per-sender sequence number (`0`: not known, an older node).
        #[serde(default, skip_serializing_if = "is_zero")]
        msg: u64,
    },
    /// A linearizable read was released at `read_index`.
    ReadReleased {
        read_index: LogIndex,
    },
    /// The node's partition list changed (admin API); empty means healed.
    PartitionChanged {
        isolated_from: Vec<NodeId>,
    },
    /// The tempo changed (admin API).
    TimingChanged {
        heartbeat_ms: u64,
        election_timeout_ms: [u64; 2],
    },
    /// The process is stopping gracefully (SIGTERM).
    ShuttingDown,
    /// The emitting node refused a Raft message from `from` (`message` names its type) without acting
    /// on any of it; `reason` is the refusal's code, `detail` says what was wrong.
    MessageRejected {
        from: NodeId,
        message: String,
        reason: String,
        detail: String,
    },
    /// The emitting node took a snapshot of its state machine at `index` (of `term`): `bytes` long.
    SnapshotTaken {
        index: LogIndex,
        term: Term,
        bytes: u64,
    },
    /// The emitting node's log now starts at `first_log_index`: earlier entries live in the snapshot.
    LogCompacted {
        first_log_index: LogIndex,
    },
    /// The emitting node (the leader) sent `to` one chunk `[offset, offset+bytes)` of its snapshot at
    /// `index`; `done` on the last chunk.
    SnapshotSent {
        to: NodeId,
        index: LogIndex,
        term: Term,
        offset: u64,
        bytes: u64,
        total_bytes: u64,
        done: bool,
        #[serde(default, skip_serializing_if = "is_zero")]
        msg: u64,
    },
    /// The emitting node replaced its state with the snapshot at `index` received from `from`.
    SnapshotInstalled {
        from: NodeId,
        index: LogIndex,
        term: Term,
        bytes: u64,
    },
    /// The configuration at `config_index` is now in force on the emitting node (`committed` once a
    /// majority holds it).
    MembershipChanged {
        members: Vec<Member>,
        config_index: LogIndex,
        committed: bool,
    },
    /// The emitting node took in message `msg` from `from`; `type` is the message's name.
    MessageReceived {
        from: NodeId,
        msg: u64,
        #[serde(rename = "type")]
        message: String,
    },
    /// Message `msg` from the emitting node to `to` never arrived, and why.
    MessageDropped {
        to: NodeId,
        msg: u64,
        reason: DropReason,
    },
    /// The faults on the emitting node's outgoing link to `to` changed (admin API); `None` is healed.
    LinkFaultChanged {
        to: NodeId,
        #[serde(default)]
        fault: Option<LinkFault>,
    },
    /// Every storage write on the emitting node now waits `write_delay_ms` before its fsync (admin API).
    DiskFaultChanged {
        write_delay_ms: u64,
    },
}

impl EventKind {
    /// The receiver and number (`msg`) of the message this event reports sending, when it is the send
    /// side of a numbered message. A successful append response has no send event: the leader's
    /// `append_acked` reports it on arrival.
    pub fn sent_message(&self) -> Option<(NodeId, u64)> {
        match *self {
            EventKind::VoteRequested { to, msg, .. }
            | EventKind::VoteGranted { to, msg, .. }
            | EventKind::VoteDenied { to, msg, .. }
            | EventKind::AppendSent { to, msg, .. }
            | EventKind::AppendRejected { to, msg, .. }
            | EventKind::TimeoutNowSent { to, msg, .. }
            | EventKind::SnapshotSent { to, msg, .. } => Some((to, msg)),
            _ => None,
        }
    }

    /// The `kind` tag as it appears on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::RoleChanged { .. } => "role_changed",
            EventKind::TermChanged { .. } => "term_changed",
            EventKind::VoteRequested { .. } => "vote_requested",
            EventKind::VoteGranted { .. } => "vote_granted",
            EventKind::VoteDenied { .. } => "vote_denied",
            EventKind::AppendSent { .. } => "append_sent",
            EventKind::AppendAcked { .. } => "append_acked",
            EventKind::AppendRejected { .. } => "append_rejected",
            EventKind::EntryAppended { .. } => "entry_appended",
            EventKind::LogTruncated { .. } => "log_truncated",
            EventKind::EntryPersisted { .. } => "entry_persisted",
            EventKind::CommitAdvanced { .. } => "commit_advanced",
            EventKind::Applied { .. } => "applied",
            EventKind::ElectionTimerReset { .. } => "election_timer_reset",
            EventKind::ElectionTimeout { .. } => "election_timeout",
            EventKind::CheckQuorumFailed { .. } => "check_quorum_failed",
            EventKind::TimeoutNowSent { .. } => "timeout_now_sent",
            EventKind::ReadReleased { .. } => "read_released",
            EventKind::PartitionChanged { .. } => "partition_changed",
            EventKind::TimingChanged { .. } => "timing_changed",
            EventKind::ShuttingDown => "shutting_down",
            EventKind::MessageRejected { .. } => "message_rejected",
            EventKind::SnapshotTaken { .. } => "snapshot_taken",
            EventKind::LogCompacted { .. } => "log_compacted",
            EventKind::SnapshotSent { .. } => "snapshot_sent",
            EventKind::SnapshotInstalled { .. } => "snapshot_installed",
            EventKind::MembershipChanged { .. } => "membership_changed",
            EventKind::MessageReceived { .. } => "message_received",
            EventKind::MessageDropped { .. } => "message_dropped",
            EventKind::LinkFaultChanged { .. } => "link_fault_changed",
            EventKind::DiskFaultChanged { .. } => "disk_fault_changed",
        }
    }
}

/// Why a message never reached its receiver (`message_dropped`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// The admin partition isolates the two nodes.
    Partition,
    /// A one-way link cut (admin link fault).
    LinkCut,
    /// A lossy link (admin link fault) lost it.
    Loss,
    /// The peer's send queue was full.
    QueueFull,
    /// The peer could not be reached (connection refused or reset).
    Unreachable,
    /// The peer did not answer in time.
    Timeout,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Partition => "partition",
            DropReason::LinkCut => "link_cut",
            DropReason::Loss => "loss",
            DropReason::QueueFull => "queue_full",
            DropReason::Unreachable => "unreachable",
            DropReason::Timeout => "timeout",
        }
    }
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_is_one_flat_object_with_a_kind_tag() {
        let event = Event {
            node: NodeId(2),
            seq: 7,
            at_ms: 1000,
            kind: EventKind::VoteDenied {
                to: NodeId(1),
                term: Term(3),
                pre_vote: false,
                reason: "candidate log older".into(),
                msg: 9,
            },
        };
        let value = serde_json::to_value(&event).unwrap();
        assert_eq!(value["kind"], "vote_denied");
        assert_eq!(value["node"], 2);
        assert_eq!(value["reason"], "candidate log older");
        assert_eq!(value["msg"], 9);
        assert_eq!(serde_json::from_value::<Event>(value).unwrap(), event);
    }

    #[test]
    fn message_received_names_the_message_type_under_type() {
        let kind = EventKind::MessageReceived {
            from: NodeId(1),
            msg: 4,
            message: "append_entries".into(),
        };
        let value = serde_json::to_value(&kind).unwrap();
        assert_eq!(value["kind"], "message_received");
        assert_eq!(value["type"], "append_entries");
        assert_eq!(serde_json::from_value::<EventKind>(value).unwrap(), kind);
    }

    #[test]
    fn an_older_nodes_event_without_msg_reads_as_zero() {
        let value = serde_json::json!({"kind": "timeout_now_sent", "to": 2, "term": 3});
        let kind: EventKind = serde_json::from_value(value).unwrap();
        assert_eq!(
            kind,
            EventKind::TimeoutNowSent {
                to: NodeId(2),
                term: Term(3),
                msg: 0
            }
        );
    }

    #[test]
    fn name_matches_the_wire_tag() {
        let kind = EventKind::CommitAdvanced {
            commit_index: LogIndex(3),
        };
        let value = serde_json::to_value(&kind).unwrap();
        assert_eq!(value["kind"], kind.name());
    }
}
