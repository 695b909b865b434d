//! A harness for end-to-end tests and benchmarks: real `flotilla-node` processes on 127.0.0.1.
//!
//! [`Cluster::start`] spawns `n` nodes on free loopback ports, each with its own data directory in a
//! temporary folder and its output in `node-<id>.log` there. Nodes can be killed (`SIGKILL`), stopped
//! (`SIGTERM`), paused (`SIGSTOP`/`SIGCONT`) and restarted on the same port and data. Every child is
//! killed when the [`Cluster`] is dropped; if the thread is panicking (a failed test), the tail of each
//! node's log is printed and the folder is kept.
//!
//! The node binary: `FLOTILLA_NODE_BIN` if set (used as is), else `flotilla-node` in the cargo target
//! directory this test binary lives in (found from `std::env::current_exe()`). In that case the harness
//! runs `cargo build -p flotilla-node` once per process first (a no-op when it is up to date), so the
//! tests never run a stale node; if that build fails and no binary exists, the error says so.
//!
//! Waiting is always on a condition with a deadline ([`wait_until`]), never a bare sleep.

pub mod http1;

use anyhow::{anyhow, bail, Context as _, Result};
use flotilla_shared::api::{
    ErrorBody, MessageEntry, MessagesPage, PartitionRequest, Status, SubmitRequest, SubmitResponse,
    TimingRequest, TransferRequest, LEADER_HEADER,
};
use flotilla_shared::event::Role;
use flotilla_shared::{LogIndex, NodeId};
use reqwest::{Method, StatusCode};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// Most messages one `GET /v1/messages` page may hold (the contract's maximum).
pub const MAX_PAGE: usize = 1000;
/// The page size the harness reads whole logs with: the contract's default, so that logs of a few
/// hundred messages take several pages and paging itself is exercised.
pub const PAGE: usize = 100;

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

    // ---- cluster-level waits ----

    /// Polls each node in `among` for its status; nodes that do not answer are left out.
    pub async fn statuses(&self, among: &[NodeId]) -> BTreeMap<NodeId, Status> {
        let mut statuses = BTreeMap::new();
        for &id in among {
            if let Ok(status) = self.client(id).status().await {
                statuses.insert(id, status);
            }
        }
        statuses
    }

    /// Waits until the nodes in `among` all answer and agree on one leader in one term, and that
    /// leader (one of `among`) says it leads. Returns the leader.
    pub async fn wait_for_leader_among(
        &self,
        among: &[NodeId],
        timeout: Duration,
    ) -> Result<NodeId> {
        let mut seen = String::new();
        let found = wait_until(
            timeout,
            "one leader agreed by all reachable nodes",
            async || {
                let statuses = self.statuses(among).await;
                seen = format!("{:?}", summarize(&statuses));
                if statuses.len() != among.len() {
                    return None;
                }
                let leader = agreed_leader(&statuses)?;
                among.contains(&leader).then_some(leader)
            },
        )
        .await;
        found.with_context(|| format!("last statuses: {seen}"))
    }

    /// [`Cluster::wait_for_leader_among`] all running nodes.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId> {
        self.wait_for_leader_among(&self.running(), timeout).await
    }

    /// Waits until the nodes in `among` have applied the same commit index, at least `at_least`.
    /// Returns that index.
    pub async fn wait_converged_among(
        &self,
        among: &[NodeId],
        at_least: LogIndex,
        timeout: Duration,
    ) -> Result<LogIndex> {
        let mut seen = String::new();
        let found = wait_until(
            timeout,
            "all nodes applied the same commit index",
            async || {
                let statuses = self.statuses(among).await;
                seen = format!("{:?}", summarize(&statuses));
                if statuses.len() != among.len() {
                    return None;
                }
                let commit = statuses.values().map(|s| s.commit_index).max()?;
                let converged = commit >= at_least
                    && statuses
                        .values()
                        .all(|s| s.commit_index == commit && s.last_applied == commit);
                converged.then_some(commit)
            },
        )
        .await;
        found.with_context(|| format!("last statuses: {seen}"))
    }

    /// [`Cluster::wait_converged_among`] all running nodes.
    pub async fn wait_converged(&self, at_least: LogIndex, timeout: Duration) -> Result<LogIndex> {
        self.wait_converged_among(&self.running(), at_least, timeout)
            .await
    }

    /// Every applied message of node `id` (`stale=true`: this node's own state machine), by paging.
    pub async fn all_messages(&self, id: NodeId, stale: bool) -> Result<Vec<MessageEntry>> {
        self.client(id).all_messages(stale).await
    }

    /// Checks that every node in `among` holds exactly the same applied messages, and returns them.
    pub async fn identical_logs(&self, among: &[NodeId]) -> Result<Vec<MessageEntry>> {
        let mut reference: Option<(NodeId, Vec<MessageEntry>)> = None;
        for &id in among {
            let messages = self.all_messages(id, true).await?;
            match &reference {
                None => reference = Some((id, messages)),
                Some((first, expected)) => {
                    if *expected != messages {
                        let at = expected
                            .iter()
                            .zip(&messages)
                            .position(|(a, b)| a != b)
                            .unwrap_or(expected.len().min(messages.len()));
                        bail!(
                            "node {id} ({} messages) differs from node {first} ({} messages) at \
                             position {at}: {:?} vs {:?}",
                            messages.len(),
                            expected.len(),
                            messages.get(at),
                            expected.get(at)
                        );
                    }
                }
            }
        }
        Ok(reference.map(|(_, messages)| messages).unwrap_or_default())
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

/// `(role, term, leader, commit, applied)` per node, for messages.
fn summarize(
    statuses: &BTreeMap<NodeId, Status>,
) -> BTreeMap<u64, (Role, u64, Option<u64>, u64, u64)> {
    statuses
        .iter()
        .map(|(id, s)| {
            (
                id.0,
                (
                    s.role,
                    s.term.0,
                    s.leader_id.map(|l| l.0),
                    s.commit_index.0,
                    s.last_applied.0,
                ),
            )
        })
        .collect()
}

/// The leader every status names, if they all name the same one in the same term and it says it leads.
pub fn agreed_leader(statuses: &BTreeMap<NodeId, Status>) -> Option<NodeId> {
    let first = statuses.values().next()?;
    let leader = first.leader_id?;
    let term = first.term;
    let agreed = statuses
        .values()
        .all(|s| s.leader_id == Some(leader) && s.term == term);
    let leads = statuses
        .get(&leader)
        .is_some_and(|s| s.role == Role::Leader);
    (agreed && leads).then_some(leader)
}

// ---- HTTP client ----

/// The HTTP API of any node, by URL. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Api {
    http: reqwest::Client,
    admin_token: Option<String>,
}

