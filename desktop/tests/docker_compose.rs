//! The user's Docker path, end to end: the unmodified `docker/Dockerfile` is built, the root
//! `docker-compose.yml` is brought up unchanged, and the desktop watches and breaks it through its own
//! click path (kittest clicks → intents → backend → `docker`):
//!
//! 1. the window is opened before the containers exist: it waits for `docker compose up` and attaches
//!    by itself when they appear;
//! 2. it slows the containers to its tempo; messages typed and submitted commit;
//! 3. a click kills the leader's container, the window shows a new leader; a click restarts the
//!    container, which catches up with every message. The restart goes through a `docker` that takes 3
//!    s to start a container: the event streams keep flowing meanwhile;
//! 4. closing the window puts back the timing the containers had;
//! 5. a window started with local nodes says the compose cluster runs and, on a click, watches it;
//! 6. `down -v`, then the 5-node override comes up once and elects a leader.
//!
//! Needs a Docker engine and the base images the Dockerfile names (`.ci/docker.sh`: `start_dockerd`,
//! `prepare_base_images`). Under `CI=true` a missing engine fails the test; elsewhere it skips loudly.

use anyhow::{bail, Context as _, Result};
use egui_kittest::kittest::Queryable as _;
use flotilla::app::WATCH_DOCKER;
use flotilla::backend::docker::{self, Compose, DockerCli, DockerOptions, WAITING_HEADING};
use flotilla::backend::{self, ClusterControl as _, NodeEndpoint};
use flotilla::ui::Tempo;
use flotilla_shared::api::Status;
use flotilla_shared::NodeId;
use flotilla_tests::{Api, NodeClient};
use reqwest::Method;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod containers;
mod local_cluster;
mod window;
use containers::{repository, ComposeProject};
use window::{click, frame, submit, wait_for, window, App};

/// The tag `docker-compose.yml` gives the image it builds.
const IMAGE: &str = "flotilla-node:latest";
/// Its own project name, so its volumes never mix with a user's cluster.
const PROJECT: &str = "flotilla-compose-e2e";
/// What `docker-compose.yml` sets: the timing the app must put back.
const COMPOSE_HEARTBEAT_MS: u64 = 50;
const COMPOSE_ELECTION_MS: [u64; 2] = [150, 300];
/// How long the slow `docker` below takes to start a container.
const SLOW_START: Duration = Duration::from_secs(3);
const DEADLINE: Duration = Duration::from_secs(60);
/// How long `compose up` may take to start the containers.
const UP_TIMEOUT: Duration = Duration::from_secs(180);

