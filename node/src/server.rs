//! Wires a node together: storage, core, runtime, transport and HTTP, and runs it until shutdown.

use crate::clock::Clock;
use crate::events::EventHub;
use crate::faults::Faults;
use crate::guard::AllowedOrigins;
use crate::http::{Api, LeaderHints, StateReader};
use crate::metrics::Metrics;
use crate::raft::{
    Config, Configuration, LogId, LogIndex, NodeId, Raft, Restored, SnapshotMeta, Term,
};
use crate::runtime::{CoreLog, NodeInfo, Runtime, RuntimeParts, SnapshotConfig};
use crate::storage::sqlite::{SqliteReader, SqliteStore};
use crate::storage::{LogStore, StorageError};
use crate::transport::client::Pools;
use crate::transport::{
    OrderGate, Partition, PeerDirectory, Transport, TransportConfig, TransportShared,
};
use anyhow::Context as _;
use flotilla_shared::api::{MessageEntry, Status};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Everything a node is started with (the CLI's flags, checked).
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: NodeId,
    pub listen: SocketAddr,
    /// Other members: id → `host:port` of their HTTP listener. Seeds the configuration of a data dir
    /// whose log holds none.
    pub peers: BTreeMap<NodeId, String>,
    /// Start with no configuration and wait to be added (`--join`).
    pub join: bool,
    /// Where peers reach this node (`host:port`), as written in the configurations it proposes.
    pub own_addr: String,
    pub advertise: String,
    pub data_dir: PathBuf,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: (u64, u64),
    pub admin_token: Option<String>,
    pub cluster_id: String,
    pub cluster_token: Option<String>,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    /// Entries applied between two snapshots (0: only when asked).
    pub snapshot_threshold: u64,
    pub limits: Limits,
}

/// Bounds on what clients and peers can make a node hold.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    /// Headers, and then a body, must each arrive within this; idle connections close after it.
    pub read_timeout: Duration,
    pub max_event_streams: usize,
    /// Entries a leader may hold beyond its commit index or its own durable index.
    pub max_uncommitted_entries: u64,
}

/// Requests queued for the runtime before HTTP handlers wait (back-pressure instead of memory growth).
const INBOX_CAPACITY: usize = 16_384;

/// Idle connections kept to the leader for forwarded client requests: enough for a burst of clients
/// on a follower without reconnecting each time.
const FORWARD_MAX_IDLE: usize = 64;

