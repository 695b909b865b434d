//! What a process action does to a container, run off the backend's runtime; a restarted node gets
//! the app's timing back once it answers.

use super::*;
use crate::backend::ProcessAction;
use anyhow::{anyhow, bail};
use flotilla_shared::api::TimingRequest;
use flotilla_shared::NodeId;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// How long a restarted node is given to come up before its tempo is set again.
const RETIME_DEADLINE: Duration = Duration::from_secs(30);

/// One node's container.
#[derive(Clone, Debug)]
pub(super) struct NodeContainer {
    pub(super) name: String,
    pub(super) base_url: String,
}

/// States the poller saw last, and the nodes it found down that the control did not bring down.
#[derive(Default)]
pub(super) struct Observed {
    pub(super) states: BTreeMap<NodeId, ContainerState>,
    pub(super) exited: Vec<NodeId>,
    /// Whether the last poll failed (logged once per outage).
    pub(super) failing: bool,
    /// Nodes whose container the control is replacing: the poller leaves them alone meanwhile.
    pub(super) replacing: std::collections::BTreeSet<NodeId>,
}

/// What a process action needs: shared between the control and the thread that runs the actions.
/// The nodes' containers, shared with the state poller; nodes added from the window join it.
pub(super) type SharedNodes = Arc<Mutex<BTreeMap<NodeId, NodeContainer>>>;

pub(super) struct Actions {
    pub(super) cli: DockerCli,
    pub(super) nodes: SharedNodes,
    pub(super) admin_token: Option<String>,
    /// The app's tempo, put back on a restarted node (its container starts with its own).
    pub(super) timing: Mutex<Option<TimingRequest>>,
    pub(super) observed: Arc<Mutex<Observed>>,
}

impl Actions {
    pub(super) fn container(&self, node: NodeId) -> anyhow::Result<NodeContainer> {
        self.node_list()
            .remove(&node)
            .ok_or_else(|| anyhow!("no container runs node {node}"))
    }

    pub(super) fn node_list(&self) -> BTreeMap<NodeId, NodeContainer> {
        self.nodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn states(&self) -> BTreeMap<NodeId, ContainerState> {
        self.observed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .states
            .clone()
    }

    /// Runs the `docker` command for `action`. Blocks for as long as the command takes (bounded by
    /// its timeout): the backend calls this on its own thread, never on its runtime.
    pub(super) fn perform(
        &self,
        node: NodeId,
        action: ProcessAction,
        runtime: Option<&tokio::runtime::Handle>,
    ) -> anyhow::Result<()> {
        match action {
            // SIGKILL, like pulling the plug.
            ProcessAction::Kill => self.act(node, "kill", QUICK_TIMEOUT, ContainerState::Exited),
            // The same container again, on the same volume.
            ProcessAction::Restart => {
                if self.states().get(&node) == Some(&ContainerState::Paused) {
                    bail!("node {node}'s container is paused: resume it instead");
                }
                self.act(node, "start", START_TIMEOUT, ContainerState::Running)?;
                self.retime_when_up(node, runtime);
                Ok(())
            }
            // Freezes the container's processes (cgroup freezer), like SIGSTOP.
            ProcessAction::Pause => self.act(node, "pause", QUICK_TIMEOUT, ContainerState::Paused),
            ProcessAction::Resume => {
                self.act(node, "unpause", QUICK_TIMEOUT, ContainerState::Running)
            }
            // A new container of the same compose service on a new, empty volume.
            ProcessAction::Wipe => {
                let name = &self.container(node)?.name;
                // The container goes away on purpose: the poller must not report the node as
                // having ended by itself meanwhile.
                self.observed_now().replacing.insert(node);
                let wiped = wipe_container(&self.cli, name);
                let mut observed = self.observed_now();
                observed.replacing.remove(&node);
                let state = if wiped.is_ok() {
                    ContainerState::Running
                } else {
                    ContainerState::Dead
                };
                observed.states.insert(node, state);
                drop(observed);
                wiped?;
                self.retime_when_up(node, runtime);
                Ok(())
            }
        }
    }

    /// Runs `docker <verb> <container>` and records the state the node is now in, so the poller does
    /// not report the change as the node ending by itself.
    fn act(
        &self,
        node: NodeId,
        verb: &str,
        timeout: Duration,
        after: ContainerState,
    ) -> anyhow::Result<()> {
        let name = &self.container(node)?.name;
        self.cli.run(&[verb, name], timeout)?;
        self.set_observed(node, after);
        Ok(())
    }

    fn observed_now(&self) -> std::sync::MutexGuard<'_, Observed> {
        self.observed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the state the control brought the node into.
    fn set_observed(&self, node: NodeId, state: ContainerState) {
        self.observed_now().states.insert(node, state);
    }

    /// A restarted container starts with the tempo its environment gives; put the app's back once the
    /// node answers.
    fn retime_when_up(&self, node: NodeId, runtime: Option<&tokio::runtime::Handle>) {
        let timing = self
            .timing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let (Some(timing), Some(token), Ok(container)) =
            (timing, self.admin_token.clone(), self.container(node))
        else {
            return;
        };
        let Some(runtime) = runtime
            .cloned()
            .or_else(|| tokio::runtime::Handle::try_current().ok())
        else {
            return;
        };
        let url = format!("{}/v1/admin/timing", container.base_url);
        runtime.spawn(async move {
            let client = reqwest::Client::new();
            let deadline = tokio::time::Instant::now() + RETIME_DEADLINE;
            while tokio::time::Instant::now() < deadline {
                let sent = client
                    .put(&url)
                    .bearer_auth(&token)
                    .json(&timing)
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await;
                if sent.is_ok_and(|response| response.status().is_success()) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            tracing::warn!("node {node} did not take the tempo after its restart");
        });
    }
}

/// An action for the actions thread, and where its result goes.
pub(super) struct Job {
    pub(super) node: NodeId,
    pub(super) action: ProcessAction,
    pub(super) runtime: Option<tokio::runtime::Handle>,
    pub(super) reply: tokio::sync::oneshot::Sender<anyhow::Result<()>>,
}
