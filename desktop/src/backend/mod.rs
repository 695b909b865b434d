//! Everything that talks to the cluster: one tokio runtime on its own thread runs an SSE reader and a
//! status poller per node, the HTTP calls the UI asks for, and the cluster control (processes).
//! Results go to the UI over a channel, each followed by a repaint request.
//!
//! Owns every socket, process and container the app deals with, and the [`Command`]s it takes. May not
//! touch the UI or the app: it hears from them only through commands, and speaks to them only through
//! [`Update`]s (records for the model, notices, cluster changes).

pub mod attach;
mod control;
pub mod docker;
mod http;
pub mod local;
mod membership;
mod process;

use crate::model::{ProcessState, Record};
pub use control::{
    ClusterControl, JoiningNode, NodeEndpoint, PendingAction, PendingJoin, ProcessAction,
};
use flotilla_shared::api::{LinkFault, Status, TimingRequest};
use flotilla_shared::NodeId;
use std::collections::BTreeMap;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the backend is asked to do (the app translates the window's intents into these).
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
    /// Slow the cluster down (or speed it up): every node gets this timing, restarted ones too.
    SetTiming(TimingRequest),
    /// Leave the current cluster and watch the Docker compose cluster instead (the offer's button).
    WatchDocker,
    /// Faults on `from`'s outgoing link to `to` (one way); `None` heals it.
    SetLinkFault {
        from: NodeId,
        to: NodeId,
        fault: Option<LinkFault>,
    },
    /// Every storage write on `node` waits this long before its fsync; 0 heals.
    SetDiskDelay {
        node: NodeId,
        write_delay_ms: u64,
    },
    /// Stop the node, delete its data (data dir or volume) and start it again with the same flags.
    Wipe(NodeId),
    /// `POST /v1/admin/snapshot` on the node.
    TakeSnapshot(NodeId),
    /// Start a new node that waits to be added (`--join`), watch it, and add it to the configuration.
    AddNode,
    /// Remove the node from the configuration; once that commits, stop it and stop watching it.
    RemoveNode(NodeId),
}

/// Something for the UI: a record for the model, or a line for the notice bar.
#[derive(Clone, Debug, PartialEq)]
pub enum Update {
    Record(Record),
    Notice {
        text: String,
        error: bool,
    },
    /// The backend now watches another cluster (containers appeared, or the user switched): the model
    /// starts over with these nodes.
    Cluster(ClusterInfo),
    /// What the backend is waiting for before there is anything to watch; `None` once there is.
    Waiting(Option<String>),
    /// Another cluster the user may switch to ([`Command::WatchDocker`]); `None` withdraws the offer.
    Offer(Option<String>),
}

/// What the window needs to know about the cluster it shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterInfo {
    pub nodes: Vec<NodeId>,
    pub description: String,
    pub controls_processes: bool,
}

