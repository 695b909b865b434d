//! The space-time diagram's layout: from recorded events to lanes, arrows and marks. Pure, so the
//! drawing only maps it to pixels.
//!
//! A message is one arrow from its send to its receive. The pair is found by `(sender, msg)`: the
//! send events carry `msg`, `message_received` names `from` and `msg`, `message_dropped` names `to`
//! and `msg`. Where one end is not reported (an older node sends `msg` 0; a message still in the
//! air; an ack whose sending the follower does not report) that end is `None`, "not known".
//!
//! Each node stamps events with its own clock. The diagram corrects them as the live view does (the
//! caller passes [`super::ClockOffsets`]' estimates), and where a message would still arrive before it
//! was sent, the receiver is shifted just enough ([`shifts`]), so no arrow points up.
//!
//! Work is bounded by the window: only records within it (plus a margin to find the other end of
//! its messages) are read, and at most [`MAX_ARROWS`] arrows and [`MAX_MARKS`] marks are kept.

use super::message::{message_of, FlightKind, Message, Reported};
use super::state::ProcessState;
use super::timeline::{Record, Timeline};
use flotilla_shared::event::{Event, EventKind, Role};
use flotilla_shared::NodeId;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Arrows kept at most (the newest): beyond that a frame would spend too long drawing.
pub const MAX_ARROWS: usize = 4_000;
pub const MAX_MARKS: usize = 2_000;
/// How far outside the window records are read to find a message's other end.
pub const MARGIN_MS: u64 = 1_000;

/// The stretch of time shown, on the cluster's clock (after offsets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    pub from_ms: u64,
    pub to_ms: u64,
}

impl Window {
    fn holds(&self, at_ms: u64) -> bool {
        (self.from_ms..=self.to_ms).contains(&at_ms)
    }
}

/// One end of an arrow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct End {
    /// On the diagram's clock (the node's own, shifted by its offset).
    pub at_ms: u64,
    /// The record that reported this end.
    pub position: u64,
}

/// A message between two lanes.
#[derive(Clone, Debug, PartialEq)]
pub struct Arrow {
    pub from: NodeId,
    pub to: NodeId,
    /// The sender's per-sender sequence number; 0 when not known.
    pub msg: u64,
    pub kind: FlightKind,
    /// The message's name as the receiver reported it, when no send event says what it was.
    pub received_as: String,
    /// The reason of a denial or rejection, the match index of an ack.
    pub detail: String,
    pub sent: Option<End>,
    pub received: Option<End>,
    /// Never arrived: where and why the sender gave up on it.
    pub dropped: Option<(End, String)>,
    pub heartbeat: bool,
}

impl Arrow {
    /// The earliest known moment of the arrow, for ordering and hit tests.
    pub fn first_ms(&self) -> u64 {
        [self.sent, self.received, self.dropped.as_ref().map(|d| d.0)]
            .into_iter()
            .flatten()
            .map(|end| end.at_ms)
            .min()
            .unwrap_or(0)
    }

    /// The record to jump to for this arrow: its send if known.
    pub fn position(&self) -> u64 {
        self.sent
            .or(self.received)
            .or(self.dropped.as_ref().map(|d| d.0))
            .map_or(0, |end| end.position)
    }

    /// What the arrow says on hover.
    pub fn describe(&self) -> String {
        let what = if self.received_as.is_empty() || self.sent.is_some() {
            self.kind.label()
        } else {
            self.received_as.clone()
        };
        let mut text = format!("{what}: node {} -> node {}", self.from, self.to);
        if self.msg != 0 {
            text.push_str(&format!(" (msg {})", self.msg));
        }
        if !self.detail.is_empty() {
            text.push_str(&format!("\n{}", self.detail));
        }
        match (self.sent, self.received, &self.dropped) {
            (_, _, Some((_, reason))) => text.push_str(&format!("\ndropped: {reason}")),
            (Some(sent), Some(received), _) => text.push_str(&format!(
                "\ntook {} ms",
                received.at_ms.saturating_sub(sent.at_ms)
            )),
            (Some(_), None, _) => text.push_str("\narrival not known"),
            (None, _, _) => text.push_str("\nsend not reported"),
        }
        text
    }
}

