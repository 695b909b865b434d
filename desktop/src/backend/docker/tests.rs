//! Parsing checked against output captured from a real engine (Docker 20.10 daemon; clients 28.2 and
//! 20.10; docker-compose 1.29) running the test cluster of `docker/compose.test.yml`.

use super::*;
use flotilla_shared::NodeId;
use std::collections::BTreeMap;
// Only the command-running tests use these, and they need `sh` and `sleep` (Unix).
#[cfg(unix)]
use std::ffi::OsString;
#[cfg(unix)]
use std::time::{Duration, Instant};

const PS_RUNNING_28: &str =
    include_str!("../../../tests/fixtures/docker/ps-running.client28.jsonl");
const PS_RUNNING_20: &str =
    include_str!("../../../tests/fixtures/docker/ps-running.client20.jsonl");
const PS_KILLED_PAUSED_28: &str =
    include_str!("../../../tests/fixtures/docker/ps-killed-paused.client28.jsonl");
const PS_KILLED_PAUSED_20: &str =
    include_str!("../../../tests/fixtures/docker/ps-killed-paused.client20.jsonl");
const PS_EMPTY: &str = include_str!("../../../tests/fixtures/docker/ps-empty.jsonl");
const INSPECT_HOST: &str = include_str!("../../../tests/fixtures/docker/inspect-host-network.json");
const INSPECT_PUBLISHED_CREATED: &str =
    include_str!("../../../tests/fixtures/docker/inspect-published-created.json");
const INSPECT_PUBLISHED_STARTED: &str =
    include_str!("../../../tests/fixtures/docker/inspect-published-started-no-bridge.json");
const STDERR_NO_DAEMON: &str = include_str!("../../../tests/fixtures/docker/stderr-no-daemon.txt");

fn by_name(summaries: &[ContainerSummary]) -> BTreeMap<&str, &ContainerSummary> {
    summaries
        .iter()
        .map(|summary| (summary.name.as_str(), summary))
        .collect()
}

#[test]
fn ps_lists_running_containers_from_both_clients() {
    for output in [PS_RUNNING_28, PS_RUNNING_20] {
        let summaries = parse_ps(output).unwrap();
        let names: Vec<&str> = by_name(&summaries).into_keys().collect();
        assert_eq!(
            names,
            [
                "flotilla-test-node1",
                "flotilla-test-node2",
                "flotilla-test-node3"
            ]
        );
        for summary in &summaries {
            assert_eq!(summary.state, ContainerState::Running, "{summary:?}");
            assert!(summary.status.contains("healthy"), "{summary:?}");
            assert_eq!(summary.id.len(), 12, "{summary:?}");
        }
    }
}

#[test]
fn ps_shows_killed_and_paused_containers() {
    for output in [PS_KILLED_PAUSED_28, PS_KILLED_PAUSED_20] {
        let summaries = parse_ps(output).unwrap();
        let named = by_name(&summaries);
        assert_eq!(named["flotilla-test-node1"].state, ContainerState::Paused);
        assert_eq!(named["flotilla-test-node2"].state, ContainerState::Running);
        let killed = named["flotilla-test-node3"];
        assert_eq!(killed.state, ContainerState::Exited);
        assert!(killed.status.starts_with("Exited (137)"), "{killed:?}");
        assert!(killed.state.is_down());
        assert!(!named["flotilla-test-node1"].state.is_down());
    }
}

#[test]
fn ps_without_containers_is_empty() {
    assert!(parse_ps(PS_EMPTY).unwrap().is_empty());
    assert!(parse_ps("\n  \n").unwrap().is_empty());
}

