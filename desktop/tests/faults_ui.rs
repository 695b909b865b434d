//! The fault path a click takes: a link on the ring -> its editor -> an intent -> the backend command;
//! and the presets, sized to the cluster as the window sees it.

mod window;

use egui_kittest::kittest::Queryable as _;
use flotilla::app::Clock;
use flotilla::backend::Command;
use flotilla_shared::api::LinkFault;
use flotilla_shared::event::{EventKind, Role};
use flotilla_shared::{NodeId, Term};
use tokio::sync::mpsc::UnboundedReceiver;
use window::{detached, App};

/// Node 1 leads term 1 at a heartbeat of 500 ms; `more` follows.
fn app_with(more: Vec<EventKind>) -> (App, UnboundedReceiver<Command>) {
    let (mut app, receiver) = detached(3, true);
    app.clock = Clock::Fixed(2_000);
    let mut seq = 0;
    let mut event = |node: u64, kind: EventKind| {
        seq += 1;
        window::event(node, seq, 1_000 + seq, kind)
    };
    let mut events = Vec::new();
    for node in 1..=3 {
        events.push(event(
            node,
            EventKind::TimingChanged {
                heartbeat_ms: 500,
                election_timeout_ms: [1_500, 3_000],
            },
        ));
        events.push(event(
            node,
            EventKind::RoleChanged {
                role: if node == 1 {
                    Role::Leader
                } else {
                    Role::Follower
                },
                term: Term(1),
                leader_id: Some(NodeId(1)),
            },
        ));
    }
    for kind in more {
        events.push(event(1, kind));
    }
    for event in events {
        app.model.apply_event(event);
    }
    (window::open(app, egui::vec2(1280.0, 900.0)), receiver)
}

fn commands(receiver: &mut UnboundedReceiver<Command>) -> Vec<Command> {
    std::iter::from_fn(|| receiver.try_recv().ok()).collect()
}

#[test]
fn clicking_a_link_opens_its_editor_and_each_direction_sends_its_own_fault() {
    let (mut harness, mut receiver) = app_with(Vec::new());
    harness.run_steps(2);
    assert!(harness.query_by_label("node 1 -> node 2").is_none());
    harness
        .get_by_label("link between node 1 and node 2")
        .click();
    harness.run_steps(6);
    assert_eq!(
        harness.state().link_editor.link,
        Some((NodeId(1), NodeId(2)))
    );
    // Both directions, separately.
    harness.get_by_label("node 1 -> node 2");
    harness.get_by_label("node 2 -> node 1");
    harness.get_by_label("cut 2->1").click();
    harness.run_steps(1);
    harness.get_by_label("Apply 2->1").click();
    harness.run_steps(2);
    assert_eq!(
        commands(&mut receiver),
        vec![Command::SetLinkFault {
            from: NodeId(2),
            to: NodeId(1),
            fault: Some(LinkFault {
                cut: true,
                ..LinkFault::default()
            }),
        }]
    );
    harness.get_by_label("Heal 1->2").click();
    harness.run_steps(2);
    assert_eq!(
        commands(&mut receiver),
        vec![Command::SetLinkFault {
            from: NodeId(1),
            to: NodeId(2),
            fault: None,
        }]
    );
    // Applying a direction with nothing set heals it rather than sending an empty fault.
    harness.get_by_label("Apply 1->2").click();
    harness.run_steps(2);
    assert_eq!(
        commands(&mut receiver),
        vec![Command::SetLinkFault {
            from: NodeId(1),
            to: NodeId(2),
            fault: None,
        }]
    );
}

#[test]
fn the_editor_shows_what_each_direction_reports() {
    let slow = LinkFault {
        delay_ms: 100,
        jitter_ms: 20,
        ..LinkFault::default()
    };
    let (mut harness, _receiver) = app_with(vec![EventKind::LinkFaultChanged {
        to: NodeId(3),
        fault: Some(slow),
    }]);
    harness.run_steps(2);
    harness
        .get_by_label("link between node 1 and node 3")
        .click();
    harness.run_steps(6);
    // Node 1's outgoing link is slow; node 3's is not: one label each.
    harness.get_by_label("slow 100±20 ms");
    harness.get_by_label("healthy");
    // The faulty link is listed in the faults panel too.
    harness.get_by_label("1->3: slow 100±20 ms");
}

#[test]
fn presets_send_the_faults_they_name_to_the_leader_and_a_follower() {
    let (mut harness, mut receiver) = app_with(Vec::new());
    harness.state_mut().selected = Some(NodeId(3));
    harness.run_steps(2);
    harness.get_by_label("One-way cut leader->follower").click();
    harness.run_steps(2);
    assert_eq!(
        commands(&mut receiver),
        vec![Command::SetLinkFault {
            from: NodeId(1),
            to: NodeId(3),
            fault: Some(LinkFault {
                cut: true,
                ..LinkFault::default()
            }),
        }]
    );
    harness.get_by_label("Slow disk on the leader").click();
    harness.run_steps(2);
    assert_eq!(
        commands(&mut receiver),
        vec![Command::SetDiskDelay {
            node: NodeId(1),
            write_delay_ms: 500,
        }]
    );
    harness.get_by_label("Flaky network").click();
    harness.run_steps(2);
    let sent = commands(&mut receiver);
    assert_eq!(sent.len(), 6, "every direction of every link: {sent:?}");
    assert!(sent.iter().all(|command| matches!(
        command,
        Command::SetLinkFault { fault: Some(fault), .. }
            if fault.delay_ms == 250 && fault.jitter_ms == 250 && fault.loss == 0.1 && !fault.cut
    )));
    // Nothing is faulty as far as the nodes said: there is nothing to heal.
    harness.get_by_label("Heal all links and disks").click();
    harness.run_steps(2);
    assert!(commands(&mut receiver).is_empty());
}

#[test]
fn the_stopwatch_runs_after_the_leader_is_killed_and_the_table_keeps_the_result() {
    let (mut harness, _receiver) = app_with(Vec::new());
    harness.run_steps(2);
    harness.get_by_label("Kill, pause or cut off the leader to time a failover.");
    harness
        .state_mut()
        .model
        .record(flotilla::model::Record::Process {
            at_ms: 1_500,
            node: NodeId(1),
            state: flotilla::model::ProcessState::Dead,
        });
    harness.run_steps(2);
    // Drawn 150 ms behind the cluster at 1,650; the clock reads 2,000.
    harness.get_by_label("leader 1 killed: 0.35 s");
    harness.get_by_label("new leader: waiting · first commit: waiting");
    let new_leader = [
        EventKind::RoleChanged {
            role: Role::Leader,
            term: Term(2),
            leader_id: Some(NodeId(2)),
        },
        EventKind::CommitAdvanced {
            commit_index: flotilla_shared::LogIndex(3),
        },
    ];
    for (seq, kind) in new_leader.into_iter().enumerate() {
        let (seq, at_ms) = (100 + seq as u64, 1_700 + seq as u64 * 50);
        harness
            .state_mut()
            .model
            .apply_event(window::event(2, seq, at_ms, kind));
    }
    harness.run_steps(2);
    harness.get_by_label("node 2 (term 2)");
    harness.get_by_label("0.20 s");
    harness.get_by_label("0.25 s");
}