/// An answer from a node: status, the `X-Raft-Leader` header and the body.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub leader_header: Option<String>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("unexpected body for {}: {}", self.status, self.text()))
    }

    /// The `{"error","message"}` body every error answer carries.
    pub fn error(&self) -> Result<ErrorBody> {
        self.json()
    }

    /// The leader id from `X-Raft-Leader: <id> <url>`.
    pub fn leader_hint(&self) -> Option<(NodeId, String)> {
        let header = self.leader_header.as_deref()?;
        let (id, url) = header.split_once(' ')?;
        Some((NodeId(id.trim().parse().ok()?), url.trim().to_string()))
    }
}

impl Api {
    pub fn new(admin_token: Option<String>) -> Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            // Below the nodes' read timeout (10 s by default), after which they close idle connections.
            .pool_idle_timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(30))
            .build()
            .context("building the HTTP client")?;
        Ok(Self { http, admin_token })
    }

    /// Any request; `admin` adds the bearer token this `Api` was made with.
    pub async fn request(
        &self,
        method: Method,
        url: &str,
        body: Option<(&str, Vec<u8>)>,
        headers: &[(&str, &str)],
        timeout: Option<Duration>,
    ) -> Result<Reply> {
        let mut request = self.http.request(method.clone(), url);
        if let Some((content_type, bytes)) = body {
            request = request.header("content-type", content_type).body(bytes);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = response.status();
        let leader_header = response
            .headers()
            .get(LEADER_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("reading the body of {method} {url}"))?;
        Ok(Reply {
            status,
            leader_header,
            body: bytes.to_vec(),
        })
    }

    fn bearer(&self) -> Option<String> {
        self.admin_token.as_ref().map(|t| format!("Bearer {t}"))
    }
}

