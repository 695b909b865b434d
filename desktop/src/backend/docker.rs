//! The Docker backend: nodes in containers, driven with the `docker` CLI through the
//! `ClusterControl` trait (kill, restart, pause, resume, list nodes).
//!
//! Containers are found by label (`io.flotilla.cluster=<cluster>`, `io.flotilla.node-id=<id>`, as the
//! compose files set them), so container names and the compose version that made them do not matter.
//! Each node's URL comes from `docker inspect`: with host networking it is the node's own `LISTEN`
//! address; otherwise the host port published for the node's listen port. Every CLI call has a
//! timeout, so a stuck daemon is a message, never a hung window.

use super::{ClusterControl, NodeEndpoint, PendingAction, ProcessAction};
use anyhow::{anyhow, bail, Context as _};
use flotilla_shared::api::TimingRequest;
use flotilla_shared::NodeId;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Read as _;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Label naming the cluster a container belongs to.
pub const CLUSTER_LABEL: &str = "io.flotilla.cluster";
/// Label carrying the node id of the container's node.
pub const NODE_ID_LABEL: &str = "io.flotilla.node-id";
/// The cluster the repository's `docker-compose.yml` starts.
pub const DEFAULT_CLUSTER: &str = "flotilla";

/// How long a quick CLI call (`ps`, `inspect`, `kill`, `pause`) may take.
const QUICK_TIMEOUT: Duration = Duration::from_secs(10);
/// `docker start` waits for the container's process to be set up, which can take a while on slow disks.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often container states are checked for nodes that ended by themselves.
const STATE_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How long a restarted node is given to come up before its tempo is set again.
const RETIME_DEADLINE: Duration = Duration::from_secs(30);

/// Where and how to look for the Docker cluster.
#[derive(Clone, Debug)]
pub struct DockerOptions {
    pub nodes: usize,
    pub admin_token: Option<String>,
    /// The `docker` program and its environment.
    pub cli: DockerCli,
    /// The cluster label's value to look for.
    pub cluster: String,
}

impl DockerOptions {
    /// `$DOCKER` (else `docker`) and `$FLOTILLA_DOCKER_CLUSTER` (else the root compose file's cluster;
    /// another label lets a second compose project, e.g. a test cluster, be watched).
    pub fn from_env(nodes: usize, admin_token: Option<String>) -> Self {
        let cluster = std::env::var("FLOTILLA_DOCKER_CLUSTER")
            .ok()
            .filter(|cluster| !cluster.is_empty())
            .unwrap_or_else(|| DEFAULT_CLUSTER.to_owned());
        Self {
            nodes,
            admin_token,
            cli: DockerCli::from_env(),
            cluster,
        }
    }
}

/// Connects to the Docker cluster. When it is not there yet (no `docker`, no daemon, no containers)
/// this does not fail: the window opens waiting for `docker compose up` and attaches when the
/// containers appear.
pub fn connect(options: &DockerOptions) -> Box<dyn ClusterControl> {
    match discover(options) {
        Ok(control) => control,
        Err(error) => Box::new(Waiting::start(options, format!("{error:#}"))),
    }
}

/// The Docker cluster's control, if its containers exist now.
pub fn discover(options: &DockerOptions) -> anyhow::Result<Box<dyn ClusterControl>> {
    let control = DockerControl::discover(
        options.cli.clone(),
        &options.cluster,
        options.admin_token.clone(),
    )?;
    if control.actions.nodes.len() != options.nodes {
        tracing::info!(
            "found {} Flotilla containers (--nodes {} ignored: the containers decide)",
            control.actions.nodes.len(),
            options.nodes
        );
    }
    Ok(Box::new(control))
}

/// What to tell a user who started local nodes while the Docker cluster runs, or `None` when no
/// container of it runs (or Docker is not there at all: then there is nothing to say).
pub fn running_cluster(options: &DockerOptions) -> Option<String> {
    let containers = options.cli.list(&options.cluster).ok()?;
    let running: Vec<&str> = containers
        .iter()
        .filter(|container| container.state == ContainerState::Running)
        .map(|container| container.name.as_str())
        .collect();
    if running.is_empty() {
        return None;
    }
    Some(format!(
        "The Docker compose cluster is running ({} containers: {}).",
        running.len(),
        running.join(", ")
    ))
}

// ---------------------------------------------------------------------------------------------
// Running the CLI

