//! The local backend's process control on the platform the tests run on (Linux here, Windows under
//! Wine in CI): the app's own binary starts real node processes (`flotilla node ...`), the backend
//! pauses, resumes and kills them on the commands the panels send, and no node outlives the app, even
//! one that is killed.

mod local_cluster;

use flotilla::backend::{self, local, Command, Update};
use flotilla::model::{ProcessState, Record};
use flotilla::ui::Tempo;
use flotilla_node::health;
use flotilla_shared::NodeId;
use std::io::{BufRead as _, BufReader};
use std::process::{Command as Process, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

fn start_cluster(data: &std::path::Path, nodes: usize, first_port: u16) -> local::LocalControl {
    local_cluster::start(
        data,
        nodes,
        local_cluster::app_nodes(),
        Tempo { factor: 1 },
        first_port,
    )
}

/// Waits until `done` holds for the answer of `url`'s `/v1/status` (Ok: 200 within two seconds).
fn wait_for_status(
    url: &str,
    timeout: Duration,
    what: &str,
    done: impl Fn(&Result<(), String>) -> bool,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let answer = health::probe(url);
        if done(&answer) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} at {url}: last answer {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits for the backend to record `node` entering `state`, printing notices on the way.
fn wait_for_process_state(updates: &mpsc::Receiver<Update>, node: NodeId, state: ProcessState) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match updates.recv_timeout(left) {
            Ok(Update::Record(Record::Process {
                node: seen,
                state: seen_state,
                ..
            })) if seen == node && seen_state == state => return,
            Ok(Update::Notice { text, error }) => {
                assert!(!error || !text.contains("could not"), "{text}");
            }
            Ok(_) => {}
            Err(_) => panic!("node {node} was never recorded {state:?}"),
        }
    }
}

#[test]
fn pause_resume_and_kill_reach_the_node_process() {
    let data = tempfile::tempdir().expect("tempdir");
    let control = start_cluster(data.path(), 1, 17_700);
    let url = backend::ClusterControl::nodes(&control)[0].base_url.clone();
    let handle = backend::start(
        Box::new(control),
        Tempo { factor: 1 }.timing(),
        Arc::new(|| {}),
    )
    .expect("backend starts");
    let node = NodeId(1);
    wait_for_status(&url, Duration::from_secs(30), "the node", Result::is_ok);

    handle.commands.send(Command::Pause(node)).expect("send");
    wait_for_process_state(&handle.updates, node, ProcessState::Paused);
    // A frozen process still has its socket: connections are taken by the system, never answered.
    wait_for_status(&url, Duration::from_secs(10), "no answer", Result::is_err);
    std::thread::sleep(Duration::from_secs(1));
    assert!(health::probe(&url).is_err(), "a paused node answered");

    handle.commands.send(Command::Resume(node)).expect("send");
    wait_for_process_state(&handle.updates, node, ProcessState::Running);
    wait_for_status(
        &url,
        Duration::from_secs(10),
        "answers again",
        Result::is_ok,
    );

    // Killing a paused node works too: the kill reaches a frozen process.
    handle.commands.send(Command::Pause(node)).expect("send");
    wait_for_process_state(&handle.updates, node, ProcessState::Paused);
    handle.commands.send(Command::Kill(node)).expect("send");
    wait_for_process_state(&handle.updates, node, ProcessState::Dead);
    let address = url.trim_start_matches("http://");
    wait_for_status(&url, Duration::from_secs(10), "the port closed", |_| {
        std::net::TcpStream::connect(address).is_err()
    });

    handle.commands.send(Command::Restart(node)).expect("send");
    wait_for_process_state(&handle.updates, node, ProcessState::Running);
    wait_for_status(
        &url,
        Duration::from_secs(30),
        "the restarted node",
        Result::is_ok,
    );
}

#[test]
fn a_node_stops_gracefully_when_its_parent_pipe_closes() {
    let data = tempfile::tempdir().expect("tempdir");
    let port = 17_710;
    // Started directly, without the parent-death signal or job the backend adds: the pipe alone.
    let mut node = Process::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["node", "--id", "1", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data.path())
        .arg("--exit-with-parent")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the node starts");
    let url = format!("http://127.0.0.1:{port}");
    wait_for_status(&url, Duration::from_secs(30), "the node", Result::is_ok);
    assert!(node.try_wait().expect("try_wait").is_none());

    drop(node.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = node.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            node.kill().ok();
            panic!("the node outlived its parent pipe");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "the stop was not graceful: {status}");
}

/// Set in the copy of this test binary that plays the app in `no_node_outlives_a_killed_app`.
const APP_ROLE: &str = "FLOTILLA_TEST_APP_DATA";
const FIRST_APP_PORT: u16 = 17_720;

/// The app's side: start two nodes, pause one where the platform can end a paused orphan, report
/// the ports and wait to be killed.
fn play_the_app(data: &str) {
    let mut control = start_cluster(std::path::Path::new(data), 2, FIRST_APP_PORT);
    let nodes = backend::ClusterControl::nodes(&control);
    for node in &nodes {
        wait_for_status(
            &node.base_url,
            Duration::from_secs(30),
            "the node",
            Result::is_ok,
        );
    }
    // macOS has no parent-death signal or job: a stopped node cannot see its parent go (see process/).
    if cfg!(not(target_os = "macos")) {
        backend::ClusterControl::pause(&mut control, NodeId(2)).expect("pause");
        // Killed before the stop took hold, the node would be a running orphan: not this test's case.
        wait_for_status(
            &nodes[1].base_url,
            Duration::from_secs(10),
            "no answer",
            Result::is_err,
        );
    }
    for node in &nodes {
        println!("node {}", node.base_url);
    }
    println!("ready");
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

#[test]
fn no_node_outlives_a_killed_app() {
    if let Some(data) = std::env::var_os(APP_ROLE) {
        play_the_app(&data.to_string_lossy());
        return;
    }
    let data = tempfile::tempdir().expect("tempdir");
    let mut app = Process::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "no_node_outlives_a_killed_app", "--nocapture"])
        .env(APP_ROLE, data.path())
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("the app starts");
    let mut urls = Vec::new();
    let lines = BufReader::new(app.stdout.take().expect("stdout")).lines();
    for line in lines {
        let line = line.expect("the app's output");
        if let Some(url) = line.strip_prefix("node ") {
            urls.push(url.to_owned());
        } else if line == "ready" {
            break;
        }
    }
    assert_eq!(urls.len(), 2, "the app reported its nodes: {urls:?}");
    assert!(health::probe(&urls[0]).is_ok(), "the running node answers");

    // SIGKILL (TerminateProcess on Windows): no destructor, no shutdown code of the app runs.
    app.kill().expect("kill the app");
    app.wait().expect("reap the app");
    for url in &urls {
        let address = url.trim_start_matches("http://").to_owned();
        wait_for_status(url, Duration::from_secs(20), "the orphan gone", |_| {
            std::net::TcpStream::connect(&address).is_err()
        });
    }
}
