//! The app's side of guided scenarios: the runner's actions go out as the intents a click sends.

use super::FlotillaApp;
use crate::model::scenario::{self, Action, Run};
use crate::ui::{ClusterIntent, Intent, ScenarioIntent};
use flotilla_shared::api::LinkFault;

impl FlotillaApp {
    /// The actions the scenario under way takes now, as intents (none while a recording is shown).
    pub(super) fn tick_scenario(&mut self, now_ms: u64) -> Vec<Intent> {
        if self.viewing.is_some() {
            return Vec::new();
        }
        let Some(run) = &mut self.scenario else {
            return Vec::new();
        };
        run.tick(&self.model.live, now_ms)
            .into_iter()
            .map(|action| {
                Intent::Cluster(match action {
                    Action::Kill(node) => ClusterIntent::Kill(node),
                    Action::Restart(node) => ClusterIntent::Restart(node),
                    Action::Pause(node) => ClusterIntent::Pause(node),
                    Action::Resume(node) => ClusterIntent::Resume(node),
                    Action::Isolate(node) => ClusterIntent::Isolate(node),
                    Action::Heal(node) => ClusterIntent::Heal(node),
                    Action::Submit(text) => ClusterIntent::Submit(text),
                    Action::CutLink { from, to, cut } => ClusterIntent::SetLinkFault {
                        from,
                        to,
                        fault: cut.then_some(LinkFault {
                            cut: true,
                            ..LinkFault::default()
                        }),
                    },
                    Action::DiskDelay {
                        node,
                        write_delay_ms,
                    } => ClusterIntent::SetDiskDelay {
                        node,
                        write_delay_ms,
                    },
                    Action::TakeSnapshot(node) => ClusterIntent::TakeSnapshot(node),
                    Action::Wipe(node) => ClusterIntent::Wipe(node),
                    Action::AddNode => ClusterIntent::AddNode,
                    Action::RemoveNode(node) => ClusterIntent::RemoveNode(node),
                })
            })
            .collect()
    }

    /// Whether a scenario is under way (its waits need frames even when nothing else moves).
    pub(super) fn scenario_running(&self) -> bool {
        self.scenario.as_ref().is_some_and(|run| !run.is_over())
    }

    pub(super) fn apply_scenario(&mut self, intent: ScenarioIntent, now_ms: u64) {
        match intent {
            ScenarioIntent::Start(name) => {
                self.scenario = scenario::all()
                    .into_iter()
                    .find(|scenario| scenario.name == name)
                    .map(|scenario| Run::start(scenario, now_ms));
            }
            ScenarioIntent::Pause => self.scenario.iter_mut().for_each(Run::pause),
            ScenarioIntent::Resume => self.scenario.iter_mut().for_each(|run| run.resume(now_ms)),
            ScenarioIntent::Step => self
                .scenario
                .iter_mut()
                .for_each(|run| run.step_once(now_ms)),
            ScenarioIntent::Stop => self.scenario = None,
        }
    }
}