/// The `docker` command line: which program, and the timeout of each call.
#[derive(Clone, Debug)]
pub struct DockerCli {
    program: OsString,
    /// Extra environment for every call (e.g. `DOCKER_HOST`).
    envs: Vec<(String, String)>,
}

/// What went wrong running a CLI command; the messages say what to do.
#[derive(Debug)]
pub enum CliError {
    /// The program is not installed (or not on PATH).
    NotFound {
        program: String,
    },
    /// The daemon does not answer (not running, or no permission on its socket).
    NoDaemon {
        detail: String,
    },
    TimedOut {
        command: String,
        after: Duration,
    },
    Failed {
        command: String,
        detail: String,
    },
    Io {
        command: String,
        error: String,
    },
}

/// How a user starts the Docker engine on this platform.
const START_DOCKER: &str = if cfg!(any(target_os = "macos", windows)) {
    "open Docker Desktop"
} else {
    "e.g. `sudo systemctl start docker`"
};

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::NotFound { program } => write!(
                f,
                "`{program}` was not found: install Docker (https://docs.docker.com/engine/install/) \
                 or set DOCKER to the docker program's path"
            ),
            CliError::NoDaemon { detail } => write!(
                f,
                "the Docker daemon is not reachable ({detail}): start it ({START_DOCKER}), or set \
                 DOCKER_HOST to its socket"
            ),
            CliError::TimedOut { command, after } => write!(
                f,
                "`{command}` did not finish within {} s: is the Docker daemon stuck?",
                after.as_secs()
            ),
            CliError::Failed { command, detail } => write!(f, "`{command}` failed: {detail}"),
            CliError::Io { command, error } => write!(f, "cannot run `{command}`: {error}"),
        }
    }
}

impl std::error::Error for CliError {}

