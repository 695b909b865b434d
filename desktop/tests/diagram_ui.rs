//! The diagram, the checks and the recordings through the window's own controls (kittest, no GPU).

mod window;

use egui_kittest::kittest::Queryable as _;
use flotilla::app::{Clock, FlotillaApp};
use flotilla::backend::Command;
use flotilla::model::{Record, SubmitRecord, ViewMode};
use flotilla_shared::event::{EventKind, Role};
use flotilla_shared::{LogIndex, NodeId, Term};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;
use window::{detached, event, open, App};

fn ev(node: u64, seq: u64, at_ms: u64, kind: EventKind) -> Record {
    Record::Event(event(node, seq, at_ms, kind))
}

fn leader(node: u64, seq: u64, at_ms: u64, term: u64) -> Record {
    ev(
        node,
        seq,
        at_ms,
        EventKind::RoleChanged {
            role: Role::Leader,
            term: Term(term),
            leader_id: Some(NodeId(node)),
        },
    )
}

/// An election won by node 1 in term 2, a replicated entry, and a submit acknowledged at index 1.
fn healthy() -> Vec<Record> {
    let mut records = vec![leader(1, 1, 1_000, 2)];
    for (seq, to) in [(2, 2), (3, 3)] {
        records.push(ev(
            1,
            seq,
            1_010,
            EventKind::AppendSent {
                to: NodeId(to),
                term: Term(2),
                prev_log_index: LogIndex(0),
                entries: 1,
                commit: LogIndex(0),
                msg: seq,
            },
        ));
        records.push(ev(
            to,
            1,
            1_012,
            EventKind::MessageReceived {
                from: NodeId(1),
                msg: seq,
                message: "append_entries".into(),
            },
        ));
    }
    records.push(Record::Submitted(SubmitRecord {
        at_ms: 1_020,
        text: "hello".into(),
        outcome: Ok((LogIndex(1), Term(2))),
        latency_ms: 15.0,
    }));
    records
}

/// Three nodes that have recorded `records`, in a window with room for the diagram.
fn harness(records: Vec<Record>) -> (App, UnboundedReceiver<Command>) {
    let (mut app, commands) = detached(3, true);
    for record in records {
        app.model.record(record);
    }
    (open(app, egui::vec2(1400.0, 900.0)), commands)
}

#[test]
fn clicking_the_diagram_selects_a_node_and_moves_the_timeline_there() {
    let (mut harness, mut commands) = harness(healthy());
    harness.run_steps(3);
    assert_eq!(harness.state().model.mode, ViewMode::Live);
    assert_eq!(harness.state().selected, None);
    harness.get_by_label(flotilla::ui::DIAGRAM_LABEL).click();
    harness.run_steps(2);
    let app = harness.state();
    assert_eq!(app.selected, Some(NodeId(2)), "the middle lane is node 2's");
    match app.model.mode {
        ViewMode::Paused { position } => {
            // The middle of a live 5 s window ending at 1,500 is about 1,000 ms earlier: around the
            // election, well before the newest record.
            let at = app.model.timeline.time_of(position).unwrap();
            assert!((1_000..1_100).contains(&at), "paused at {at}");
        }
        other => panic!("the timeline did not follow: {other:?}"),
    }
    assert!(
        commands.try_recv().is_err(),
        "a click on the diagram asks nothing of the cluster"
    );
}

#[test]
fn a_planted_violation_turns_its_check_red_and_show_jumps_to_it() {
    let mut records = healthy();
    records.push(leader(3, 2, 1_030, 2));
    let planted_first = 0;
    let (mut harness, _commands) = harness(records);
    harness.run_steps(3);
    harness.get_by_label_contains("node 1 and node 3 both became leader");
    assert!(
        harness.query_all_by_label(flotilla::ui::BROKEN).count() == 1,
        "only that check is red"
    );
    assert_eq!(harness.query_all_by_label(flotilla::ui::HOLDS).count(), 4);
    harness.get_by_label(flotilla::ui::SHOW_VIOLATION).click();
    harness.run_steps(2);
    assert_eq!(
        harness.state().model.mode,
        ViewMode::Paused {
            position: planted_first
        }
    );
}

#[test]
fn a_healthy_stream_keeps_every_check_green() {
    let (mut harness, _commands) = harness(healthy());
    harness.run_steps(3);
    assert_eq!(harness.query_all_by_label(flotilla::ui::HOLDS).count(), 5);
    assert_eq!(harness.query_all_by_label(flotilla::ui::BROKEN).count(), 0);
}

