//! The window's Docker states without a Docker engine: waiting for `docker compose up` (through the real
//! backend, with a `docker` program that does not exist) and the offer to watch the compose cluster.
//! With an engine, `docker_compose.rs` drives both against real containers.

mod window;

use egui_kittest::kittest::Queryable as _;
use flotilla::app::WATCH_DOCKER;
use flotilla::backend::docker::{self, DockerCli, DockerOptions, WAITING_HEADING};
use flotilla::backend::{self, Command};
use flotilla::ui::Tempo;
use std::sync::Arc;
use std::time::{Duration, Instant};
use window::{detached, open, window, SIZE};

#[test]
fn without_docker_the_window_waits_for_compose_up_and_says_why() {
    let options = DockerOptions {
        nodes: 3,
        admin_token: None,
        cli: DockerCli::new("/nonexistent/flotilla-test/docker"),
        cluster: docker::DEFAULT_CLUSTER.into(),
    };
    let tempo = Tempo::DEFAULT;
    let handle = backend::start(docker::connect(&options), tempo.timing(), Arc::new(|| {}))
        .expect("backend starts");
    assert!(handle.nodes.is_empty());
    let mut app = window(handle, tempo);
    let started = Instant::now();
    while app.query_by_label(WAITING_HEADING).is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no waiting state"
        );
        app.state_mut().drain_updates(Duration::from_millis(50));
        app.run_steps(1);
        std::thread::sleep(Duration::from_millis(20));
    }
    let waiting = app.state().waiting.clone().unwrap_or_default();
    assert!(waiting.contains("was not found"), "{waiting}");
    let reason = waiting.lines().nth(1).expect("a reason under the heading");
    app.get_by_label(reason);
    assert!(app.state().model.live.nodes.is_empty());
}

#[test]
fn the_offer_watches_the_compose_cluster_on_a_click_or_goes_away() {
    let (mut offering, mut commands) = detached(3, true);
    offering.offer = Some("The Docker compose cluster is running (3 containers: ...).".into());
    let mut app = open(offering, SIZE);
    app.run_steps(2);
    app.get_by_label("The Docker compose cluster is running (3 containers: ...).");
    app.get_by_label(WATCH_DOCKER).click();
    app.run_steps(2);
    assert_eq!(commands.try_recv().ok(), Some(Command::WatchDocker));
    assert!(commands.try_recv().is_err(), "exactly one command");
    app.get_by_label("Dismiss").click();
    app.run_steps(2);
    assert!(app.query_by_label(WATCH_DOCKER).is_none());
    assert!(app.state().offer.is_none());
}
