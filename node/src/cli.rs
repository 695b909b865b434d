//! `flotilla-node`'s command line: flags (each also read from an env var) and logging; `shutdown`
//! decides when it stops.

use crate::server::{self, NodeConfig};
use clap::{Parser, Subcommand, ValueEnum};
use flotilla_shared::NodeId;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "flotilla-node",
    version,
    about = "A Flotilla Raft node: start one per member, e.g.\n  flotilla-node --id 1 --listen 127.0.0.1:7001 --peers 2=127.0.0.1:7002,3=127.0.0.1:7003",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Exits 0 when the node at URL answers /v1/status (for container health checks; needs no curl).
    Health {
        #[arg(long, env = "HEALTH_URL", default_value = "http://127.0.0.1:5000")]
        url: String,
    },
}

#[derive(clap::Args, Debug)]
struct NodeArgs {
    /// This node's id, 1..=255.
    #[arg(long, env = "NODE_ID")]
    id: Option<u64>,
    /// Address to serve the HTTP API and Raft RPC on.
    #[arg(long, env = "LISTEN", default_value = "0.0.0.0:5000")]
    listen: String,
    /// The other members: comma list of ID=HOST:PORT (this node's own id may be listed; it is skipped).
    #[arg(long, env = "PEERS", default_value = "")]
    peers: String,
    /// Start with no configuration and wait to be added by a cluster's leader
    /// (`POST /v1/admin/members`); never campaign before. `--peers` is ignored.
    #[arg(long, env = "JOIN", value_parser = clap::builder::BoolishValueParser::new())]
    join: bool,
    /// How clients reach this node (leader hints). Default: http://<listen>.
    #[arg(long, env = "ADVERTISE")]
    advertise: Option<String>,
    /// Directory for this node's SQLite file (created if missing).
    #[arg(long, env = "DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    #[arg(long, env = "HEARTBEAT_MS", default_value_t = 50)]
    heartbeat_ms: u64,
    /// Election timeout range MIN-MAX in milliseconds.
    #[arg(long, env = "ELECTION_TIMEOUT_MS", default_value = "150-300")]
    election_timeout_ms: String,
    /// Bearer token required on /v1/admin/*. Unset: the admin API answers 403.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Names the cluster; recorded in the database so a node never starts on another cluster's data.
    #[arg(long, env = "CLUSTER_ID", default_value = "flotilla")]
    cluster_id: String,
    /// Shared secret every Raft RPC must carry; RPCs without it are refused before their body is read.
    #[arg(long, env = "CLUSTER_TOKEN", hide_env_values = true)]
    cluster_token: Option<String>,
    /// File holding the cluster token, used when --cluster-token is unset; the first node to start
    /// creates it with a random token (give every node the same file, e.g. on a shared volume).
    #[arg(long, env = "CLUSTER_TOKEN_FILE")]
    cluster_token_file: Option<PathBuf>,
    /// Largest accepted client request body.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    max_body_bytes: usize,
    /// How long a client request may take before it is answered 504.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 5_000)]
    request_timeout_ms: u64,
    /// Connections served at once; more are answered 503 and closed.
    /// The default stays well below the usual open-file limit of 1024.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 512)]
    max_connections: usize,
    /// A request's headers, and then its body, must each arrive within this; an idle connection is
    /// closed after it.
    #[arg(long, env = "READ_TIMEOUT_MS", default_value_t = 10_000)]
    read_timeout_ms: u64,
    /// Open /v1/events streams at once; more are answered 503.
    #[arg(long, env = "MAX_EVENT_STREAMS", default_value_t = 64)]
    max_event_streams: usize,
    /// Entries a leader holds beyond what is committed or durable on its disk; beyond it, submits are
    /// answered 503 overloaded without being appended.
    #[arg(long, env = "MAX_UNCOMMITTED_ENTRIES", default_value_t = 4096)]
    max_uncommitted_entries: u64,
    /// Snapshot the state machine and compact the log once this many entries were applied since
    /// the last snapshot (Raft §7); 0 never does (`POST /v1/admin/snapshot` still takes one).
    #[arg(long, env = "SNAPSHOT_THRESHOLD", default_value_t = crate::runtime::DEFAULT_SNAPSHOT_THRESHOLD)]
    snapshot_threshold: u64,
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Stop when standard input reaches end-of-file: the desktop holds the other end of that pipe, so
    /// its nodes end with it however it ends. No env var: an inherited one would stop a node at once
    /// wherever its input is not such a pipe.
    #[arg(long, hide = true)]
    exit_with_parent: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The address `own` is listed at in a `--peers` list, if it is (peers reach it there).
pub fn own_address(list: &str, own: NodeId) -> Option<String> {
    list.split(',').find_map(|item| {
        let (id, addr) = item.trim().split_once('=')?;
        (id.trim().parse::<u64>().ok()? == own.0).then(|| addr.trim().to_owned())
    })
}

/// Parses `2=127.0.0.1:7002,3=node3:5000`, skipping `own`.
pub fn parse_peers(list: &str, own: NodeId) -> Result<BTreeMap<NodeId, String>, String> {
    let mut peers = BTreeMap::new();
    for item in list
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let (id, addr) = item
            .split_once('=')
            .ok_or_else(|| format!("peer {item:?} must look like ID=HOST:PORT"))?;
        let id = id
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("peer {item:?}: id must be a number"))
            .and_then(NodeId::new)?;
        let addr = addr.trim();
        if !crate::validation::is_host_port(addr) {
            return Err(format!(
                "peer {item:?}: address must be HOST:PORT, without a scheme such as http://"
            ));
        }
        if id == own {
            continue;
        }
        if peers.insert(id, addr.to_owned()).is_some() {
            return Err(format!("peer {id} is listed twice"));
        }
    }
    Ok(peers)
}

