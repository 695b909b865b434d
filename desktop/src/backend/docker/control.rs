//! The control of a running Docker cluster: its containers found by label, the actions thread, and
//! the poller that notices containers that ended by themselves.

use super::*;
use crate::backend::{ClusterControl, NodeEndpoint, PendingAction, ProcessAction};
use anyhow::{anyhow, bail};
use flotilla_shared::api::TimingRequest;
use flotilla_shared::NodeId;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often container states are checked for nodes that ended by themselves.
const STATE_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Nodes in the containers of one cluster, found by label.
pub struct DockerControl {
    pub(super) actions: Arc<Actions>,
    cluster: String,
    /// Actions run one after another, in the order asked, on their own thread.
    jobs: std::sync::mpsc::Sender<Job>,
    stop_polling: Arc<AtomicBool>,
    poller: Option<std::thread::JoinHandle<()>>,
}

impl DockerControl {
    /// Finds the containers of `cluster`. The admin token is `admin_token` if given, else the one the
    /// containers were started with (their `ADMIN_TOKEN`).
    pub fn discover(
        cli: DockerCli,
        cluster: &str,
        admin_token: Option<String>,
    ) -> anyhow::Result<Self> {
        cli.ping()?;
        let summaries = cli.list(cluster)?;
        if summaries.is_empty() {
            let compose = Compose::detect(&cli)
                .map(|compose| compose.display())
                .unwrap_or("docker compose");
            bail!(
                "no Flotilla containers are running (none labelled {CLUSTER_LABEL}={cluster}). \
                 Start them from the repository root with `{compose} up --build` \
                 (5 nodes: `{compose} -f docker-compose.yml -f docker/compose.5.yml up --build`)"
            );
        }
        let ids: Vec<&str> = summaries
            .iter()
            .map(|summary| summary.id.as_str())
            .collect();
        let mut nodes = BTreeMap::new();
        let mut tokens = Vec::new();
        let mut states = BTreeMap::new();
        for container in cli.inspect(&ids)? {
            let Some(node_id) = container.node_id else {
                bail!(
                    "container {} has no usable {NODE_ID_LABEL} label or NODE_ID",
                    container.name
                );
            };
            let base_url = container
                .base_url
                .map_err(|problem| anyhow!("container {}: {problem}", container.name))?;
            if let Some(other) = nodes.get(&node_id) {
                let other: &NodeContainer = other;
                bail!(
                    "containers {} and {} both claim node {node_id}",
                    other.name,
                    container.name
                );
            }
            tokens.extend(container.admin_token);
            states.insert(node_id, container.state);
            nodes.insert(
                node_id,
                NodeContainer {
                    name: container.name,
                    base_url,
                },
            );
        }
        let admin_token = admin_token.or_else(|| tokens.into_iter().next());
        // Containers already down are reported once, so the window shows them dead (and restartable)
        // rather than merely silent.
        let exited = states
            .iter()
            .filter(|(_, state)| state.is_down())
            .map(|(node, _)| *node)
            .collect();
        let observed = Arc::new(Mutex::new(Observed {
            states,
            exited,
            ..Observed::default()
        }));
        let stop_polling = Arc::new(AtomicBool::new(false));
        let nodes: SharedNodes = Arc::new(Mutex::new(nodes));
        let poller = {
            let cli = cli.clone();
            let cluster = cluster.to_owned();
            let nodes = nodes.clone();
            let observed = observed.clone();
            let stop = stop_polling.clone();
            std::thread::Builder::new()
                .name("flotilla-docker-poll".into())
                .spawn(move || poll_states(&cli, &cluster, &nodes, &observed, &stop))?
        };
        let actions = Arc::new(Actions {
            cli,
            nodes,
            admin_token,
            timing: Mutex::new(None),
            observed,
        });
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        {
            let actions = actions.clone();
            // Ends when the control (the only sender) is dropped; never joined, so a stuck `docker`
            // call cannot hold up the window's exit.
            std::thread::Builder::new()
                .name("flotilla-docker-actions".into())
                .spawn(move || {
                    for job in queue {
                        let result = actions.perform(job.node, job.action, job.runtime.as_ref());
                        let _ = job.reply.send(result);
                    }
                })?;
        }
        Ok(Self {
            actions,
            cluster: cluster.to_owned(),
            jobs,
            stop_polling,
            poller: Some(poller),
        })
    }

    /// The container state of each node as last seen (refreshed about once a second).
    pub fn states(&self) -> BTreeMap<NodeId, ContainerState> {
        self.actions.states()
    }

    /// The container's current state, asked of Docker now.
    pub fn state_now(&self, node: NodeId) -> anyhow::Result<ContainerState> {
        let name = &self.actions.container(node)?.name;
        let details = self.actions.cli.inspect(&[name])?;
        details
            .into_iter()
            .next()
            .map(|container| container.state)
            .ok_or_else(|| anyhow!("docker inspect returned nothing for {name}"))
    }

    /// The container that runs `node`.
    pub fn container_name(&self, node: NodeId) -> Option<String> {
        self.actions.container(node).ok().map(|node| node.name)
    }

    fn stop_poller(&mut self) {
        self.stop_polling.store(true, Ordering::Relaxed);
        if let Some(poller) = self.poller.take() {
            let _ = poller.join();
        }
    }
}

/// Runs `job` on a thread named `name` and hands back its result. If the thread cannot start, the
/// receiver finds its sender gone, which the backend reports as the work abandoned.
fn on_own_thread<T: Send + 'static>(
    name: &str,
    job: impl FnOnce() -> T + Send + 'static,
) -> tokio::sync::oneshot::Receiver<T> {
    let (reply, pending) = tokio::sync::oneshot::channel();
    let started = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _ = reply.send(job());
        });
    if let Err(error) = started {
        tracing::warn!("cannot start the {name} thread: {error}");
    }
    pending
}