/// `docker build --network host -f docker/Dockerfile -t flotilla-node:latest .`, as the compose file
/// would build it (the engine CI starts has no default bridge for build containers).
fn build_image(cli: &DockerCli) -> Result<()> {
    let dockerfile = std::fs::read_to_string(repository().join("docker/Dockerfile"))?;
    for line in dockerfile.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("FROM") {
            continue;
        }
        let Some(base) = words.next().filter(|base| base.contains(':')) else {
            continue;
        };
        if cli
            .run(&["image", "inspect", base], Duration::from_secs(30))
            .is_err()
        {
            bail!(
                "base image {base} is missing: pull it, or make the local stand-ins with \
                 docker/stand-in-images.sh (see docker/README.md)"
            );
        }
    }
    let log_path = std::env::temp_dir().join(format!("flotilla-image-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path)?;
    let started = Instant::now();
    let status = Command::new(std::env::var_os("DOCKER").unwrap_or_else(|| "docker".into()))
        .args([
            "build",
            "--network",
            "host",
            "-f",
            "docker/Dockerfile",
            "-t",
        ])
        .arg(IMAGE)
        .arg(".")
        .current_dir(repository())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .context("running docker build")?;
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_file(&log_path);
    if !status.success() {
        let tail: Vec<&str> = output.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "docker build of docker/Dockerfile failed:\n{}",
            tail.join("\n")
        );
    }
    eprintln!(
        "docker_compose: docker build {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The leader every node of the window's model agrees on, once all are up.
fn agreed_leader(app: &App) -> Option<NodeId> {
    let all_up = app
        .state()
        .model
        .live
        .nodes
        .values()
        .all(|node| node.is_up());
    window::agreed_leader(app).filter(|_| all_up)
}

/// Plain HTTP to the nodes, for what the test checks (never for what it does).
struct Http {
    runtime: tokio::runtime::Runtime,
    api: Api,
}

impl Http {
    fn new() -> Result<Self> {
        Ok(Self {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
            api: Api::new(None)?,
        })
    }

    /// Node `id` at the port `docker-compose.yml` publishes for it.
    fn node(&self, id: NodeId) -> NodeClient<'_> {
        self.api.node(id, format!("http://127.0.0.1:{}", port(id)))
    }

    async fn texts(&self, id: NodeId) -> Result<Vec<String>> {
        let entries = self.node(id).all_messages(true).await?;
        Ok(entries.into_iter().map(|entry| entry.text).collect())
    }

    /// Node `id`'s status now, from outside any runtime.
    fn status_now(&self, id: NodeId) -> Result<Status> {
        self.runtime.block_on(self.node(id).status())
    }

    /// Whether anything answers HTTP at `base_url`, whatever it answers.
    fn answers(&self, base_url: &str) -> bool {
        let url = format!("{base_url}/v1/status");
        self.runtime
            .block_on(self.api.request(Method::GET, &url, None, &[], None))
            .is_ok()
    }

    /// Polls `probe` until it yields `Some`, for at most [`DEADLINE`].
    fn wait<T>(&self, what: &str, probe: impl AsyncFnMut() -> Option<T>) -> Result<T> {
        self.runtime
            .block_on(flotilla_tests::wait_until(DEADLINE, what, probe))
    }
}

/// The host port `docker-compose.yml` publishes for node `id`.
fn port(id: NodeId) -> u16 {
    6499 + id.0 as u16
}

#[test]
fn the_users_compose_cluster_is_watched_and_broken_through_the_window() -> Result<()> {
    let Some(cli) = containers::engine(
        "docker_compose",
        "As root: . .ci/docker.sh && start_dockerd && prepare_base_images",
    ) else {
        return Ok(());
    };
    // A user's own cluster holds the container names and ports; the test never touches it.
    let theirs = cli.list(docker::DEFAULT_CLUSTER)?;
    if !theirs.is_empty() {
        let message = format!(
            "{} containers labelled io.flotilla.cluster=flotilla exist already: stop that cluster \
             (`docker compose down`) to run this test",
            theirs.len()
        );
        if std::env::var("CI").is_ok_and(|ci| ci == "true") {
            bail!("{message}");
        }
        eprintln!("docker_compose SKIPPED: {message}");
        return Ok(());
    }
    let compose = Compose::detect(&cli).context("the Docker test needs docker compose")?;
    build_image(&cli)?;
    let scratch = tempfile::tempdir()?;
    let options = DockerOptions {
        nodes: 3,
        admin_token: None,
        // Like a daemon on a slow disk.
        cli: DockerCli::new(containers::slowed_docker(
            scratch.path(),
            "start",
            SLOW_START,
        )?),
        cluster: docker::DEFAULT_CLUSTER.into(),
    };
    let http = Http::new()?;
    let tempo = Tempo { factor: 2 };

    // 1. The window opens first and waits.
    let handle = backend::start(docker::connect(&options), tempo.timing(), Arc::new(|| {}))?;
    let mut app = window(handle, tempo);
    wait_for(&mut app, "the waiting state", |app| {
        app.query_by_label(WAITING_HEADING).map(drop)
    });
    assert!(app.state().model.live.nodes.is_empty());
    let project = ComposeProject::new(&compose, PROJECT, &["docker-compose.yml"], Vec::new());
    let up_started = Instant::now();
    project.up(UP_TIMEOUT)?;
    let leader = wait_for(&mut app, "the window to attach and see a leader", |app| {
        (app.state().model.live.nodes.len() == 3)
            .then(|| agreed_leader(app))
            .flatten()
    });
    assert!(app.query_by_label(WAITING_HEADING).is_none());
    assert!(
        app.state().bar.description.contains("3 Docker containers"),
        "{}",
        app.state().bar.description
    );
    let attach_s = up_started.elapsed().as_secs_f64();

    // 2. The containers run at the window's tempo; typed messages commit.
    let slowed = tempo.timing();
    for id in 1..=3 {
        http.wait("the app's tempo on every container", async || {
            let status = http.node(NodeId(id)).status().await.ok()?;
            (status.heartbeat_ms == slowed.heartbeat_ms
                && status.election_timeout_ms == slowed.election_timeout_ms)
                .then_some(())
        })?;
    }
    let messages = ["first", "second", "third"];
    for text in messages {
        submit(&mut app, text);
        wait_for(&mut app, "the submit to commit", |app| {
            app.state()
                .model
                .live
                .submits
                .iter()
                .any(|submit| submit.text == text && submit.outcome.is_ok())
                .then_some(())
        });
    }

    // 3. Kill the leader with a click; a new leader takes over.
    click(&mut app, &format!("node {leader}"));
    let kill_started = Instant::now();
    click(&mut app, &format!("Kill node {leader}"));
    wait_for(&mut app, "the killed container to show dead", |app| {
        let node = &app.state().model.live.nodes[&leader];
        (!node.is_up()).then_some(())
    });
    assert!(http.status_now(leader).is_err(), "a killed node answers");
    let new_leader = wait_for(&mut app, "a new leader", |app| {
        let live = &app.state().model.live;
        let new = live.leader().filter(|node| node.id != leader)?;
        let survivors_agree = live
            .nodes
            .values()
            .filter(|node| node.id != leader)
            .all(|node| node.is_up() && node.leader_id == Some(new.id));
        survivors_agree.then_some((new.id, new.term.0))
    });
    let failover_s = kill_started.elapsed().as_secs_f64();
    // The drawn view follows the live state a moment behind.
    let summary = format!("leader: node {} · term {}", new_leader.0, new_leader.1);
    wait_for(&mut app, "the top bar to name the new leader", |app| {
        app.query_by_label(&summary).map(drop)
    });
    submit(&mut app, "after the kill");
    wait_for(&mut app, "a submit to the new leader", |app| {
        app.state()
            .model
            .live
            .submits
            .iter()
            .any(|submit| submit.text == "after the kill" && submit.outcome.is_ok())
            .then_some(())
    });

    // Restart it with a click, through a `docker` that takes 3 s to start it: the window keeps
    // receiving events from the survivors all the while.
    click(&mut app, &format!("node {leader}"));
    let events_before = app.state().model.live.events_applied;
    let restart_started = Instant::now();
    click(&mut app, &format!("Restart node {leader}"));
    let restarted = format!("restart node {leader}");
    let mut events_while_starting = 0;
    while restart_started.elapsed() < SLOW_START - Duration::from_millis(500) {
        frame(&mut app);
        let notice = app.state().bar.notice.clone().unwrap_or_default().0;
        assert_ne!(notice, restarted, "the slow `docker start` returned early");
        events_while_starting = app.state().model.live.events_applied - events_before;
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        events_while_starting > 5,
        "only {events_while_starting} events arrived while `docker start` ran: it stalls the streams"
    );
    wait_for(&mut app, "the restart to be reported", |app| {
        (app.state().bar.notice.as_ref().map(|notice| &notice.0) == Some(&restarted)).then_some(())
    });
    wait_for(&mut app, "the restarted node to show up", |app| {
        app.state().model.live.nodes[&leader].is_up().then_some(())
    });
    let every_message: Vec<String> = messages
        .iter()
        .map(|text| (*text).to_owned())
        .chain(["after the kill".to_owned()])
        .collect();
    http.wait("the restarted node to catch up", async || {
        (http.texts(leader).await.ok()? == every_message).then_some(())
    })?;
    http.wait("the restarted node at the app's tempo", async || {
        (http.node(leader).status().await.ok()?.heartbeat_ms == slowed.heartbeat_ms).then_some(())
    })?;
    let catch_up_s = restart_started.elapsed().as_secs_f64();

    // 4. Closing the window puts back the timing the containers had.
    drop(app);
    for id in 1..=3 {
        let status = http.status_now(NodeId(id))?;
        assert_eq!(
            (status.heartbeat_ms, status.election_timeout_ms),
            (COMPOSE_HEARTBEAT_MS, COMPOSE_ELECTION_MS),
            "node {id} kept the app's tempo after it closed"
        );
    }

    // 5. Plain `flotilla` (local nodes) while the compose cluster runs: the window offers to watch it.
    let local_dir = tempfile::tempdir()?;
    let local = local_cluster::start(
        local_dir.path(),
        3,
        local_cluster::app_nodes(),
        tempo,
        17_850,
    );
    let local_nodes: Vec<NodeEndpoint> = local.nodes();
    let handle = backend::start_with(
        Box::new(local),
        tempo.timing(),
        Arc::new(|| {}),
        Some(options.clone()),
    )?;
    let mut app = window(handle, tempo);
    wait_for(&mut app, "the offer to watch the compose cluster", |app| {
        app.query_by_label(WATCH_DOCKER).map(drop)
    });
    let offer = app.state().offer.clone().unwrap_or_default();
    assert!(
        offer.contains("compose cluster is running") && offer.contains("flotilla-node1"),
        "{offer}"
    );
    click(&mut app, WATCH_DOCKER);
    wait_for(&mut app, "the window to watch the containers", |app| {
        (app.state().bar.description.contains("Docker containers") && agreed_leader(app).is_some())
            .then_some(())
    });
    assert!(
        app.query_by_label(WATCH_DOCKER).is_none(),
        "offer withdrawn"
    );
    for node in &local_nodes {
        assert!(
            !http.answers(&node.base_url),
            "local node {} still runs",
            node.id
        );
    }
    drop(app);

    // 6. down -v; the 5-node override comes up once.
    drop(project);
    let five = ComposeProject::new(
        &compose,
        PROJECT,
        &["docker-compose.yml", "docker/compose.5.yml"],
        Vec::new(),
    );
    five.up(UP_TIMEOUT)?;
    let five_leader = http.wait("a leader all five nodes agree on", async || {
        let mut statuses = BTreeMap::new();
        for id in (1..=5).map(NodeId) {
            statuses.insert(id, http.node(id).status().await.ok()?);
        }
        flotilla_tests::agreed_leader(&statuses)
    })?;
    drop(five);
    eprintln!(
        "docker_compose: compose up to attached with a leader {attach_s:.1} s; kill to a new leader \
         {failover_s:.1} s; restart (3 s slow start) to caught up {catch_up_s:.1} s; 5 nodes led by \
         node {five_leader}"
    );
    Ok(())
}
