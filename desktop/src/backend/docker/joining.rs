//! "Add node" and "Remove node" on Docker: a new container made like the cluster's own (same image,
//! network, labels, shared volumes such as `cluster-token`, environment and init), with its own data
//! volume and `JOIN=1`, so it waits for the leader to add it; and a removed node's container taken
//! away (its volume stays).

use super::*;
use crate::backend::{JoiningNode, NodeEndpoint};
use anyhow::{bail, Context as _};
use flotilla_shared::NodeId;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The node's data dir and listen address when the container does not set them (the image's).
const DEFAULT_DATA_DIR: &str = "/data";
const DEFAULT_LISTEN: &str = "0.0.0.0:5000";
/// The environment that names one particular node: never copied to the new one.
const OWN_ENV: [&str; 6] = [
    "NODE_ID",
    "PEERS",
    "ADVERTISE",
    "JOIN",
    "HEALTH_URL",
    "LISTEN",
];

/// What a new node's container copies from one of the cluster's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinTemplate {
    pub name: String,
    pub image: String,
    pub network_mode: String,
    pub env: Vec<(String, String)>,
    pub labels: BTreeMap<String, String>,
    /// `(volume name, destination)` of every named volume but the data dir's.
    pub shared_volumes: Vec<(String, String)>,
    pub data_dir: String,
    pub listen: String,
    pub init: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Inspected {
    name: String,
    config: InspectedConfig,
    host_config: InspectedHostConfig,
    #[serde(default)]
    mounts: Vec<Mount>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectedConfig {
    image: String,
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
    init: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Mount {
    #[serde(rename = "Type", default)]
    kind: String,
    #[serde(default)]
    name: Option<String>,
    destination: String,
}

/// Reads `docker inspect <one of the cluster's containers>`.
pub fn parse_join_template(output: &str) -> anyhow::Result<JoinTemplate> {
    let containers: Vec<Inspected> =
        serde_json::from_str(output).context("`docker inspect` output is not the expected JSON")?;
    let Some(container) = containers.into_iter().next() else {
        bail!("`docker inspect` found no such container");
    };
    let env: Vec<(String, String)> = container
        .config
        .env
        .unwrap_or_default()
        .iter()
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
    let lookup = |key: &str| {
        env.iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.clone())
    };
    let data_dir = lookup("DATA_DIR").unwrap_or_else(|| DEFAULT_DATA_DIR.to_owned());
    let listen = lookup("LISTEN").unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let trimmed = |path: &str| path.trim_end_matches('/').to_owned();
    let shared_volumes = container
        .mounts
        .iter()
        .filter(|mount| mount.kind == "volume" && trimmed(&mount.destination) != trimmed(&data_dir))
        .filter_map(|mount| Some((mount.name.clone()?, mount.destination.clone())))
        .collect();
    Ok(JoinTemplate {
        name: container.name.trim_start_matches('/').to_owned(),
        image: container.config.image,
        network_mode: container.host_config.network_mode,
        env: env
            .into_iter()
            .filter(|(key, _)| !OWN_ENV.contains(&key.as_str()))
            .collect(),
        labels: container.config.labels.unwrap_or_default(),
        shared_volumes,
        data_dir,
        listen,
        init: container.host_config.init.unwrap_or(false),
    })
}

/// A new node's container: its `docker run` arguments and how it is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinPlan {
    pub name: String,
    pub volume: String,
    pub run_args: Vec<String>,
    pub endpoint: NodeEndpoint,
    /// Where its peers reach it: what goes into the configuration.
    pub peer_addr: String,
}

