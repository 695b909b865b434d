//! The default cluster: node processes on 127.0.0.1 started by the desktop itself.

use super::process::{NodeGroup, NodeProcess};
use super::{ClusterControl, JoiningNode, NodeEndpoint};
use anyhow::{bail, Context as _};
use flotilla_node::guard::random_token;
use flotilla_shared::api::TimingRequest;
use flotilla_shared::NodeId;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The first port tried, as in the Docker setup.
pub const FIRST_PORT: u16 = 6500;

/// How to start a node: the program and the arguments that come before the node's own flags.
#[derive(Clone, Debug)]
pub struct NodeProgram {
    pub program: PathBuf,
    pub leading_args: Vec<OsString>,
}

/// The window's own nodes snapshot after this many entries (a node's default is 10,000) and so keep
/// a tail of 10 behind each snapshot: within a demo's few dozen entries snapshots are taken and a
/// node that fell behind, or was wiped, is rebuilt from one.
pub const SNAPSHOT_THRESHOLD: u64 = 20;

impl NodeProgram {
    /// This executable's `node` subcommand: the app carries the node inside itself.
    pub fn current_exe() -> anyhow::Result<Self> {
        Ok(Self {
            program: std::env::current_exe().context("cannot find this program's path")?,
            leading_args: vec!["node".into()]
                .into_iter()
                .chain(snapshot_args())
                .collect(),
        })
    }
}

/// The flags that give a node the window's snapshot threshold.
pub fn snapshot_args() -> [OsString; 2] {
    [
        "--snapshot-threshold".into(),
        SNAPSHOT_THRESHOLD.to_string().into(),
    ]
}

#[derive(Clone, Debug)]
pub struct LocalOptions {
    pub nodes: usize,
    /// Holds one folder per cluster size; each node's SQLite file and log live below it.
    pub data_root: PathBuf,
    /// Remove the cluster's data before starting.
    pub fresh: bool,
    pub program: NodeProgram,
    pub timing: TimingRequest,
    pub first_port: u16,
}

/// The app's folder in the platform's data folder: lower case by the XDG convention, capitalised as
/// macOS and Windows show application folders.
const DATA_FOLDER: &str = if cfg!(any(target_os = "macos", windows)) {
    "Flotilla"
} else {
    "flotilla"
};

/// The default data folder: `$XDG_DATA_HOME/flotilla` or `~/.local/share/flotilla` on Linux,
/// `~/Library/Application Support/Flotilla` on macOS, `%APPDATA%\Flotilla` on Windows.
pub fn default_data_root() -> PathBuf {
    match dirs::data_dir() {
        Some(dir) => dir.join(DATA_FOLDER),
        None => PathBuf::from("flotilla-data"),
    }
}

struct LocalNode {
    port: u16,
    data_dir: PathBuf,
    process: Option<NodeProcess>,
    /// Added from the window: it starts with `--join` and gets its configuration from the leader.
    joins: bool,
}

pub struct LocalControl {
    nodes: BTreeMap<NodeId, LocalNode>,
    group: NodeGroup,
    program: NodeProgram,
    admin_token: String,
    /// Peers' shared secret, fresh for each start: nothing else on the machine can send Raft RPCs.
    cluster_token: String,
    cluster_dir: PathBuf,
    timing: TimingRequest,
    cluster_id: String,
}

/// Finds `count` ports from `first` up that nothing listens on.
pub(crate) fn free_ports(first: u16, count: usize) -> anyhow::Result<Vec<u16>> {
    let mut ports = Vec::with_capacity(count);
    let mut port = first;
    while ports.len() < count {
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            ports.push(port);
        }
        port = port
            .checked_add(1)
            .context("no free ports left on 127.0.0.1")?;
    }
    Ok(ports)
}

impl LocalControl {
    /// Prepares the data folders, picks ports and starts every node.
    pub fn start(options: LocalOptions) -> anyhow::Result<Self> {
        if options.nodes == 0 || options.nodes > 255 {
            bail!("a cluster needs 1 to 255 nodes, not {}", options.nodes);
        }
        let cluster_dir = options.data_root.join(format!("cluster-{}", options.nodes));
        if options.fresh && cluster_dir.exists() {
            fs::remove_dir_all(&cluster_dir)
                .with_context(|| format!("cannot remove {}", cluster_dir.display()))?;
        }
        fs::create_dir_all(&cluster_dir)
            .with_context(|| format!("cannot create {}", cluster_dir.display()))?;
        let ports = free_ports(options.first_port, options.nodes)?;
        let nodes = ports
            .iter()
            .enumerate()
            .map(|(offset, port)| {
                let id = NodeId(offset as u64 + 1);
                let node = LocalNode {
                    port: *port,
                    data_dir: cluster_dir.join(format!("node-{}", id.0)),
                    process: None,
                    joins: false,
                };
                (id, node)
            })
            .collect();
        let mut control = Self {
            nodes,
            group: NodeGroup::new().context("cannot prepare process control")?,
            program: options.program,
            admin_token: random_token().map_err(anyhow::Error::msg)?,
            cluster_token: random_token().map_err(anyhow::Error::msg)?,
            cluster_id: format!("flotilla-desktop-{}", options.nodes),
            cluster_dir,
            timing: options.timing,
        };
        let ids: Vec<NodeId> = control.nodes.keys().copied().collect();
        for id in ids {
            control.spawn(id)?;
        }
        Ok(control)
    }

    pub fn cluster_dir(&self) -> &Path {
        &self.cluster_dir
    }

