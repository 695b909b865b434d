//! Each guided scenario end to end: the window's own backend starts 3 real node processes, the
//! scenario is started from its menu, and its steps go out as the clicks' intents until it is done.
//! The live checks must hold all the way.

use egui_kittest::kittest::Queryable as _;
use egui_kittest::Harness;
use flotilla::app::FlotillaApp;
mod local_cluster;

use flotilla::backend;
use flotilla::model::scenario::RunState;
use flotilla::ui::Tempo;
use flotilla_shared::event::{DropReason, EventKind};
use flotilla_shared::NodeId;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn run_scenario(name: &str, first_port: u16) -> Harness<'static, FlotillaApp> {
    let data = tempfile::tempdir().expect("tempdir");
    let tempo = Tempo { factor: 2 };
    // At the window's snapshot threshold, as the window starts its own nodes.
    let control = local_cluster::start(
        data.path(),
        3,
        local_cluster::node_binary(true),
        tempo,
        first_port,
    );
    let handle =
        backend::start(Box::new(control), tempo.timing(), Arc::new(|| {})).expect("backend starts");
    let app = FlotillaApp::new(handle, tempo);
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .build_ui_state(
            |ui, app: &mut FlotillaApp| {
                app.drain_updates(Duration::from_millis(20));
                app.frame_ui(ui);
            },
            app,
        );
    harness.run_steps(2);
    harness.get_by_label("Scenarios").click();
    harness.run_steps(3);
    harness.get_by_label(name).click();
    harness.run_steps(2);
    let started = Instant::now();
    let mut last_caption = String::new();
    loop {
        harness.run_steps(1);
        let app = harness.state();
        let run = app.scenario.as_ref().expect("the scenario started");
        let caption = run.caption();
        if caption != last_caption {
            eprintln!("{:>6.1} s  {caption}", started.elapsed().as_secs_f64());
            last_caption = caption;
        }
        match &run.state {
            RunState::Finished => break,
            RunState::Failed(why) => panic!(
                "{name} stopped: {why}\nsubmits: {:?}\nnodes: {:#?}",
                app.model.live.submits, app.model.live.nodes
            ),
            _ => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{name} still at: {last_caption}"
        );
        std::thread::sleep(Duration::from_millis(30));
    }
    // The checks took in everything recorded so far.
    harness.run_steps(2);
    for status in harness.state().checks.statuses() {
        assert_eq!(status.violation, None, "{}", status.check.title());
    }
    reopens_the_same(harness.state());
    drop(data);
    harness
}

/// The real run saved and reopened gives the same state at every 500th record, and the checks hold
/// on the reopened recording too.
fn reopens_the_same(app: &FlotillaApp) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("run.ndjson.gz");
    let timeline = &app.model.timeline;
    let nodes = app.model.live.nodes.keys().copied().collect::<Vec<_>>();
    flotilla::recording::save_timeline(&path, &nodes, "a scenario", 0, timeline).expect("saved");
    let opened = flotilla::recording::open(&path).expect("opened");
    let mut reopened = flotilla::model::ClusterModel::new(&opened.header.nodes);
    for record in opened.records {
        reopened.record(record);
    }
    assert_eq!(reopened.timeline.len(), timeline.len());
    let end = timeline.end();
    for position in (timeline.start()..end).step_by(500).chain([end - 1]) {
        assert!(
            reopened.timeline.state_at(position) == timeline.state_at(position),
            "state after record {position} differs once reopened"
        );
    }
    let mut checks = flotilla::model::checks::Checks::new();
    checks.catch_up(&reopened.timeline);
    for status in checks.statuses() {
        assert_eq!(status.violation, None, "{}", status.check.title());
    }
}

