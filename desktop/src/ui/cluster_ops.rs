//! The actions that change what the cluster is made of: wipe a node's disk, take a snapshot, add a
//! node, remove the selected one. Impossible ones are disabled with the reason on hover.

use super::{palette, ClusterIntent, Intent};
use crate::model::{bytes_words, ClusterState, ProcessState, MAX_NODES};
use egui::RichText;
use flotilla_shared::api::MemberRole;
use flotilla_shared::NodeId;

/// "Add node" in words, for the button and tests.
pub const ADD_NODE: &str = "Add node";

pub fn cluster_ops_ui(
    ui: &mut egui::Ui,
    state: &ClusterState,
    selected: Option<NodeId>,
    controls_processes: bool,
    live: bool,
) -> Vec<Intent> {
    let mut intents = Vec::new();
    let mut button =
        |ui: &mut egui::Ui, label: String, why_not: Option<String>, hover: &str, intent| {
            let why_not = if live {
                why_not
            } else {
                Some("the view shows the recording: go live to act".to_owned())
            };
            let response = ui.add_enabled(why_not.is_none(), egui::Button::new(label));
            let response = match why_not {
                Some(reason) => response.on_disabled_hover_text(reason),
                None => response.on_hover_text(hover),
            };
            if response.clicked() {
                intents.push(Intent::Cluster(intent));
            }
        };
    let no_process = "attached cluster: the desktop does not own these processes".to_owned();
    let leader = state.leader().map(|leader| leader.id);
    ui.horizontal_wrapped(|ui| {
        if let Some(id) = selected.filter(|id| state.nodes.contains_key(id)) {
            let node = &state.nodes[&id];
            let paused = node.process == ProcessState::Paused;
            let up = node.is_up();
            button(
                ui,
                format!("Wipe disk and restart node {id}"),
                if !controls_processes {
                    Some(no_process.clone())
                } else if paused {
                    Some("paused: resume it first".into())
                } else {
                    None
                },
                "Stops the node, deletes its data (its data dir, or its container's volume) and \
                 starts it again blank: the leader rebuilds it",
                ClusterIntent::Wipe(id),
            );
            button(
                ui,
                format!("Take snapshot on node {id}"),
                (!up).then(|| "the node is down".to_owned()),
                "Snapshots the node's state machine now and compacts its log",
                ClusterIntent::TakeSnapshot(id),
            );
            let members = state
                .configuration()
                .map_or(state.nodes.len(), |config| config.members.len());
            button(
                ui,
                format!("Remove node {id}"),
                if leader.is_none() {
                    Some("no leader to change the configuration".into())
                } else if members <= 1 && state.member_role(id).is_some() {
                    Some("the last member cannot be removed".into())
                } else {
                    None
                },
                "Removes the node from the configuration (a leader steps down once that \
                 commits), then stops it",
                ClusterIntent::RemoveNode(id),
            );
        }
        button(
            ui,
            ADD_NODE.to_owned(),
            if !controls_processes {
                Some(no_process.clone())
            } else if state.nodes.len() >= MAX_NODES {
                Some(format!("the ring shows at most {MAX_NODES} nodes"))
            } else if leader.is_none() {
                Some("no leader to add it".into())
            } else {
                None
            },
            "Starts a new node that waits to join, adds it as a learner, and promotes it to voter \
             once it has caught up",
            ClusterIntent::AddNode,
        );
    });
    if let Some(id) = selected {
        if let Some(node) = state.nodes.get(&id) {
            let mut words = Vec::new();
            match state.member_role(id) {
                Some(MemberRole::Voter) => {}
                Some(MemberRole::Learner) => words.push("learner (does not vote)".to_owned()),
                None => words.push("not in the configuration".to_owned()),
            }
            if node.snapshot.index > 0 {
                words.push(format!(
                    "snapshot at {} (term {}{})",
                    node.snapshot.index,
                    node.snapshot.term,
                    if node.snapshot.bytes > 0 {
                        format!(", {}", bytes_words(node.snapshot.bytes))
                    } else {
                        String::new()
                    }
                ));
            }
            if node.snapshot.first_log_index > 1 {
                words.push(format!("log from {}", node.snapshot.first_log_index));
            }
            if !words.is_empty() {
                ui.label(RichText::new(words.join(" · ")).color(palette::DIM_TEXT));
            }
        }
    }
    intents
}
