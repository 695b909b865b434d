//! The event list, filterable by node and kind, newest first, up to the moment the view shows.

use super::{clock_text, palette};
use crate::model::{Record, Timeline};
use flotilla_shared::event::{Event, EventKind};
use flotilla_shared::NodeId;

/// Every event kind, in the order the filter offers them.
pub const KINDS: [&str; 25] = [
    "role_changed",
    "term_changed",
    "vote_requested",
    "vote_granted",
    "vote_denied",
    "append_sent",
    "append_acked",
    "append_rejected",
    "entry_appended",
    "log_truncated",
    "entry_persisted",
    "commit_advanced",
    "applied",
    "election_timer_reset",
    "election_timeout",
    "check_quorum_failed",
    "timeout_now_sent",
    "read_released",
    "partition_changed",
    "timing_changed",
    "shutting_down",
    "message_received",
    "message_dropped",
    "link_fault_changed",
    "disk_fault_changed",
];

/// Rows shown at most; older ones are a scrub away.
const MAX_ROWS: usize = 300;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventFilter {
    pub node: Option<NodeId>,
    pub kind: Option<&'static str>,
    /// Heartbeats and their acks drown everything else; hidden unless asked for.
    pub show_heartbeats: bool,
}

impl EventFilter {
    pub fn accepts(&self, event: &Event) -> bool {
        if self.node.is_some_and(|node| node != event.node) {
            return false;
        }
        if self.kind.is_some_and(|kind| kind != event.kind.name()) {
            return false;
        }
        if !self.show_heartbeats && self.kind.is_none() {
            let heartbeat = match &event.kind {
                EventKind::AppendSent { entries, .. } => *entries == 0,
                // A receive is told on its send's row too (see `MessagePairs`).
                EventKind::AppendAcked { .. }
                | EventKind::ElectionTimerReset { .. }
                | EventKind::MessageReceived { .. } => true,
                _ => false,
            };
            return !heartbeat;
        }
        true
    }
}