/// Runs on its own thread: checks the containers' states about once a second, so a slow daemon never
/// stalls the backend thread.
fn poll_states(
    cli: &DockerCli,
    cluster: &str,
    nodes: &SharedNodes,
    observed: &Mutex<Observed>,
    stop: &AtomicBool,
) {
    let mut last_poll = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if last_poll.elapsed() < STATE_POLL_INTERVAL {
            continue;
        }
        last_poll = Instant::now();
        let names: BTreeMap<String, NodeId> = nodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(id, node)| (node.name.clone(), *id))
            .collect();
        let listed = cli.list(cluster);
        let mut observed = observed.lock().unwrap_or_else(PoisonError::into_inner);
        match listed {
            Ok(summaries) => {
                observed.failing = false;
                let mut seen: BTreeMap<NodeId, ContainerState> = BTreeMap::new();
                for summary in summaries {
                    if let Some(node) = names.get(&summary.name) {
                        seen.insert(*node, summary.state);
                    }
                }
                for node in names.values() {
                    if observed.replacing.contains(node) {
                        continue;
                    }
                    // A container removed behind our back is as gone as an exited one.
                    let now = seen.remove(node).unwrap_or(ContainerState::Dead);
                    let before = observed.states.insert(*node, now.clone());
                    if now.is_down() && before.is_some_and(|before| !before.is_down()) {
                        observed.exited.push(*node);
                    }
                }
            }
            Err(error) => {
                if !observed.failing {
                    tracing::warn!("cannot check the containers' states: {error}");
                }
                observed.failing = true;
            }
        }
    }
}

impl ClusterControl for DockerControl {
    fn describe(&self) -> String {
        format!(
            "{} Docker containers ({CLUSTER_LABEL}={})",
            self.actions.node_list().len(),
            self.cluster
        )
    }

    fn nodes(&self) -> Vec<NodeEndpoint> {
        self.actions
            .node_list()
            .into_iter()
            .map(|(id, node)| NodeEndpoint {
                id,
                base_url: node.base_url,
            })
            .collect()
    }

    fn admin_token(&self) -> Option<String> {
        self.actions.admin_token.clone()
    }

    fn controls_processes(&self) -> bool {
        true
    }

    /// `docker kill`: SIGKILL, like pulling the plug.
    fn kill(&mut self, node: NodeId) -> anyhow::Result<()> {
        self.actions.perform(node, ProcessAction::Kill, None)
    }

    /// `docker start`: the same container again, on the same volume.
    fn restart(&mut self, node: NodeId) -> anyhow::Result<()> {
        self.actions.perform(node, ProcessAction::Restart, None)
    }

    /// `docker pause`: freezes the container's processes (cgroup freezer), like SIGSTOP.
    fn pause(&mut self, node: NodeId) -> anyhow::Result<()> {
        self.actions.perform(node, ProcessAction::Pause, None)
    }

    fn resume(&mut self, node: NodeId) -> anyhow::Result<()> {
        self.actions.perform(node, ProcessAction::Resume, None)
    }

    /// Every `docker` call may take seconds (`docker start` up to [`START_TIMEOUT`]): they run on the
    /// actions thread, so the event streams and status polls never wait for them.
    fn start_action(&mut self, node: NodeId, action: ProcessAction) -> Option<PendingAction> {
        let (reply, pending) = tokio::sync::oneshot::channel();
        let job = Job {
            node,
            action,
            runtime: tokio::runtime::Handle::try_current().ok(),
            reply,
        };
        if let Err(std::sync::mpsc::SendError(job)) = self.jobs.send(job) {
            let _ = job
                .reply
                .send(Err(anyhow!("the Docker actions thread has stopped")));
        }
        Some(pending)
    }

    fn set_timing(&mut self, timing: &TimingRequest) {
        *self
            .actions
            .timing
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(timing.clone());
    }

    fn exited(&mut self) -> Vec<NodeId> {
        std::mem::take(
            &mut self
                .actions
                .observed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .exited,
        )
    }

    /// The containers belong to compose, not to the app: they keep running (at the timing found).
    fn shutdown(&mut self) {
        self.stop_poller();
    }

    fn shared_nodes(&self) -> bool {
        true
    }

    /// `docker run` of a container made like the cluster's, here and now (blocks for it).
    fn start_joining_node(&mut self) -> anyhow::Result<crate::backend::JoiningNode> {
        self.actions.start_joining_container(&self.cluster)
    }

    /// `docker run` can take seconds: on a thread of its own, so the event streams keep flowing.
    fn start_joining_node_elsewhere(&mut self) -> Option<crate::backend::PendingJoin> {
        let actions = self.actions.clone();
        let cluster = self.cluster.clone();
        Some(on_own_thread("flotilla-docker-join", move || {
            actions.start_joining_container(&cluster)
        }))
    }

    fn forget_node(&mut self, node: NodeId) -> anyhow::Result<()> {
        let container = self.forget_container(node)?;
        self.actions.remove_container(&container)
    }

    /// `docker rm -f` can take seconds (Docker Desktop): on a thread of its own, so the event
    /// streams keep flowing while the container goes.
    fn forget_node_elsewhere(&mut self, node: NodeId) -> Option<PendingAction> {
        let forgotten = self.forget_container(node);
        let actions = self.actions.clone();
        Some(on_own_thread("flotilla-docker-remove", move || {
            actions.remove_container(&forgotten?)
        }))
    }
}

impl Drop for DockerControl {
    fn drop(&mut self) {
        self.stop_poller();
    }
}