/// The API of one node.
#[derive(Clone, Debug)]
pub struct NodeClient<'a> {
    api: &'a Api,
    pub id: NodeId,
    pub url: String,
}

/// Outcome of a submit: committed (201 new, 200 duplicate) or refused with an error body.
#[derive(Clone, Debug)]
pub enum Submitted {
    Committed {
        response: SubmitResponse,
        leader_header: Option<String>,
        status: StatusCode,
    },
    Refused {
        status: StatusCode,
        error: ErrorBody,
    },
}

impl NodeClient<'_> {
    pub async fn status(&self) -> Result<Status> {
        let reply = self
            .api
            .request(
                Method::GET,
                &format!("{}/v1/status", self.url),
                None,
                &[],
                Some(Duration::from_secs(2)),
            )
            .await?;
        if reply.status != StatusCode::OK {
            bail!(
                "node {}: status answered {}: {}",
                self.id,
                reply.status,
                reply.text()
            );
        }
        reply.json()
    }

    /// `POST /v1/messages` with a JSON body made from `text` and `request_id`.
    pub async fn submit(&self, text: &str, request_id: Option<&str>) -> Result<Submitted> {
        let body = serde_json::to_vec(&SubmitRequest {
            text: text.into(),
            request_id: request_id.map(Into::into),
        })?;
        let reply = self.post_raw("/v1/messages", body).await?;
        submitted(reply)
    }

    /// `POST` raw bytes as JSON to `path` (for malformed-input tests).
    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> Result<Reply> {
        self.api
            .request(
                Method::POST,
                &format!("{}{path}", self.url),
                Some(("application/json", body)),
                &[],
                None,
            )
            .await
    }

    /// `GET /v1/messages?from=&limit=[&stale=true]`.
    pub async fn messages(&self, from: u64, limit: usize, stale: bool) -> Result<MessagesPage> {
        let stale = if stale { "&stale=true" } else { "" };
        let url = format!("{}/v1/messages?from={from}&limit={limit}{stale}", self.url);
        let reply = self.api.request(Method::GET, &url, None, &[], None).await?;
        if reply.status != StatusCode::OK {
            bail!(
                "node {}: GET messages answered {}: {}",
                self.id,
                reply.status,
                reply.text()
            );
        }
        reply.json()
    }

    /// All messages up to one read point, by paging (a short page means the end).
    pub async fn all_messages(&self, stale: bool) -> Result<Vec<MessageEntry>> {
        let mut all = Vec::new();
        let mut from = 1u64;
        loop {
            let page = self.messages(from, PAGE, stale).await?;
            // The page covers [from, from + limit) up to its read point.
            let end = from + PAGE as u64;
            for entry in &page.entries {
                let after_previous = all
                    .last()
                    .is_none_or(|last: &MessageEntry| last.index < entry.index);
                if entry.index.0 < from
                    || entry.index.0 >= end
                    || entry.index > page.commit_index
                    || !after_previous
                {
                    bail!(
                        "node {}: page from={from} limit={PAGE} (read point {}) holds entry {} out \
                         of range or order",
                        self.id,
                        page.commit_index,
                        entry.index
                    );
                }
                all.push(entry.clone());
            }
            if end > page.commit_index.0 {
                return Ok(all);
            }
            from = end;
        }
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Reply> {
        let bearer = self.api.bearer();
        let headers: Vec<(&str, &str)> = bearer
            .as_deref()
            .map(|b| vec![("authorization", b)])
            .unwrap_or_default();
        self.api
            .request(
                method,
                &format!("{}{path}", self.url),
                body.map(|b| ("application/json", b)),
                &headers,
                None,
            )
            .await
    }

    async fn admin_ok(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Reply> {
        let reply = self.admin(method.clone(), path, body).await?;
        if !reply.status.is_success() {
            bail!(
                "node {}: {method} {path} answered {}: {}",
                self.id,
                reply.status,
                reply.text()
            );
        }
        Ok(reply)
    }

    /// `POST /v1/admin/partition`: this node drops Raft traffic to and from `isolate_from`.
    pub async fn partition(&self, isolate_from: &[NodeId]) -> Result<()> {
        let body = serde_json::to_vec(&PartitionRequest {
            isolate_from: isolate_from.to_vec(),
        })?;
        self.admin_ok(Method::POST, "/v1/admin/partition", Some(body))
            .await
            .map(drop)
    }

    /// `DELETE /v1/admin/partition`.
    pub async fn heal(&self) -> Result<()> {
        self.admin_ok(Method::DELETE, "/v1/admin/partition", None)
            .await
            .map(drop)
    }

    /// `POST /v1/admin/transfer-leadership`.
    pub async fn transfer_leadership(&self, to: NodeId) -> Result<()> {
        let body = serde_json::to_vec(&TransferRequest { to })?;
        self.admin_ok(Method::POST, "/v1/admin/transfer-leadership", Some(body))
            .await
            .map(drop)
    }

    /// `PUT /v1/admin/timing`.
    pub async fn set_timing(&self, heartbeat_ms: u64, election_timeout_ms: [u64; 2]) -> Result<()> {
        let body = serde_json::to_vec(&TimingRequest {
            heartbeat_ms,
            election_timeout_ms,
        })?;
        self.admin_ok(Method::PUT, "/v1/admin/timing", Some(body))
            .await
            .map(drop)
    }
}

fn submitted(reply: Reply) -> Result<Submitted> {
    if reply.status == StatusCode::CREATED || reply.status == StatusCode::OK {
        Ok(Submitted::Committed {
            response: reply.json()?,
            leader_header: reply.leader_header,
            status: reply.status,
        })
    } else {
        Ok(Submitted::Refused {
            status: reply.status,
            error: reply.error()?,
        })
    }
}

/// A client that keeps trying until its message commits: on `503`, `504` or a connection error it
/// tries again (another node, after a short pause) with the **same** `request_id`, so a retry can never
/// add a second copy.
#[derive(Clone, Debug)]
pub struct RetryingClient {
    api: Api,
    urls: BTreeMap<NodeId, String>,
    /// Where the last success came from; tried first.
    preferred: Option<NodeId>,
    pub pause: Duration,
}

/// What a retrying submit ended with.
#[derive(Clone, Debug)]
pub struct Acknowledged {
    pub response: SubmitResponse,
    pub attempts: u32,
    pub by: NodeId,
}

impl RetryingClient {
    pub fn new(cluster: &Cluster) -> Self {
        Self {
            api: cluster.api().clone(),
            urls: cluster
                .ids()
                .into_iter()
                .map(|id| (id, cluster.url(id)))
                .collect(),
            preferred: None,
            pause: Duration::from_millis(25),
        }
    }

    /// Sends only to the nodes in `ids` (e.g. one side of a partition).
    pub fn only(mut self, ids: &[NodeId]) -> Self {
        self.urls.retain(|id, _| ids.contains(id));
        self
    }

    /// Submits until acknowledged or `timeout` passes. Errors other than "try again" end at once.
    pub async fn submit(
        &mut self,
        text: &str,
        request_id: &str,
        timeout: Duration,
    ) -> Result<Acknowledged> {
        let deadline = Instant::now() + timeout;
        let mut attempts = 0u32;
        let mut last = String::new();
        let ids: Vec<NodeId> = self.urls.keys().copied().collect();
        if ids.is_empty() {
            bail!("the retrying client has no node to send to");
        }
        let mut next = self
            .preferred
            .and_then(|p| ids.iter().position(|&id| id == p))
            .unwrap_or(0);
        while Instant::now() < deadline {
            let id = ids[next % ids.len()];
            attempts += 1;
            let client = NodeClient {
                api: &self.api,
                id,
                url: self.urls[&id].clone(),
            };
            match client.submit(text, Some(request_id)).await {
                Ok(Submitted::Committed { response, .. }) => {
                    self.preferred = response.leader_id.or(Some(id));
                    return Ok(Acknowledged {
                        response,
                        attempts,
                        by: id,
                    });
                }
                Ok(Submitted::Refused { status, error })
                    if status == StatusCode::SERVICE_UNAVAILABLE
                        || status == StatusCode::GATEWAY_TIMEOUT =>
                {
                    last = format!("node {id}: {status} {}", error.message);
                }
                Ok(Submitted::Refused { status, error }) => {
                    bail!("node {id} refused {request_id:?}: {status} {error:?}");
                }
                Err(error) => last = format!("node {id}: {error:#}"),
            }
            next += 1;
            tokio::time::sleep(self.pause).await;
        }
        bail!("{request_id:?} not acknowledged within {timeout:?} after {attempts} attempts; last: {last}")
    }
}

// ---- waiting ----

/// Polls `condition` every 20 ms until it yields `Some`, or fails after `timeout` naming `what`.
pub async fn wait_until<T>(
    timeout: Duration,
    what: &str,
    mut condition: impl AsyncFnMut() -> Option<T>,
) -> Result<T> {
    let started = Instant::now();
    loop {
        if let Some(value) = condition().await {
            return Ok(value);
        }
        if started.elapsed() >= timeout {
            bail!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- processes and files ----

#[derive(Clone, Copy, Debug)]
enum Signal {
    Term,
    Stop,
    Cont,
}

#[allow(unsafe_code)]
fn send_signal(pid: i32, signal: Signal) -> Result<()> {
    let number = match signal {
        Signal::Term => libc::SIGTERM,
        Signal::Stop => libc::SIGSTOP,
        Signal::Cont => libc::SIGCONT,
    };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; `pid` is our own child,
    // not yet reaped, so the number cannot belong to another process.
    let result = unsafe { libc::kill(pid, number) };
    if result != 0 {
        bail!(
            "kill({pid}, {signal:?}) failed: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Whether a `/proc/<pid>/stat` line says the process is stopped (state `T`).
fn process_stopped(stat: &str) -> bool {
    // The state follows the command name, which is in parentheses and may contain spaces.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| state == "T")
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

fn tail(path: &Path, max_bytes: u64) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(max_bytes)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Finds (building once if missing) the `flotilla-node` binary. See the crate docs.
pub fn node_binary() -> Result<PathBuf> {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FOUND
        .get_or_init(|| locate_or_build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn locate_or_build() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("FLOTILLA_NODE_BIN") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("FLOTILLA_NODE_BIN={} is not a file", path.display());
        }
        return Ok(path);
    }
    let exe = std::env::current_exe().context("locating the test binary")?;
    let name = format!("flotilla-node{}", std::env::consts::EXE_SUFFIX);
    // Test binaries live in <target>/<profile>/deps/, other binaries in <target>/<profile>/.
    let profile_dir = exe
        .ancestors()
        .skip(1)
        .find(|dir| dir.join(&name).is_file() || dir.join("deps").is_dir())
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("cannot find the target directory from {}", exe.display()))?;
    let candidate = profile_dir.join(&name);
    // Always (once per test process) ask cargo to bring the binary up to date: a stale node binary
    // would test old code. When nothing changed this takes well under a second.
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow!("the tests crate has no parent directory"))?;
    let mut build = Command::new(&cargo);
    build.current_dir(workspace).args([
        "build",
        "--quiet",
        "-p",
        "flotilla-node",
        "--bin",
        "flotilla-node",
    ]);
    if release {
        build.arg("--release");
    }
    let output = build.stdin(Stdio::null()).output();
    let built = match &output {
        Ok(output) if output.status.success() => true,
        Ok(output) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
            eprintln!(
                "`cargo build -p flotilla-node` failed ({}):\n{}",
                output.status,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
            false
        }
        Err(error) => {
            eprintln!("cannot run {cargo:?} to build the node: {error}");
            false
        }
    };
    if !candidate.is_file() {
        bail!(
            "{} is missing and could not be built; run `cargo build -p flotilla-node{}` first, or \
             set FLOTILLA_NODE_BIN to the node binary",
            candidate.display(),
            if release { " --release" } else { "" }
        );
    }
    if !built {
        eprintln!(
            "warning: using the existing {}, which may be out of date",
            candidate.display()
        );
    }
    Ok(candidate)
}

/// Text of a message from a test: short, unique, and saying where it came from.
pub fn unique_text(prefix: &str, n: u64) -> String {
    format!("{prefix}-{n}")
}

/// Applied messages counted by `request_id` (`None` ids are counted under "").
pub fn count_by_request_id(messages: &[MessageEntry]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for message in messages {
        *counts
            .entry(message.request_id.clone().unwrap_or_default())
            .or_insert(0) += 1;
    }
    counts
}

// ---- background writers ----

/// One acknowledged write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    pub request_id: String,
    pub text: String,
    pub index: LogIndex,
    pub attempts: u32,
}

/// Concurrent retrying writers, each submitting unique messages one after another until stopped.
pub struct Writers {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<Ack>>>,
    handles: Vec<tokio::task::JoinHandle<Result<()>>>,
}

impl Writers {
    /// Starts `count` writers whose request ids start with `prefix`. Each message must be
    /// acknowledged within `per_write_timeout` or its writer fails.
    pub fn start(
        client: &RetryingClient,
        count: usize,
        prefix: &str,
        per_write_timeout: Duration,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let handles = (0..count)
            .map(|writer| {
                let mut client = client.clone();
                let stop = stop.clone();
                let acked = acked.clone();
                let prefix = format!("{prefix}-w{writer}");
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let request_id = format!("{prefix}-{n}");
                        let text = format!("message {n} from {prefix}");
                        let ack = client.submit(&text, &request_id, per_write_timeout).await?;
                        acked
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(Ack {
                                request_id,
                                text,
                                index: ack.response.index,
                                attempts: ack.attempts,
                            });
                        n += 1;
                    }
                    Ok(())
                })
            })
            .collect();
        Self {
            stop,
            acked,
            handles,
        }
    }

    /// How many writes were acknowledged so far.
    pub fn acked(&self) -> usize {
        self.acked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Waits until `more` writes beyond `since` were acknowledged; returns the new count.
    pub async fn wait_for(&self, since: usize, more: usize, timeout: Duration) -> Result<usize> {
        let found = wait_until(
            timeout,
            &format!("{more} more acknowledged writes (had {since})"),
            async || {
                if self.handles.iter().any(|h| h.is_finished()) {
                    // A writer gave up: stop waiting; `stop` reports its error.
                    return Some(None);
                }
                let now = self.acked();
                (now >= since + more).then_some(Some(now))
            },
        )
        .await?;
        found
            .ok_or_else(|| anyhow!("a writer stopped early (its error comes from `Writers::stop`)"))
    }

    /// Stops the writers after their current write and returns every acknowledged write.
    pub async fn stop(self) -> Result<Vec<Ack>> {
        self.stop.store(true, Ordering::Relaxed);
        for handle in self.handles {
            handle.await.context("a writer panicked")??;
        }
        let acked = self.acked.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(acked.clone())
    }
}

/// Checks that every acknowledged write is in `messages` exactly once, at the index it was
/// acknowledged with, and that no request id appears twice.
pub fn check_acked_exactly_once(messages: &[MessageEntry], acked: &[Ack]) -> Result<()> {
    let counts = count_by_request_id(messages);
    if let Some((id, count)) = counts
        .iter()
        .find(|(id, count)| !id.is_empty() && **count > 1)
    {
        bail!("request id {id:?} applied {count} times");
    }
    let by_id: BTreeMap<&str, &MessageEntry> = messages
        .iter()
        .filter_map(|m| m.request_id.as_deref().map(|id| (id, m)))
        .collect();
    for ack in acked {
        let Some(message) = by_id.get(ack.request_id.as_str()) else {
            bail!(
                "acknowledged write {:?} (index {}) is missing ({} messages present)",
                ack.request_id,
                ack.index,
                messages.len()
            );
        };
        if message.index != ack.index || message.text != ack.text {
            bail!("acknowledged write {ack:?} is stored as {message:?}");
        }
    }
    Ok(())
}

/// Runs `command` (output captured) and waits for it to exit; kills it and fails after `timeout`.
pub async fn run_to_exit(mut command: Command, timeout: Duration) -> Result<std::process::Output> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning")?;
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait()?.is_some() {
            return child.wait_with_output().context("collecting output");
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let output = child.wait_with_output()?;
            bail!(
                "still running after {timeout:?}; output:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_shared::Term;

    fn status(id: u64, role: Role, term: u64, leader: Option<u64>) -> Status {
        Status {
            id: NodeId(id),
            role,
            term: Term(term),
            voted_for: None,
            leader_id: leader.map(NodeId),
            commit_index: LogIndex(0),
            last_applied: LogIndex(0),
            last_log_index: LogIndex(0),
            last_log_term: Term(0),
            persisted_index: LogIndex(0),
            peers: Vec::new(),
            isolated_from: Vec::new(),
            heartbeat_ms: 50,
            election_timeout_ms: [150, 300],
        }
    }

    #[test]
    fn a_leader_is_agreed_only_when_everyone_names_it_in_one_term() {
        let agreed: BTreeMap<NodeId, Status> = [
            status(1, Role::Leader, 3, Some(1)),
            status(2, Role::Follower, 3, Some(1)),
        ]
        .into_iter()
        .map(|s| (s.id, s))
        .collect();
        assert_eq!(agreed_leader(&agreed), Some(NodeId(1)));

        let mut other_term = agreed.clone();
        other_term.get_mut(&NodeId(2)).unwrap().term = Term(4);
        assert_eq!(agreed_leader(&other_term), None);

        let mut stepped_down = agreed.clone();
        stepped_down.get_mut(&NodeId(1)).unwrap().role = Role::Follower;
        assert_eq!(agreed_leader(&stepped_down), None);

        let mut unknown = agreed;
        unknown.get_mut(&NodeId(2)).unwrap().leader_id = None;
        assert_eq!(agreed_leader(&unknown), None);
    }

    fn message(index: u64, text: &str, request_id: &str) -> MessageEntry {
        MessageEntry {
            index: LogIndex(index),
            term: Term(1),
            text: text.into(),
            request_id: Some(request_id.into()),
        }
    }

    fn ack(index: u64, text: &str, request_id: &str) -> Ack {
        Ack {
            request_id: request_id.into(),
            text: text.into(),
            index: LogIndex(index),
            attempts: 1,
        }
    }

    #[test]
    fn acknowledged_writes_must_be_present_once_at_their_index() {
        let messages = vec![message(2, "a", "r-a"), message(3, "b", "r-b")];
        assert!(check_acked_exactly_once(&messages, &[ack(2, "a", "r-a")]).is_ok());
        assert!(check_acked_exactly_once(&messages, &[ack(4, "c", "r-c")]).is_err());
        assert!(check_acked_exactly_once(&messages, &[ack(3, "a", "r-a")]).is_err());
        let twice = vec![message(2, "a", "r-a"), message(5, "a", "r-a")];
        assert!(check_acked_exactly_once(&twice, &[]).is_err());
    }

    #[test]
    fn the_leader_header_is_parsed() {
        let reply = Reply {
            status: StatusCode::CREATED,
            leader_header: Some("2 http://127.0.0.1:7002".into()),
            body: Vec::new(),
        };
        assert_eq!(
            reply.leader_hint(),
            Some((NodeId(2), "http://127.0.0.1:7002".to_string()))
        );
    }
}