/// Parses `150-300`.
pub fn parse_timeout_range(range: &str) -> Result<(u64, u64), String> {
    let bad = || format!("election timeout must be MIN-MAX in ms (e.g. 150-300), got {range:?}");
    let (min, max) = range.split_once('-').ok_or_else(bad)?;
    let min = min.trim().parse().map_err(|_| bad())?;
    let max = max.trim().parse().map_err(|_| bad())?;
    Ok((min, max))
}

impl NodeArgs {
    fn into_config(self) -> Result<NodeConfig, String> {
        let id = self
            .id
            .ok_or("--id (or NODE_ID) is required")
            .map_err(String::from)
            .and_then(NodeId::new)?;
        let listen: SocketAddr = self
            .listen
            .parse()
            .map_err(|_| format!("--listen must be IP:PORT, got {:?}", self.listen))?;
        let mut peers = parse_peers(&self.peers, id)?;
        if self.join {
            // A joining node learns its peers from the configuration the leader sends it.
            peers.clear();
        }
        let election_timeout_ms = parse_timeout_range(&self.election_timeout_ms)?;
        let timing = flotilla_shared::api::TimingRequest {
            heartbeat_ms: self.heartbeat_ms,
            election_timeout_ms: [election_timeout_ms.0, election_timeout_ms.1],
        };
        timing.validate()?;
        let advertise = self.advertise.unwrap_or_else(|| {
            // A wildcard listen address is no address to give clients: name loopback instead.
            let host = if listen.ip().is_unspecified() {
                "127.0.0.1".to_owned()
            } else {
                listen.ip().to_string()
            };
            format!("http://{host}:{}", listen.port())
        });
        // Peers send it in a header with every Raft RPC, and clients are pointed at it.
        let plain_url = advertise.starts_with("http://") || advertise.starts_with("https://");
        if !plain_url || !advertise.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "--advertise must be an http:// URL without spaces, got {advertise:?}"
            ));
        }
        // Where peers reach this node: its own `--peers` entry, else its advertised address.
        let own_addr = own_address(&self.peers, id).unwrap_or_else(|| {
            advertise
                .split_once("://")
                .map_or(advertise.as_str(), |(_, rest)| rest)
                .trim_end_matches('/')
                .to_owned()
        });
        if self.max_body_bytes == 0 {
            return Err("--max-body-bytes must be at least 1".into());
        }
        for (flag, value) in [
            ("--max-connections", self.max_connections as u64),
            ("--read-timeout-ms", self.read_timeout_ms),
            ("--max-event-streams", self.max_event_streams as u64),
            ("--max-uncommitted-entries", self.max_uncommitted_entries),
        ] {
            if value == 0 {
                return Err(format!("{flag} must be at least 1"));
            }
        }
        let cluster_token = match (
            self.cluster_token.filter(|t| !t.is_empty()),
            &self.cluster_token_file,
        ) {
            (Some(token), _) => Some(token),
            (None, Some(path)) => Some(crate::guard::cluster_token_from_file(path)?),
            (None, None) => None,
        };
        Ok(NodeConfig {
            id,
            listen,
            peers,
            join: self.join,
            own_addr,
            advertise,
            data_dir: self.data_dir,
            heartbeat_ms: self.heartbeat_ms,
            election_timeout_ms,
            admin_token: self.admin_token.filter(|token| !token.is_empty()),
            cluster_id: self.cluster_id,
            cluster_token,
            max_body_bytes: self.max_body_bytes,
            request_timeout: Duration::from_millis(self.request_timeout_ms.max(1)),
            snapshot_threshold: self.snapshot_threshold,
            limits: server::Limits {
                max_connections: self.max_connections,
                read_timeout: Duration::from_millis(self.read_timeout_ms),
                max_event_streams: self.max_event_streams,
                max_uncommitted_entries: self.max_uncommitted_entries,
            },
        })
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A host program (the desktop) may have set up logging already: keep its.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs `flotilla-node` with `args` (without the program name) and returns its exit code. Blocking: it
/// builds its own tokio runtime. The desktop app calls this for its `node` subcommand.
pub fn run_from_args(args: Vec<OsString>) -> ExitCode {
    let argv = std::iter::once(OsString::from("flotilla-node")).chain(args);
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if let Some(Command::Health { url }) = cli.command {
        return crate::health::check(&url);
    }
    let log_format = cli.node.log_format;
    let exit_with_parent = cli.node.exit_with_parent;
    let config = match cli.node.into_config() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("flotilla-node: error: {message}");
            return ExitCode::from(2);
        }
    };
    init_logging(log_format);
    // One thread runs all of the node's async work (HTTP, peers, the core); the storage thread writes
    // beside it. Work-stealing workers cost more in cross-thread wake-ups than they gained: with three
    // nodes and their clients on two cores, a single-threaded runtime cut each node's CPU per commit by
    // about a third and the 1-client p50 from ~1.1 to ~0.95 ms.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(crate::server::MAX_BLOCKING_THREADS)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("flotilla-node: error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = match crate::shutdown::requested(exit_with_parent) {
        Ok(shutdown) => shutdown,
        Err(error) => {
            eprintln!("flotilla-node: error: cannot watch the parent process: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(server::run(config, shutdown)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("flotilla-node: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_skip_self() {
        let peers =
            parse_peers("1=127.0.0.1:7001, 2=127.0.0.1:7002,3=node3:5000", NodeId(1)).unwrap();
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[&NodeId(3)], "node3:5000");
    }

    #[test]
    fn own_address_is_found_in_the_peers_list() {
        let list = "1=node1:5000, 2=node2:5000";
        assert_eq!(own_address(list, NodeId(2)).as_deref(), Some("node2:5000"));
        assert_eq!(own_address(list, NodeId(3)), None);
    }

    #[test]
    fn bad_peers_are_clear_errors() {
        assert!(parse_peers("2:127.0.0.1:7002", NodeId(1))
            .unwrap_err()
            .contains("ID=HOST:PORT"));
        assert!(parse_peers("x=127.0.0.1:7002", NodeId(1))
            .unwrap_err()
            .contains("number"));
        assert!(parse_peers("2=127.0.0.1", NodeId(1))
            .unwrap_err()
            .contains("HOST:PORT"));
        // A URL is not an address: its host would be dialled as `http`.
        assert!(parse_peers("2=http://127.0.0.1:7002", NodeId(1))
            .unwrap_err()
            .contains("without a scheme"));
        assert!(parse_peers("2=a:1,2=b:2", NodeId(1))
            .unwrap_err()
            .contains("twice"));
        assert!(parse_peers("300=a:1", NodeId(1))
            .unwrap_err()
            .contains("between 1 and 255"));
        assert!(parse_peers("", NodeId(1)).unwrap().is_empty());
    }

    #[test]
    fn timeout_range_parses() {
        assert_eq!(parse_timeout_range("150-300"), Ok((150, 300)));
        assert!(parse_timeout_range("150").is_err());
        assert!(parse_timeout_range("a-b").is_err());
    }

    #[test]
    fn a_bad_advertise_url_is_reported() {
        let config = |advertise: &str| {
            Cli::try_parse_from(["flotilla-node", "--id", "1", "--advertise", advertise])
                .unwrap()
                .node
                .into_config()
        };
        assert!(config("http://127.0.0.1:6500").is_ok());
        assert!(config("127.0.0.1:6500")
            .unwrap_err()
            .contains("--advertise"));
        assert!(config("http://a b").unwrap_err().contains("--advertise"));
    }

    #[test]
    fn missing_id_is_reported() {
        let cli = Cli::try_parse_from(["flotilla-node", "--listen", "127.0.0.1:1"]).unwrap();
        assert!(cli.node.into_config().unwrap_err().contains("--id"));
    }

    #[test]
    fn join_starts_without_peers_and_the_own_address_is_known() {
        let config = |args: &[&str]| {
            let argv = ["flotilla-node", "--id", "2", "--listen", "127.0.0.1:7002"];
            Cli::try_parse_from(argv.iter().chain(args))
                .unwrap()
                .node
                .into_config()
                .unwrap()
        };
        let seeded = config(&["--peers", "1=node1:5000,2=node2:5000"]);
        assert!(!seeded.join);
        assert_eq!(seeded.peers.len(), 1);
        assert_eq!(seeded.own_addr, "node2:5000", "its own --peers entry");
        let joining = config(&["--join", "--peers", "1=node1:5000"]);
        assert!(joining.join && joining.peers.is_empty(), "{joining:?}");
        assert_eq!(joining.own_addr, "127.0.0.1:7002", "its advertised address");
    }
}
