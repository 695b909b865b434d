//! The failover stopwatch: the running time to a new leader and to its first commit, and a table
//! of past failovers.

use super::palette;
use crate::model::{ClusterState, Failover};
use egui::RichText;

fn seconds(ms: u64) -> String {
    format!("{:.2} s", ms as f64 / 1000.0)
}

fn outcome(failover: &Failover) -> (String, String, String) {
    let leader = match failover.new_leader {
        Some((node, term, _)) => format!("node {node} (term {})", term.0),
        None => failover.abandoned.clone().unwrap_or_else(|| "-".into()),
    };
    let to_leader = failover.to_leader_ms().map_or("-".into(), seconds);
    let to_commit = failover.to_commit_ms().map_or("-".into(), seconds);
    (leader, to_leader, to_commit)
}

/// Draws the stopwatch at `now_ms` (the view's clock).
pub fn failover_ui(ui: &mut egui::Ui, state: &ClusterState, now_ms: u64) {
    let failovers = &state.failovers;
    match &failovers.running {
        Some(running) => {
            let elapsed = now_ms.saturating_sub(running.shown_started_ms);
            ui.label(
                RichText::new(format!("{}: {}", running.cause, seconds(elapsed)))
                    .strong()
                    .size(15.0)
                    .color(palette::TIMER),
            );
            let leader = match (running.new_leader, running.to_leader_ms()) {
                (Some((node, _, _)), Some(ms)) => {
                    format!("new leader: node {node} after {}", seconds(ms))
                }
                _ => "new leader: waiting".into(),
            };
            ui.label(format!("{leader} · first commit: waiting"));
        }
        None if failovers.past.is_empty() => {
            ui.label(
                RichText::new("Kill, pause or cut off the leader to time a failover.")
                    .color(palette::DIM_TEXT),
            );
        }
        None => {}
    }
    if failovers.past.is_empty() {
        return;
    }
    egui::Grid::new("failovers")
        .striped(true)
        .num_columns(4)
        .show(ui, |ui| {
            for heading in ["what", "new leader", "to leader", "to commit"] {
                ui.label(RichText::new(heading).strong().size(11.5));
            }
            ui.end_row();
            for failover in failovers.past.iter().rev() {
                let (leader, to_leader, to_commit) = outcome(failover);
                ui.label(RichText::new(&failover.cause).size(11.5));
                ui.label(RichText::new(leader).size(11.5));
                ui.label(RichText::new(to_leader).monospace().size(11.5));
                ui.label(RichText::new(to_commit).monospace().size(11.5));
                ui.end_row();
            }
        });
}