#[test]
fn split_vote_runs_end_to_end_and_a_new_leader_wins_a_later_term() {
    let harness = run_scenario("split vote", 17_740);
    let app = harness.state();
    let kills = app
        .model
        .timeline
        .iter()
        .filter(|(_, record)| {
            matches!(
                record,
                flotilla::model::Record::Process {
                    state: flotilla::model::ProcessState::Dead,
                    ..
                }
            )
        })
        .count();
    assert_eq!(kills, 1, "the leader was killed once");
    let leader = app.model.live.leader().expect("a leader at the end");
    assert!(leader.term.0 >= 2, "a later term: {:?}", leader.term);
}

#[test]
fn uncommitted_entry_rolled_back_runs_end_to_end_and_the_old_leader_truncates() {
    let mut harness = run_scenario("uncommitted entry rolled back", 17_760);
    // Both submits are answered: the cut-off leader's once it gives up on it.
    let started = Instant::now();
    while harness.state().model.live.submits.len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the submits were not both answered"
        );
        harness.run_steps(1);
        std::thread::sleep(Duration::from_millis(50));
    }
    harness.run_steps(2);
    let app = harness.state();
    let truncated = app.model.timeline.iter().any(|(_, record)| {
        matches!(
            record.event().map(|event| &event.kind),
            Some(EventKind::LogTruncated { .. })
        )
    });
    assert!(truncated, "the old leader's uncommitted entry was cut");
    let outcome = |text: &str| {
        app.model
            .live
            .submits
            .iter()
            .find(|submit| submit.text == text)
            .map(|submit| submit.outcome.clone())
            .expect("answered")
    };
    let (_, new_term) = outcome("written to the new leader").expect("the new leader commits");
    // The cut-off leader's entry never commits. The request itself may still succeed: a node that
    // loses leadership hands pending requests on, and the new leader takes them in its own term.
    if let Ok((index, term)) = outcome("written to a leader cut off") {
        assert!(
            term >= new_term,
            "acknowledged at {index:?} in {term:?}: not by the new leader ({new_term:?})"
        );
    }
    for status in app.checks.statuses() {
        assert_eq!(status.violation, None, "{}", status.check.title());
    }
}

/// The events `node` reported, in order.
fn events_of(app: &FlotillaApp, node: NodeId) -> Vec<EventKind> {
    app.model
        .timeline
        .iter()
        .filter_map(|(_, record)| record.event())
        .filter(|event| event.node == node)
        .map(|event| event.kind.clone())
        .collect()
}

fn started_nodes(app: &FlotillaApp) -> (NodeId, Vec<NodeId>) {
    let run = app.scenario.as_ref().expect("the scenario ran");
    (
        run.old_leader().expect("the scenario found a leader"),
        run.followers().to_vec(),
    )
}

#[test]
fn one_way_cut_runs_end_to_end_and_the_unheard_leader_steps_down() {
    let harness = run_scenario("leader isolated by a one-way cut", 17_870);
    let app = harness.state();
    let (old, followers) = started_nodes(app);
    let events = events_of(app, old);
    for follower in &followers {
        assert!(
            events.iter().any(|kind| matches!(
                kind,
                EventKind::LinkFaultChanged { to, fault: Some(fault) } if to == follower && fault.cut
            )),
            "the link {old} → {follower} was cut"
        );
        assert!(
            events.iter().any(|kind| matches!(
                kind,
                EventKind::LinkFaultChanged { to, fault: None } if to == follower
            )),
            "the link {old} → {follower} was healed"
        );
    }
    assert!(
        events.iter().any(|kind| matches!(
            kind,
            EventKind::MessageDropped {
                reason: DropReason::LinkCut,
                ..
            }
        )),
        "the cut dropped the old leader's messages"
    );
    let leader = app.model.live.leader().expect("a leader at the end");
    assert_ne!(leader.id, old, "a new leader leads");
    let old_view = &app.model.live.nodes[&old];
    assert_eq!(
        old_view.leader_id,
        Some(leader.id),
        "the old leader follows"
    );
    assert!(old_view.link_faults.is_empty(), "every cut healed");
}

