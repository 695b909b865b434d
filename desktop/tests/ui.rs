//! UI tests without a GPU: the real panels, driven through accessibility labels.

mod window;

use egui_kittest::kittest::{NodeT as _, Queryable as _};
use flotilla::backend::Command;
use flotilla_shared::event::{Event, EventKind, Role};
use flotilla_shared::{LogIndex, NodeId, Term};
use tokio::sync::mpsc::UnboundedReceiver;
use window::{detached, event, open, App, SIZE};

/// A stream in which node `leader` wins `term`, and every node reports in.
fn elected(leader: u64, term: u64) -> Vec<Event> {
    let mut events = Vec::new();
    for node in 1..=3 {
        events.push(event(
            node,
            1,
            1_000,
            EventKind::TermChanged { term: Term(term) },
        ));
        let role = if node == leader {
            Role::Leader
        } else {
            Role::Follower
        };
        events.push(event(
            node,
            2,
            1_001,
            EventKind::RoleChanged {
                role,
                term: Term(term),
                leader_id: Some(NodeId(leader)),
            },
        ));
    }
    events.push(event(
        leader,
        3,
        1_002,
        EventKind::EntryAppended {
            first: LogIndex(1),
            last: LogIndex(1),
            term: Term(term),
        },
    ));
    events
}

/// Three nodes that have reported `events`.
fn harness(events: Vec<Event>) -> (App, UnboundedReceiver<Command>) {
    let (mut app, commands) = detached(3, true);
    for event in events {
        app.model.apply_event(event);
    }
    (open(app, SIZE), commands)
}

#[test]
fn scripted_stream_shows_the_leader_and_term() {
    let (mut harness, _commands) = harness(elected(2, 4));
    harness.run_steps(3);
    harness.get_by_label("leader: node 2 · term 4");
    assert!(harness.query_by_label("no leader · term 4").is_none());
}

#[test]
fn no_leader_is_said_plainly() {
    let (mut harness, _commands) = harness(vec![event(
        1,
        1,
        1_000,
        EventKind::TermChanged { term: Term(7) },
    )]);
    harness.run_steps(3);
    harness.get_by_label("no leader · term 7");
}

#[test]
fn clicking_kill_on_node_2_sends_kill_2() {
    let (mut harness, mut commands) = harness(elected(1, 1));
    harness.run_steps(2);
    harness.get_by_label("node 2").click();
    harness.run_steps(2);
    assert_eq!(harness.state().selected, Some(NodeId(2)));
    harness.get_by_label("Kill node 2").click();
    harness.run_steps(2);
    assert_eq!(commands.try_recv().ok(), Some(Command::Kill(NodeId(2))));
    assert!(commands.try_recv().is_err(), "exactly one command");
}

#[test]
fn impossible_actions_are_disabled() {
    let (mut harness, mut commands) = harness(elected(1, 1));
    harness.state_mut().selected = Some(NodeId(1));
    harness.run_steps(2);
    let restart = harness.get_by_label("Restart node 1");
    assert!(
        restart.accesskit_node().is_disabled(),
        "a running node cannot be restarted"
    );
    let transfer = harness.get_by_label("Make node 1 leader");
    assert!(
        transfer.accesskit_node().is_disabled(),
        "node 1 already leads"
    );
    assert!(!harness
        .get_by_label("Kill node 1")
        .accesskit_node()
        .is_disabled());
    harness.get_by_label("Restart node 1").click();
    harness.run_steps(2);
    assert!(
        commands.try_recv().is_err(),
        "a disabled button sends nothing"
    );
}

#[test]
fn attached_clusters_cannot_kill() {
    let (mut app, _commands) = detached(3, false);
    app.selected = Some(NodeId(3));
    let mut harness = open(app, SIZE);
    harness.run_steps(2);
    assert!(harness
        .get_by_label("Kill node 3")
        .accesskit_node()
        .is_disabled());
    assert!(!harness
        .get_by_label("Isolate node 3")
        .accesskit_node()
        .is_disabled());
}

#[test]
fn typing_a_message_and_submitting_sends_it() {
    let (mut harness, mut commands) = harness(elected(1, 1));
    harness.run_steps(2);
    let field = harness.get_by_role(egui::accesskit::Role::TextInput);
    field.focus();
    harness.run_steps(1);
    harness
        .get_by_role(egui::accesskit::Role::TextInput)
        .type_text("hello raft");
    harness.run_steps(1);
    harness.get_by_label("Submit").click();
    harness.run_steps(2);
    assert_eq!(
        commands.try_recv().ok(),
        Some(Command::Submit("hello raft".into()))
    );
    assert!(
        harness.state().bar.submit_text.is_empty(),
        "the field clears"
    );
}

#[test]
fn pausing_and_stepping_shows_an_earlier_moment() {
    let (mut harness, _commands) = harness(elected(3, 2));
    harness.run_steps(2);
    harness.get_by_label("Pause view").click();
    harness.run_steps(2);
    for _ in 0..4 {
        harness.get_by_label("< Step").click();
        harness.run_steps(1);
    }
    // Four records back from the last: only nodes 1 and 2 have reported their role.
    harness.get_by_label("no leader · term 2");
    harness.get_by_label("Go live").click();
    harness.run_steps(2);
    harness.get_by_label("leader: node 3 · term 2");
}