/// Runs the node until `shutdown` completes, then stops gracefully. Errors are one line for the user.
pub async fn run(
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let db_path = SqliteStore::path_in(&config.data_dir, config.id);
    let store = SqliteStore::open(&db_path, config.id, &config.cluster_id)?;
    let initial = store.initial_state()?;
    let core_reader = CoreLog(store.reader()?);
    let snapshot = store.snapshot()?;
    let membership = initial_membership(&config, &core_reader, &initial, &snapshot)?;
    let clock = Clock::new();

    let mut voters: Vec<NodeId> = config.peers.keys().copied().collect();
    voters.push(config.id);
    voters.sort();
    let mut raft_config = Config::new(config.id, voters);
    raft_config.heartbeat_ms = config.heartbeat_ms;
    raft_config.election_timeout_ms = config.election_timeout_ms;
    // Only election timeouts are random; a fresh seed per start keeps restarted nodes from colliding.
    raft_config.seed = clock.now_ms() ^ (config.id.0 << 32) ^ u64::from(std::process::id());
    let restored = Restored {
        hard_state: initial.hard_state,
        last: initial.last,
        applied: initial.applied,
        snapshot,
        first_index: initial.first_index,
    };
    let mut raft = Raft::new(raft_config.clone(), core_reader, restored, clock.now_ms())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    raft.restore_membership(membership);
    tracing::info!(
        members = ?raft.membership().members,
        config_index = %raft.membership().index,
        join = config.join,
        "configuration"
    );
    tracing::info!(
        id = %config.id,
        term = %initial.hard_state.term,
        last_index = %initial.last.index,
        applied = %initial.applied,
        db = %db_path.display(),
        "recovered state"
    );

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    if config.cluster_token.is_none() && !config.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %config.listen,
            "NO CLUSTER TOKEN: this node listens beyond loopback and accepts Raft RPCs from anyone \
             who can reach it, and such a request can rewrite its log. Set --cluster-token (or \
             CLUSTER_TOKEN, or --cluster-token-file) to the same secret on every node."
        );
    }

    // Let go of idle connections before peers (with the same settings) close them: a forward sent
    // on a connection the leader is just closing would end in 504, its fate unknown.
    let forward_pools = Pools::new(
        FORWARD_MAX_IDLE,
        (config.limits.read_timeout / 2).min(Duration::from_secs(30)),
    );
    let (inbox_tx, inbox_rx) = mpsc::channel(INBOX_CAPACITY);
    let events = EventHub::new(config.id, clock);
    let metrics = Arc::new(Metrics::default());
    let partition = Arc::new(Partition::default());
    // Loss and jitter draws differ from the election timeouts' but are as fresh per start.
    let faults = Arc::new(Faults::new(!raft_config.seed));
    let (status_tx, status_rx) = watch::channel(Arc::new(empty_status(
        &config,
        initial.last,
        initial.applied,
    )));
    let directory = PeerDirectory::new(config.peers.clone());
    let transport = Transport::start(
        TransportConfig {
            id: config.id,
            peers: config.peers.clone(),
            cluster_token: config.cluster_token.clone(),
            advertise: crate::http::advertise_hint(config.id, &config.advertise),
            max_inflight: raft_config.max_inflight_appends,
            request_timeout: Duration::from_millis(config.election_timeout_ms.1.max(500)),
        },
        TransportShared {
            inbox: inbox_tx.clone(),
            partition: partition.clone(),
            faults: faults.clone(),
            metrics: metrics.clone(),
            events: events.clone(),
        },
    );
    let reader = Arc::new(ReaderPool::new(db_path.clone()));
    let runtime = Runtime::new(RuntimeParts {
        raft,
        info: NodeInfo {
            id: config.id,
            peers: directory.clone(),
        },
        clock,
        inbox: inbox_rx,
        store: Box::new(store),
        transport,
        partition: partition.clone(),
        faults: faults.clone(),
        events: events.clone(),
        status: status_tx,
        metrics: metrics.clone(),
        stored_applied: initial.applied,
        max_uncommitted: config.limits.max_uncommitted_entries,
        snapshot: SnapshotConfig {
            threshold: config.snapshot_threshold,
        },
        state_reader: reader.clone(),
    })?;
    let (stop_runtime, runtime_stopped) = watch::channel(false);
    let runtime_task = tokio::spawn(runtime.run(runtime_stopped));

    let api = Arc::new(Api {
        id: config.id,
        peers: directory,
        leader_hints: LeaderHints::new(config.id, &config.advertise, &config.peers),
        origins: AllowedOrigins::new(&config.advertise, config.listen),
        inbox: inbox_tx,
        status: status_rx,
        events,
        metrics,
        partition,
        faults,
        order: OrderGate::default(),
        reader,
        forward_pools,
        admin_token: config.admin_token.clone(),
        cluster_token: config.cluster_token.clone(),
        max_body: config.max_body_bytes,
        read_timeout: config.limits.read_timeout,
        max_event_streams: config.limits.max_event_streams,
        request_timeout: config.request_timeout,
        leader_wait: Duration::from_millis(config.election_timeout_ms.1 * 4)
            .min(config.request_timeout),
    });
    tracing::info!(listen = %config.listen, advertise = %config.advertise, peers = ?config.peers, "serving");

    // Stop when asked, or when the runtime ends by itself (a storage failure).
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = crate::serve::serve(
        listener,
        crate::http::routes(api),
        config.limits,
        async move {
            let _ = http_stopped.await;
        },
    );
    let server_task = tokio::spawn(server);
    let mut runtime_task = runtime_task;
    let runtime_result = tokio::select! {
        _ = shutdown => {
            tracing::info!("shutting down");
            let _ = stop_runtime.send(true);
            (&mut runtime_task).await
        }
        result = &mut runtime_task => result,
    };
    let _ = stop_http.send(());
    // Open event streams would hold a graceful stop forever: give in-flight requests a moment only.
    let _ = tokio::time::timeout(Duration::from_secs(1), server_task).await;
    match runtime_result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(anyhow::anyhow!("storage failed: {error}")),
        Err(join) => Err(anyhow::anyhow!("the runtime stopped unexpectedly: {join}")),
    }
}