    fn peers_flag(&self) -> String {
        self.nodes
            .iter()
            .map(|(id, node)| format!("{}=127.0.0.1:{}", id.0, node.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, id: NodeId) -> anyhow::Result<()> {
        let peers = self.peers_flag();
        let Some(node) = self.nodes.get(&id) else {
            bail!("no node {id}");
        };
        let log_path = self.cluster_dir.join(format!("node-{}.log", id.0));
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let mut command = Command::new(&self.program.program);
        command
            .args(&self.program.leading_args)
            .arg("--id")
            .arg(id.0.to_string())
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", node.port));
        // `--peers` only seeds a fresh data dir's configuration; a node added later has none to seed
        // and waits for the leader's.
        if node.joins {
            command.arg("--join");
        } else {
            command.arg("--peers").arg(peers);
        }
        command
            .arg("--data-dir")
            .arg(&node.data_dir)
            .arg("--cluster-id")
            .arg(&self.cluster_id)
            .arg("--heartbeat-ms")
            .arg(self.timing.heartbeat_ms.to_string())
            .arg("--election-timeout-ms")
            .arg(format!(
                "{}-{}",
                self.timing.election_timeout_ms[0], self.timing.election_timeout_ms[1]
            ))
            .env("ADMIN_TOKEN", &self.admin_token)
            .env("CLUSTER_TOKEN", &self.cluster_token)
            .stdout(log.try_clone()?)
            .stderr(log);
        // The group adds the standard input and flag that end the node with the app.
        let process = self
            .group
            .spawn(&mut command)
            .with_context(|| format!("cannot start {}", self.program.program.display()))?;
        if let Some(node) = self.nodes.get_mut(&id) {
            node.process = Some(process);
        }
        Ok(())
    }

    fn running(&mut self, id: NodeId) -> anyhow::Result<&mut NodeProcess> {
        let node = self.nodes.get_mut(&id).context("no such node")?;
        let Some(process) = node.process.as_mut() else {
            bail!("node {id} is not running");
        };
        if !process.is_running() {
            bail!("node {id} is not running");
        }
        Ok(process)
    }
}

impl ClusterControl for LocalControl {
    fn describe(&self) -> String {
        format!("{} local processes", self.nodes.len())
    }

    fn nodes(&self) -> Vec<NodeEndpoint> {
        self.nodes
            .iter()
            .map(|(id, node)| NodeEndpoint {
                id: *id,
                base_url: format!("http://127.0.0.1:{}", node.port),
            })
            .collect()
    }

    fn admin_token(&self) -> Option<String> {
        Some(self.admin_token.clone())
    }

    fn controls_processes(&self) -> bool {
        true
    }

    fn kill(&mut self, id: NodeId) -> anyhow::Result<()> {
        self.running(id)?
            .kill()
            .context("the process could not be killed")?;
        if let Some(node) = self.nodes.get_mut(&id) {
            node.process = None;
        }
        Ok(())
    }

    fn restart(&mut self, id: NodeId) -> anyhow::Result<()> {
        if self.running(id).is_ok() {
            bail!("node {id} is still running: kill it first");
        }
        self.spawn(id)
    }

    fn pause(&mut self, id: NodeId) -> anyhow::Result<()> {
        self.running(id)?
            .pause()
            .context("the process could not be paused")
    }

    fn resume(&mut self, id: NodeId) -> anyhow::Result<()> {
        self.running(id)?
            .resume()
            .context("the process could not be resumed")
    }

    fn set_timing(&mut self, timing: &TimingRequest) {
        self.timing = timing.clone();
    }

    fn wipe(&mut self, id: NodeId) -> anyhow::Result<()> {
        if let Ok(process) = self.running(id) {
            process.kill().context("the process could not be stopped")?;
        }
        let node = self.nodes.get_mut(&id).context("no such node")?;
        node.process = None;
        remove_data_dir(&node.data_dir)?;
        self.spawn(id)
    }

    fn start_joining_node(&mut self) -> anyhow::Result<JoiningNode> {
        let id = NodeId(self.nodes.keys().map(|id| id.0).max().unwrap_or(0) + 1);
        let taken: Vec<u16> = self.nodes.values().map(|node| node.port).collect();
        let after = taken.iter().copied().max().unwrap_or(FIRST_PORT - 1);
        let port = free_ports(after.saturating_add(1), 1)?[0];
        let data_dir = self.cluster_dir.join(format!("node-{}", id.0));
        // A node of that id removed earlier left its data: the new node starts blank.
        remove_data_dir(&data_dir)?;
        self.nodes.insert(
            id,
            LocalNode {
                port,
                data_dir,
                process: None,
                joins: true,
            },
        );
        if let Err(error) = self.spawn(id) {
            self.nodes.remove(&id);
            return Err(error);
        }
        let peer_addr = format!("127.0.0.1:{port}");
        Ok(JoiningNode {
            endpoint: NodeEndpoint {
                id,
                base_url: format!("http://{peer_addr}"),
            },
            peer_addr,
        })
    }

    fn forget_node(&mut self, id: NodeId) -> anyhow::Result<()> {
        let mut node = self.nodes.remove(&id).context("no such node")?;
        if let Some(mut process) = node.process.take() {
            process.kill().context("the process could not be stopped")?;
        }
        Ok(())
    }

    fn exited(&mut self) -> Vec<NodeId> {
        let mut exited = Vec::new();
        for (id, node) in &mut self.nodes {
            if node
                .process
                .as_mut()
                .is_some_and(|process| !process.is_running())
            {
                node.process = None;
                exited.push(*id);
            }
        }
        exited
    }

    fn shutdown(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(mut process) = node.process.take() {
                process.kill().ok();
            }
        }
    }
}

/// Deletes a node's data dir (its SQLite files); a missing one is already blank.
fn remove_data_dir(dir: &Path) -> anyhow::Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error).with_context(|| format!("cannot delete {}", dir.display())),
    }
}

impl Drop for LocalControl {
    fn drop(&mut self) {
        self.shutdown();
    }
}