impl ClusterInfo {
    fn of(control: &dyn ClusterControl) -> Self {
        Self {
            nodes: control.nodes().iter().map(|node| node.id).collect(),
            description: control.describe(),
            controls_processes: control.controls_processes(),
        }
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

/// Starts the backend thread for `control`; every node gets `timing` (the window's tempo).
pub fn start(
    control: Box<dyn ClusterControl>,
    timing: TimingRequest,
    waker: Waker,
) -> anyhow::Result<BackendHandle> {
    start_with(control, timing, waker, None)
}

/// [`start`], and with `docker_offer` also looks once for a running Docker compose cluster: when there
/// is one, the window offers to watch it instead ([`Update::Offer`], then [`Command::WatchDocker`]).
pub fn start_with(
    control: Box<dyn ClusterControl>,
    timing: TimingRequest,
    waker: Waker,
    docker_offer: Option<docker::DockerOptions>,
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
            runtime.block_on(run(control, timing, docker_offer, command_rx, ui));
            // A `docker` call still running on a blocking thread (each has its own timeout) must not
            // hold up the window's exit.
            runtime.shutdown_timeout(Duration::from_secs(1));
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

/// How long the app may spend putting back the timing it found, when it leaves a shared cluster.
const RESTORE_DEADLINE: Duration = Duration::from_secs(3);

/// Watching one cluster: its HTTP client, the status pollers and event readers, and the timing its
/// nodes had before the app changed it (shared clusters only).
struct Session {
    client: http::Client,
    statuses: Statuses,
    /// Each node's event reader and status poller.
    readers: BTreeMap<NodeId, Vec<tokio::task::JoinHandle<()>>>,
    found_timing: Option<tokio::task::JoinHandle<BTreeMap<NodeId, TimingRequest>>>,
}

impl Session {
    fn open(control: &mut dyn ClusterControl, timing: &TimingRequest, ui: &UiSender) -> Self {
        let client = http::Client::new(control.nodes(), control.admin_token());
        let statuses: Statuses = Arc::default();
        let mut session = Self {
            client: client.clone(),
            statuses,
            readers: BTreeMap::new(),
            found_timing: None,
        };
        for node in control.nodes() {
            session.watch(node, ui);
        }
        if control.admin_token().is_some() {
            control.set_timing(timing);
            let timing = timing.clone();
            let ui = ui.clone();
            let shared = control.shared_nodes();
            // The timing found is read before the app's goes out, so it can be put back.
            let task = tokio::spawn(async move {
                let found = if shared {
                    http::timing_when_up(&client).await
                } else {
                    BTreeMap::new()
                };
                http::set_timing_when_up(&client, timing, &ui).await;
                found
            });
            if shared {
                session.found_timing = Some(task);
            }
        }
        session
    }

    /// Follows `node`'s events and status like every other node's.
    fn watch(&mut self, node: NodeEndpoint, ui: &UiSender) {
        let readers = vec![
            tokio::spawn(http::follow_events(node.clone(), ui.clone())),
            tokio::spawn(http::poll_status(
                node.clone(),
                self.client.clone(),
                self.statuses.clone(),
                ui.clone(),
            )),
        ];
        if let Some(old) = self.readers.insert(node.id, readers) {
            old.iter().for_each(tokio::task::JoinHandle::abort);
        }
    }

    /// Stops following `node` (it left the cluster).
    fn unwatch(&mut self, node: NodeId) {
        for reader in self.readers.remove(&node).unwrap_or_default() {
            reader.abort();
        }
        if let Ok(mut all) = self.statuses.lock() {
            all.remove(&node);
        }
    }

    /// Stops watching: puts back the timing found (shared clusters), stops the readers, and shuts
    /// the control down.
    async fn close(self, control: &mut dyn ClusterControl) {
        for reader in self.readers.values().flatten() {
            reader.abort();
        }
        if let Some(found) = self.found_timing {
            let restore = async {
                if let Ok(found) = found.await {
                    http::restore_timing(&self.client, &found).await;
                }
            };
            if tokio::time::timeout(RESTORE_DEADLINE, restore)
                .await
                .is_err()
            {
                tracing::warn!("the nodes' own timing could not be put back in time");
            }
        }
        control.shutdown();
    }
}

async fn run(
    mut control: Box<dyn ClusterControl>,
    mut timing: TimingRequest,
    docker_offer: Option<docker::DockerOptions>,
    mut commands: tokio::sync::mpsc::UnboundedReceiver<Command>,
    ui: UiSender,
) {
    if let Some(text) = control.startup_notice() {
        ui.notice(text, true);
    }
    let mut waiting = control.waiting_for();
    if waiting.is_some() {
        ui.send(Update::Waiting(waiting.clone()));
    }
    let mut session = Session::open(control.as_mut(), &timing, &ui);
    // Controls found off the runtime (the offer's Docker cluster) arrive here.
    let (switch_tx, mut switch_rx) =
        tokio::sync::mpsc::unbounded_channel::<anyhow::Result<Box<dyn ClusterControl>>>();
    if let Some(options) = docker_offer.clone() {
        let ui = ui.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(text) = docker::running_cluster(&options) {
                ui.send(Update::Offer(Some(text)));
            }
        });
    }
    // Membership changes finish off the command loop; their outcome comes back here.
    let (membership_tx, mut membership_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut exit_check = tokio::time::interval(Duration::from_millis(300));
    loop {
        let next = tokio::select! {
            command = commands.recv() => {
                match command {
                    None => break,
                    Some(Command::WatchDocker) => {
                        let Some(options) = docker_offer.clone() else {
                            ui.notice("this window was not started to offer the Docker cluster", true);
                            continue;
                        };
                        ui.notice("connecting to the Docker cluster…", false);
                        let switch_tx = switch_tx.clone();
                        tokio::task::spawn_blocking(move || {
                            let _ = switch_tx.send(docker::discover(&options));
                        });
                        None
                    }
                    Some(Command::AddNode) => {
                        membership::add(control.as_mut(), &mut session, &ui, &membership_tx);
                        None
                    }
                    Some(Command::RemoveNode(node)) => {
                        membership::remove(node, &session, &ui, &membership_tx);
                        None
                    }
                    Some(command) => {
                        if let Command::SetTiming(chosen) = &command {
                            timing = chosen.clone();
                        }
                        handle(command, control.as_mut(), &session.client, &session.statuses, &ui);
                        None
                    }
                }
            }
            found = switch_rx.recv() => match found {
                Some(Ok(found)) => {
                    ui.send(Update::Offer(None));
                    Some(found)
                }
                Some(Err(error)) => {
                    ui.notice(format!("cannot watch the Docker cluster: {error:#}"), true);
                    None
                }
                None => None,
            },
            Some(outcome) = membership_rx.recv() => {
                membership::settle(outcome, control.as_mut(), &mut session, &ui, &membership_tx);
                None
            }
            _ = exit_check.tick() => {
                for node in control.exited() {
                    ui.notice(format!("node {node} exited"), true);
                    ui.record(Record::Process { at_ms: unix_ms(), node, state: ProcessState::Dead });
                }
                let now_waiting = control.waiting_for();
                if now_waiting != waiting {
                    waiting = now_waiting;
                    ui.send(Update::Waiting(waiting.clone()));
                }
                control.replacement()
            }
        };
        if let Some(next) = next {
            session.close(control.as_mut()).await;
            control = next;
            waiting = control.waiting_for();
            ui.send(Update::Waiting(waiting.clone()));
            ui.send(Update::Cluster(ClusterInfo::of(control.as_ref())));
            ui.notice(format!("watching {}", control.describe()), false);
            session = Session::open(control.as_mut(), &timing, &ui);
        }
    }
    session.close(control.as_mut()).await;
}

fn process_action(ui: &UiSender, node: NodeId, action: ProcessAction, result: anyhow::Result<()>) {
    let verb = action.verb();
    match result {
        Ok(()) => {
            ui.record(Record::Process {
                at_ms: unix_ms(),
                node,
                state: action.outcome(),
            });
            ui.notice(format!("{verb} node {node}"), false);
        }
        Err(error) => ui.notice(format!("could not {verb} node {node}: {error:#}"), true),
    }
}

/// Runs a process action inline, or, for controls that offload it, reports it when it is done.
fn act(control: &mut dyn ClusterControl, node: NodeId, action: ProcessAction, ui: &UiSender) {
    if let Some(pending) = control.start_action(node, action) {
        let ui = ui.clone();
        tokio::spawn(async move {
            let result = pending
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the action was abandoned")));
            process_action(&ui, node, action, result);
        });
        return;
    }
    let result = match action {
        ProcessAction::Kill => control.kill(node),
        ProcessAction::Restart => control.restart(node),
        ProcessAction::Pause => control.pause(node),
        ProcessAction::Resume => control.resume(node),
        ProcessAction::Wipe => control.wipe(node),
    };
    process_action(ui, node, action, result);
}

fn handle(
    command: Command,
    control: &mut dyn ClusterControl,
    client: &http::Client,
    statuses: &Statuses,
    ui: &UiSender,
) {
    match command {
        Command::Kill(node) => act(control, node, ProcessAction::Kill, ui),
        Command::Restart(node) => act(control, node, ProcessAction::Restart, ui),
        Command::Pause(node) => act(control, node, ProcessAction::Pause, ui),
        Command::Resume(node) => act(control, node, ProcessAction::Resume, ui),
        Command::Wipe(node) => act(control, node, ProcessAction::Wipe, ui),
        // Answered by the run loop, which owns the switch and the session.
        Command::WatchDocker | Command::AddNode | Command::RemoveNode(_) => {}
        Command::TakeSnapshot(node) => {
            let client = client.clone();
            let ui = ui.clone();
            tokio::spawn(async move { http::take_snapshot(&client, node, &ui).await });
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
        Command::SetLinkFault { from, to, fault } => {
            let client = client.clone();
            let ui = ui.clone();
            tokio::spawn(async move { http::set_link_fault(&client, from, to, fault, &ui).await });
        }
        Command::SetDiskDelay {
            node,
            write_delay_ms,
        } => {
            let client = client.clone();
            let ui = ui.clone();
            tokio::spawn(
                async move { http::set_disk_delay(&client, node, write_delay_ms, &ui).await },
            );
        }
        Command::SetTiming(timing) => {
            control.set_timing(&timing);
            let client = client.clone();
            let ui = ui.clone();
            tokio::spawn(async move { http::set_timing(&client, timing, &ui).await });
        }
    }
}