/// What a mark on a lane stands for (its colour and shape).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkKind {
    Role(Role),
    ElectionTimeout,
    Commit,
    Truncated,
    Snapshot,
    Membership,
    Fault,
    Process(ProcessState),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Mark {
    pub node: NodeId,
    pub at_ms: u64,
    pub position: u64,
    pub kind: MarkKind,
    pub label: String,
}

/// The diagram for one window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Layout {
    pub lanes: Vec<NodeId>,
    pub arrows: Vec<Arrow>,
    pub marks: Vec<Mark>,
    /// Milliseconds added to each node's times to draw them on one clock.
    pub offsets: BTreeMap<NodeId, i64>,
    /// Heartbeats (and their acks) left out because they are collapsed.
    pub hidden_heartbeats: usize,
    /// Whether arrows or marks were left out to bound the work.
    pub truncated: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    pub heartbeats: bool,
}

/// The records a window needs from the timeline: those within it and a margin either side, none
/// after position `through`.
pub fn window_records(
    timeline: &Timeline,
    window: Window,
    through: u64,
) -> impl Iterator<Item = (u64, &Record)> + '_ {
    let first = timeline.position_at_time(window.from_ms.saturating_sub(MARGIN_MS));
    let last_ms = window.to_ms.saturating_add(MARGIN_MS);
    (first..timeline.end().min(through.saturating_add(1)))
        .map_while(move |position| Some((position, timeline.get(position)?)))
        .take_while(move |(_, record)| record.at_ms() <= last_ms)
}

/// Lays out `records` (position, record), in the order they were recorded, for `window`. `clocks`
/// holds each node's clock minus the reference clock, as [`super::ClockOffsets::all`] estimates them.
pub fn layout<'a>(
    records: impl IntoIterator<Item = (u64, &'a Record)>,
    nodes: &[NodeId],
    window: Window,
    options: Options,
    clocks: &BTreeMap<NodeId, i64>,
) -> Layout {
    let mut lanes: BTreeSet<NodeId> = nodes.iter().copied().collect();
    let mut arrows: Vec<Arrow> = Vec::new();
    let mut raw_marks: Vec<Mark> = Vec::new();
    // (sender, msg) → arrow, for sends and for arrivals reported before their send.
    let mut by_key: HashMap<(NodeId, u64), usize> = HashMap::new();
    // (leader, follower) → the last match index acknowledged: an ack that moves nothing answers a
    // heartbeat.
    let mut last_match: HashMap<(NodeId, NodeId), u64> = HashMap::new();
    for (position, record) in records {
        lanes.extend(record.node());
        match record {
            Record::Event(event) => {
                place_event(
                    event,
                    position,
                    &mut arrows,
                    &mut by_key,
                    &mut last_match,
                    &mut raw_marks,
                );
            }
            Record::Process {
                at_ms, node, state, ..
            } => raw_marks.push(Mark {
                node: *node,
                at_ms: *at_ms,
                position,
                kind: MarkKind::Process(*state),
                label: match state {
                    ProcessState::Running => "running".into(),
                    ProcessState::Paused => "paused".into(),
                    ProcessState::Dead => "killed".into(),
                },
            }),
            _ => {}
        }
    }
    let offsets = shifts(&arrows, &lanes, clocks);
    let shift = |node: NodeId, end: &mut End| {
        let offset = offsets.get(&node).copied().unwrap_or(0);
        end.at_ms = end.at_ms.saturating_add_signed(offset);
    };
    let mut hidden_heartbeats = 0;
    let mut kept = Vec::new();
    for mut arrow in arrows {
        let (from, to) = (arrow.from, arrow.to);
        if let Some(end) = &mut arrow.sent {
            shift(from, end);
        }
        if let Some(end) = &mut arrow.received {
            shift(to, end);
        }
        if let Some((end, _)) = &mut arrow.dropped {
            shift(from, end);
        }
        let ends = [
            arrow.sent,
            arrow.received,
            arrow.dropped.as_ref().map(|d| d.0),
        ];
        let seen = ends.iter().flatten().any(|end| window.holds(end.at_ms))
            || (arrow.sent.is_some_and(|s| s.at_ms < window.from_ms)
                && arrow.received.is_some_and(|r| r.at_ms > window.to_ms));
        if !seen {
            continue;
        }
        if arrow.heartbeat && !options.heartbeats {
            hidden_heartbeats += 1;
            continue;
        }
        kept.push(arrow);
    }
    let mut marks: Vec<Mark> = raw_marks
        .into_iter()
        .filter_map(|mut mark| {
            mark.at_ms = mark
                .at_ms
                .saturating_add_signed(offsets.get(&mark.node).copied().unwrap_or(0));
            window.holds(mark.at_ms).then_some(mark)
        })
        .collect();
    let truncated = kept.len() > MAX_ARROWS || marks.len() > MAX_MARKS;
    if kept.len() > MAX_ARROWS {
        kept.drain(..kept.len() - MAX_ARROWS);
    }
    if marks.len() > MAX_MARKS {
        marks.drain(..marks.len() - MAX_MARKS);
    }
    Layout {
        lanes: lanes.into_iter().collect(),
        arrows: kept,
        marks,
        offsets,
        hidden_heartbeats,
        truncated,
    }
}

