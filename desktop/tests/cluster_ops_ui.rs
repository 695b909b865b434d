//! The cluster-shaping actions through the real panels (kittest, no GPU): a click on wipe, snapshot,
//! add or remove sends exactly that command; the limits are enforced by disabled buttons; the view
//! takes members, learners and snapshots from the nodes' events.

mod window;

use egui_kittest::kittest::{NodeT as _, Queryable as _};
use flotilla::backend::Command;
use flotilla::ui::ADD_NODE;
use flotilla_shared::api::{Member, MemberRole};
use flotilla_shared::event::{Event, EventKind, Role};
use flotilla_shared::{LogIndex, NodeId, Term};
use tokio::sync::mpsc::UnboundedReceiver;
use window::{detached, event, open, press, App, SIZE};

/// `count` nodes in which node 1 leads term 1.
fn elected(count: u64) -> Vec<Event> {
    (1..=count)
        .map(|node| {
            let role = if node == 1 {
                Role::Leader
            } else {
                Role::Follower
            };
            event(
                node,
                1,
                1_000,
                EventKind::RoleChanged {
                    role,
                    term: Term(1),
                    leader_id: Some(NodeId(1)),
                },
            )
        })
        .collect()
}

fn member(id: u64, role: MemberRole) -> Member {
    Member {
        id: NodeId(id),
        addr: format!("127.0.0.1:{}", 6_499 + id),
        role,
    }
}

/// `count` nodes that have reported `events`.
fn harness(count: u64, events: Vec<Event>) -> (App, UnboundedReceiver<Command>) {
    let (mut app, commands) = detached(count, true);
    for event in events {
        app.model.apply_event(event);
    }
    (open(app, SIZE), commands)
}

#[test]
fn wipe_snapshot_add_and_remove_clicks_send_their_commands() {
    let (mut harness, mut commands) = harness(3, elected(3));
    harness.run_steps(2);
    press(&mut harness, "node 2");
    press(&mut harness, "Wipe disk and restart node 2");
    assert_eq!(commands.try_recv().ok(), Some(Command::Wipe(NodeId(2))));
    press(&mut harness, "Take snapshot on node 2");
    assert_eq!(
        commands.try_recv().ok(),
        Some(Command::TakeSnapshot(NodeId(2)))
    );
    press(&mut harness, "Remove node 2");
    assert_eq!(
        commands.try_recv().ok(),
        Some(Command::RemoveNode(NodeId(2)))
    );
    press(&mut harness, ADD_NODE);
    assert_eq!(commands.try_recv().ok(), Some(Command::AddNode));
    assert!(commands.try_recv().is_err(), "one command per click");
}

#[test]
fn seven_nodes_fill_the_ring_and_attached_clusters_cannot_wipe() {
    let (mut harness, mut commands) = harness(7, elected(7));
    harness.run_steps(2);
    assert!(harness
        .get_by_label(ADD_NODE)
        .accesskit_node()
        .is_disabled());
    press(&mut harness, ADD_NODE);
    assert!(
        commands.try_recv().is_err(),
        "a disabled button sends nothing"
    );

    let (mut app, _commands) = detached(3, false);
    app.selected = Some(NodeId(2));
    for event in elected(3) {
        app.model.apply_event(event);
    }
    let mut attached = open(app, SIZE);
    attached.run_steps(2);
    assert!(attached
        .get_by_label("Wipe disk and restart node 2")
        .accesskit_node()
        .is_disabled());
    assert!(attached
        .get_by_label(ADD_NODE)
        .accesskit_node()
        .is_disabled());
    // Membership goes through the admin API: an attached cluster can still remove a member.
    assert!(!attached
        .get_by_label("Remove node 2")
        .accesskit_node()
        .is_disabled());
}

#[test]
fn a_learner_a_snapshot_and_a_departed_node_are_shown_as_the_nodes_report_them() {
    let mut events = elected(3);
    // Node 4 joins: the leader's configuration names it a learner.
    let learner_config = vec![
        member(1, MemberRole::Voter),
        member(2, MemberRole::Voter),
        member(3, MemberRole::Voter),
        member(4, MemberRole::Learner),
    ];
    events.push(event(
        1,
        2,
        1_010,
        EventKind::MembershipChanged {
            members: learner_config,
            config_index: LogIndex(7),
            committed: false,
        },
    ));
    events.push(event(
        1,
        3,
        1_020,
        EventKind::SnapshotTaken {
            index: LogIndex(5),
            term: Term(1),
            bytes: 2_048,
        },
    ));
    events.push(event(
        1,
        4,
        1_021,
        EventKind::LogCompacted {
            first_log_index: LogIndex(6),
        },
    ));
    events.push(event(
        1,
        5,
        1_030,
        EventKind::SnapshotSent {
            to: NodeId(4),
            index: LogIndex(5),
            term: Term(1),
            offset: 0,
            bytes: 1_024,
            total_bytes: 2_048,
            done: false,
            msg: 9,
        },
    ));
    let (mut harness, _commands) = harness(4, events);
    harness.run_steps(2);
    {
        let view = harness.state_mut().model.view().clone();
        assert_eq!(view.member_role(NodeId(4)), Some(MemberRole::Learner));
        assert_eq!(view.member_role(NodeId(2)), Some(MemberRole::Voter));
        assert_eq!(view.nodes[&NodeId(1)].snapshot.compacted(), 5);
        assert_eq!(view.nodes[&NodeId(1)].config.entries, vec![7]);
        let transfer = &view.transfers[0];
        assert_eq!((transfer.from, transfer.to), (NodeId(1), NodeId(4)));
        assert!((transfer.progress() - 0.5).abs() < 1e-6);
    }
    press(&mut harness, "node 4");
    harness.get_by_label("learner (does not vote)");

    // Node 3 is removed, then its process stops: it leaves the picture.
    let model = &mut harness.state_mut().model;
    model.apply_event(event(
        1,
        6,
        1_100,
        EventKind::MembershipChanged {
            members: vec![
                member(1, MemberRole::Voter),
                member(2, MemberRole::Voter),
                member(4, MemberRole::Voter),
            ],
            config_index: LogIndex(9),
            committed: true,
        },
    ));
    assert!(model.live.nodes.contains_key(&NodeId(3)), "still running");
    model.record(flotilla::model::Record::Process {
        at_ms: 1_200,
        node: NodeId(3),
        state: flotilla::model::ProcessState::Dead,
    });
    assert!(
        !model.live.nodes.contains_key(&NodeId(3)),
        "gone once stopped"
    );
    assert_eq!(model.live.member_role(NodeId(4)), Some(MemberRole::Voter));

    // The other order: node 2 is stopped first (its stream had not shown the removal yet), then the
    // configuration without it arrives.
    model.record(flotilla::model::Record::Process {
        at_ms: 1_300,
        node: NodeId(2),
        state: flotilla::model::ProcessState::Dead,
    });
    assert!(model.live.nodes.contains_key(&NodeId(2)), "still a member");
    model.apply_event(event(
        1,
        7,
        1_400,
        EventKind::MembershipChanged {
            members: vec![member(1, MemberRole::Voter), member(4, MemberRole::Voter)],
            config_index: LogIndex(11),
            committed: true,
        },
    ));
    assert!(
        !model.live.nodes.contains_key(&NodeId(2)),
        "gone once removed"
    );
    assert_eq!(model.live.nodes.len(), 2);
}
