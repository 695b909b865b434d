//! The Docker backend's own contract, on a host-network cluster from `docker/compose.test.yml` (the
//! scratch test image built from this checkout's debug `flotilla-node`, seconds to make): container
//! discovery by label, kill, a restart that serves its log from its own volume while isolated, pause
//! and resume, and containers that die behind the app's back. The user's path (the real Dockerfile,
//! the root compose file, the window's clicks) is `docker_compose.rs`.
//!
//! Needs a reachable Docker daemon (`.ci/docker.sh` starts one); without one the test fails under
//! `CI=true` and elsewhere says so loudly and passes without checking anything.
//! `FLOTILLA_NODE_BIN` picks the node binary; otherwise `cargo build -p flotilla-node` brings the
//! one in this test's target directory up to date.

mod containers;

use anyhow::{anyhow, Result};
use containers::TEST_CLUSTER as CLUSTER;
use flotilla::backend::docker::{ContainerState, DockerCli, DockerControl};
use flotilla::backend::{ClusterControl, NodeEndpoint};
use flotilla_shared::NodeId;
use flotilla_tests::{wait_until, Api, NodeClient};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const PROJECT: &str = "flotilla-test";
const IMAGE: &str = "flotilla-node:e2e";
const ADMIN_TOKEN: &str = "e2e-admin-token";
const DEADLINE: Duration = Duration::from_secs(40);

/// Plain HTTP to the nodes, for what the test checks and the partitions it sets up.
fn client<'a>(api: &'a Api, node: &NodeEndpoint) -> NodeClient<'a> {
    api.node(node.id, node.base_url.clone())
}

/// This node's applied messages, without asking the leader.
async fn stale_texts(api: &Api, node: &NodeEndpoint) -> Result<Vec<String>> {
    let entries = client(api, node).all_messages(true).await?;
    Ok(entries.into_iter().map(|entry| entry.text).collect())
}

/// A leader every node in `nodes` agrees on, in one term.
async fn agreed_leader(api: &Api, nodes: &[NodeEndpoint]) -> Result<NodeId> {
    wait_until(DEADLINE, "a leader all live nodes agree on", async || {
        let mut statuses = BTreeMap::new();
        for node in nodes {
            statuses.insert(node.id, client(api, node).status().await.ok()?);
        }
        flotilla_tests::agreed_leader(&statuses)
    })
    .await
}

