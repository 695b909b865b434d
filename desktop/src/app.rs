//! The eframe app: drains the backend's updates into the model, draws the panels, and applies the
//! intents they return in one place.

use crate::backend::{unix_ms, BackendHandle, BackendThread, Command, Update};
use crate::model::{ClusterModel, ViewMode};
use crate::ui::{self, palette, ClusterIntent, EventFilter, Intent, Tempo, TopBarState};
use egui::RichText;
use flotilla_shared::NodeId;
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod recordings;
mod scenarios;
pub use recordings::Viewing;

/// Where "now" comes from: the wall clock, or a fixed time for tests and benchmarks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    System,
    Fixed(u64),
}

/// How long one frame may spend moving updates into the model.
const DRAIN_BUDGET: Duration = Duration::from_millis(10);

pub struct FlotillaApp {
    pub model: ClusterModel,
    pub selected: Option<NodeId>,
    pub bar: TopBarState,
    pub filter: EventFilter,
    pub replay_speed: f64,
    pub controls_processes: bool,
    pub clock: Clock,
    /// What the backend waits for before there is a cluster to show (e.g. `docker compose up`).
    pub waiting: Option<String>,
    /// Another cluster the user may watch instead (the running compose cluster).
    pub offer: Option<String>,
    /// The link whose faults are being edited, if any.
    pub link_editor: ui::LinkEditor,
    /// The space-time diagram's settings and cached layout.
    pub diagram: ui::DiagramState,
    /// The live safety checks over everything recorded.
    pub checks: crate::model::checks::Checks,
    pub recording_dialog: ui::RecordingDialog,
    /// The recording shown instead of the live cluster.
    pub viewing: Option<Viewing>,
    file_jobs: Vec<mpsc::Receiver<recordings::FileDone>>,
    /// The guided scenario under way (or just ended, until closed).
    pub scenario: Option<crate::model::scenario::Run>,
    nodes: Vec<NodeId>,
    last_frame: Option<Instant>,
    // Field order matters: the senders drop before the backend thread is joined.
    commands: tokio::sync::mpsc::UnboundedSender<Command>,
    updates: Option<mpsc::Receiver<Update>>,
    _backend_thread: Option<BackendThread>,
}

impl FlotillaApp {
    /// An app driven by a running backend.
    pub fn new(backend: BackendHandle, tempo: Tempo) -> Self {
        let BackendHandle {
            commands,
            updates,
            nodes,
            description,
            controls_processes,
            thread,
        } = backend;
        let mut app = Self::detached(&nodes, commands, controls_processes);
        app.updates = Some(updates);
        app._backend_thread = Some(thread);
        app.bar.description = description;
        app.bar.tempo = tempo;
        app
    }

    /// An app whose commands go to `commands` and whose records are fed by the caller (tests, bench).
    pub fn detached(
        nodes: &[NodeId],
        commands: tokio::sync::mpsc::UnboundedSender<Command>,
        controls_processes: bool,
    ) -> Self {
        Self {
            model: ClusterModel::new(nodes),
            selected: None,
            bar: TopBarState {
                submit_text: String::new(),
                tempo: Tempo::DEFAULT,
                notice: None,
                description: format!("{} nodes", nodes.len()),
            },
            filter: EventFilter::default(),
            replay_speed: 1.0,
            controls_processes,
            clock: Clock::System,
            waiting: None,
            offer: None,
            link_editor: ui::LinkEditor::default(),
            diagram: ui::DiagramState::default(),
            checks: crate::model::checks::Checks::new(),
            recording_dialog: ui::RecordingDialog {
                folder: crate::backend::local::default_data_root().join("recordings"),
                ..Default::default()
            },
            viewing: None,
            file_jobs: Vec::new(),
            scenario: None,
            nodes: nodes.to_vec(),
            last_frame: None,
            commands,
            updates: None,
            _backend_thread: None,
        }
    }

    pub fn now_ms(&self) -> u64 {
        match self.clock {
            Clock::System => unix_ms(),
            Clock::Fixed(at_ms) => at_ms,
        }
    }

