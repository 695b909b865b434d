//! End to end: the desktop's own backend starts a real 3-node cluster (real processes, sockets on
//! 127.0.0.1, SQLite files), the model follows the event streams, a submit commits, the leader is
//! killed and the model sees a new leader elected.

mod local_cluster;

use flotilla::backend::{self, Command, Update};
use flotilla::model::{ClusterModel, ProcessState, Record};
use flotilla::ui::Tempo;
use flotilla_shared::NodeId;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Feeds updates into the model until `done` holds, or fails with `what` after `timeout`.
fn wait_for(
    model: &mut ClusterModel,
    updates: &std::sync::mpsc::Receiver<Update>,
    timeout: Duration,
    what: &str,
    mut done: impl FnMut(&ClusterModel) -> bool,
) {
    let deadline = Instant::now() + timeout;
    model.advance(backend::unix_ms());
    while !done(model) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        match updates.recv_timeout(Duration::from_millis(100)) {
            Ok(Update::Record(record)) => model.record(record),
            Ok(Update::Notice { text, error }) => eprintln!("notice (error={error}): {text}"),
            // A local cluster is never replaced, waited for or offered another.
            Ok(Update::Cluster(_) | Update::Waiting(_) | Update::Offer(_)) | Err(_) => {}
        }
        // As the window does every frame: the drawn view follows, a moment behind.
        model.advance(backend::unix_ms());
    }
}

/// The status line of a `POST /raft/request_vote` carrying no cluster token.
fn raft_rpc_without_token(base_url: &str) -> String {
    use std::io::{Read as _, Write as _};
    let addr = base_url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let request = format!(
        "POST /raft/request_vote HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: 2\r\nconnection: close\r\n\r\n{{}}"
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.lines().next().unwrap_or_default().to_string()
}

fn all_up(model: &ClusterModel) -> bool {
    model.live.nodes.values().all(|node| node.is_up())
}

#[test]
fn model_follows_a_real_cluster_through_a_leader_kill() {
    let data = tempfile::tempdir().expect("tempdir");
    let tempo = Tempo { factor: 2 };
    let control = local_cluster::start(
        data.path(),
        3,
        local_cluster::node_binary(false),
        tempo,
        17_600,
    );
    let endpoints = backend::ClusterControl::nodes(&control);
    let handle =
        backend::start(Box::new(control), tempo.timing(), Arc::new(|| {})).expect("backend starts");
    let ids: Vec<NodeId> = handle.nodes.clone();
    assert_eq!(ids, vec![NodeId(1), NodeId(2), NodeId(3)]);
    let mut model = ClusterModel::new(&ids);

    wait_for(
        &mut model,
        &handle.updates,
        Duration::from_secs(30),
        "a leader",
        |m| all_up(m) && m.live.leader().is_some(),
    );
    let first_leader = model
        .live
        .leader()
        .map(|leader| (leader.id, leader.term))
        .expect("leader");
    // The nodes the desktop starts take Raft RPCs only with the cluster token it made for them.
    for endpoint in &endpoints {
        let answer = raft_rpc_without_token(&endpoint.base_url);
        assert!(
            answer.starts_with("HTTP/1.1 401"),
            "{}: a Raft RPC without the cluster token got {answer:?}",
            endpoint.base_url
        );
    }
    // The election was seen as it happened: vote requests travelled.
    assert!(model.live.events_applied > 0);
    assert!(model.timeline.iter().any(|(_, record)| matches!(
        record.event().map(|event| &event.kind),
        Some(flotilla_shared::event::EventKind::VoteRequested { .. })
    )));

    handle
        .commands
        .send(Command::Submit("before failover".into()))
        .expect("send");
    wait_for(
        &mut model,
        &handle.updates,
        Duration::from_secs(20),
        "the submit",
        |m| !m.live.submits.is_empty(),
    );
    let submitted = model.live.submits.back().cloned().expect("submit record");
    let (index, _) = submitted.outcome.clone().expect("committed");
    wait_for(
        &mut model,
        &handle.updates,
        Duration::from_secs(10),
        "commit on all",
        |m| {
            m.live
                .nodes
                .values()
                .all(|node| node.commit_index >= index.0)
        },
    );

    handle
        .commands
        .send(Command::Kill(first_leader.0))
        .expect("send");
    wait_for(
        &mut model,
        &handle.updates,
        Duration::from_secs(30),
        "a new leader",
        |m| {
            m.live.nodes[&first_leader.0].process == ProcessState::Dead
                && m.live.leader().is_some_and(|leader| {
                    leader.id != first_leader.0 && leader.term > first_leader.1
                })
        },
    );

    // The drawn view tells the same story a moment later.
    let new_leader = model.live.leader().map(|leader| leader.id);
    wait_for(
        &mut model,
        &handle.updates,
        Duration::from_millis(flotilla::model::MAX_LAG_MS + 2_000),
        "the drawn view to show the new leader",
        |m| {
            m.shown().nodes[&first_leader.0].process == ProcessState::Dead
                && m.shown().leader().map(|leader| leader.id) == new_leader
        },
    );

    handle
        .commands
        .send(Command::Restart(first_leader.0))
        .expect("send");
    wait_for(
        &mut model,
        &handle.updates,
        Duration::from_secs(30),
        "the old leader back",
        |m| {
            let node = &m.live.nodes[&first_leader.0];
            node.is_up()
                && node.commit_index >= index.0
                && node.role != flotilla_shared::event::Role::Leader
        },
    );
    assert!(model.timeline.iter().any(|(_, record)| matches!(
        record,
        Record::Process {
            state: ProcessState::Dead,
            ..
        }
    )));

    // Dropping the backend stops every node it started.
    let backend::BackendHandle {
        commands,
        updates,
        thread,
        ..
    } = handle;
    drop(commands);
    drop(updates);
    drop(thread);
    for endpoint in endpoints {
        let addr = endpoint.base_url.trim_start_matches("http://").to_string();
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(&addr).is_ok() {
            assert!(
                Instant::now() < deadline,
                "{addr} still answers after shutdown"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