#[test]
fn ps_garbage_is_a_clear_error() {
    let error = parse_ps("CONTAINER ID   IMAGE   COMMAND").unwrap_err();
    assert!(format!("{error:#}").contains("not a `docker ps` JSON line"));
    // A line missing the fields the backend needs is refused too.
    assert!(parse_ps(r#"{"Names":"x"}"#).is_err());
}

#[test]
fn ps_state_falls_back_to_the_status_text() {
    let summaries =
        parse_ps(r#"{"ID":"abc","Names":"n1,alias","Status":"Exited (0) 3 hours ago"}"#).unwrap();
    assert_eq!(summaries[0].state, ContainerState::Exited);
    assert_eq!(summaries[0].name, "n1");
}

#[test]
fn inspect_with_host_networking_uses_the_listen_address() {
    let details = parse_inspect(INSPECT_HOST).unwrap();
    assert_eq!(details.len(), 3);
    let expected = [
        (1, "flotilla-test-node1", ContainerState::Paused, 16501),
        (2, "flotilla-test-node2", ContainerState::Running, 16502),
        (3, "flotilla-test-node3", ContainerState::Exited, 16503),
    ];
    for (container, (id, name, state, port)) in details.iter().zip(expected) {
        assert_eq!(container.node_id, Some(NodeId(id)));
        assert_eq!(container.name, name);
        assert_eq!(container.state, state);
        assert_eq!(
            container.base_url,
            Ok(format!("http://127.0.0.1:{port}")),
            "{container:?}"
        );
        assert_eq!(container.admin_token.as_deref(), Some("flotilla-test"));
        assert_eq!(container.id.len(), 64);
    }
}

#[test]
fn inspect_with_published_ports_uses_the_host_port() {
    // Created but never started: only the configured binding exists.
    let created = parse_inspect(INSPECT_PUBLISHED_CREATED).unwrap();
    assert_eq!(created[0].state, ContainerState::Created);
    assert_eq!(created[0].base_url, Ok("http://127.0.0.1:6500".into()));
    assert_eq!(created[0].node_id, Some(NodeId(1)));
    assert_eq!(created[0].admin_token, None);
    // Started on an engine without a bridge: no live bindings, the configured one still names the port.
    let started = parse_inspect(INSPECT_PUBLISHED_STARTED).unwrap();
    assert_eq!(started[0].state, ContainerState::Running);
    assert_eq!(started[0].base_url, Ok("http://127.0.0.1:6500".into()));
}

#[test]
fn running_bindings_win_over_configured_ones() {
    let running: PortMap = serde_json::from_str(
        r#"{"5000/tcp":[{"HostIp":"0.0.0.0","HostPort":"49153"},{"HostIp":"::","HostPort":"49153"}]}"#,
    )
    .unwrap();
    let configured: PortMap =
        serde_json::from_str(r#"{"5000/tcp":[{"HostIp":"","HostPort":""}]}"#).unwrap();
    assert_eq!(
        endpoint(
            "flotilla_default",
            "0.0.0.0:5000",
            [running, configured].into_iter()
        ),
        Ok("http://127.0.0.1:49153".into())
    );
    let on_ip: PortMap =
        serde_json::from_str(r#"{"5000/tcp":[{"HostIp":"127.0.0.2","HostPort":"6501"}]}"#).unwrap();
    assert_eq!(
        endpoint("bridge", "0.0.0.0:5000", std::iter::once(on_ip)),
        Ok("http://127.0.0.2:6501".into())
    );
}

#[test]
fn unpublished_or_bad_listen_addresses_are_explained() {
    let unpublished: PortMap = serde_json::from_str(r#"{"5000/tcp":null}"#).unwrap();
    let error = endpoint("bridge", "0.0.0.0:5000", std::iter::once(unpublished))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("publishes no host port for 5000/tcp"),
        "{error}"
    );
    let error = endpoint("host", "nonsense", std::iter::empty())
        .unwrap_err()
        .to_string();
    assert!(error.contains("not HOST:PORT"), "{error}");
    assert_eq!(
        endpoint("host", "[::]:7000", std::iter::empty()),
        Ok("http://127.0.0.1:7000".into())
    );
    assert_eq!(
        endpoint("host", "[::1]:7000", std::iter::empty()),
        Ok("http://[::1]:7000".into())
    );
}

#[test]
fn inspect_garbage_is_a_clear_error() {
    assert!(parse_inspect("[]").unwrap().is_empty());
    let error = parse_inspect("Error: No such container: x").unwrap_err();
    assert!(format!("{error:#}").contains("not the expected JSON"));
}

#[test]
fn daemon_errors_say_what_to_do() {
    let error = classify_failure("docker ps", STDERR_NO_DAEMON);
    assert!(matches!(error, CliError::NoDaemon { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("not reachable"), "{message}");
    assert!(
        message.contains("Cannot connect to the Docker daemon"),
        "{message}"
    );
    assert!(message.contains("DOCKER_HOST"), "{message}");
    let other = classify_failure(
        "docker kill x",
        "WARNING: something\nError response from daemon: No such container: x\n",
    );
    assert_eq!(
        other.to_string(),
        "`docker kill x` failed: Error response from daemon: No such container: x"
    );
}

#[test]
fn a_missing_docker_program_is_reported_not_hung() {
    let cli = DockerCli::new("/nonexistent/flotilla-test/docker");
    let error = cli.ping().unwrap_err();
    assert!(matches!(error, CliError::NotFound { .. }), "{error:?}");
    assert!(error.to_string().contains("install Docker"));
    let error = DockerControl::discover(cli, DEFAULT_CLUSTER, None)
        .err()
        .unwrap();
    assert!(format!("{error:#}").contains("was not found"), "{error:#}");
}

#[test]
fn an_unreachable_daemon_is_reported() {
    let cli = DockerCli::from_env().with_env("DOCKER_HOST", "unix:///nonexistent/flotilla.sock");
    match cli.ping() {
        Err(CliError::NoDaemon { detail }) => assert!(detail.contains("nonexistent"), "{detail}"),
        // Machines without the docker CLI cannot show the daemon error.
        Err(CliError::NotFound { .. }) => {
            eprintln!("docker CLI not installed: daemon check skipped")
        }
        other => panic!("expected an unreachable daemon, got {other:?}"),
    }
}

// Runs `sleep` and `sh`, which Windows does not have.
#[cfg(unix)]
#[test]
fn slow_commands_time_out_and_are_killed() {
    let started = Instant::now();
    let error = run_with_timeout(
        &OsString::from("sleep"),
        &["30"],
        &[],
        Duration::from_millis(300),
    )
    .err()
    .unwrap();
    assert!(matches!(error, CliError::TimedOut { .. }), "{error:?}");
    assert!(error.to_string().contains("did not finish within"));
    assert!(started.elapsed() < Duration::from_secs(10));
}

// Runs `sleep` and `sh`, which Windows does not have.
#[cfg(unix)]
#[test]
fn output_and_exit_status_come_back() {
    let finished = run_with_timeout(
        &OsString::from("sh"),
        &["-c", "echo out; echo err >&2; exit 3"],
        &[("FLOTILLA_X".into(), "1".into())],
        Duration::from_secs(10),
    )
    .map_err(|error| error.to_string())
    .unwrap();
    assert_eq!(finished.stdout, "out\n");
    assert_eq!(finished.stderr, "err\n");
    assert_eq!(finished.status.code(), Some(3));
}

#[test]
fn without_docker_the_window_waits_and_says_why() {
    let options = DockerOptions {
        nodes: 3,
        admin_token: None,
        cli: DockerCli::new("/nonexistent/flotilla-test/docker"),
        cluster: DEFAULT_CLUSTER.into(),
    };
    let mut control = connect(&options);
    let waiting = control.waiting_for().expect("a waiting control");
    assert!(waiting.starts_with(WAITING_HEADING), "{waiting}");
    assert!(waiting.contains("was not found"), "{waiting}");
    assert!(control.nodes().is_empty());
    assert!(!control.controls_processes());
    assert!(control.replacement().is_none(), "nothing to attach to");
    let error = control.kill(NodeId(1)).unwrap_err();
    assert!(error.to_string().contains("docker compose up"), "{error}");
    assert_eq!(
        running_cluster(&options),
        None,
        "no Docker, nothing to offer"
    );
}

#[test]
fn container_states_parse() {
    assert_eq!(ContainerState::parse("running"), ContainerState::Running);
    assert_eq!(ContainerState::parse("Up"), ContainerState::Running);
    assert_eq!(ContainerState::parse("dead"), ContainerState::Dead);
    assert_eq!(
        ContainerState::parse("weird"),
        ContainerState::Unknown("weird".into())
    );
}