/// Runs frames until `done` or a few seconds passed (file jobs run on their own thread).
fn run_until(harness: &mut App, done: impl Fn(&FlotillaApp) -> bool) {
    for _ in 0..200 {
        harness.run_steps(1);
        if done(harness.state()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("gave up waiting; notice: {:?}", harness.state().bar.notice);
}

#[test]
fn a_session_saved_from_the_menu_opens_again_from_the_menu_as_it_was() {
    let (mut harness, mut commands) = harness(healthy());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.ndjson.gz");
    harness.run_steps(2);
    harness.get_by_label("Recording").click();
    harness.run_steps(3);
    harness.get_by_label("Save recording…").click();
    harness.run_steps(1);
    harness.state_mut().recording_dialog.path = path.display().to_string();
    harness.run_steps(1);
    harness.get_by_label("Save").click();
    run_until(&mut harness, |app| {
        app.bar
            .notice
            .as_ref()
            .is_some_and(|(text, _)| text.starts_with("saved 6 records"))
    });
    let before = harness.state().model.timeline.state_at(5);

    harness.get_by_label("Recording").click();
    harness.run_steps(3);
    harness.get_by_label("Open recording…").click();
    harness.run_steps(1);
    harness.state_mut().recording_dialog.path = path.display().to_string();
    harness.run_steps(1);
    harness.get_by_label("Open").click();
    run_until(&mut harness, |app| app.viewing_name().is_some());
    let app = harness.state();
    assert_eq!(app.viewing_name(), Some("session.ndjson.gz"));
    assert_eq!(app.model.timeline.len(), 6);
    assert_eq!(app.model.timeline.state_at(5), before);
    assert_eq!(app.model.mode, ViewMode::Paused { position: 0 });
    // While a recording is shown, the cluster's buttons reach nothing, even at its end.
    harness.get_by_label("Go live").click();
    harness.state_mut().selected = Some(NodeId(2));
    harness.run_steps(2);
    harness.get_by_label("Kill node 2").click();
    harness.run_steps(2);
    assert!(commands.try_recv().is_err());
    assert!(harness
        .state()
        .bar
        .notice
        .as_ref()
        .is_some_and(|(text, error)| *error && text.contains("a recording is shown")));
}

#[test]
fn the_client_history_exports_from_the_menu() {
    let (mut harness, _commands) = harness(healthy());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.json");
    harness.run_steps(2);
    harness.get_by_label("Recording").click();
    harness.run_steps(3);
    harness.get_by_label("Export client history…").click();
    harness.run_steps(1);
    harness.state_mut().recording_dialog.path = path.display().to_string();
    harness.run_steps(1);
    harness.get_by_label("Export").click();
    harness.run_steps(2);
    let history: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let types: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["invoke", "ok"]);
    assert_eq!(history[1]["value"], serde_json::json!(["hello", 1]));
}

/// Node 1 leads term 2, followed by nodes 2 and 3.
fn steady_leader() -> Vec<Record> {
    let mut records = Vec::new();
    for node in 1..=3 {
        records.push(ev(
            node,
            1,
            1_000,
            EventKind::RoleChanged {
                role: if node == 1 {
                    Role::Leader
                } else {
                    Role::Follower
                },
                term: Term(2),
                leader_id: Some(NodeId(1)),
            },
        ));
    }
    records
}

fn commands_sent(commands: &mut UnboundedReceiver<Command>) -> Vec<Command> {
    std::iter::from_fn(|| commands.try_recv().ok()).collect()
}

#[test]
fn a_scenario_started_from_its_menu_sends_the_clicks_commands_and_pauses_and_steps() {
    let (mut harness, mut commands) = harness(steady_leader());
    harness.run_steps(2);
    harness.get_by_label("Scenarios").click();
    harness.run_steps(3);
    harness.get_by_label("split vote").click();
    harness.run_steps(2);
    harness.get_by_label("Pause scenario").click();
    harness.run_steps(2);
    // Paused: however long the leader lasts, nothing goes out.
    harness.state_mut().clock = Clock::Fixed(5_000);
    harness.run_steps(3);
    assert_eq!(commands_sent(&mut commands), []);
    // One step: the wait for a leader ends; the next step waits for another click.
    harness.get_by_label("Next step").click();
    harness.run_steps(3);
    assert_eq!(commands_sent(&mut commands), []);
    harness.get_by_label("Next step").click();
    harness.run_steps(3);
    assert_eq!(
        commands_sent(&mut commands),
        [Command::Pause(NodeId(2)), Command::Pause(NodeId(3))]
    );
    assert!(harness
        .state()
        .scenario
        .as_ref()
        .unwrap()
        .caption()
        .contains("3/8: Kill the leader"));
    harness.get_by_label("Resume scenario").click();
    harness.run_steps(3);
    assert_eq!(commands_sent(&mut commands), [Command::Kill(NodeId(1))]);
    harness.get_by_label("Stop scenario").click();
    harness.run_steps(2);
    assert!(harness.state().scenario.is_none());
}

#[test]
fn opening_a_file_that_is_not_a_recording_fails_in_one_line_before_any_window() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("notes.txt");
    std::fs::write(&plain, "not a recording").unwrap();
    for (path, expected) in [
        (plain.clone(), "is not a Flotilla recording"),
        (dir.path().join("missing.ndjson.gz"), "cannot open"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .arg("--open")
            .arg(&path)
            // No display either way: the file is refused before a window is asked for.
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .output()
            .expect("the app runs");
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("flotilla: error:") && stderr.contains(expected),
            "{stderr}"
        );
    }
}