    /// Moves pending updates into the model, for at most `budget`; returns whether more are waiting.
    pub fn drain_updates(&mut self, budget: Duration) -> bool {
        let Some(updates) = &self.updates else {
            return false;
        };
        let started = Instant::now();
        loop {
            // Another cluster (containers that appeared, or the user switched) starts the
            // recording over: what was recorded belongs to the one left.
            match updates.try_recv() {
                Ok(Update::Record(record)) => {
                    // A recording shown: the live cluster set aside goes on being recorded.
                    match self.viewing.as_mut().and_then(Viewing::live_model) {
                        Some(live) => live.record(record),
                        None => self.model.record(record),
                    }
                }
                Ok(Update::Notice { text, error }) => self.bar.notice = Some((text, error)),
                Ok(Update::Cluster(cluster)) => {
                    self.viewing = None;
                    self.model = ClusterModel::new(&cluster.nodes);
                    self.checks = crate::model::checks::Checks::new();
                    self.nodes = cluster.nodes;
                    self.controls_processes = cluster.controls_processes;
                    self.bar.description = cluster.description;
                    self.selected = None;
                    self.link_editor.close();
                }
                Ok(Update::Waiting(waiting)) => self.waiting = waiting,
                Ok(Update::Offer(offer)) => self.offer = offer,
                Err(_) => return false,
            }
            if started.elapsed() >= budget {
                return true;
            }
        }
    }

