//! Starting, breaking and inspecting a cluster of real node processes.

use crate::*;
use anyhow::{anyhow, bail, Context as _, Result};
use flotilla_shared::api::{MessageEntry, Status};
use flotilla_shared::event::Role;
use flotilla_shared::{LogIndex, NodeId};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod agreement;
pub use agreement::agreed_leader;

/// How a cluster is started.
#[derive(Clone, Debug)]
pub struct Options {
    pub heartbeat_ms: u64,
    pub election_timeout_ms: (u64, u64),
    /// `--admin-token`; `None` starts the nodes with the admin API disabled.
    pub admin_token: Option<String>,
    pub cluster_id: String,
    pub cluster_token: Option<String>,
    /// When set, each node advertises `http://<host>:<its port>` (else its listen address).
    pub advertise_host: Option<String>,
    /// More flags for every node (e.g. `--request-timeout-ms 2000`).
    pub extra_args: Vec<String>,
    /// `RUST_LOG` for the nodes.
    pub log_filter: String,
    /// How long a node may take to answer `/v1/status` after it is spawned.
    pub ready_timeout: Duration,
}

impl Default for Options {
    /// Short timings for tests: heartbeats every 50 ms, elections after 150–300 ms.
    fn default() -> Self {
        Self {
            heartbeat_ms: 50,
            election_timeout_ms: (150, 300),
            admin_token: Some("e2e-admin-token".into()),
            cluster_id: "e2e".into(),
            cluster_token: Some("e2e-cluster-token".into()),
            advertise_host: None,
            extra_args: Vec::new(),
            log_filter: "info".into(),
            ready_timeout: Duration::from_secs(20),
        }
    }
}

/// Whether a node process is there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    Running,
    /// `SIGSTOP`ped: alive but frozen.
    Paused,
    /// Killed or stopped; `restart` brings it back.
    Down,
}

/// One node process and what it needs to come back.
#[derive(Debug)]
pub struct Node {
    pub id: NodeId,
    pub port: u16,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    child: Option<Child>,
    state: NodeState,
    /// How many times this node was spawned.
    pub starts: u32,
    /// Started with `JOIN=1` (`--join`): it waits to be added instead of seeding a configuration.
    pub join: bool,
}