/// One line of words for an event.
pub fn describe(event: &Event) -> String {
    match &event.kind {
        EventKind::RoleChanged {
            role,
            term,
            leader_id,
        } => match leader_id {
            Some(leader) => format!("-> {} in term {} (leader {leader})", role.as_str(), term.0),
            None => format!("-> {} in term {}", role.as_str(), term.0),
        },
        EventKind::TermChanged { term } => format!("term {}", term.0),
        EventKind::VoteRequested {
            to, term, pre_vote, ..
        } => {
            format!(
                "asks node {to} for a {}vote, term {}",
                if *pre_vote { "pre-" } else { "" },
                term.0
            )
        }
        EventKind::VoteGranted {
            to, term, pre_vote, ..
        } => {
            format!(
                "grants node {to} its {}vote, term {}",
                if *pre_vote { "pre-" } else { "" },
                term.0
            )
        }
        EventKind::VoteDenied { to, reason, .. } => format!("denies node {to}: {reason}"),
        EventKind::AppendSent {
            to,
            entries,
            prev_log_index,
            commit,
            ..
        } => {
            if *entries == 0 {
                format!("heartbeat to node {to} (commit {})", commit.0)
            } else {
                let noun = if *entries == 1 { "entry" } else { "entries" };
                format!("{entries} {noun} to node {to} after {}", prev_log_index.0)
            }
        }
        EventKind::AppendAcked {
            from, match_index, ..
        } => {
            format!("ack from node {from}, match {}", match_index.0)
        }
        EventKind::AppendRejected { to, reason, .. } => {
            format!("rejects node {to}'s append: {reason}")
        }
        EventKind::EntryAppended { first, last, term } => {
            format!("appended {}-{} (term {})", first.0, last.0, term.0)
        }
        EventKind::LogTruncated { index } => format!("log cut back to {}", index.0),
        EventKind::EntryPersisted { index } => format!("durable up to {}", index.0),
        EventKind::CommitAdvanced { commit_index } => format!("commit -> {}", commit_index.0),
        EventKind::Applied { index } => format!("applied up to {}", index.0),
        EventKind::ElectionTimerReset { timeout_ms, .. } => {
            format!("election timer {timeout_ms} ms")
        }
        EventKind::ElectionTimeout { term } => format!("election timeout in term {}", term.0),
        EventKind::CheckQuorumFailed { term } => format!("lost the quorum in term {}", term.0),
        EventKind::TimeoutNowSent { to, .. } => format!("tells node {to} to campaign now"),
        EventKind::ReadReleased { read_index } => format!("read released at {}", read_index.0),
        EventKind::PartitionChanged { isolated_from } if isolated_from.is_empty() => {
            "healed".into()
        }
        EventKind::PartitionChanged { isolated_from } => format!(
            "isolated from {}",
            isolated_from
                .iter()
                .map(|id| id.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        EventKind::TimingChanged {
            heartbeat_ms,
            election_timeout_ms,
        } => format!(
            "tempo: heartbeat {heartbeat_ms} ms, election {}-{} ms",
            election_timeout_ms[0], election_timeout_ms[1]
        ),
        EventKind::ShuttingDown => "shutting down".into(),
        EventKind::MessageRejected {
            from,
            message,
            detail,
            ..
        } => format!("refuses node {from}'s {message}: {detail}"),
        EventKind::SnapshotTaken { index, bytes, .. } => {
            format!("snapshot at index {} ({bytes} bytes)", index.0)
        }
        EventKind::LogCompacted { first_log_index } => {
            format!("log compacted: starts at {}", first_log_index.0)
        }
        EventKind::SnapshotSent {
            to,
            index,
            offset,
            bytes,
            total_bytes,
            ..
        } => format!(
            "sends node {to} snapshot {} bytes {offset}..{} of {total_bytes}",
            index.0,
            offset + bytes
        ),
        EventKind::SnapshotInstalled {
            from, index, bytes, ..
        } => format!(
            "installed node {from}'s snapshot at {} ({bytes} bytes)",
            index.0
        ),
        EventKind::MembershipChanged {
            members,
            config_index,
            committed,
        } => {
            let ids: Vec<String> = members.iter().map(|m| m.id.to_string()).collect();
            let state = if *committed { "committed" } else { "appended" };
            format!(
                "configuration {} {state}: [{}]",
                config_index.0,
                ids.join(", ")
            )
        }
        EventKind::MessageReceived { from, msg, message } => {
            format!("receives node {from}'s {message} #{msg}")
        }
        EventKind::MessageDropped { to, msg, reason } => {
            format!("message #{msg} to node {to} dropped: {}", reason.as_str())
        }
        EventKind::LinkFaultChanged { to, fault } => match fault {
            Some(fault) => format!(
                "link to node {to}: cut={} delay={}±{} ms loss={}",
                fault.cut, fault.delay_ms, fault.jitter_ms, fault.loss
            ),
            None => format!("link to node {to} healed"),
        },
        EventKind::DiskFaultChanged { write_delay_ms } => {
            format!("disk writes delayed {write_delay_ms} ms")
        }
    }
}

/// Draws the filters and the list of events up to `until` (a timeline position).
pub fn events_ui(
    ui: &mut egui::Ui,
    timeline: &Timeline,
    until: u64,
    nodes: &[NodeId],
    filter: &mut EventFilter,
) {
    ui.horizontal(|ui| {
        egui::ComboBox::new("event-node", "node")
            .width(80.0)
            .selected_text(
                filter
                    .node
                    .map_or("all nodes".to_string(), |n| format!("node {n}")),
            )
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut filter.node, None, "all nodes");
                for node in nodes {
                    ui.selectable_value(&mut filter.node, Some(*node), format!("node {node}"));
                }
            });
        egui::ComboBox::new("event-kind", "kind")
            .width(150.0)
            .selected_text(filter.kind.unwrap_or("all kinds"))
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut filter.kind, None, "all kinds");
                for kind in KINDS {
                    ui.selectable_value(&mut filter.kind, Some(kind), kind);
                }
            });
    });
    ui.checkbox(
        &mut filter.show_heartbeats,
        "show heartbeats, timer resets and receives",
    );
    let rows: Vec<&Event> = timeline
        .iter()
        .rev()
        .filter(|(position, _)| *position <= until)
        .filter_map(|(_, record)| match record {
            Record::Event(event) => Some(event),
            _ => None,
        })
        .filter(|event| filter.accepts(event))
        .take(MAX_ROWS)
        .collect();
    egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .show_rows(ui, 16.0, rows.len(), |ui, range| {
            for event in &rows[range] {
                ui.horizontal(|ui| {
                    ui.label(
                        egui::RichText::new(clock_text(event.at_ms))
                            .monospace()
                            .size(11.0)
                            .color(palette::DIM_TEXT),
                    );
                    ui.label(
                        egui::RichText::new(format!("n{}", event.node))
                            .strong()
                            .size(12.0),
                    );
                    ui.label(egui::RichText::new(describe(event)).size(12.0))
                        .on_hover_text(format!("{} · seq {}", event.kind.name(), event.seq));
                    if let Some(other_end) = timeline.pairs().describe_other_end(event, until) {
                        ui.label(
                            egui::RichText::new(other_end)
                                .size(11.0)
                                .color(palette::DIM_TEXT),
                        );
                    }
                });
            }
        });
}