#[test]
fn docker_cluster_survives_a_killed_leader_and_keeps_its_volume() -> Result<()> {
    let Some(cli) = containers::engine("docker_e2e", containers::START_ENGINE) else {
        return Ok(());
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(survives_a_killed_leader(cli))
}

/// The test itself, on a runtime for its HTTP checks; the `docker` calls block, as the backend's
/// actions thread does.
async fn survives_a_killed_leader(cli: DockerCli) -> Result<()> {
    let (project, ports) = containers::test_cluster(&cli, PROJECT, IMAGE, ADMIN_TOKEN)?;
    let up_started = Instant::now();
    project.up(Duration::from_secs(120))?;

    // The backend finds the containers by label and reads URLs and the token from their settings.
    let mut control = DockerControl::discover(cli.clone(), CLUSTER, None)?;
    let nodes = control.nodes();
    let expected: Vec<NodeEndpoint> = ports
        .iter()
        .enumerate()
        .map(|(index, port)| NodeEndpoint {
            id: NodeId(index as u64 + 1),
            base_url: format!("http://127.0.0.1:{port}"),
        })
        .collect();
    assert_eq!(nodes, expected);
    assert_eq!(control.admin_token().as_deref(), Some(ADMIN_TOKEN));
    assert!(control.controls_processes());
    let by_id: BTreeMap<NodeId, NodeEndpoint> =
        nodes.iter().map(|node| (node.id, node.clone())).collect();

    let api = Api::new(Some(ADMIN_TOKEN.into()))?;
    let leader = agreed_leader(&api, &nodes).await?;
    let up_ms = up_started.elapsed().as_millis();
    let before = client(&api, &by_id[&leader])
        .submit_committed("before-kill", Some("docker-e2e-before-kill"))
        .await?;

    // Kill the leader's container: SIGKILL, like pulling the plug.
    let kill_started = Instant::now();
    control.kill(leader)?;
    let kill_ms = kill_started.elapsed().as_millis();
    assert_eq!(control.state_now(leader)?, ContainerState::Exited);
    assert!(
        client(&api, &by_id[&leader]).status().await.is_err(),
        "a killed node still answers"
    );
    let survivors: Vec<NodeEndpoint> = nodes
        .iter()
        .filter(|node| node.id != leader)
        .cloned()
        .collect();
    let new_leader = agreed_leader(&api, &survivors).await?;
    assert_ne!(new_leader, leader);
    let failover_ms = kill_started.elapsed().as_millis();
    let after = client(&api, &by_id[&new_leader])
        .submit_committed("after-kill", Some("docker-e2e-after-kill"))
        .await?;
    assert!(after.index > before.index);
    assert!(after.term > before.term);

    // Restart the old leader while the others ignore it, so what it serves can only come from its
    // own volume; then heal and watch it catch up.
    for node in &survivors {
        client(&api, node).partition(&[leader]).await?;
    }
    let restart_started = Instant::now();
    control.restart(leader)?;
    assert_eq!(control.state_now(leader)?, ContainerState::Running);
    let restarted = wait_until(DEADLINE, "the restarted node to answer", async || {
        client(&api, &by_id[&leader]).status().await.ok()
    })
    .await?;
    assert!(
        restarted.last_log_index >= before.index,
        "the restarted node lost its log: {restarted:?}"
    );
    let from_volume = wait_until(
        DEADLINE,
        "the restarted node to apply its own log",
        async || {
            let texts = stale_texts(&api, &by_id[&leader]).await.ok()?;
            texts.contains(&"before-kill".to_owned()).then_some(texts)
        },
    )
    .await?;
    assert!(
        !from_volume.contains(&"after-kill".to_owned()),
        "an isolated node saw a message committed while it was dead: {from_volume:?}"
    );
    for node in &survivors {
        client(&api, node).heal().await?;
    }
    let caught_up = wait_until(DEADLINE, "the restarted node to catch up", async || {
        let texts = stale_texts(&api, &by_id[&leader]).await.ok()?;
        texts.contains(&"after-kill".to_owned()).then_some(texts)
    })
    .await?;
    assert_eq!(caught_up, ["before-kill", "after-kill"]);
    let catch_up_ms = restart_started.elapsed().as_millis();
    eprintln!(
        "docker_e2e: compose up to an agreed leader {up_ms} ms; docker kill {kill_ms} ms; \
         kill to a new agreed leader {failover_ms} ms; restart (isolated, then healed) to caught up \
         {catch_up_ms} ms"
    );

    // Pause and resume a follower through the backend.
    let follower = survivors
        .iter()
        .map(|node| node.id)
        .find(|id| *id != new_leader)
        .ok_or_else(|| anyhow!("no follower left"))?;
    control.pause(follower)?;
    assert_eq!(control.state_now(follower)?, ContainerState::Paused);
    assert!(
        control.restart(follower).is_err(),
        "restart of a paused container must ask for resume"
    );
    control.resume(follower)?;
    assert_eq!(control.state_now(follower)?, ContainerState::Running);
    wait_until(DEADLINE, "the resumed follower to answer", async || {
        client(&api, &by_id[&follower]).status().await.ok()
    })
    .await?;

    // A container that dies behind the app's back is reported as exited.
    assert!(control.exited().is_empty());
    let name = control
        .container_name(follower)
        .ok_or_else(|| anyhow!("no container name for node {follower}"))?
        .to_owned();
    cli.run(&["kill", &name], Duration::from_secs(10))?;
    let exited = wait_until(
        DEADLINE,
        "the backend to notice the killed container",
        async || {
            let exited = control.exited();
            (!exited.is_empty()).then_some(exited)
        },
    )
    .await?;
    assert_eq!(exited, [follower]);
    assert_eq!(
        control.states().get(&follower),
        Some(&ContainerState::Exited)
    );
    control.shutdown();
    // A control that finds a container already down reports it at once.
    let mut rediscovered = DockerControl::discover(cli.clone(), CLUSTER, None)?;
    assert_eq!(rediscovered.exited(), [follower]);
    assert!(rediscovered.exited().is_empty(), "reported twice");
    rediscovered.shutdown();
    Ok(())
}
