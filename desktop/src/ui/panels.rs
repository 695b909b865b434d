//! The top bar (summary, tempo, submit), the node actions and the timeline controls.

use super::{clock_text, palette, ClusterIntent, Intent, Tempo};
use crate::model::{ClusterState, ProcessState, SubmitRecord, Timeline, ViewMode};
use egui::RichText;
use flotilla_shared::event::Role;
use flotilla_shared::NodeId;

/// What the top bar edits across frames.
#[derive(Clone, Debug, PartialEq)]
pub struct TopBarState {
    pub submit_text: String,
    pub tempo: Tempo,
    /// The latest notice and whether it reports a failure.
    pub notice: Option<(String, bool)>,
    pub description: String,
}

/// The leader and term in words, e.g. "leader: node 2 · term 5".
pub fn summary(state: &ClusterState) -> String {
    match state.leader() {
        Some(leader) => format!("leader: node {} · term {}", leader.id, leader.term.0),
        None => format!("no leader · term {}", state.max_term().0),
    }
}

pub fn top_bar_ui(
    ui: &mut egui::Ui,
    state: &ClusterState,
    bar: &mut TopBarState,
    mode: ViewMode,
) -> Vec<Intent> {
    let mut intents = Vec::new();
    ui.horizontal(|ui| {
        ui.label(RichText::new("Flotilla").heading().strong());
        ui.label(RichText::new(&bar.description).color(palette::DIM_TEXT));
        ui.separator();
        let color = if state.leader().is_some() {
            palette::GOOD
        } else {
            palette::TIMER
        };
        ui.label(RichText::new(summary(state)).strong().color(color));
        if mode != ViewMode::Live {
            ui.label(RichText::new("PAUSED: viewing the recording").color(palette::TIMER));
        }
        ui.separator();
        let before = bar.tempo;
        egui::ComboBox::new("tempo", "tempo")
            .selected_text(bar.tempo.label())
            .show_ui(ui, |ui| {
                for factor in Tempo::CHOICES {
                    let tempo = Tempo { factor };
                    ui.selectable_value(&mut bar.tempo, tempo, tempo.label());
                }
            })
            .response
            .on_hover_text("Slows the cluster itself: every node's heartbeat and election timeout");
        if bar.tempo != before {
            intents.push(Intent::Cluster(ClusterIntent::SetTempo(bar.tempo)));
        }
        ui.separator();
        let field = ui.add(
            egui::TextEdit::singleline(&mut bar.submit_text)
                .hint_text("type a message, Enter")
                .desired_width(220.0),
        );
        let entered = field.lost_focus() && ui.input(|input| input.key_pressed(egui::Key::Enter));
        let clicked = ui.button("Submit").clicked();
        if (entered || clicked) && !bar.submit_text.trim().is_empty() {
            intents.push(Intent::Cluster(ClusterIntent::Submit(
                bar.submit_text.trim().to_string(),
            )));
            bar.submit_text.clear();
            if entered {
                field.request_focus();
            }
        }
    });
    ui.horizontal(|ui| {
        if let Some(last) = state.submits.back() {
            ui.label(submit_words(last));
            ui.separator();
        }
        if let Some((text, error)) = &bar.notice {
            let color = if *error {
                palette::BAD
            } else {
                palette::DIM_TEXT
            };
            ui.label(RichText::new(text).color(color));
        }
    });
    intents
}

fn submit_words(submit: &SubmitRecord) -> RichText {
    match &submit.outcome {
        Ok((index, term)) => RichText::new(format!(
            "last message '{}': committed at index {index} (term {term}) in {:.0} ms",
            submit.text, submit.latency_ms
        ))
        .color(palette::GOOD),
        Err(error) => RichText::new(format!("last message '{}' failed: {error}", submit.text))
            .color(palette::BAD),
    }
}

