//! Everything that talks to the cluster: one tokio runtime on its own thread runs an SSE reader and a
//! status poller per node, the HTTP calls the UI asks for, and the cluster control (processes).
//! Results go to the UI over a channel, each followed by a repaint request.

pub mod attach;
pub mod docker;
mod http;
pub mod local;
mod process;

use crate::model::{ProcessState, Record};
use flotilla_shared::api::{Status, TimingRequest};
use flotilla_shared::NodeId;
use std::collections::BTreeMap;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the UI asks for. Panels return these; the app applies them in one place.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Kill(NodeId),
    Restart(NodeId),
    Pause(NodeId),
    Resume(NodeId),
    /// Cut the node off from every other node, on both sides.
    Isolate(NodeId),
    Heal(NodeId),
    TransferLeadership(NodeId),
    Submit(String),
    SetTempo(Tempo),
}

/// How slowly the cluster runs: Raft's timers multiplied by `factor` so humans can follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tempo {
    pub factor: u64,
}

impl Tempo {
    pub const CHOICES: [u64; 5] = [1, 2, 5, 10, 20];
    /// Slow enough to follow every message by eye.
    pub const DEFAULT: Tempo = Tempo { factor: 10 };

    pub fn timing(self) -> TimingRequest {
        let factor = self.factor.max(1);
        TimingRequest {
            heartbeat_ms: 50 * factor,
            election_timeout_ms: [150 * factor, 300 * factor],
        }
    }

    pub fn label(self) -> String {
        match self.factor {
            1 => "real speed".into(),
            factor => format!("{factor}x slower"),
        }
    }
}

/// Something for the UI: a record for the model, or a line for the notice bar.
#[derive(Clone, Debug, PartialEq)]
pub enum Update {
    Record(Record),
    Notice { text: String, error: bool },
}

/// How to reach one node's HTTP API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEndpoint {
    pub id: NodeId,
    /// e.g. `http://127.0.0.1:6500`
    pub base_url: String,
}

/// The process side of a cluster: local child processes, Docker containers, or nothing (attached).
/// Methods are called on the backend thread and must not block for long.
pub trait ClusterControl: Send {
    /// A short description for the title bar, e.g. "3 local processes".
    fn describe(&self) -> String;
    fn nodes(&self) -> Vec<NodeEndpoint>;
    fn admin_token(&self) -> Option<String>;
    /// Whether kill/restart/pause/resume are possible at all.
    fn controls_processes(&self) -> bool;
    fn kill(&mut self, node: NodeId) -> anyhow::Result<()>;
    fn restart(&mut self, node: NodeId) -> anyhow::Result<()>;
    fn pause(&mut self, node: NodeId) -> anyhow::Result<()>;
    fn resume(&mut self, node: NodeId) -> anyhow::Result<()>;
    /// Remembers the tempo so restarted nodes keep it.
    fn set_timing(&mut self, _timing: &TimingRequest) {}
    /// Nodes whose process ended by itself since the last call.
    fn exited(&mut self) -> Vec<NodeId> {
        Vec::new()
    }
    /// Stops every process this control started.
    fn shutdown(&mut self) {}
    /// A problem to show in the window as soon as it opens (e.g. the Docker cluster is not running,
    /// and what to run).
    fn startup_notice(&self) -> Option<String> {
        None
    }
}

/// Wakes the UI after an update (egui's `request_repaint`; a no-op in tests).
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// The UI's end of the backend.
pub struct BackendHandle {
    pub commands: tokio::sync::mpsc::UnboundedSender<Command>,
    pub updates: mpsc::Receiver<Update>,
    pub nodes: Vec<NodeId>,
    pub description: String,
    pub controls_processes: bool,
    /// Joins the backend thread when dropped: drop it after every command sender.
    pub thread: BackendThread,
}

/// The backend thread; dropping this waits for it to stop its processes and end. It ends once every
/// command sender is gone.
pub struct BackendThread(Option<std::thread::JoinHandle<()>>);

impl Drop for BackendThread {
    fn drop(&mut self) {
        if let Some(thread) = self.0.take() {
            thread.join().ok();
        }
    }
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// Sends updates to the UI and wakes it.
#[derive(Clone)]
struct UiSender {
    sender: mpsc::Sender<Update>,
    waker: Waker,
}

impl UiSender {
    /// Returns false once the UI is gone.
    fn send(&self, update: Update) -> bool {
        let delivered = self.sender.send(update).is_ok();
        (self.waker)();
        delivered
    }

    fn record(&self, record: Record) -> bool {
        self.send(Update::Record(record))
    }