/// The container for node `id` made like `template`, answering on `host_port` of this machine.
pub fn join_plan(
    template: &JoinTemplate,
    cluster: &str,
    id: NodeId,
    host_port: u16,
) -> anyhow::Result<JoinPlan> {
    let Some((_, listen_port)) = template.listen.rsplit_once(':') else {
        bail!("LISTEN={} is not HOST:PORT", template.listen);
    };
    // `flotilla-node1` → `flotilla-node5`; else `<cluster>-node5`.
    let stem = template.name.trim_end_matches(|c: char| c.is_ascii_digit());
    let name = if stem.len() < template.name.len() {
        format!("{stem}{}", id.0)
    } else {
        format!("{cluster}-node{}", id.0)
    };
    let project = template.labels.get("com.docker.compose.project");
    let volume = match project {
        Some(project) => format!("{project}_node{}-data", id.0),
        None => format!("{name}-data"),
    };
    let host_mode = template.network_mode == "host";
    let mut args: Vec<String> = vec!["run".into(), "-d".into(), "--name".into(), name.clone()];
    let mut env: Vec<(String, String)> = template.env.clone();
    env.push(("NODE_ID".into(), id.0.to_string()));
    env.push(("JOIN".into(), "1".into()));
    let (base_url, peer_addr);
    if host_mode {
        // Host networking: the node listens on its own loopback port, as the others do.
        let address = format!("127.0.0.1:{host_port}");
        args.extend(["--network".into(), "host".into()]);
        env.push(("LISTEN".into(), address.clone()));
        env.push(("HEALTH_URL".into(), format!("http://{address}")));
        base_url = format!("http://{address}");
        peer_addr = address;
    } else {
        let hostname = format!("node{}", id.0);
        if !template.network_mode.is_empty() && template.network_mode != "default" {
            args.extend(["--network".into(), template.network_mode.clone()]);
        }
        args.extend([
            "--network-alias".into(),
            hostname.clone(),
            "--hostname".into(),
            hostname.clone(),
            "-p".into(),
            format!("127.0.0.1:{host_port}:{listen_port}"),
        ]);
        env.push(("LISTEN".into(), template.listen.clone()));
        base_url = format!("http://127.0.0.1:{host_port}");
        env.push(("ADVERTISE".into(), base_url.clone()));
        peer_addr = format!("{hostname}:{listen_port}");
    }
    if template.init {
        args.push("--init".into());
    }
    args.extend(["--label".into(), format!("{CLUSTER_LABEL}={cluster}")]);
    args.extend(["--label".into(), format!("{NODE_ID_LABEL}={}", id.0)]);
    if let Some(project) = project {
        // Compose counts it with the project, as an orphan (a service its files do not name):
        // `down --remove-orphans` takes it away.
        for label in [
            format!("com.docker.compose.project={project}"),
            format!("com.docker.compose.service=node{}", id.0),
            "com.docker.compose.oneoff=False".to_owned(),
        ] {
            args.extend(["--label".into(), label]);
        }
    }
    for (key, value) in env {
        args.extend(["-e".into(), format!("{key}={value}")]);
    }
    args.extend(["-v".into(), format!("{volume}:{}", template.data_dir)]);
    for (shared, destination) in &template.shared_volumes {
        args.extend(["-v".into(), format!("{shared}:{destination}")]);
    }
    args.push(template.image.clone());
    Ok(JoinPlan {
        name,
        volume,
        run_args: args,
        endpoint: NodeEndpoint { id, base_url },
        peer_addr,
    })
}

impl Actions {
    /// Starts node `max id + 1` of `cluster` in a container made like the first node's, waiting to
    /// be added. Blocks for as long as `docker run` takes (bounded by its timeout).
    pub(super) fn start_joining_container(&self, cluster: &str) -> anyhow::Result<JoiningNode> {
        let nodes = self.node_list();
        let Some(template) = nodes.values().next() else {
            bail!("no container to copy the new node's from");
        };
        let template =
            parse_join_template(&self.cli.run(&["inspect", &template.name], QUICK_TIMEOUT)?)?;
        let id = NodeId(nodes.keys().map(|id| id.0).max().unwrap_or(0) + 1);
        let host_port = crate::backend::local::free_ports(
            crate::backend::local::FIRST_PORT + (id.0 as u16).saturating_sub(1),
            1,
        )?[0];
        let plan = join_plan(&template, cluster, id, host_port)?;
        // A node of that id removed earlier left its volume: the new node starts blank.
        self.cli
            .run(&["volume", "rm", "-f", &plan.volume], QUICK_TIMEOUT)?;
        let args: Vec<&str> = plan.run_args.iter().map(String::as_str).collect();
        self.cli
            .run(&args, START_TIMEOUT)
            .with_context(|| format!("starting the container {}", plan.name))?;
        self.nodes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                id,
                NodeContainer {
                    name: plan.name.clone(),
                    base_url: plan.endpoint.base_url.clone(),
                },
            );
        Ok(JoiningNode {
            endpoint: plan.endpoint,
            peer_addr: plan.peer_addr,
        })
    }
}

