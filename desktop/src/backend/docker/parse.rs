//! Reading what `docker ps` and `docker inspect` print: container states, labels, and the URL each
//! node answers on.

use super::*;
use anyhow::Context as _;
use flotilla_shared::NodeId;
use serde::Deserialize;
use std::collections::BTreeMap;

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
    pub base_url: Result<String, EndpointError>,
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
pub(super) type PortMap = BTreeMap<String, Option<Vec<PortBinding>>>;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct PortBinding {
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

/// Why a container's node cannot be reached from this machine.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("LISTEN={0:?} is not HOST:PORT")]
    BadListen(String),
    #[error(
        "the node listens on port {port} but the container publishes no host port for {key} \
         (add `ports: [\"HOST:{port}\"]` or use host networking)"
    )]
    Unpublished { port: String, key: String },
}

/// The URL for a node listening on `listen` inside a container: the address itself with host
/// networking, else the host port published for the listen port (running bindings first, then the
/// configured ones, which exist even while the container is stopped).
pub(super) fn endpoint(
    network_mode: &str,
    listen: &str,
    published: impl Iterator<Item = PortMap>,
) -> Result<String, EndpointError> {
    let (host, port) = listen
        .rsplit_once(':')
        .filter(|(_, port)| port.parse::<u16>().is_ok())
        .ok_or_else(|| EndpointError::BadListen(listen.to_owned()))?;
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
    Err(EndpointError::Unpublished {
        port: port.to_owned(),
        key,
    })
}

/// A wildcard bind address is no address to connect to: use loopback instead.
fn reachable_host(host: &str) -> String {
    match host.trim_matches(|c| c == '[' || c == ']') {
        "" | "0.0.0.0" | "::" => "127.0.0.1".to_owned(),
        ip if ip.contains(':') => format!("[{ip}]"),
        other => other.to_owned(),
    }
}