    fn notice(&self, text: impl Into<String>, error: bool) {
        self.send(Update::Notice {
            text: text.into(),
            error,
        });
    }
}

/// The latest status of each node, shared by the pollers and the command handlers.
type Statuses = Arc<Mutex<BTreeMap<NodeId, Status>>>;

/// Starts the backend thread for `control` with the initial `tempo`.
pub fn start(
    control: Box<dyn ClusterControl>,
    tempo: Tempo,
    waker: Waker,
) -> anyhow::Result<BackendHandle> {
    let (command_tx, command_rx) = tokio::sync::mpsc::unbounded_channel();
    let (update_tx, update_rx) = mpsc::channel();
    let nodes = control.nodes().iter().map(|node| node.id).collect();
    let description = control.describe();
    let controls_processes = control.controls_processes();
    let ui = UiSender {
        sender: update_tx,
        waker,
    };
    // On Linux a restarted node dies with the thread that spawned it (PR_SET_PDEATHSIG), so every
    // restart happens on this one long-lived thread.
    let thread = std::thread::Builder::new()
        .name("flotilla-backend".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    ui.notice(format!("cannot start the network runtime: {error}"), true);
                    return;
                }
            };
            runtime.block_on(run(control, tempo, command_rx, ui));
        })?;
    Ok(BackendHandle {
        commands: command_tx,
        updates: update_rx,
        nodes,
        description,
        controls_processes,
        thread: BackendThread(Some(thread)),
    })
}

async fn run(
    mut control: Box<dyn ClusterControl>,
    tempo: Tempo,
    mut commands: tokio::sync::mpsc::UnboundedReceiver<Command>,
    ui: UiSender,
) {
    if let Some(text) = control.startup_notice() {
        ui.notice(text, true);
    }
    let client = http::Client::new(control.nodes(), control.admin_token());
    let statuses: Statuses = Arc::default();
    let mut readers = Vec::new();
    for node in control.nodes() {
        readers.push(tokio::spawn(http::follow_events(node.clone(), ui.clone())));
        readers.push(tokio::spawn(http::poll_status(
            node,
            client.clone(),
            statuses.clone(),
            ui.clone(),
        )));
    }
    if control.admin_token().is_some() {
        let client = client.clone();
        let ui = ui.clone();
        control.set_timing(&tempo.timing());
        tokio::spawn(async move { http::set_timing_when_up(&client, tempo.timing(), &ui).await });
    }
    let mut exit_check = tokio::time::interval(Duration::from_millis(300));
    loop {
        tokio::select! {
            command = commands.recv() => {
                let Some(command) = command else { break };
                handle(command, control.as_mut(), &client, &statuses, &ui);
            }
            _ = exit_check.tick() => {
                for node in control.exited() {
                    ui.notice(format!("node {node} exited"), true);
                    ui.record(Record::Process { at_ms: unix_ms(), node, state: ProcessState::Dead });
                }
            }
        }
    }
    for reader in readers {
        reader.abort();
    }
    control.shutdown();
}

fn process_action(
    ui: &UiSender,
    node: NodeId,
    verb: &str,
    result: anyhow::Result<()>,
    state: ProcessState,
) {
    match result {
        Ok(()) => {
            ui.record(Record::Process {
                at_ms: unix_ms(),
                node,
                state,
            });
            ui.notice(format!("{verb} node {node}"), false);
        }
        Err(error) => ui.notice(format!("could not {verb} node {node}: {error:#}"), true),
    }
}

fn handle(
    command: Command,
    control: &mut dyn ClusterControl,
    client: &http::Client,
    statuses: &Statuses,
    ui: &UiSender,
) {
    match command {
        Command::Kill(node) => {
            let result = control.kill(node);
            process_action(ui, node, "kill", result, ProcessState::Dead);
        }
        Command::Restart(node) => {
            let result = control.restart(node);
            process_action(ui, node, "restart", result, ProcessState::Running);
        }
        Command::Pause(node) => {
            let result = control.pause(node);
            process_action(ui, node, "pause", result, ProcessState::Paused);
        }
        Command::Resume(node) => {
            let result = control.resume(node);
            process_action(ui, node, "resume", result, ProcessState::Running);
        }
        Command::Isolate(node) => {
            let client = client.clone();
            let statuses = statuses.clone();
            let ui = ui.clone();
            tokio::spawn(async move { http::isolate(&client, node, &statuses, &ui).await });
        }
        Command::Heal(node) => {
            let client = client.clone();
            let statuses = statuses.clone();
            let ui = ui.clone();
            tokio::spawn(async move { http::heal(&client, node, &statuses, &ui).await });
        }
        Command::TransferLeadership(node) => {
            let client = client.clone();
            let statuses = statuses.clone();
            let ui = ui.clone();
            tokio::spawn(async move { http::transfer(&client, node, &statuses, &ui).await });
        }
        Command::Submit(text) => {
            let client = client.clone();
            let statuses = statuses.clone();
            let ui = ui.clone();
            tokio::spawn(async move { http::submit(&client, text, &statuses, &ui).await });
        }
        Command::SetTempo(tempo) => {
            control.set_timing(&tempo.timing());
            let client = client.clone();
            let ui = ui.clone();
            tokio::spawn(async move { http::set_timing(&client, tempo.timing(), &ui).await });
        }
    }
}
