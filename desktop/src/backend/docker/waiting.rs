//! Before the containers exist: looks for them about once a second and hands over to the control
//! that found them.

use super::*;
use crate::backend::{ClusterControl, NodeEndpoint};
use anyhow::bail;
use flotilla_shared::NodeId;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

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
