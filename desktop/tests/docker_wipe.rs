//! "Wipe disk and restart" on Docker, through the window's click path (kittest click → intent →
//! backend → `docker`/compose): on a compose cluster (`docker/compose.test.yml`, the scratch test
//! image built from this checkout's node), a click on a follower removes its container and its data
//! volume and has compose create the service again; the node comes back on a new, empty volume (its
//! first append starts at index 1) and catches up with every message.
//!
//! Needs a reachable Docker daemon (`.ci/docker.sh` starts one); without one the test fails under
//! `CI=true` and elsewhere says so loudly and passes without checking anything.

mod window;

use anyhow::{bail, Context as _, Result};
use flotilla::backend::docker::{Compose, DockerCli, DockerControl};
use flotilla::backend::{self, ClusterControl as _};
use flotilla::ui::Tempo;
use flotilla_shared::event::EventKind;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use window::*;

const CLUSTER: &str = "flotilla-test";
const PROJECT: &str = "flotilla-wipe";
const IMAGE: &str = "flotilla-node:wipe";
const ADMIN_TOKEN: &str = "wipe-admin-token";

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// Removes the test cluster (containers and volumes) when the test ends, however it ends.
struct ComposeProject {
    compose: Compose,
    files: Vec<PathBuf>,
    envs: Vec<(String, String)>,
}

impl ComposeProject {
    fn down(&self) {
        let timeout = Duration::from_secs(60);
        if let Err(error) =
            self.compose
                .down_with_volumes(&self.files, PROJECT, &self.envs, timeout)
        {
            eprintln!("docker_wipe: cleaning up the test cluster failed: {error}");
        }
    }
}

impl Drop for ComposeProject {
    fn drop(&mut self) {
        self.down();
    }
}

fn inspect(cli: &DockerCli, what: &[&str]) -> Result<String> {
    Ok(cli.run(what, Duration::from_secs(10))?.trim().to_owned())
}

#[test]
fn a_wiped_container_comes_back_on_a_new_volume_and_catches_up() -> Result<()> {
    let cli = DockerCli::from_env();
    if let Err(error) = cli.ping() {
        assert!(
            std::env::var("CI").map_or(true, |ci| ci != "true"),
            "CI=true but no Docker engine is reachable: {error}"
        );
        eprintln!(
            "\n==========================================================================\n\
             docker_wipe SKIPPED: no Docker daemon reachable ({error}).\n\
             .ci/docker.sh starts one (as root): . .ci/docker.sh && start_dockerd\n\
             ==========================================================================\n"
        );
        return Ok(());
    }
    let compose = Compose::detect(&cli).context("the Docker test needs docker compose")?;
    let binary = flotilla_tests::node_binary()?;
    let built = Command::new("bash")
        .arg(repository().join("docker/build-scratch-image.sh"))
        .arg(&binary)
        .arg(IMAGE)
        .status()
        .context("running build-scratch-image.sh")?;
    if !built.success() {
        bail!("building the test image failed");
    }
    let ports: Vec<u16> = {
        let listeners = (0..3)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<Vec<_>, _>>()?;
        listeners
            .iter()
            .map(|listener| Ok(listener.local_addr()?.port()))
            .collect::<Result<_>>()?
    };
    let mut envs = vec![
        ("FLOTILLA_TEST_IMAGE".to_owned(), IMAGE.to_owned()),
        ("ADMIN_TOKEN".to_owned(), ADMIN_TOKEN.to_owned()),
    ];
    for (index, port) in ports.iter().enumerate() {
        envs.push((format!("FLOTILLA_TEST_PORT{}", index + 1), port.to_string()));
    }
    let project = ComposeProject {
        compose,
        files: vec![repository().join("docker/compose.test.yml")],
        envs: envs.clone(),
    };
    // Leftovers of an earlier run (under any project name) would hold the container names.
    project.down();
    for leftover in cli.list(CLUSTER)? {
        cli.run(&["rm", "-f", "-v", &leftover.id], Duration::from_secs(30))?;
    }
    project
        .compose
        .up(
            &project.files,
            PROJECT,
            &project.envs,
            Duration::from_secs(120),
        )
        .context("compose up")?;

    // The window runs where the cluster was started: the compose file's variables are in its
    // environment, as they were in the shell that ran `up`.
    let control_cli = envs
        .iter()
        .fold(cli.clone(), |cli, (key, value)| cli.with_env(key, value));
    let control = DockerControl::discover(control_cli, CLUSTER, None)?;
    let endpoints = control.nodes();
    let tempo = Tempo { factor: 2 };
    let handle = backend::start(Box::new(control), tempo.timing(), Arc::new(|| {}))?;
    let mut app = window(handle, tempo);
    let leader = wait_for(&mut app, "a leader", |app| agreed_leader(app));
    let sent: Vec<String> = (0..3).map(|n| format!("before the wipe {n}")).collect();
    for text in &sent {
        submit(&mut app, text);
    }
    let follower = endpoints
        .iter()
        .find(|endpoint| endpoint.id != leader)
        .cloned()
        .context("a follower")?;
    let container = format!("flotilla-test-node{}", follower.id.0);
    let volume = format!("{PROJECT}_node{}-data", follower.id.0);
    let container_before = inspect(&cli, &["inspect", "-f", "{{.Id}}", &container])?;
    let volume_before = inspect(
        &cli,
        &["volume", "inspect", "-f", "{{.CreatedAt}}", &volume],
    )?;
    // The volume's creation time has a resolution of a second.
    std::thread::sleep(Duration::from_millis(1_100));
    let recorded_before = app.state().model.timeline.end();

    select(&mut app, follower.id);
    click(
        &mut app,
        &format!("Wipe disk and restart node {}", follower.id),
    );
    let done = format!("wipe the disk of and restart node {}", follower.id);
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
                    event.node == follower.id
                        && matches!(event.kind, EventKind::EntryAppended { first, .. } if first.0 == 1)
                })
            })
            .then_some(())
        },
    );
    wait_for(&mut app, "the wiped node listing every message", |_| {
        (texts(&follower.base_url)? == sent).then_some(())
    });
    drop(app);
    drop(project);
    Ok(())
}
