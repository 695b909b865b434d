//! The live view keeps causal order: a message's dot is drawn travelling before anything it may
//! have caused, and the view never trails the cluster by more than a bound.

use super::tests::ev;
use super::*;
use flotilla_shared::event::{EventKind, Role};
use flotilla_shared::{LogIndex, Term};

pub(super) fn timing(heartbeat_ms: u64) -> EventKind {
    EventKind::TimingChanged {
        heartbeat_ms,
        election_timeout_ms: [heartbeat_ms * 3, heartbeat_ms * 6],
    }
}

fn in_the_air(state: &ClusterState, now_ms: u64) -> Vec<(FlightKind, f32)> {
    state
        .flights
        .iter()
        .filter_map(|flight| Some((flight.kind, flight.progress(now_ms)?)))
        .filter(|(_, progress)| *progress < 1.0)
        .collect()
}

/// Leader 1 sends one entry to node 2 at t0 = 1000; node 2 takes it in 0.2 ms later (the same
/// millisecond), makes it durable and acks; the leader commits. All of it reaches the desktop at once.
#[test]
fn the_follower_takes_in_the_append_only_once_its_dot_lands_and_the_commit_waits_for_the_ack() {
    let stream = one_append();
    // Two streams: the follower's may reach the desktop first.
    let mut follower_first = stream.clone();
    follower_first.sort_by_key(|event| std::cmp::Reverse(event.node));
    for stream in [stream, follower_first] {
        the_append_and_its_ack_are_told_in_order(stream);
    }
}

fn one_append() -> Vec<Event> {
    use EventKind::*;
    vec![
        ev(1, 1, 900, timing(500)),
        ev(2, 1, 900, timing(500)),
        ev(
            1,
            2,
            900,
            RoleChanged {
                role: Role::Leader,
                term: Term(1),
                leader_id: Some(NodeId(1)),
            },
        ),
        ev(
            1,
            3,
            999,
            EntryAppended {
                first: LogIndex(1),
                last: LogIndex(1),
                term: Term(1),
            },
        ),
        ev(
            1,
            4,
            1000,
            AppendSent {
                msg: 0,
                to: NodeId(2),
                term: Term(1),
                prev_log_index: LogIndex(0),
                entries: 1,
                commit: LogIndex(0),
            },
        ),
        ev(
            2,
            2,
            1000,
            ElectionTimerReset {
                deadline_ms: 3000,
                timeout_ms: 2000,
            },
        ),
        ev(
            2,
            3,
            1000,
            EntryAppended {
                first: LogIndex(1),
                last: LogIndex(1),
                term: Term(1),
            },
        ),
        ev(2, 4, 1001, EntryPersisted { index: LogIndex(1) }),
        ev(
            1,
            5,
            1001,
            AppendAcked {
                msg: 0,
                from: NodeId(2),
                term: Term(1),
                match_index: LogIndex(1),
            },
        ),
        ev(
            1,
            6,
            1001,
            CommitAdvanced {
                commit_index: LogIndex(1),
            },
        ),
    ]
}

fn the_append_and_its_ack_are_told_in_order(stream: Vec<Event>) {
    let mut model = ClusterModel::new(&[NodeId(1), NodeId(2)]);
    for event in stream {
        model.apply_event(event);
    }
    // The truth has it all at once; the live view tells it in order.
    assert_eq!(model.live.nodes[&NodeId(1)].commit_index, 1);
    let leg_ms = flight_ms(500);
    let sent_ms = 1000 + DELAY_MS;
    let landed_ms = sent_ms + leg_ms;
    let acked_ms = landed_ms + leg_ms;

    model.advance(sent_ms - 1);
    let view = model.shown();
    assert!(in_the_air(view, sent_ms - 1).is_empty());
    assert_eq!(view.nodes[&NodeId(1)].role, Role::Leader);
    assert_eq!(view.nodes[&NodeId(2)].log.last_index(), 0);

    model.advance(sent_ms);
    assert_eq!(
        in_the_air(model.shown(), sent_ms),
        vec![(FlightKind::Append { entries: 1 }, 0.0)]
    );

    let half_way = sent_ms + leg_ms / 2;
    model.advance(half_way);
    let view = model.shown();
    assert_eq!(
        in_the_air(view, half_way),
        vec![(FlightKind::Append { entries: 1 }, 0.5)]
    );
    let two = &view.nodes[&NodeId(2)];
    assert_eq!(two.log.last_index(), 0, "the entry is still on its way");
    assert_eq!(two.election_deadline_ms, None, "its timer is not reset yet");

    model.advance(landed_ms - 1);
    assert_eq!(model.shown().nodes[&NodeId(2)].log.last_index(), 0);
    assert_eq!(model.shown().nodes[&NodeId(1)].commit_index, 0);

    model.advance(landed_ms);
    let view = model.shown();
    let two = &view.nodes[&NodeId(2)];
    assert_eq!(
        two.log.last_index(),
        1,
        "the dot landed: node 2 has the entry"
    );
    assert_eq!(two.persisted_index, 1);
    // The timer is drawn on the view's clock: full length when the reset is drawn.
    assert_eq!(two.election_deadline_ms, Some(landed_ms + 2000));
    assert_eq!(in_the_air(view, landed_ms), vec![(FlightKind::Ack, 0.0)]);
    assert_eq!(
        view.nodes[&NodeId(1)].commit_index,
        0,
        "the ack is in the air"
    );

    model.advance(acked_ms - 1);
    assert_eq!(model.shown().nodes[&NodeId(1)].commit_index, 0);
    model.advance(acked_ms);
    let view = model.shown();
    assert_eq!(view.nodes[&NodeId(1)].commit_index, 1);
    assert!(in_the_air(view, acked_ms).is_empty());
    assert_eq!(model.backlog(), 0);
}

