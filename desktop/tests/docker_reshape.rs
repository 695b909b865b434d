//! Reshaping a Docker cluster through the window's click path (kittest click → intent → backend →
//! `docker`/compose), on a compose cluster (`docker/compose.test.yml`, the scratch test image built
//! from this checkout's node):
//! - "Wipe disk and restart" on a follower, and on the leader, removes its container and its data
//!   volume and has compose create the service again; the node comes back on a new, empty volume (its
//!   first append starts at index 1) and catches up with every message.
//! - "Add node" twice (containers made like the cluster's, `JOIN=1`), then "Remove node" on the leader
//!   and on another member: every acknowledged message is present exactly once on every remaining
//!   member. This needs nodes with `JOIN` and `/v1/admin/members` (Raft §6). The window's `docker rm`
//!   of a removed node is slowed down, and the live view must keep taking in events while it runs.
//!
//! The tests share the container names of `compose.test.yml`, so they take turns.
//!
//! Needs a reachable Docker daemon (`.ci/docker.sh` starts one); without one the test fails under
//! `CI=true` and elsewhere says so loudly and passes without checking anything.

mod containers;
mod window;

use anyhow::{Context as _, Result};
use containers::{ComposeProject, TEST_CLUSTER as CLUSTER};
use flotilla::backend::docker::{DockerCli, DockerControl};
use flotilla::backend::{self, ClusterControl as _};
use flotilla::ui::{Tempo, ADD_NODE};
use flotilla_shared::api::MemberRole;
use flotilla_shared::event::EventKind;
use flotilla_shared::NodeId;
use std::sync::Arc;
use std::time::Duration;
use window::*;

const PROJECT: &str = "flotilla-reshape";
const IMAGE: &str = "flotilla-node:reshape";
const ADMIN_TOKEN: &str = "reshape-admin-token";
/// The tests take turns: they use the same container names.
static ONE_CLUSTER_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn inspect(cli: &DockerCli, what: &[&str]) -> Result<String> {
    Ok(cli.run(what, Duration::from_secs(10))?.trim().to_owned())
}

/// A running compose test cluster watched by a window, or `None` without an engine (outside CI).
struct Watched {
    app: App,
    cli: DockerCli,
    endpoints: Vec<backend::NodeEndpoint>,
    // Dropped after the window: the backend lets go of the containers before they are removed.
    _project: ComposeProject,
}

/// How long the window's `docker rm` takes in the test that watches for it, as on Docker Desktop.
const SLOW_RM: Duration = Duration::from_secs(3);

/// The `docker` the window uses: the engine's, or one with a slow `rm` made in `slow_rm_folder`.
fn watched_cluster(slow_rm_folder: Option<&std::path::Path>) -> Result<Option<Watched>> {
    let Some(cli) = containers::engine("docker_reshape", containers::START_ENGINE) else {
        return Ok(None);
    };
    let (project, _ports) = containers::test_cluster(&cli, PROJECT, IMAGE, ADMIN_TOKEN)?;
    project.up(Duration::from_secs(120))?;

    // The window runs where the cluster was started: the compose file's variables are in its
    // environment, as they were in the shell that ran `up`.
    let window_cli = match slow_rm_folder {
        Some(folder) => DockerCli::new(containers::slowed_docker(folder, "rm", SLOW_RM)?),
        None => cli.clone(),
    };
    let control_cli = project
        .envs
        .iter()
        .fold(window_cli, |cli, (key, value)| cli.with_env(key, value));
    let control = DockerControl::discover(control_cli, CLUSTER, None)?;
    let endpoints = control.nodes();
    let tempo = Tempo { factor: 2 };
    let handle = backend::start(Box::new(control), tempo.timing(), Arc::new(|| {}))?;
    let app = window(handle, tempo);
    Ok(Some(Watched {
        app,
        cli,
        endpoints,
        _project: project,
    }))
}

/// Which node the wipe tests pick (see `cluster_ops_local.rs` for why both).
#[derive(Clone, Copy, PartialEq)]
enum Wiped {
    Follower,
    Leader,
}

#[test]
fn a_wiped_follower_container_comes_back_on_a_new_volume_and_catches_up() -> Result<()> {
    wipe_and_watch_it_rebuilt(Wiped::Follower)
}

#[test]
fn a_wiped_leader_container_comes_back_on_a_new_volume_and_catches_up() -> Result<()> {
    wipe_and_watch_it_rebuilt(Wiped::Leader)
}

