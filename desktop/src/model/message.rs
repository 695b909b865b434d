//! Which events report a message between two nodes, and what that message is: its kind, its ends
//! and which end reported it.

use flotilla_shared::event::{Event, EventKind};
use flotilla_shared::NodeId;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlightKind {
    PreVoteRequest,
    VoteRequest,
    VoteGranted,
    VoteDenied,
    Heartbeat,
    Append { entries: u64 },
    Ack,
    Reject,
    TimeoutNow,
}

impl FlightKind {
    pub fn label(self) -> String {
        match self {
            FlightKind::PreVoteRequest => "pre-vote request".into(),
            FlightKind::VoteRequest => "vote request".into(),
            FlightKind::VoteGranted => "vote granted".into(),
            FlightKind::VoteDenied => "vote denied".into(),
            FlightKind::Heartbeat => "heartbeat".into(),
            FlightKind::Append { entries: 1 } => "append (1 entry)".into(),
            FlightKind::Append { entries } => format!("append ({entries} entries)"),
            FlightKind::Ack => "append ack".into(),
            FlightKind::Reject => "append rejected".into(),
            FlightKind::TimeoutNow => "timeout now (transfer)".into(),
        }
    }
}

/// Which end of a message an event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reported {
    /// The sender reported it as it left (requests, vote replies, rejections).
    AtSend,
    /// The receiver reported it on arrival (append acks: the follower does not report sending them).
    AtArrival,
}

/// The message an event reports.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    pub kind: FlightKind,
    /// The reason for a denial or rejection, shown on hover.
    pub detail: String,
    pub reported: Reported,
    /// The sender's number for the message (`0`: not known, an older node).
    pub msg: u64,
}

/// The message `event` reports, if it reports one.
pub fn message_of(event: &Event) -> Option<Message> {
    let node = event.node;
    let sent = |to: NodeId, kind: FlightKind, detail: String, msg: u64| Message {
        from: node,
        to,
        kind,
        detail,
        reported: Reported::AtSend,
        msg,
    };
    let message = match &event.kind {
        EventKind::VoteRequested {
            to, pre_vote, msg, ..
        } => {
            let kind = if *pre_vote {
                FlightKind::PreVoteRequest
            } else {
                FlightKind::VoteRequest
            };
            sent(*to, kind, String::new(), *msg)
        }
        EventKind::VoteGranted {
            to, pre_vote, msg, ..
        } => {
            let detail = if *pre_vote {
                "pre-vote".into()
            } else {
                String::new()
            };
            sent(*to, FlightKind::VoteGranted, detail, *msg)
        }
        EventKind::VoteDenied {
            to,
            reason,
            pre_vote,
            msg,
            ..
        } => {
            let detail = if *pre_vote {
                format!("pre-vote: {reason}")
            } else {
                reason.clone()
            };
            sent(*to, FlightKind::VoteDenied, detail, *msg)
        }
        EventKind::AppendSent {
            to, entries, msg, ..
        } => {
            let kind = if *entries == 0 {
                FlightKind::Heartbeat
            } else {
                FlightKind::Append { entries: *entries }
            };
            sent(*to, kind, String::new(), *msg)
        }
        EventKind::AppendAcked {
            from,
            match_index,
            msg,
            ..
        } => Message {
            from: *from,
            to: node,
            kind: FlightKind::Ack,
            detail: format!("match index {}", match_index.0),
            reported: Reported::AtArrival,
            msg: *msg,
        },
        EventKind::AppendRejected {
            to, reason, msg, ..
        } => sent(*to, FlightKind::Reject, reason.clone(), *msg),
        EventKind::TimeoutNowSent { to, msg, .. } => {
            sent(*to, FlightKind::TimeoutNow, String::new(), *msg)
        }
        _ => return None,
    };
    Some(message)
}