/// Output of a finished command.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `program args` with no stdin and waits at most `timeout`; on timeout the process is killed.
fn run_with_timeout(
    program: &OsString,
    args: &[&str],
    envs: &[(String, String)],
    timeout: Duration,
) -> Result<Finished, CliError> {
    let command_line = format!("{} {}", program.to_string_lossy(), args.join(" "));
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(envs.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|error| {
        if error.kind() == std::io::ErrorKind::NotFound {
            CliError::NotFound {
                program: program.to_string_lossy().into_owned(),
            }
        } else {
            CliError::Io {
                command: command_line.clone(),
                error: error.to_string(),
            }
        }
    })?;
    // Pipes are drained on their own threads so a chatty command cannot block on a full pipe.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(CliError::TimedOut {
                    command: command_line,
                    after: timeout,
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(error) => {
                return Err(CliError::Io {
                    command: command_line,
                    error: error.to_string(),
                })
            }
        }
    };
    Ok(Finished {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// Turns a failed command's stderr into an error that says what to do.
pub fn classify_failure(command: &str, stderr: &str) -> CliError {
    let detail = stderr
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with("WARNING"))
        .unwrap_or("no error message")
        .to_owned();
    let lower = stderr.to_ascii_lowercase();
    if lower.contains("cannot connect to the docker daemon")
        || lower.contains("is the docker daemon running")
        || (lower.contains("permission denied") && lower.contains("docker.sock"))
    {
        CliError::NoDaemon { detail }
    } else {
        CliError::Failed {
            command: command.to_owned(),
            detail,
        }
    }
}

impl DockerCli {
    /// `$DOCKER` if set, else `docker` from PATH.
    pub fn from_env() -> Self {
        Self::new(std::env::var_os("DOCKER").unwrap_or_else(|| "docker".into()))
    }

    pub fn new(program: impl Into<OsString>) -> Self {
        Self {
            program: program.into(),
            envs: Vec::new(),
        }
    }

    /// Sets `key=value` in the environment of every call.
    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Runs `docker args` and returns its stdout, or a clear error.
    pub fn run(&self, args: &[&str], timeout: Duration) -> Result<String, CliError> {
        let finished = run_with_timeout(&self.program, args, &self.envs, timeout)?;
        if finished.status.success() {
            Ok(finished.stdout)
        } else {
            let command = format!("docker {}", args.join(" "));
            Err(classify_failure(&command, &finished.stderr))
        }
    }

    /// Checks that the CLI exists and the daemon answers.
    pub fn ping(&self) -> Result<(), CliError> {
        self.run(
            &["version", "--format", "{{.Server.Version}}"],
            QUICK_TIMEOUT,
        )
        .map(drop)
    }

    /// Every container of `cluster`, running or not.
    pub fn list(&self, cluster: &str) -> Result<Vec<ContainerSummary>, CliError> {
        let filter = format!("label={CLUSTER_LABEL}={cluster}");
        let output = self.run(
            &["ps", "-a", "--filter", &filter, "--format", "{{json .}}"],
            QUICK_TIMEOUT,
        )?;
        parse_ps(&output).map_err(|error| CliError::Failed {
            command: "docker ps".into(),
            detail: format!("{error:#}"),
        })
    }

    /// Details of the given containers.
    pub fn inspect(&self, containers: &[&str]) -> Result<Vec<ContainerDetails>, CliError> {
        let mut args = vec!["inspect", "--type", "container"];
        args.extend_from_slice(containers);
        let output = self.run(&args, QUICK_TIMEOUT)?;
        parse_inspect(&output).map_err(|error| CliError::Failed {
            command: "docker inspect".into(),
            detail: format!("{error:#}"),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing `docker ps` and `docker inspect`

/// A container's life-cycle state as Docker names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
    Unknown(String),
}

impl ContainerState {
    pub fn parse(state: &str) -> Self {
        match state.trim().to_ascii_lowercase().as_str() {
            "created" => Self::Created,
            "running" | "up" => Self::Running,
            "paused" => Self::Paused,
            "restarting" => Self::Restarting,
            "removing" => Self::Removing,
            "exited" => Self::Exited,
            "dead" => Self::Dead,
            _ => Self::Unknown(state.to_owned()),
        }
    }

    /// Whether the node's process is gone (or never started).
    pub fn is_down(&self) -> bool {
        matches!(self, Self::Created | Self::Exited | Self::Dead)
    }
}

/// One line of `docker ps --format '{{json .}}'`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerSummary {
    pub id: String,
    pub name: String,
    pub state: ContainerState,
    /// Docker's human text, e.g. `Up 3 seconds (healthy)` or `Exited (137) 2 seconds ago`.
    pub status: String,
}

#[derive(Deserialize)]
struct PsLine {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Names")]
    names: String,
    #[serde(rename = "State", default)]
    state: String,
    #[serde(rename = "Status", default)]
    status: String,
}

/// Parses `docker ps --format '{{json .}}'` output: one JSON object per line.
pub fn parse_ps(output: &str) -> anyhow::Result<Vec<ContainerSummary>> {
    output
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| {
            let parsed: PsLine = serde_json::from_str(line)
                .with_context(|| format!("not a `docker ps` JSON line: {line:.120}"))?;
            // Older daemons lack `State`; the status text starts with it in those ("Up …", "Exited …").
            let state = if parsed.state.is_empty() {
                ContainerState::parse(parsed.status.split_whitespace().next().unwrap_or(""))
            } else {
                ContainerState::parse(&parsed.state)
            };
            Ok(ContainerSummary {
                id: parsed.id,
                name: parsed.names.split(',').next().unwrap_or("").to_owned(),
                state,
                status: parsed.status,
            })
        })
        .collect()
}

/// What the backend needs from `docker inspect` about one node's container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerDetails {
    pub id: String,
    pub name: String,
    /// From the node-id label, else the container's `NODE_ID`.
    pub node_id: Option<NodeId>,
    pub state: ContainerState,
    /// Where the node's HTTP API is reached from this machine, e.g. `http://127.0.0.1:6500`.
    pub base_url: Result<String, String>,
    /// The container's `ADMIN_TOKEN`, if it has one.
    pub admin_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Inspected {
    id: String,
    name: String,
    state: InspectedState,
    config: InspectedConfig,
    host_config: InspectedHostConfig,
    #[serde(default)]
    network_settings: Option<InspectedNetwork>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectedState {
    status: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectedConfig {
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectedHostConfig {
    #[serde(default)]
    network_mode: String,
    #[serde(default)]
    port_bindings: Option<PortMap>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectedNetwork {
    #[serde(default)]
    ports: Option<PortMap>,
}

/// `"5000/tcp": [{"HostIp": "0.0.0.0", "HostPort": "6500"}]`; a port that is not published maps to null.
type PortMap = BTreeMap<String, Option<Vec<PortBinding>>>;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PortBinding {
    #[serde(default)]
    host_ip: String,
    #[serde(default)]
    host_port: String,
}

/// The node's default listen address (see the node's `--listen`).
const DEFAULT_LISTEN: &str = "0.0.0.0:5000";

/// Parses `docker inspect` output (a JSON array).
pub fn parse_inspect(output: &str) -> anyhow::Result<Vec<ContainerDetails>> {
    let containers: Vec<Inspected> =
        serde_json::from_str(output).context("`docker inspect` output is not the expected JSON")?;
    Ok(containers.into_iter().map(details).collect())
}

fn details(container: Inspected) -> ContainerDetails {
    let env: BTreeMap<&str, &str> = container
        .config
        .env
        .iter()
        .flatten()
        .filter_map(|pair| pair.split_once('='))
        .collect();
    let labels = container.config.labels.unwrap_or_default();
    let node_id = labels
        .get(NODE_ID_LABEL)
        .map(String::as_str)
        .or_else(|| env.get("NODE_ID").copied())
        .and_then(|id| id.trim().parse::<u64>().ok())
        .and_then(|id| NodeId::new(id).ok());
    let listen = env.get("LISTEN").copied().unwrap_or(DEFAULT_LISTEN);
    let published = container
        .network_settings
        .and_then(|network| network.ports)
        .into_iter()
        .chain(container.host_config.port_bindings);
    let base_url = endpoint(&container.host_config.network_mode, listen, published);
    ContainerDetails {
        id: container.id,
        name: container.name.trim_start_matches('/').to_owned(),
        node_id,
        state: ContainerState::parse(&container.state.status),
        base_url,
        admin_token: env
            .get("ADMIN_TOKEN")
            .filter(|token| !token.is_empty())
            .map(|token| (*token).to_owned()),
    }
}

/// The URL for a node listening on `listen` inside a container: the address itself with host
/// networking, else the host port published for the listen port (running bindings first, then the
/// configured ones, which exist even while the container is stopped).
fn endpoint(
    network_mode: &str,
    listen: &str,
    published: impl Iterator<Item = PortMap>,
) -> Result<String, String> {
    let (host, port) = listen
        .rsplit_once(':')
        .filter(|(_, port)| port.parse::<u16>().is_ok())
        .ok_or_else(|| format!("LISTEN={listen:?} is not HOST:PORT"))?;
    if network_mode == "host" {
        return Ok(format!("http://{}:{port}", reachable_host(host)));
    }
    let key = format!("{port}/tcp");
    for mut ports in published {
        let bindings = ports.remove(&key).flatten().unwrap_or_default();
        if let Some(binding) = bindings
            .iter()
            .find(|binding| binding.host_port.parse::<u16>().is_ok())
        {
            return Ok(format!(
                "http://{}:{}",
                reachable_host(&binding.host_ip),
                binding.host_port
            ));
        }
    }
    Err(format!(
        "the node listens on port {port} but the container publishes no host port for {key} \
         (add `ports: [\"HOST:{port}\"]` or use host networking)"
    ))
}

/// A wildcard bind address is no address to connect to: use loopback instead.
fn reachable_host(host: &str) -> String {
    match host.trim_matches(|c| c == '[' || c == ']') {
        "" | "0.0.0.0" | "::" => "127.0.0.1".to_owned(),
        ip if ip.contains(':') => format!("[{ip}]"),
        other => other.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Compose (v2 plugin, or the v1 `docker-compose` program)

/// The compose command found on this machine: `docker compose` (the v2 plugin) or `docker-compose`
/// (v1, Python).
#[derive(Clone, Debug)]
pub struct Compose {
    program: OsString,
    plugin: bool,
    envs: Vec<(String, String)>,
}

impl Compose {
    /// Prefers `docker compose` (v2), falls back to `docker-compose` (v1; `$DOCKER_COMPOSE` if set).
    pub fn detect(cli: &DockerCli) -> Result<Self, CliError> {
        if cli.run(&["compose", "version"], QUICK_TIMEOUT).is_ok() {
            return Ok(Self {
                program: cli.program.clone(),
                plugin: true,
                envs: cli.envs.clone(),
            });
        }
        let standalone =
            std::env::var_os("DOCKER_COMPOSE").unwrap_or_else(|| "docker-compose".into());
        let finished = run_with_timeout(
            &standalone,
            &["version", "--short"],
            &cli.envs,
            QUICK_TIMEOUT,
        )?;
        if finished.status.success() {
            Ok(Self {
                program: standalone,
                plugin: false,
                envs: cli.envs.clone(),
            })
        } else {
            Err(CliError::Failed {
                command: "docker-compose version".into(),
                detail: "neither `docker compose` nor `docker-compose` works".into(),
            })
        }
    }

    /// The command a person would type: `docker compose` or `docker-compose`.
    pub fn display(&self) -> &'static str {
        if self.plugin {
            "docker compose"
        } else {
            "docker-compose"
        }
    }

    fn run(
        &self,
        files: &[PathBuf],
        project: &str,
        action: &[&str],
        envs: &[(String, String)],
        timeout: Duration,
    ) -> Result<String, CliError> {
        let mut args: Vec<String> = Vec::new();
        if self.plugin {
            args.push("compose".into());
        }
        for file in files {
            args.push("-f".into());
            args.push(file.to_string_lossy().into_owned());
        }
        args.push("-p".into());
        args.push(project.into());
        args.extend(action.iter().map(|arg| (*arg).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let envs: Vec<(String, String)> = self.envs.iter().chain(envs).cloned().collect();
        let finished = run_with_timeout(&self.program, &args, &envs, timeout)?;
        if finished.status.success() {
            Ok(finished.stdout)
        } else {
            Err(classify_failure(
                &format!("{} {}", self.display(), action.join(" ")),
                &finished.stderr,
            ))
        }
    }

    /// `up -d --no-build`: the images must exist already.
    pub fn up(
        &self,
        files: &[PathBuf],
        project: &str,
        envs: &[(String, String)],
        timeout: Duration,
    ) -> Result<(), CliError> {
        self.run(files, project, &["up", "-d", "--no-build"], envs, timeout)
            .map(drop)
    }

    /// `down -v -t 2`: removes the project's containers and volumes.
    pub fn down_with_volumes(
        &self,
        files: &[PathBuf],
        project: &str,
        envs: &[(String, String)],
        timeout: Duration,
    ) -> Result<(), CliError> {
        self.run(files, project, &["down", "-v", "-t", "2"], envs, timeout)
            .map(drop)
    }
}

// ---------------------------------------------------------------------------------------------
// The control

/// One node's container.
#[derive(Clone, Debug)]
struct NodeContainer {
    name: String,
    base_url: String,
}

/// States the poller saw last, and the nodes it found down that the control did not bring down.
#[derive(Default)]
struct Observed {
    states: BTreeMap<NodeId, ContainerState>,
    exited: Vec<NodeId>,
    /// Whether the last poll failed (logged once per outage).
    failing: bool,
}

/// What a process action needs: shared between the control and the thread that runs the actions.
struct Actions {
    cli: DockerCli,
    nodes: BTreeMap<NodeId, NodeContainer>,
    admin_token: Option<String>,
    /// The app's tempo, put back on a restarted node (its container starts with its own).
    timing: Mutex<Option<TimingRequest>>,
    observed: Arc<Mutex<Observed>>,
}

impl Actions {
    fn container(&self, node: NodeId) -> anyhow::Result<&NodeContainer> {
        self.nodes
            .get(&node)
            .ok_or_else(|| anyhow!("no container runs node {node}"))
    }

    fn states(&self) -> BTreeMap<NodeId, ContainerState> {
        self.observed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .states
            .clone()
    }

    /// Runs the `docker` command for `action`. Blocks for as long as the command takes (bounded by
    /// its timeout): the backend calls this on its own thread, never on its runtime.
    fn perform(
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
        self.observed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .states
            .insert(node, after);
        Ok(())
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
struct Job {
    node: NodeId,
    action: ProcessAction,
    runtime: Option<tokio::runtime::Handle>,
    reply: tokio::sync::oneshot::Sender<anyhow::Result<()>>,
}

/// Nodes in the containers of one cluster, found by label.
pub struct DockerControl {
    actions: Arc<Actions>,
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
        let poller = {
            let cli = cli.clone();
            let cluster = cluster.to_owned();
            let names: BTreeMap<String, NodeId> = nodes
                .iter()
                .map(|(id, node)| (node.name.clone(), *id))
                .collect();
            let observed = observed.clone();
            let stop = stop_polling.clone();
            std::thread::Builder::new()
                .name("flotilla-docker-poll".into())
                .spawn(move || poll_states(&cli, &cluster, &names, &observed, &stop))?
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
    pub fn container_name(&self, node: NodeId) -> Option<&str> {
        self.actions.nodes.get(&node).map(|node| node.name.as_str())
    }

    fn stop_poller(&mut self) {
        self.stop_polling.store(true, Ordering::Relaxed);
        if let Some(poller) = self.poller.take() {
            let _ = poller.join();
        }
    }
}

/// Runs on its own thread: checks the containers' states about once a second, so a slow daemon never
/// stalls the backend thread.
fn poll_states(
    cli: &DockerCli,
    cluster: &str,
    names: &BTreeMap<String, NodeId>,
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
            self.actions.nodes.len(),
            self.cluster
        )
    }

    fn nodes(&self) -> Vec<NodeEndpoint> {
        self.actions
            .nodes
            .iter()
            .map(|(id, node)| NodeEndpoint {
                id: *id,
                base_url: node.base_url.clone(),
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
}

impl Drop for DockerControl {
    fn drop(&mut self) {
        self.stop_poller();
    }
}

// ---------------------------------------------------------------------------------------------
// Before the containers exist

/// How often [`Waiting`] looks for the containers.
const WAIT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The heading of the waiting state; the window shows it above the reason.
pub const WAITING_HEADING: &str = "Waiting for `docker compose up`…";

/// What the waiting thread saw last.
struct WaitState {
    reason: String,
    found: Option<DockerControl>,
}

/// Stands in until the cluster's containers exist: looks for them about once a second (on its own
/// thread) and hands over to the [`DockerControl`] that found them, so no restart is needed.
pub struct Waiting {
    state: Arc<Mutex<WaitState>>,
    stop: Arc<AtomicBool>,
}

impl Waiting {
    /// Starts looking; `reason` says why the containers were not found yet.
    pub fn start(options: &DockerOptions, reason: String) -> Self {
        let state = Arc::new(Mutex::new(WaitState {
            reason,
            found: None,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let looker = {
            let state = state.clone();
            let stop = stop.clone();
            let options = options.clone();
            move || {
                while !stop.load(Ordering::Relaxed) {
                    let next_look = Instant::now() + WAIT_POLL_INTERVAL;
                    let attempt = attach_when_started(&options);
                    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
                    match attempt {
                        Ok(control) => {
                            state.found = Some(control);
                            return;
                        }
                        Err(reason) => state.reason = format!("{reason:#}"),
                    }
                    drop(state);
                    while Instant::now() < next_look && !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        };
        // Never joined: a `docker` call stuck for its whole timeout must not hold up the window.
        if let Err(error) = std::thread::Builder::new()
            .name("flotilla-docker-wait".into())
            .spawn(looker)
        {
            state.lock().unwrap_or_else(PoisonError::into_inner).reason =
                format!("cannot start looking for the containers: {error}");
        }
        Self { state, stop }
    }
}

/// The cluster once every one of its containers was started at least once (compose creates them all,
/// then starts them one by one: attaching halfway would show the rest as dead).
fn attach_when_started(options: &DockerOptions) -> anyhow::Result<DockerControl> {
    options.cli.ping()?;
    let containers = options.cli.list(&options.cluster)?;
    let starting: Vec<&str> = containers
        .iter()
        .filter(|container| container.state == ContainerState::Created)
        .map(|container| container.name.as_str())
        .collect();
    if !starting.is_empty() {
        bail!("containers being started: {}", starting.join(", "));
    }
    DockerControl::discover(
        options.cli.clone(),
        &options.cluster,
        options.admin_token.clone(),
    )
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl ClusterControl for Waiting {
    fn describe(&self) -> String {
        "Docker (waiting for the containers)".into()
    }

    fn nodes(&self) -> Vec<NodeEndpoint> {
        Vec::new()
    }

    fn admin_token(&self) -> Option<String> {
        None
    }

    fn controls_processes(&self) -> bool {
        false
    }

    fn kill(&mut self, _node: NodeId) -> anyhow::Result<()> {
        bail!("{WAITING_HEADING}")
    }

    fn restart(&mut self, _node: NodeId) -> anyhow::Result<()> {
        bail!("{WAITING_HEADING}")
    }

    fn pause(&mut self, _node: NodeId) -> anyhow::Result<()> {
        bail!("{WAITING_HEADING}")
    }

    fn resume(&mut self, _node: NodeId) -> anyhow::Result<()> {
        bail!("{WAITING_HEADING}")
    }

    fn waiting_for(&self) -> Option<String> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        Some(format!("{WAITING_HEADING}\n{}", state.reason))
    }

    fn replacement(&mut self) -> Option<Box<dyn ClusterControl>> {
        let found = self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .found
            .take()?;
        Some(Box::new(found))
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
#[path = "docker_tests.rs"]
mod tests;