fn place_event(
    event: &Event,
    position: u64,
    arrows: &mut Vec<Arrow>,
    by_key: &mut HashMap<(NodeId, u64), usize>,
    last_match: &mut HashMap<(NodeId, NodeId), u64>,
    marks: &mut Vec<Mark>,
) {
    let end = End {
        at_ms: event.at_ms,
        position,
    };
    let node = event.node;
    let mut mark = |kind: MarkKind, label: String| {
        marks.push(Mark {
            node,
            at_ms: event.at_ms,
            position,
            kind,
            label,
        })
    };
    match &event.kind {
        EventKind::MessageReceived { from, msg, message } => {
            let key = (*from, *msg);
            match by_key.get(&key).copied() {
                Some(at) if *msg != 0 && arrows[at].to == node => {
                    let arrow = &mut arrows[at];
                    arrow.received.get_or_insert(end);
                    if arrow.received_as.is_empty() {
                        arrow.received_as = message.clone();
                    }
                }
                _ => {
                    let arrow = Arrow {
                        from: *from,
                        to: node,
                        msg: *msg,
                        kind: kind_of_name(message),
                        received_as: message.clone(),
                        detail: String::new(),
                        sent: None,
                        received: Some(end),
                        dropped: None,
                        heartbeat: false,
                    };
                    push_arrow(arrows, by_key, arrow);
                }
            }
            return;
        }
        EventKind::MessageDropped { to, msg, reason } => {
            // The reason as the wire names it (`link_cut`, `queue_full`, ...).
            let reason = serde_json::to_value(reason)
                .ok()
                .and_then(|value| value.as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("{reason:?}"));
            match by_key.get(&(node, *msg)).copied() {
                Some(at) if *msg != 0 => arrows[at].dropped = Some((end, reason)),
                _ => {
                    let arrow = Arrow {
                        from: node,
                        to: *to,
                        msg: *msg,
                        kind: FlightKind::Heartbeat,
                        received_as: "message".into(),
                        detail: String::new(),
                        sent: None,
                        received: None,
                        dropped: Some((end, reason)),
                        heartbeat: false,
                    };
                    push_arrow(arrows, by_key, arrow);
                }
            }
            return;
        }
        EventKind::SnapshotSent {
            to,
            index,
            offset,
            bytes,
            total_bytes,
            msg,
            ..
        } => {
            let arrow = Arrow {
                from: node,
                to: *to,
                msg: *msg,
                kind: FlightKind::Append { entries: 0 },
                received_as: "snapshot chunk".into(),
                detail: format!(
                    "snapshot at {}: bytes {offset}..{} of {total_bytes}",
                    index.0,
                    offset + bytes
                ),
                sent: Some(end),
                received: None,
                dropped: None,
                heartbeat: false,
            };
            push_arrow(arrows, by_key, arrow);
            return;
        }
        EventKind::RoleChanged { role, term, .. } => mark(
            MarkKind::Role(*role),
            format!("{} t{}", role.as_str(), term.0),
        ),
        EventKind::ElectionTimeout { term } => {
            mark(MarkKind::ElectionTimeout, format!("timeout t{}", term.0))
        }
        EventKind::CheckQuorumFailed { term } => mark(
            MarkKind::Role(Role::Follower),
            format!("lost quorum t{}", term.0),
        ),
        EventKind::CommitAdvanced { commit_index } => {
            mark(MarkKind::Commit, format!("commit {}", commit_index.0))
        }
        EventKind::LogTruncated { index } => {
            mark(MarkKind::Truncated, format!("log cut after {}", index.0))
        }
        EventKind::SnapshotTaken { index, bytes, .. } => mark(
            MarkKind::Snapshot,
            format!("snapshot at {} ({bytes} B)", index.0),
        ),
        EventKind::SnapshotInstalled { from, index, .. } => mark(
            MarkKind::Snapshot,
            format!("installed snapshot at {} from {from}", index.0),
        ),
        EventKind::LogCompacted { first_log_index } => mark(
            MarkKind::Snapshot,
            format!("log starts at {}", first_log_index.0),
        ),
        EventKind::MembershipChanged {
            members,
            committed,
            config_index,
        } => mark(
            MarkKind::Membership,
            format!(
                "members {:?} at {}{}",
                members.iter().map(|m| m.id.0).collect::<Vec<_>>(),
                config_index.0,
                if *committed { ", committed" } else { "" }
            ),
        ),
        EventKind::PartitionChanged { isolated_from } if isolated_from.is_empty() => {
            mark(MarkKind::Fault, "healed".into())
        }
        EventKind::PartitionChanged { isolated_from } => mark(
            MarkKind::Fault,
            format!(
                "cut from {:?}",
                isolated_from.iter().map(|n| n.0).collect::<Vec<_>>()
            ),
        ),
        EventKind::LinkFaultChanged { to, fault } => mark(
            MarkKind::Fault,
            match fault {
                Some(fault) => format!("link to {to}: {}", super::fault_words(Some(fault))),
                None => format!("link to {to} healed"),
            },
        ),
        EventKind::DiskFaultChanged { write_delay_ms } => {
            mark(MarkKind::Fault, format!("disk delay {write_delay_ms} ms"))
        }
        EventKind::ShuttingDown => mark(
            MarkKind::Process(ProcessState::Dead),
            "shutting down".into(),
        ),
        _ => {}
    }
    let Some(message) = message_of(event) else {
        return;
    };
    let msg = message_id(&event.kind);
    match message.reported {
        Reported::AtSend => {
            let heartbeat = message.kind == FlightKind::Heartbeat;
            let arrow = arrow_of(message, msg, Some(end), None, heartbeat);
            // An arrival reported before its send (the two streams are read apart) is joined.
            match by_key.get(&(arrow.from, msg)).copied() {
                Some(at) if msg != 0 && arrows[at].sent.is_none() && arrows[at].to == arrow.to => {
                    let existing = &mut arrows[at];
                    existing.sent = Some(end);
                    existing.kind = arrow.kind;
                    existing.detail = arrow.detail;
                    existing.heartbeat = heartbeat;
                }
                _ => push_arrow(arrows, by_key, arrow),
            }
        }
        Reported::AtArrival => {
            // An ack, reported by the leader that took it in.
            let match_index = match &event.kind {
                EventKind::AppendAcked { match_index, .. } => match_index.0,
                _ => 0,
            };
            let previous = last_match.insert((node, message.from), match_index);
            let heartbeat = previous == Some(match_index);
            match by_key.get(&(message.from, msg)).copied() {
                Some(at) if msg != 0 && arrows[at].to == node => {
                    let existing = &mut arrows[at];
                    existing.received.get_or_insert(end);
                    existing.kind = message.kind;
                    existing.detail = message.detail;
                    existing.heartbeat = heartbeat;
                }
                _ => push_arrow(
                    arrows,
                    by_key,
                    arrow_of(message, msg, None, Some(end), heartbeat),
                ),
            }
        }
    }
}