    /// Draws everything into `ui` and applies what the user asked for.
    pub fn frame_ui(&mut self, ui: &mut egui::Ui) {
        let wall_now = self.now_ms();
        let elapsed_ms = self
            .last_frame
            .replace(Instant::now())
            .map_or(0.0, |last| last.elapsed().as_secs_f64() * 1000.0);
        self.model.advance_replay(elapsed_ms);
        self.model.advance(wall_now);
        self.checks.catch_up(&self.model.timeline);
        let files_pending = self.poll_file_jobs();
        let mode = self.model.mode;
        let view_now = self.model.view_time_ms(wall_now);
        // The event list says no more than the picture shows.
        let until = self.model.shown_position();
        let mut intents = Vec::new();
        // Borrow the view once; the timeline and the view are separate fields of the model.
        let selected = self.selected;
        let controls_processes = self.controls_processes;
        // Nodes added from the window are filtered by too.
        let mut nodes = self.nodes.clone();
        nodes.extend(
            self.model
                .live
                .nodes
                .keys()
                .filter(|id| !self.nodes.contains(id)),
        );
        // A handful of numbers, copied: the view and the timeline borrow the model below.
        let clocks = self.model.clock_offsets().all().clone();
        let (view, timeline) = self.model.view_and_timeline();

        if let Some(offer) = &self.offer {
            let mut dismissed = false;
            egui::Panel::top("offer").show(ui, |ui| {
                ui.horizontal(|ui| {
                    ui.label(RichText::new(offer).strong().color(palette::TIMER));
                    if ui
                        .button(WATCH_DOCKER)
                        .on_hover_text(
                            "Stops this window's local nodes (their data stays) and watches the \
                             containers instead",
                        )
                        .clicked()
                    {
                        intents.push(Intent::Cluster(ClusterIntent::WatchDocker));
                    }
                    dismissed = ui.button("Dismiss").clicked();
                });
            });
            if dismissed {
                self.offer = None;
            }
        }
        egui::Panel::top("top-bar").show(ui, |ui| {
            intents.extend(ui::top_bar_ui(ui, view, &mut self.bar, mode));
        });
        egui::Panel::bottom("timeline").show(ui, |ui| {
            ui.add_space(2.0);
            intents.extend(ui::timeline_ui(ui, timeline, mode, &mut self.replay_speed));
            ui.add_space(2.0);
        });
        egui::Panel::right("side")
            .default_size(360.0)
            .resizable(true)
            .show(ui, |ui| {
                ui.heading("Node");
                intents.extend(ui::node_actions_ui(
                    ui,
                    view,
                    selected,
                    controls_processes,
                    mode == ViewMode::Live,
                ));
                intents.extend(ui::cluster_ops_ui(
                    ui,
                    view,
                    selected,
                    controls_processes,
                    mode == ViewMode::Live,
                ));
                ui.separator();
                ui.heading("Faults");
                intents.extend(ui::faults_ui(ui, view, selected, mode == ViewMode::Live));
                ui.separator();
                ui.heading("Failover");
                ui::failover_ui(ui, view, view_now);
                ui.separator();
                ui.heading("Events");
                ui::events_ui(ui, timeline, until, &nodes, &mut self.filter);
            });
        egui::Panel::right("diagram")
            .default_size(380.0)
            .resizable(true)
            .show(ui, |ui| {
                let viewing = self.viewing.as_ref().map(|v| v.name.clone());
                intents.extend(ui::recording_menu_ui(
                    ui,
                    &mut self.recording_dialog,
                    viewing.as_deref(),
                    wall_now,
                ));
                intents.extend(ui::scenarios_ui(
                    ui,
                    self.scenario.as_ref(),
                    self.viewing.is_none(),
                ));
                if let Some(run) = &self.scenario {
                    intents.extend(ui::scenario_run_ui(ui, run));
                }
                ui.heading("Checks");
                intents.extend(ui::checks_ui(ui, &self.checks.statuses()));
                ui.separator();
                ui.heading("Space-time");
                let flagged = self.checks.flagged_positions();
                intents.extend(ui::diagram_ui(
                    ui,
                    timeline,
                    &clocks,
                    &nodes,
                    view_now,
                    mode,
                    until,
                    selected,
                    &mut self.diagram,
                    &flagged,
                ));
            });
        let waiting = self.waiting.as_deref();
        egui::CentralPanel::default().show(ui, |ui| {
            if let Some(waiting) = waiting {
                waiting_ui(ui, waiting);
                return;
            }
            let logs_height = view.nodes.len() as f32 * 30.0 + 34.0;
            let chart_height = 150.0;
            let graph_height =
                (ui.available_height() - logs_height - chart_height - 16.0).max(220.0);
            ui.allocate_ui(egui::vec2(ui.available_width(), graph_height), |ui| {
                intents.extend(ui::graph_ui(ui, view, view_now, selected));
            });
            ui.add_space(6.0);
            ui::logs_ui(ui, view);
            ui.add_space(4.0);
            ui::chart_ui(ui, view, view_now);
        });

        intents.extend(ui::link_editor_ui(
            ui.ctx(),
            &mut self.link_editor,
            view,
            mode == ViewMode::Live,
        ));
        if !ui.ctx().egui_wants_keyboard_input() {
            ui.input(|input| {
                if input.key_pressed(egui::Key::Space) {
                    intents.push(if mode == ViewMode::Live {
                        Intent::PauseView
                    } else {
                        Intent::GoLive
                    });
                }
                if input.key_pressed(egui::Key::ArrowLeft) {
                    intents.push(Intent::Step(-1));
                }
                if input.key_pressed(egui::Key::ArrowRight) {
                    intents.push(Intent::Step(1));
                }
            });
        }
        // A recording dropped on the window opens.
        let dropped = ui.ctx().input(|input| {
            input
                .raw
                .dropped_files
                .iter()
                .map(|file| file.path().to_path_buf())
                .find(|path| !path.as_os_str().is_empty())
        });
        if let Some(path) = dropped {
            intents.push(Intent::Recording(ui::RecordingIntent::Open(path)));
        }
        intents.extend(self.tick_scenario(wall_now));
        let animating = ui::is_animating(self.model.view(), view_now);
        for intent in intents {
            self.apply(intent);
        }
        if self.scenario_running() {
            ui.ctx().request_repaint_after(Duration::from_millis(100));
        }
        if animating || files_pending || matches!(self.model.mode, ViewMode::Replay { .. }) {
            ui.ctx().request_repaint_after(Duration::from_millis(16));
        } else if let Some(next_ms) = self.model.next_change_ms() {
            // Records still on their way into the live view: wake when the next is due.
            let wait_ms = next_ms.saturating_sub(wall_now).clamp(1, 1_000);
            ui.ctx()
                .request_repaint_after(Duration::from_millis(wait_ms));
        }
    }