/// A replay of the recording tells it the same way: the entry lands before node 2 has it, the ack
/// flies before the leader commits, and a replay told to its end hands over to the live view.
#[test]
fn a_replay_keeps_the_same_causal_order() {
    let mut model = ClusterModel::new(&[NodeId(1), NodeId(2)]);
    for event in one_append() {
        model.apply_event(event);
    }
    model.step(-1_000);
    model.replay(1.0);
    let replay_to = |model: &mut ClusterModel, at_ms: u64| {
        let ViewMode::Replay { clock_ms, .. } = model.mode else {
            panic!("the replay ended before {at_ms} ms");
        };
        model.advance_replay(at_ms as f64 - clock_ms);
    };
    let leg_ms = flight_ms(500);
    let sent_ms = 1000 + DELAY_MS;
    let landed_ms = sent_ms + leg_ms;
    let acked_ms = landed_ms + leg_ms;

    let half_way = sent_ms + leg_ms / 2;
    replay_to(&mut model, half_way);
    let view = model.view();
    assert_eq!(
        in_the_air(view, half_way),
        vec![(FlightKind::Append { entries: 1 }, 0.5)]
    );
    assert_eq!(
        view.nodes[&NodeId(2)].log.last_index(),
        0,
        "still on its way"
    );

    replay_to(&mut model, landed_ms);
    let view = model.view();
    assert_eq!(view.nodes[&NodeId(2)].log.last_index(), 1, "the dot landed");
    assert_eq!(in_the_air(view, landed_ms), vec![(FlightKind::Ack, 0.0)]);
    assert_eq!(
        view.nodes[&NodeId(1)].commit_index,
        0,
        "the ack is in the air"
    );

    replay_to(&mut model, acked_ms - 1);
    assert_eq!(model.view().nodes[&NodeId(1)].commit_index, 0);
    replay_to(&mut model, acked_ms);
    assert_eq!(
        model.mode,
        ViewMode::Live,
        "told to its end, the replay goes live"
    );
}

#[test]
fn pausing_freezes_what_was_drawn_not_what_was_known() {
    let mut model = ClusterModel::new(&[NodeId(1), NodeId(2)]);
    for event in one_append() {
        model.apply_event(event);
    }
    // The append is half way: node 2 has not taken it in yet, in the picture.
    model.advance(1000 + DELAY_MS + flight_ms(500) / 2);
    assert_eq!(model.live.nodes[&NodeId(2)].log.last_index(), 1);
    model.pause();
    let ViewMode::Paused { position } = model.mode else {
        panic!("paused");
    };
    assert_eq!(
        model
            .timeline
            .get(position)
            .and_then(Record::event)
            .map(|e| (e.node, e.seq)),
        Some((NodeId(1), 4)),
        "the send, the newest record drawn"
    );
    assert_eq!(model.view().nodes[&NodeId(2)].log.last_index(), 0);
    assert_eq!(model.view().nodes[&NodeId(1)].commit_index, 0);
}

/// A vote grant must land before the candidate is drawn as leader.
#[test]
fn the_crown_waits_for_the_vote_that_won_it() {
    use EventKind::*;
    let mut model = ClusterModel::new(&[NodeId(1), NodeId(2), NodeId(3)]);
    let request = |to| VoteRequested {
        msg: 0,
        to: NodeId(to),
        term: Term(2),
        pre_vote: false,
        last_log_index: LogIndex(0),
        last_log_term: Term(0),
    };
    let stream = vec![
        ev(1, 1, 0, timing(500)),
        ev(2, 1, 0, timing(500)),
        ev(3, 1, 0, timing(500)),
        ev(
            1,
            2,
            5000,
            RoleChanged {
                role: Role::Candidate,
                term: Term(2),
                leader_id: None,
            },
        ),
        ev(1, 3, 5000, request(2)),
        ev(1, 4, 5000, request(3)),
        ev(
            2,
            2,
            5001,
            VoteGranted {
                msg: 0,
                to: NodeId(1),
                term: Term(2),
                pre_vote: false,
            },
        ),
        ev(
            1,
            5,
            5002,
            RoleChanged {
                role: Role::Leader,
                term: Term(2),
                leader_id: Some(NodeId(1)),
            },
        ),
    ];
    for event in stream {
        model.apply_event(event);
    }
    let leg_ms = flight_ms(500);
    let requested_ms = 5000 + DELAY_MS;
    let granted_ms = requested_ms + leg_ms;
    let crowned_ms = granted_ms + leg_ms;
    model.advance(requested_ms);
    assert_eq!(model.shown().nodes[&NodeId(1)].role, Role::Candidate);
    model.advance(granted_ms);
    let view = model.shown();
    assert_eq!(
        in_the_air(view, granted_ms),
        vec![(FlightKind::VoteGranted, 0.0)],
        "both requests landed; the grant leaves"
    );
    assert_eq!(view.nodes[&NodeId(1)].role, Role::Candidate);
    assert!(view.leader().is_none());
    model.advance(crowned_ms - 1);
    assert!(model.shown().leader().is_none(), "the grant is in the air");
    model.advance(crowned_ms);
    assert_eq!(model.shown().leader().map(|n| n.id), Some(NodeId(1)));
}