/// Clicks "Wipe disk and restart" on the node `which` picks: its container and volume are made anew,
/// it comes back blank (its first append starts at index 1) and catches up with every message.
fn wipe_and_watch_it_rebuilt(which: Wiped) -> Result<()> {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(Watched {
        mut app,
        cli,
        endpoints,
        _project,
    }) = watched_cluster(None)?
    else {
        return Ok(());
    };
    let leader = wait_for(&mut app, "a leader", |app| agreed_leader(app));
    let sent: Vec<String> = (0..3).map(|n| format!("before the wipe {n}")).collect();
    for text in &sent {
        submit(&mut app, text);
    }
    let wiped = endpoints
        .iter()
        .find(|endpoint| (endpoint.id == leader) == (which == Wiped::Leader))
        .cloned()
        .context("the node to wipe")?;
    let container = format!("flotilla-test-node{}", wiped.id.0);
    let volume = format!("{PROJECT}_node{}-data", wiped.id.0);
    let container_before = inspect(&cli, &["inspect", "-f", "{{.Id}}", &container])?;
    let volume_before = inspect(
        &cli,
        &["volume", "inspect", "-f", "{{.CreatedAt}}", &volume],
    )?;
    // The volume's creation time has a resolution of a second.
    std::thread::sleep(Duration::from_millis(1_100));
    let recorded_before = app.state().model.timeline.end();

    select(&mut app, wiped.id);
    click(
        &mut app,
        &format!("Wipe disk and restart node {}", wiped.id),
    );
    let done = format!("wipe the disk of and restart node {}", wiped.id);
    wait_for(&mut app, "the wipe to finish", |app| {
        match &app.state().bar.notice {
            Some((text, true)) => panic!("the wipe failed: {text}"),
            Some((text, false)) if *text == done => Some(()),
            _ => None,
        }
    });
    let container_after = inspect(&cli, &["inspect", "-f", "{{.Id}}", &container])?;
    let volume_after = inspect(
        &cli,
        &["volume", "inspect", "-f", "{{.CreatedAt}}", &volume],
    )?;
    assert_ne!(
        container_after, container_before,
        "the container was not recreated"
    );
    assert_ne!(volume_after, volume_before, "the volume was not recreated");
    // Blank, and at the same address: its first append after the wipe starts at index 1.
    wait_for(
        &mut app,
        "the wiped node taking entries from index 1",
        |app| {
            app.state()
            .model
            .timeline
            .iter()
            .filter(|(position, _)| *position >= recorded_before)
            .any(|(_, record)| {
                record.event().is_some_and(|event| {
                    event.node == wiped.id
                        && matches!(event.kind, EventKind::EntryAppended { first, .. } if first.0 == 1)
                })
            })
            .then_some(())
        },
    );
    wait_for(&mut app, "the wiped node listing every message", |_| {
        (texts(wiped.id, &wiped.base_url)? == sent).then_some(())
    });
    drop(app);
    Ok(())
}

#[test]
fn grow_to_five_then_remove_the_leader_and_another_by_click() -> Result<()> {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let slow_rm_folder = tempfile::tempdir()?;
    let Some(Watched {
        mut app,
        cli,
        _project,
        ..
    }) = watched_cluster(Some(slow_rm_folder.path()))?
    else {
        return Ok(());
    };
    wait_for(&mut app, "a leader", |app| agreed_leader(app));
    let mut sent = Vec::new();
    for round in 0..3 {
        let text = format!("three containers {round}");
        submit(&mut app, &text);
        sent.push(text);
    }
    for added in [NodeId(4), NodeId(5)] {
        wait_for_shown_leader(&mut app);
        click(&mut app, ADD_NODE);
        wait_for(&mut app, "the new node a voter", |app| {
            let live = &app.state().model.live;
            let config = live.configuration()?;
            let voter = config
                .members
                .iter()
                .any(|member| member.id == added && member.role == MemberRole::Voter);
            (voter && config.committed && live.nodes.get(&added)?.is_up()).then_some(())
        });
        let text = format!("after adding {added}");
        submit(&mut app, &text);
        sent.push(text);
    }
    let leader = wait_for(&mut app, "a leader of five", |app| agreed_leader(app));
    select(&mut app, leader);
    wait_for_shown_leader(&mut app);
    click(&mut app, &format!("Remove node {leader}"));
    // Once the removal committed, the window takes the container away (its `docker rm` takes
    // SLOW_RM here) off the backend's runtime: the live view keeps taking in events meanwhile.
    let removed = format!("node {leader} removed");
    wait_for(&mut app, "the removal's answer", |app| {
        let notice = app.state().bar.notice.as_ref()?;
        notice.0.starts_with(&removed).then_some(())
    });
    let answered = std::time::Instant::now();
    let events_then = app.state().model.timeline.end();
    let removed_container = format!("flotilla-test-node{}", leader.0);
    let mut live_during_rm = false;
    let mut new_leader = None;
    wait_for(
        &mut app,
        "the old leader gone, a new one and the old one's container removed",
        |app| {
            let exists = cli
                .run(&["inspect", &removed_container], Duration::from_secs(10))
                .is_ok();
            let newer_events = app.state().model.timeline.end() > events_then;
            live_during_rm |= exists && newer_events && answered.elapsed() > SLOW_RM / 4;
            let gone = !app.state().model.live.nodes.contains_key(&leader);
            new_leader = new_leader.or(agreed_leader(app).filter(|id| gone && *id != leader));
            (!exists && new_leader.is_some()).then_some(())
        },
    );
    assert!(
        live_during_rm,
        "the window took in no event while the removed container was being taken away"
    );
    submit(&mut app, "after removing the leader");
    sent.push("after removing the leader".into());
    let other = *app
        .state()
        .model
        .live
        .nodes
        .keys()
        .find(|id| agreed_leader(&app) != Some(**id))
        .context("a follower")?;
    select(&mut app, other);
    wait_for_shown_leader(&mut app);
    click(&mut app, &format!("Remove node {other}"));
    wait_for(&mut app, "the follower gone", |app| {
        (!app.state().model.live.nodes.contains_key(&other)).then_some(())
    });
    submit(&mut app, "three again");
    sent.push("three again".into());
    let members = app
        .state()
        .model
        .live
        .configuration()
        .cloned()
        .context("a configuration")?
        .members;
    assert_eq!(members.len(), 3, "three members remain: {members:?}");
    let urls: Vec<(NodeId, String)> = {
        let endpoints = app
            .state()
            .model
            .live
            .nodes
            .keys()
            .copied()
            .collect::<Vec<_>>();
        assert_eq!(endpoints.len(), 3);
        members
            .iter()
            .map(|member| (member.id, format!("http://{}", member.addr)))
            .collect()
    };
    for (id, url) in urls {
        wait_for(
            &mut app,
            "every message exactly once on every member",
            |_| (texts(id, &url)? == sent).then_some(()),
        );
    }
    drop(app);
    Ok(())
}