fn arrow_of(
    message: Message,
    msg: u64,
    sent: Option<End>,
    received: Option<End>,
    heartbeat: bool,
) -> Arrow {
    Arrow {
        from: message.from,
        to: message.to,
        msg,
        kind: message.kind,
        received_as: String::new(),
        detail: message.detail,
        sent,
        received,
        dropped: None,
        heartbeat,
    }
}

fn push_arrow(arrows: &mut Vec<Arrow>, by_key: &mut HashMap<(NodeId, u64), usize>, arrow: Arrow) {
    if arrow.msg != 0 {
        by_key.insert((arrow.from, arrow.msg), arrows.len());
    }
    arrows.push(arrow);
}

/// The `msg` a message-reporting event carries (0: not known).
fn message_id(kind: &EventKind) -> u64 {
    match kind {
        EventKind::VoteRequested { msg, .. }
        | EventKind::VoteGranted { msg, .. }
        | EventKind::VoteDenied { msg, .. }
        | EventKind::AppendSent { msg, .. }
        | EventKind::AppendAcked { msg, .. }
        | EventKind::AppendRejected { msg, .. }
        | EventKind::TimeoutNowSent { msg, .. }
        | EventKind::SnapshotSent { msg, .. } => *msg,
        _ => 0,
    }
}