/// The actions for the selected node; impossible ones are disabled with the reason on hover.
pub fn node_actions_ui(
    ui: &mut egui::Ui,
    state: &ClusterState,
    selected: Option<NodeId>,
    controls_processes: bool,
    live: bool,
) -> Vec<Intent> {
    let mut intents = Vec::new();
    ui.horizontal_wrapped(|ui| {
        for id in state.nodes.keys() {
            if ui
                .selectable_label(selected == Some(*id), format!("node {id}"))
                .clicked()
            {
                intents.push(Intent::Select(*id));
            }
        }
    });
    let Some(id) = selected else {
        ui.label(RichText::new("Click a node to act on it.").color(palette::DIM_TEXT));
        return intents;
    };
    let Some(node) = state.nodes.get(&id) else {
        return intents;
    };
    let role = match node.role {
        Role::Follower => "follower",
        Role::PreCandidate => "pre-candidate",
        Role::Candidate => "candidate",
        Role::Leader => "leader",
    };
    let process = match node.process {
        ProcessState::Running if node.reachable => "running",
        ProcessState::Running => "not answering",
        ProcessState::Paused => "paused (SIGSTOP)",
        ProcessState::Dead => "dead",
    };
    // A dead node has no role: say what it was when last heard from.
    let state_words = if node.process == ProcessState::Dead {
        format!("dead (last known: {role}, term {})", node.term.0)
    } else {
        format!("{role}, term {}, {process}", node.term.0)
    };
    ui.label(format!(
        "node {id}: {state_words}\nlog {} · commit {} · durable {} · applied {}",
        node.log.last_index(),
        node.commit_index,
        node.persisted_index,
        node.applied_index
    ));
    if !node.isolated_from.is_empty() {
        let list: Vec<String> = node.isolated_from.iter().map(|n| n.to_string()).collect();
        ui.label(RichText::new(format!("isolated from {}", list.join(", "))).color(palette::CUT));
    }
    let no_process = "attached cluster: the desktop does not own these processes";
    let not_live = "the view shows the recording: go live to act";
    let dead = node.process == ProcessState::Dead;
    let paused = node.process == ProcessState::Paused;
    let isolated = !node.isolated_from.is_empty();
    let leader = state.leader().map(|leader| leader.id);
    let others_isolated = state
        .nodes
        .values()
        .any(|other| other.isolated_from.contains(&id));
    let mut button =
        |ui: &mut egui::Ui, label: String, why_not: Option<&str>, intent: ClusterIntent| {
            let why_not = if live { why_not } else { Some(not_live) };
            let response = ui.add_enabled(why_not.is_none(), egui::Button::new(label));
            let response = match why_not {
                Some(reason) => response.on_disabled_hover_text(reason),
                None => response,
            };
            if response.clicked() {
                intents.push(Intent::Cluster(intent));
            }
        };
    ui.horizontal_wrapped(|ui| {
        let process_reason = |ok: bool, reason: &'static str| -> Option<&'static str> {
            if !controls_processes {
                Some(no_process)
            } else if ok {
                None
            } else {
                Some(reason)
            }
        };
        button(
            ui,
            format!("Kill node {id}"),
            process_reason(!dead, "already dead"),
            ClusterIntent::Kill(id),
        );
        button(
            ui,
            format!("Restart node {id}"),
            process_reason(dead, "still running: kill it first"),
            ClusterIntent::Restart(id),
        );
        button(
            ui,
            format!("Pause node {id}"),
            process_reason(
                !dead && !paused,
                if dead { "dead" } else { "already paused" },
            ),
            ClusterIntent::Pause(id),
        );
        button(
            ui,
            format!("Resume node {id}"),
            process_reason(paused, "not paused"),
            ClusterIntent::Resume(id),
        );
        button(
            ui,
            format!("Isolate node {id}"),
            if dead {
                Some("dead: nothing to cut off")
            } else if isolated {
                Some("already isolated")
            } else {
                None
            },
            ClusterIntent::Isolate(id),
        );
        button(
            ui,
            format!("Heal node {id}"),
            if isolated || others_isolated {
                None
            } else {
                Some("not partitioned")
            },
            ClusterIntent::Heal(id),
        );
        let transfer_reason = if leader == Some(id) {
            Some("already the leader")
        } else if leader.is_none() {
            Some("no leader to hand over from")
        } else if dead || paused {
            Some("the node is down")
        } else {
            None
        };
        button(
            ui,
            format!("Make node {id} leader"),
            transfer_reason,
            ClusterIntent::TransferLeadership(id),
        );
    });
    intents
}

/// Pause, step, scrub, replay and back to live.
pub fn timeline_ui(
    ui: &mut egui::Ui,
    timeline: &Timeline,
    mode: ViewMode,
    replay_speed: &mut f64,
) -> Vec<Intent> {
    let mut intents = Vec::new();
    ui.horizontal(|ui| {
        match mode {
            ViewMode::Live => {
                if ui.button("Pause view").on_hover_text("space").clicked() {
                    intents.push(Intent::PauseView);
                }
            }
            _ => {
                if ui.button("Go live").on_hover_text("space").clicked() {
                    intents.push(Intent::GoLive);
                }
            }
        }
        if ui
            .button("< Step")
            .on_hover_text("step back (<-)")
            .clicked()
        {
            intents.push(Intent::Step(-1));
        }
        if ui
            .button("Step >")
            .on_hover_text("step forward (->)")
            .clicked()
        {
            intents.push(Intent::Step(1));
        }
        egui::ComboBox::new("replay-speed", "speed")
            .width(60.0)
            .selected_text(format!("{}x", replay_speed))
            .show_ui(ui, |ui| {
                for speed in [0.1, 0.25, 0.5, 1.0, 2.0, 5.0] {
                    ui.selectable_value(replay_speed, speed, format!("{speed}x"));
                }
            });
        if ui.button("Replay").clicked() {
            intents.push(Intent::Replay {
                speed: *replay_speed,
            });
        }
        let end = timeline.end().saturating_sub(1);
        let mut position = match mode {
            ViewMode::Live => end,
            ViewMode::Paused { position } => position,
            ViewMode::Replay { clock_ms, .. } => timeline.position_at_time(clock_ms as u64),
        };
        let start = timeline.start();
        ui.spacing_mut().slider_width = (ui.available_width() - 300.0).max(100.0);
        let slider = ui.add(
            egui::Slider::new(&mut position, start..=end.max(start))
                .show_value(false)
                .text("recording"),
        );
        if slider.changed() {
            intents.push(Intent::Scrub(position));
        }
        let shown = timeline.time_of(position).map_or("-".into(), clock_text);
        ui.label(
            RichText::new(format!("{shown} · {} records", timeline.len()))
                .monospace()
                .size(11.0),
        );
        // The message at the shown moment, with its other end (send → receive or drop).
        if let Some(pair) = timeline
            .get(position)
            .and_then(|record| record.event())
            .and_then(|event| {
                let words = timeline.pairs().describe_other_end(event, end)?;
                Some(format!("n{} {} {words}", event.node, event.kind.name()))
            })
        {
            ui.label(RichText::new(pair).size(11.0).color(palette::DIM_TEXT));
        }
    });
    intents
}
