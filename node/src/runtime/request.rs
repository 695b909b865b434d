//! What the rest of the node may ask of the runtime: the requests its inbox takes and what they come
//! to. The HTTP layer and the transport speak to the core only through these.

use crate::raft::{
    Envelope, LogIndex, MembershipChange, MembershipError, NodeId, Payload, ReadError, Term,
    TransferError,
};
use crate::validation::Rejected;
use flotilla_shared::api::{LinkFault, MembersResponse, SnapshotResponse};
use std::collections::BTreeSet;
use std::time::Instant;
use tokio::sync::oneshot;

/// What a client's proposal came to.
#[derive(Debug)]
pub enum ProposeOutcome {
    /// Committed and applied as a new entry.
    Committed {
        index: LogIndex,
        term: Term,
    },
    /// The `request_id` had been applied before, at `index`.
    Duplicate {
        index: LogIndex,
        term: Term,
    },
    NotLeader {
        leader: Option<NodeId>,
    },
    TransferInProgress {
        to: NodeId,
    },
    /// The entry was appended but replaced by a new leader's: it was certainly not applied.
    Overwritten,
    /// Not appended: the leader already holds `pending` entries not yet committed or durable.
    Overloaded {
        pending: u64,
        limit: u64,
    },
    /// Not appended: the node is stopping.
    Stopping,
}

/// Everything the rest of the node asks of the runtime.
pub enum Request {
    Propose {
        payload: Payload,
        received: Instant,
        reply: oneshot::Sender<ProposeOutcome>,
    },
    /// A linearizable read: answers with the read index once applied up to it.
    Read {
        reply: oneshot::Sender<Result<LogIndex, ReadError>>,
    },
    /// A Raft message from a peer. `reply` receives the core's verdict: its response once durable (a
    /// vote or append answer), `None` for a message that has none, or why the message was refused.
    Step {
        envelope: Envelope,
        reply: Option<oneshot::Sender<StepVerdict>>,
    },
    Transfer {
        to: NodeId,
        reply: oneshot::Sender<Result<(), TransferError>>,
    },
    SetTiming {
        heartbeat_ms: u64,
        election_timeout_ms: (u64, u64),
        reply: oneshot::Sender<Result<(), String>>,
    },
    SetPartition {
        isolate_from: BTreeSet<NodeId>,
        reply: oneshot::Sender<()>,
    },
    /// Sets the faults on this node's outgoing link to `to` (a healed fault clears them).
    SetLinkFault {
        to: NodeId,
        fault: LinkFault,
        reply: oneshot::Sender<()>,
    },
    SetDiskFault {
        write_delay_ms: u64,
        reply: oneshot::Sender<()>,
    },
    Unreachable(NodeId),
    /// A membership change: answered once its final configuration is committed.
    ChangeMembers {
        change: MembershipChange,
        reply: oneshot::Sender<Result<MembersResponse, MembershipError>>,
    },
    /// Take a snapshot at the applied index now (`POST /v1/admin/snapshot`).
    TakeSnapshot {
        reply: oneshot::Sender<Result<SnapshotResponse, String>>,
    },
}

/// What became of a stepped Raft message (see [`Request::Step`]).
pub type StepVerdict = Result<Option<Envelope>, Rejected>;
