//! What the backend asks of a cluster's process side (local processes, Docker containers, or nothing
//! when attached): the [`ClusterControl`] contract and the types it speaks in.

use crate::model::ProcessState;
use flotilla_shared::api::TimingRequest;
use flotilla_shared::NodeId;

/// A process action, for controls that run them off the backend's runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessAction {
    Kill,
    Restart,
    Pause,
    Resume,
    /// Stop, delete the node's data, start again with the same flags.
    Wipe,
}

impl ProcessAction {
    pub(super) fn verb(self) -> &'static str {
        match self {
            Self::Kill => "kill",
            Self::Restart => "restart",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Wipe => "wipe the disk of and restart",
        }
    }

    /// The state the node is in once the action succeeded.
    pub(super) fn outcome(self) -> ProcessState {
        match self {
            Self::Kill => ProcessState::Dead,
            Self::Restart | Self::Resume | Self::Wipe => ProcessState::Running,
            Self::Pause => ProcessState::Paused,
        }
    }
}

/// The eventual result of an action a control runs elsewhere.
pub type PendingAction = tokio::sync::oneshot::Receiver<anyhow::Result<()>>;

/// A node started to join the cluster: where the desktop reaches it, and the address its peers reach
/// it at (what goes into the configuration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoiningNode {
    pub endpoint: NodeEndpoint,
    pub peer_addr: String,
}

/// The eventual new node of a control that starts it elsewhere.
pub type PendingJoin = tokio::sync::oneshot::Receiver<anyhow::Result<JoiningNode>>;

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
    /// Stops the node, deletes its data and starts it again with the same flags.
    fn wipe(&mut self, node: NodeId) -> anyhow::Result<()> {
        anyhow::bail!("node {node} runs elsewhere: its disk cannot be wiped from here")
    }
    /// Starts a new node that waits to be added to the configuration (`--join`).
    fn start_joining_node(&mut self) -> anyhow::Result<JoiningNode> {
        anyhow::bail!("this cluster's processes run elsewhere: start the new node there")
    }
    /// [`Self::start_joining_node`] run somewhere that cannot stall the backend's runtime (a slow
    /// `docker run`); `None` means the control starts nodes inline (they start at once).
    fn start_joining_node_elsewhere(&mut self) -> Option<PendingJoin> {
        None
    }
    /// Stops a node that left the configuration (or never joined it) and forgets it.
    fn forget_node(&mut self, node: NodeId) -> anyhow::Result<()> {
        anyhow::bail!("node {node} runs elsewhere: stop it there")
    }
    /// [`Self::forget_node`] with the slow part (a `docker rm`) run where it cannot stall the
    /// backend's runtime: the node is forgotten at once, and the result comes later. `None` means
    /// the control stops nodes inline.
    fn forget_node_elsewhere(&mut self, _node: NodeId) -> Option<PendingAction> {
        None
    }
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
    /// Runs `action` somewhere that cannot stall the backend's runtime (e.g. a slow `docker` call) and
    /// returns its eventual result; `None` means the control runs its actions inline (they are quick).
    fn start_action(&mut self, _node: NodeId, _action: ProcessAction) -> Option<PendingAction> {
        None
    }
    /// While there is nothing to watch yet: what the control waits for, for the window to show.
    fn waiting_for(&self) -> Option<String> {
        None
    }
    /// The control that takes over once what this one waited for exists (checked a few times a
    /// second).
    fn replacement(&mut self) -> Option<Box<dyn ClusterControl>> {
        None
    }
    /// Whether the nodes belong to someone else and outlive the app (the compose cluster): the app
    /// then puts back the timing it found when it leaves.
    fn shared_nodes(&self) -> bool {
        false
    }
}