/// A kind for a message known only by the name its receiver gave it.
fn kind_of_name(name: &str) -> FlightKind {
    let name = name.to_ascii_lowercase();
    if name.contains("vote") && (name.contains("resp") || name.contains("reply")) {
        FlightKind::VoteGranted
    } else if name.contains("vote") {
        FlightKind::VoteRequest
    } else if name.contains("timeout") {
        FlightKind::TimeoutNow
    } else if name.contains("append") && (name.contains("resp") || name.contains("reply")) {
        FlightKind::Ack
    } else {
        FlightKind::Append { entries: 0 }
    }
}

/// Per-node shifts that put every node's times on one clock with every known message arriving at or
/// after its send.
///
/// They start from the live view's estimates (`clocks`, NTP-style from the quickest message each way,
/// see [`super::ClockOffsets`]), so the diagram and the ring agree. What those leave pointing up (a
/// pair heard one way only, a clock that drifted since) is relaxed: the receiver moves just enough.
pub fn shifts(
    arrows: &[Arrow],
    lanes: &BTreeSet<NodeId>,
    clocks: &BTreeMap<NodeId, i64>,
) -> BTreeMap<NodeId, i64> {
    // (from, to) → the smallest arrival minus send seen.
    let mut quickest: BTreeMap<(NodeId, NodeId), i64> = BTreeMap::new();
    for arrow in arrows {
        if let (Some(sent), Some(received)) = (arrow.sent, arrow.received) {
            let delta = received.at_ms as i64 - sent.at_ms as i64;
            quickest
                .entry((arrow.from, arrow.to))
                .and_modify(|q| *q = (*q).min(delta))
                .or_insert(delta);
        }
    }
    let mut offsets: BTreeMap<NodeId, i64> = lanes
        .iter()
        .map(|node| (*node, -clocks.get(node).copied().unwrap_or(0)))
        .collect();
    for _ in 0..lanes.len() {
        let mut moved = false;
        for ((from, to), delta) in &quickest {
            let shifted = delta + offsets[to] - offsets[from];
            if shifted < 0 {
                *offsets.entry(*to).or_default() -= shifted;
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    offsets
}

#[cfg(test)]
mod tests;
