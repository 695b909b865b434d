//! The Docker backend: nodes in containers, driven with the `docker` CLI through the
//! `ClusterControl` trait (kill, restart, pause, resume, list nodes).
//!
//! Owns everything said to `docker` and `docker compose`; it may not touch the UI or the model, and
//! talks to the nodes themselves only to put the app's timing back on a restarted one.
//!
//! Containers are found by label (`io.flotilla.cluster=<cluster>`, `io.flotilla.node-id=<id>`, as the
//! compose files set them), so container names and the compose version that made them do not matter.
//! Each node's URL comes from `docker inspect`: with host networking it is the node's own `LISTEN`
//! address; otherwise the host port published for the node's listen port. Every CLI call has a
//! timeout, so a stuck daemon is a message, never a hung window.
//!
//! `cli` runs the program, `parse` reads what it prints, `compose` finds the compose command,
//! `control` and `actions` drive a running cluster, `waiting` stands in until its containers exist.

mod actions;
mod cli;
mod compose;
mod control;
mod joining;
mod parse;
mod waiting;
mod wipe;

use actions::*;
pub use cli::*;
pub use compose::*;
pub use control::*;
pub use joining::*;
pub use parse::*;
pub use waiting::*;
pub use wipe::*;

use super::ClusterControl;

/// Label naming the cluster a container belongs to.
pub const CLUSTER_LABEL: &str = "io.flotilla.cluster";
/// Label carrying the node id of the container's node.
pub const NODE_ID_LABEL: &str = "io.flotilla.node-id";
/// The cluster the repository's `docker-compose.yml` starts.
pub const DEFAULT_CLUSTER: &str = "flotilla";

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
    if control.actions.node_list().len() != options.nodes {
        tracing::info!(
            "found {} Flotilla containers (--nodes {} ignored: the containers decide)",
            control.actions.node_list().len(),
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

#[cfg(test)]
mod tests;
