//! What the user asks for, in the window's own terms. The panels return these; the app applies them
//! in one place and turns the cluster's into backend commands.

use flotilla_shared::api::{LinkFault, TimingRequest};
use flotilla_shared::NodeId;

/// What the user asked for this frame.
#[derive(Clone, Debug, PartialEq)]
pub enum Intent {
    /// Something for the cluster: the app hands it to the backend.
    Cluster(ClusterIntent),
    Select(NodeId),
    PauseView,
    GoLive,
    /// Move the paused view by this many records.
    Step(i64),
    /// Show the recorded moment at this position.
    Scrub(u64),
    Replay {
        speed: f64,
    },
    /// Open the fault editor of the link between these two nodes.
    OpenLink(NodeId, NodeId),
    CloseLink,
    /// Save, open or export a recording, or leave the one shown.
    Recording(RecordingIntent),
    /// Start, pause, step or stop a guided scenario.
    Scenario(ScenarioIntent),
}

/// What the user asks of a guided scenario.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScenarioIntent {
    /// Start the scenario of this name.
    Start(&'static str),
    Pause,
    Resume,
    Step,
    Stop,
}

/// What the user asks of recordings (files).
#[derive(Clone, Debug, PartialEq)]
pub enum RecordingIntent {
    Save(std::path::PathBuf),
    /// Show a recording instead of the live cluster (which goes on being recorded meanwhile).
    Open(std::path::PathBuf),
    ExportHistory(std::path::PathBuf),
    BackToCluster,
}

/// Something the user wants done to the cluster.
#[derive(Clone, Debug, PartialEq)]
pub enum ClusterIntent {
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
    /// Stop the node, delete its data, start it again with the same flags.
    Wipe(NodeId),
    TakeSnapshot(NodeId),
    /// Start a new node and add it to the configuration.
    AddNode,
    /// Remove the node from the configuration, then stop it.
    RemoveNode(NodeId),
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