/// The configuration a node starts from: the newest at or below its durable commit index, from a
/// configuration entry or its snapshot (the core takes in newer ones), else nothing for a node started
/// to join, else the `--peers` seed, all voters.
fn initial_membership(
    config: &NodeConfig,
    log: &CoreLog,
    initial: &crate::storage::InitialState,
    snapshot: &SnapshotMeta,
) -> anyhow::Result<Configuration> {
    // The commit index the core will start from (see `Raft::new`).
    let last = initial.last.index;
    let commit = initial
        .hard_state
        .commit
        .min(last)
        .max(initial.applied.min(last))
        .max(snapshot.last.index);
    let from_log = log
        .0
        .last_configuration(commit)?
        .and_then(|entry| Configuration::from_entry(&entry));
    let from_snapshot = (snapshot.last.index > LogIndex::ZERO)
        .then(|| Configuration::new(snapshot.members.clone(), Vec::new(), snapshot.config_index));
    if let Some(stored) = [from_log, from_snapshot]
        .into_iter()
        .flatten()
        .max_by_key(|config| config.index)
    {
        return Ok(stored);
    }
    if config.join {
        return Ok(Configuration::default());
    }
    let own = (config.id, config.own_addr.clone());
    Ok(Configuration::seed(
        config.peers.clone().into_iter().chain(std::iter::once(own)),
    ))
}

fn empty_status(config: &NodeConfig, last: LogId, applied: LogIndex) -> Status {
    Status {
        id: config.id,
        role: Default::default(),
        term: Term(0),
        voted_for: None,
        leader_id: None,
        commit_index: applied,
        last_applied: applied,
        last_log_index: last.index,
        last_log_term: last.term,
        persisted_index: last.index,
        peers: Vec::new(),
        isolated_from: Vec::new(),
        heartbeat_ms: config.heartbeat_ms,
        election_timeout_ms: [config.election_timeout_ms.0, config.election_timeout_ms.1],
        // Compaction, membership and fault fields are filled in by the parts that own them.
        snapshot_index: LogIndex(0),
        snapshot_term: Term(0),
        first_log_index: LogIndex(1),
        members: Vec::new(),
        config_index: LogIndex(0),
        link_faults: Vec::new(),
        disk_write_delay_ms: 0,
    }
}

/// Threads for blocking work, which is HTTP handlers' storage reads: on a small machine more of them
/// only add context switches.
pub const MAX_BLOCKING_THREADS: usize = 16;

/// Idle read connections kept open between requests: one per blocking thread. Opening a connection
/// reads the schema and prepares its statements again, which cost reads a third of their throughput
/// when bursts of 64 readers reopened all but four.
const MAX_IDLE_READERS: usize = MAX_BLOCKING_THREADS;

/// Read connections for HTTP handlers, opened on demand and reused.
struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<SqliteReader>>,
}

impl ReaderPool {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn with<T>(
        &self,
        read: impl FnOnce(&SqliteReader) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let pooled = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let reader = match pooled {
            Some(reader) => reader,
            None => SqliteReader::open(&self.path)?,
        };
        let result = read(&reader);
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        // Each connection holds its own page cache: keep a few for reuse, close the rest after a burst.
        if idle.len() < MAX_IDLE_READERS {
            idle.push(reader);
        }
        result
    }
}

impl StateReader for ReaderPool {
    fn messages(
        &self,
        from: LogIndex,
        up_to: LogIndex,
        limit: usize,
    ) -> Result<Vec<MessageEntry>, StorageError> {
        self.with(|reader| reader.messages(from, up_to, limit))
    }
}
