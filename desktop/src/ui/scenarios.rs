//! The guided scenarios: a menu to start one, its step's caption, and pause, step and stop.

use super::{palette, Intent, ScenarioIntent};
use crate::model::scenario::{self, Run, RunState};
use egui::RichText;

pub fn scenarios_ui(ui: &mut egui::Ui, run: Option<&Run>, live: bool) -> Vec<Intent> {
    let mut intents = Vec::new();
    ui.menu_button("Scenarios", |ui| {
        for scenario in scenario::all() {
            let busy = run.is_some_and(|run| !run.is_over());
            let button = ui.add_enabled(live && !busy, egui::Button::new(scenario.name));
            let button = if busy {
                button.on_disabled_hover_text("another scenario is under way")
            } else {
                button.on_disabled_hover_text("only on the live cluster")
            };
            if button.clicked() {
                intents.push(Intent::Scenario(ScenarioIntent::Start(scenario.name)));
                ui.close();
            }
        }
    });
    intents
}

/// The caption and controls of the scenario under way (or just ended).
pub fn scenario_run_ui(ui: &mut egui::Ui, run: &Run) -> Vec<Intent> {
    let mut intents = Vec::new();
    let color = match run.state {
        RunState::Failed(_) => palette::BAD,
        RunState::Finished => palette::GOOD,
        _ => palette::TIMER,
    };
    ui.label(RichText::new(run.caption()).color(color));
    ui.horizontal(|ui| {
        match run.state {
            RunState::Running if ui.button("Pause scenario").clicked() => {
                intents.push(Intent::Scenario(ScenarioIntent::Pause));
            }
            RunState::Paused => {
                if ui.button("Resume scenario").clicked() {
                    intents.push(Intent::Scenario(ScenarioIntent::Resume));
                }
                if ui.button("Next step").clicked() {
                    intents.push(Intent::Scenario(ScenarioIntent::Step));
                }
            }
            _ => {}
        }
        let stop = if run.is_over() {
            "Close"
        } else {
            "Stop scenario"
        };
        if ui.button(stop).clicked() {
            intents.push(Intent::Scenario(ScenarioIntent::Stop));
        }
    });
    intents
}