    fn apply(&mut self, intent: Intent) {
        match intent {
            Intent::Cluster(_) if self.viewing.is_some() => {
                self.bar.notice = Some((
                    "a recording is shown: go back to the live cluster to act on it".into(),
                    true,
                ));
            }
            Intent::Cluster(intent) => {
                if self.commands.send(backend_command(intent)).is_err() {
                    self.bar.notice = Some(("the backend has stopped".into(), true));
                }
            }
            Intent::Select(node) => self.selected = Some(node),
            Intent::PauseView => self.model.pause(),
            Intent::GoLive => self.model.go_live(),
            Intent::Step(delta) => self.model.step(delta),
            Intent::Scrub(position) => self.model.mode = ViewMode::Paused { position },
            Intent::Replay { speed } => self.model.replay(speed),
            Intent::OpenLink(a, b) => self.link_editor.open(a, b),
            Intent::CloseLink => self.link_editor.close(),
            Intent::Recording(intent) => self.apply_recording(intent),
            Intent::Scenario(intent) => self.apply_scenario(intent, self.now_ms()),
        }
    }
}

/// The backend's side of what the user asked of the cluster.
fn backend_command(intent: ClusterIntent) -> Command {
    match intent {
        ClusterIntent::Kill(node) => Command::Kill(node),
        ClusterIntent::Restart(node) => Command::Restart(node),
        ClusterIntent::Pause(node) => Command::Pause(node),
        ClusterIntent::Resume(node) => Command::Resume(node),
        ClusterIntent::Isolate(node) => Command::Isolate(node),
        ClusterIntent::Heal(node) => Command::Heal(node),
        ClusterIntent::TransferLeadership(node) => Command::TransferLeadership(node),
        ClusterIntent::Submit(text) => Command::Submit(text),
        ClusterIntent::SetTempo(tempo) => Command::SetTiming(tempo.timing()),
        ClusterIntent::WatchDocker => Command::WatchDocker,
        ClusterIntent::SetLinkFault { from, to, fault } => {
            Command::SetLinkFault { from, to, fault }
        }
        ClusterIntent::SetDiskDelay {
            node,
            write_delay_ms,
        } => Command::SetDiskDelay {
            node,
            write_delay_ms,
        },
        ClusterIntent::Wipe(node) => Command::Wipe(node),
        ClusterIntent::TakeSnapshot(node) => Command::TakeSnapshot(node),
        ClusterIntent::AddNode => Command::AddNode,
        ClusterIntent::RemoveNode(node) => Command::RemoveNode(node),
    }
}

/// The offer's button.
pub const WATCH_DOCKER: &str = "Watch the Docker cluster";

/// Nothing to show yet: what the window waits for (first line as the heading), and that it keeps
/// looking.
fn waiting_ui(ui: &mut egui::Ui, waiting: &str) {
    let (heading, detail) = waiting.split_once('\n').unwrap_or((waiting, ""));
    ui.vertical_centered(|ui| {
        ui.add_space(ui.available_height() / 3.0);
        ui.heading(RichText::new(heading).strong());
        ui.add_space(8.0);
        if !detail.is_empty() {
            ui.label(RichText::new(detail).color(palette::DIM_TEXT));
        }
        ui.add_space(8.0);
        ui.horizontal(|ui| {
            ui.add(egui::Spinner::new());
            ui.label("looking again every second; the window attaches by itself");
        });
    });
    // The spinner turns, and the backend's updates wake the window anyway.
    ui.ctx().request_repaint_after(Duration::from_millis(250));
}

impl eframe::App for FlotillaApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        if self.drain_updates(DRAIN_BUDGET) {
            ctx.request_repaint();
        }
        self.model.advance(self.now_ms());
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.frame_ui(ui);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_shared::api::TimingRequest;

    #[test]
    fn a_chosen_tempo_reaches_the_backend_as_the_timing_it_stands_for() {
        assert_eq!(
            backend_command(ClusterIntent::SetTempo(Tempo { factor: 2 })),
            Command::SetTiming(TimingRequest {
                heartbeat_ms: 100,
                election_timeout_ms: [300, 600],
            })
        );
        assert_eq!(
            backend_command(ClusterIntent::Kill(NodeId(3))),
            Command::Kill(NodeId(3))
        );
    }
}