impl Node {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn state(&self) -> NodeState {
        self.state
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// A running cluster of real node processes. Dropping it kills them all.
pub struct Cluster {
    options: Options,
    binary: PathBuf,
    /// `None` once kept for inspection after a failure.
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    nodes: BTreeMap<NodeId, Node>,
    api: Api,
    /// Set once a failure's logs were printed, so `Drop` does not print them again.
    reported: bool,
}

impl Cluster {
    /// Starts `n` nodes (ids 1..=n) and waits until each answers `/v1/status`. Does not wait for a
    /// leader: see [`Cluster::wait_for_leader`].
    pub async fn start(n: u64, options: Options) -> Result<Self> {
        if n == 0 || n > NodeId::MAX {
            bail!("a cluster has 1 to {} nodes, asked for {n}", NodeId::MAX);
        }
        let binary = node_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("flotilla-e2e-")
            .tempdir()
            .context("creating the cluster's temp dir")?;
        let root = dir.path().to_path_buf();
        let mut cluster = Self {
            api: Api::new(options.admin_token.clone())?,
            options,
            binary,
            dir: Some(dir),
            root,
            nodes: BTreeMap::new(),
            reported: false,
        };
        // Free ports are picked by binding port 0 and letting go; another process may take one in
        // between, so a cluster whose node cannot bind is started again on new ports.
        let mut last_error = None;
        for _attempt in 0..3 {
            cluster.kill_all();
            cluster.nodes.clear();
            for id in 1..=n {
                let id = NodeId(id);
                let data_dir = cluster.root.join(format!("node-{id}"));
                std::fs::create_dir_all(&data_dir)
                    .with_context(|| format!("creating {}", data_dir.display()))?;
                let node = Node {
                    id,
                    port: free_port()?,
                    log_path: cluster.root.join(format!("node-{id}.log")),
                    data_dir,
                    child: None,
                    state: NodeState::Down,
                    starts: 0,
                    join: false,
                };
                cluster.nodes.insert(id, node);
            }
            let ids = cluster.ids();
            for &id in &ids {
                cluster.spawn(id)?;
            }
            match cluster.wait_ready(&ids).await {
                Ok(()) => return Ok(cluster),
                Err(error) => {
                    let in_use = ids.iter().any(|&id| {
                        cluster
                            .log_tail(id, 4000)
                            .to_lowercase()
                            .contains("address already in use")
                    });
                    if !in_use {
                        return Err(error);
                    }
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("could not start the cluster")))
    }

    /// Ends a test: on `Err`, prints every node's log tail, keeps the files and panics with the error.
    pub fn finish(mut self, result: Result<()>) {
        if let Err(error) = result {
            self.print_logs(6000);
            self.reported = true;
            self.kill_all();
            if let Some(dir) = self.dir.take() {
                eprintln!("cluster files kept in {}", dir.keep().display());
            }
            panic!("{error:#}");
        }
    }

    pub fn api(&self) -> &Api {
        &self.api
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The folder holding data dirs and logs.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// Nodes whose process runs and is not paused.
    pub fn running(&self) -> Vec<NodeId> {
        self.nodes
            .values()
            .filter(|node| node.state == NodeState::Running)
            .map(|node| node.id)
            .collect()
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[&id]
    }

    pub fn url(&self, id: NodeId) -> String {
        self.node(id).url()
    }

    /// An API handle bound to one node.
    pub fn client(&self, id: NodeId) -> NodeClient<'_> {
        NodeClient {
            api: &self.api,
            id,
            url: self.url(id),
        }
    }

    fn peers_flag(&self) -> String {
        self.nodes
            .values()
            .map(|node| format!("{}={}", node.id, node.addr()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The command that starts node `id` with `options` (its port, peers and data dir are fixed).
    /// Output is not redirected: [`Cluster::restart`] sends it to the node's log.
    pub fn node_command(&self, id: NodeId, options: &Options) -> Result<Command> {
        let node = self.nodes.get(&id).ok_or_else(|| anyhow!("no node {id}"))?;
        let mut command = Command::new(&self.binary);
        command
            .arg("--id")
            .arg(id.to_string())
            .arg("--listen")
            .arg(node.addr())
            .arg("--peers")
            .arg(self.peers_flag())
            .arg("--data-dir")
            .arg(&node.data_dir)
            .arg("--heartbeat-ms")
            .arg(options.heartbeat_ms.to_string())
            .arg("--election-timeout-ms")
            .arg(format!(
                "{}-{}",
                options.election_timeout_ms.0, options.election_timeout_ms.1
            ))
            .arg("--cluster-id")
            .arg(&options.cluster_id);
        if node.join {
            // The environment's form (`JOIN=1`, as containers set it); `--join` is the flag's.
            command.env("JOIN", "1");
        }
        if let Some(token) = &options.admin_token {
            command.arg("--admin-token").arg(token);
        }
        if let Some(token) = &options.cluster_token {
            command.arg("--cluster-token").arg(token);
        }
        if let Some(host) = &options.advertise_host {
            command
                .arg("--advertise")
                .arg(format!("http://{host}:{}", node.port));
        }
        command
            .args(&options.extra_args)
            .env("RUST_LOG", &options.log_filter)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        Ok(command)
    }

    fn spawn(&mut self, id: NodeId) -> Result<()> {
        let mut command = self.node_command(id, &self.options)?;
        let node = self
            .nodes
            .get_mut(&id)
            .ok_or_else(|| anyhow!("no node {id}"))?;
        if node.child.is_some() {
            bail!("node {id} is already running");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .with_context(|| format!("opening {}", node.log_path.display()))?;
        command
            .stdout(log.try_clone().context("duplicating the log handle")?)
            .stderr(log);
        let child = command
            .spawn()
            .with_context(|| format!("spawning {} for node {id}", self.binary.display()))?;
        node.child = Some(child);
        node.state = NodeState::Running;
        node.starts += 1;
        Ok(())
    }

    /// Waits until each of `ids` answers `/v1/status`; fails early if one exits.
    async fn wait_ready(&mut self, ids: &[NodeId]) -> Result<()> {
        let deadline = Instant::now() + self.options.ready_timeout;
        for &id in ids {
            loop {
                if let Some(status) = self.reap(id) {
                    bail!(
                        "node {id} exited during startup ({status}); log tail:\n{}",
                        self.log_tail(id, 2000)
                    );
                }
                if self.client(id).status().await.is_ok() {
                    break;
                }
                if Instant::now() >= deadline {
                    bail!(
                        "node {id} did not answer /v1/status within {:?}; log tail:\n{}",
                        self.options.ready_timeout,
                        self.log_tail(id, 2000)
                    );
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    /// If node `id`'s process has exited, marks it down and says how.
    fn reap(&mut self, id: NodeId) -> Option<String> {
        let node = self.nodes.get_mut(&id)?;
        let child = node.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                node.child = None;
                node.state = NodeState::Down;
                Some(status.to_string())
            }
            Ok(None) => None,
            Err(error) => Some(format!("cannot query the process: {error}")),
        }
    }

    /// `kill -9`: the process dies at once, mid-write if it was writing.
    pub fn kill(&mut self, id: NodeId) -> Result<()> {
        let node = self
            .nodes
            .get_mut(&id)
            .ok_or_else(|| anyhow!("no node {id}"))?;
        let Some(mut child) = node.child.take() else {
            bail!("node {id} is not running");
        };
        // Child::kill sends SIGKILL, which also ends a SIGSTOPped process.
        child.kill().with_context(|| format!("SIGKILL node {id}"))?;
        child.wait().with_context(|| format!("reaping node {id}"))?;
        node.state = NodeState::Down;
        Ok(())
    }

    /// `SIGTERM` and wait for a graceful exit (SIGKILL after `grace`). Returns whether it exited by itself.
    pub async fn terminate(&mut self, id: NodeId, grace: Duration) -> Result<bool> {
        let pid = self.running_pid(id)?;
        send_signal(pid, Signal::Term)?;
        let deadline = Instant::now() + grace;
        loop {
            if self.reap(id).is_some() {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                self.kill(id)?;
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `SIGSTOP`: the node freezes (no heartbeats, no answers) but keeps its sockets.
    pub fn pause(&mut self, id: NodeId) -> Result<()> {
        let pid = self.running_pid(id)?;
        send_signal(pid, Signal::Stop)?;
        self.set_state(id, NodeState::Paused);
        // kill(2) returns before every thread has stopped; on Linux, wait until /proc says so.
        let stat = format!("/proc/{pid}/stat");
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            match std::fs::read_to_string(&stat) {
                Ok(text) if !process_stopped(&text) => std::thread::sleep(Duration::from_millis(1)),
                _ => break,
            }
        }
        Ok(())
    }

    /// `SIGCONT` after [`Cluster::pause`].
    pub fn resume(&mut self, id: NodeId) -> Result<()> {
        let pid = self.running_pid(id)?;
        send_signal(pid, Signal::Cont)?;
        self.set_state(id, NodeState::Running);
        Ok(())
    }

    /// Starts node `id` (not yet in this cluster) with `--join` on a free port and waits until it
    /// answers; it waits to be added (`POST /v1/admin/members`).
    pub async fn start_joining(&mut self, id: NodeId) -> Result<()> {
        if self.nodes.contains_key(&id) {
            bail!("node {id} is already in this cluster");
        }
        let data_dir = self.root.join(format!("node-{id}"));
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let node = Node {
            id,
            port: free_port()?,
            log_path: self.root.join(format!("node-{id}.log")),
            data_dir,
            child: None,
            state: NodeState::Down,
            starts: 0,
            join: true,
        };
        self.nodes.insert(id, node);
        self.spawn(id)?;
        self.wait_ready(&[id]).await
    }

    /// Starts a down node again with the same port, data dir and flags; waits until it answers.
    pub async fn restart(&mut self, id: NodeId) -> Result<()> {
        self.spawn(id)?;
        self.wait_ready(&[id]).await
    }

    fn running_pid(&self, id: NodeId) -> Result<i32> {
        let pid = self
            .nodes
            .get(&id)
            .and_then(Node::pid)
            .ok_or_else(|| anyhow!("node {id} is not running"))?;
        i32::try_from(pid).map_err(|_| anyhow!("pid {pid} out of range"))
    }

    fn set_state(&mut self, id: NodeId, state: NodeState) {
        if let Some(node) = self.nodes.get_mut(&id) {
            node.state = state;
        }
    }

    fn kill_all(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            node.state = NodeState::Down;
        }
    }

    /// The last `max_bytes` of node `id`'s log (all its runs).
    pub fn log_tail(&self, id: NodeId, max_bytes: u64) -> String {
        let Some(node) = self.nodes.get(&id) else {
            return String::new();
        };
        tail(&node.log_path, max_bytes).unwrap_or_else(|e| format!("(cannot read the log: {e})"))
    }

    /// Prints the tail of every node's log to stderr.
    pub fn print_logs(&self, max_bytes: u64) {
        for id in self.ids() {
            eprintln!(
                "----- node {id} ({}) log tail -----\n{}",
                self.node(id).log_path.display(),
                self.log_tail(id, max_bytes)
            );
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let failed = std::thread::panicking() && !self.reported;
        if failed {
            self.print_logs(6000);
        }
        self.kill_all();
        if failed {
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!("cluster files kept in {}", kept.display());
            }
        }
    }
}