impl DockerControl {
    /// Stops watching the container of a node that left the configuration; the poller no longer
    /// looks at it, so its removal is not reported as the node ending by itself.
    pub(super) fn forget_container(&mut self, node: NodeId) -> anyhow::Result<NodeContainer> {
        let container = self.actions.container(node)?;
        self.actions
            .nodes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&node);
        Ok(container)
    }
}

impl Actions {
    /// Takes a forgotten node's container away; its volume stays.
    pub(super) fn remove_container(&self, container: &NodeContainer) -> anyhow::Result<()> {
        self.cli
            .run(&["rm", "-f", &container.name], QUICK_TIMEOUT)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPOSE_NODE: &str = r#"[{
        "Name": "/flotilla-node1",
        "Config": {
            "Image": "flotilla-node:latest",
            "Env": ["LISTEN=0.0.0.0:5000", "PEERS=1=node1:5000", "DATA_DIR=/data", "NODE_ID=1",
                    "ADVERTISE=http://127.0.0.1:6500", "ADMIN_TOKEN=t", "CLUSTER_TOKEN_FILE=/cluster/token"],
            "Labels": {"io.flotilla.cluster": "flotilla", "io.flotilla.node-id": "1",
                       "com.docker.compose.project": "flotilla"}
        },
        "HostConfig": {"NetworkMode": "flotilla_default", "Init": true},
        "Mounts": [
            {"Type": "volume", "Name": "flotilla_node1-data", "Destination": "/data"},
            {"Type": "volume", "Name": "flotilla_cluster-token", "Destination": "/cluster"}
        ]
    }]"#;

    #[test]
    fn a_new_compose_node_shares_network_token_and_image_and_gets_its_own_volume() {
        let template = parse_join_template(COMPOSE_NODE).expect("parses");
        let plan = join_plan(&template, "flotilla", NodeId(4), 6503).expect("plan");
        assert_eq!(plan.name, "flotilla-node4");
        assert_eq!(plan.volume, "flotilla_node4-data");
        assert_eq!(plan.peer_addr, "node4:5000");
        assert_eq!(plan.endpoint.base_url, "http://127.0.0.1:6503");
        let args = plan.run_args.join(" ");
        for expected in [
            "--network flotilla_default",
            "--network-alias node4",
            "-p 127.0.0.1:6503:5000",
            "--init",
            "--label io.flotilla.cluster=flotilla",
            "--label io.flotilla.node-id=4",
            "-e NODE_ID=4",
            "-e JOIN=1",
            "-e ADMIN_TOKEN=t",
            "-e CLUSTER_TOKEN_FILE=/cluster/token",
            "-e ADVERTISE=http://127.0.0.1:6503",
            "-v flotilla_node4-data:/data",
            "-v flotilla_cluster-token:/cluster",
        ] {
            assert!(args.contains(expected), "{expected} missing from {args}");
        }
        // Nothing of node 1's own identity or data.
        for unexpected in ["NODE_ID=1", "PEERS=", "flotilla_node1-data", "6500"] {
            assert!(!args.contains(unexpected), "{unexpected} in {args}");
        }
        assert!(args.ends_with("flotilla-node:latest"));
    }

    #[test]
    fn a_host_network_node_listens_on_its_own_loopback_port() {
        let host = COMPOSE_NODE
            .replace("flotilla_default", "host")
            .replace("LISTEN=0.0.0.0:5000", "LISTEN=127.0.0.1:16501");
        let template = parse_join_template(&host).expect("parses");
        let plan = join_plan(&template, "flotilla", NodeId(4), 16504).expect("plan");
        assert_eq!(plan.peer_addr, "127.0.0.1:16504");
        let args = plan.run_args.join(" ");
        assert!(args.contains("--network host"), "{args}");
        assert!(args.contains("-e LISTEN=127.0.0.1:16504"), "{args}");
        assert!(!args.contains("-p "), "{args}");
        assert!(!args.contains("16501"), "{args}");
    }
}