#[test]
fn slow_disk_runs_end_to_end_and_slows_the_commit_it_takes() {
    let harness = run_scenario("slow disk on the leader", 17_890);
    let app = harness.state();
    let (old, _) = started_nodes(app);
    let delays: Vec<u64> = events_of(app, old)
        .into_iter()
        .filter_map(|kind| match kind {
            EventKind::DiskFaultChanged { write_delay_ms } => Some(write_delay_ms),
            _ => None,
        })
        .collect();
    assert_eq!(delays.len(), 2, "slowed then healed: {delays:?}");
    assert!(delays[0] > 0 && delays[1] == 0, "{delays:?}");
    let slow = app
        .model
        .live
        .submits
        .iter()
        .find(|submit| submit.text == "written through a slow disk")
        .expect("the slow submit answered");
    assert!(slow.outcome.is_ok(), "{:?}", slow.outcome);
    assert!(
        slow.latency_ms >= delays[0] as f64,
        "committed in {} ms through a {} ms disk",
        slow.latency_ms,
        delays[0]
    );
    assert_eq!(app.model.live.nodes[&old].disk_write_delay_ms, 0);
}

#[test]
fn wiped_follower_runs_end_to_end_and_installs_the_leaders_snapshot() {
    let harness = run_scenario("wiped follower rebuilt from a snapshot", 17_910);
    let app = harness.state();
    let (old, followers) = started_nodes(app);
    let snapshot = events_of(app, old)
        .into_iter()
        .find_map(|kind| match kind {
            EventKind::SnapshotTaken { index, .. } => Some(index),
            _ => None,
        })
        .expect("the leader took a snapshot");
    let wiped = followers[0];
    let installed = events_of(app, wiped)
        .into_iter()
        .find_map(|kind| match kind {
            EventKind::SnapshotInstalled { from, index, .. } => Some((from, index)),
            _ => None,
        });
    assert_eq!(
        installed,
        Some((old, snapshot)),
        "node {wiped} installed the leader's snapshot"
    );
    // The other follower was never wiped: it kept its log and needed no snapshot.
    for other in &followers[1..] {
        assert!(
            !events_of(app, *other)
                .iter()
                .any(|kind| matches!(kind, EventKind::SnapshotInstalled { .. })),
            "node {other} installed a snapshot it did not need"
        );
    }
    let leader = app.model.live.leader().expect("a leader at the end");
    let follower = &app.model.live.nodes[&wiped];
    assert!(follower.commit_index >= leader.commit_index);
    assert!(
        follower.commit_index > snapshot.0,
        "entries after the snapshot"
    );
}

#[test]
fn add_and_remove_runs_end_to_end_and_the_configuration_grows_then_shrinks() {
    let harness = run_scenario("add and remove a member", 17_930);
    let app = harness.state();
    let (old, followers) = started_nodes(app);
    let added = app
        .scenario
        .as_ref()
        .and_then(|run| run.added())
        .expect("a node was added");
    assert!(added != old && !followers.contains(&added));
    let sizes: Vec<(usize, bool)> = app
        .model
        .timeline
        .iter()
        .filter_map(
            |(_, record)| match record.event().map(|event| &event.kind) {
                Some(EventKind::MembershipChanged {
                    members, committed, ..
                }) if *committed => Some((
                    members.len(),
                    members.iter().any(|member| member.id == added),
                )),
                _ => None,
            },
        )
        .collect();
    let grew = sizes.iter().position(|size| *size == (4, true));
    let shrank = sizes.iter().rposition(|size| *size == (3, false));
    assert!(
        matches!((grew, shrank), (Some(grew), Some(shrank)) if grew < shrank),
        "a committed configuration with node {added}, then one without it: {sizes:?}"
    );
    assert_eq!(app.model.live.nodes.len(), 3, "three nodes again");
    assert!(!app.model.live.nodes.contains_key(&added));
}
