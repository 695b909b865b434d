use super::*;
use flotilla_shared::event::{EventKind, Role};
use flotilla_shared::{LogIndex, Term};

pub(super) fn ev(node: u64, seq: u64, at_ms: u64, kind: EventKind) -> Event {
    Event {
        node: NodeId(node),
        seq,
        at_ms,
        kind,
    }
}

fn nodes() -> Vec<NodeId> {
    vec![NodeId(1), NodeId(2), NodeId(3)]
}

/// Node 1 campaigns, wins with node 2's vote (node 3 denies), then replicates two entries.
fn election_and_replication() -> Vec<Event> {
    use EventKind::*;
    vec![
        ev(
            1,
            1,
            1000,
            ElectionTimerReset {
                deadline_ms: 1300,
                timeout_ms: 300,
            },
        ),
        ev(
            2,
            1,
            1000,
            ElectionTimerReset {
                deadline_ms: 1400,
                timeout_ms: 400,
            },
        ),
        ev(1, 2, 1300, TermChanged { term: Term(1) }),
        ev(
            1,
            3,
            1300,
            RoleChanged {
                role: Role::Candidate,
                term: Term(1),
                leader_id: None,
            },
        ),
        ev(
            1,
            4,
            1300,
            VoteRequested {
                msg: 0,
                to: NodeId(2),
                term: Term(1),
                pre_vote: false,
                last_log_index: LogIndex(0),
                last_log_term: Term(0),
            },
        ),
        ev(
            1,
            5,
            1300,
            VoteRequested {
                msg: 0,
                to: NodeId(3),
                term: Term(1),
                pre_vote: false,
                last_log_index: LogIndex(0),
                last_log_term: Term(0),
            },
        ),
        ev(
            2,
            2,
            1301,
            VoteGranted {
                msg: 0,
                to: NodeId(1),
                term: Term(1),
                pre_vote: false,
            },
        ),
        ev(
            3,
            1,
            1301,
            VoteDenied {
                msg: 0,
                to: NodeId(1),
                term: Term(1),
                pre_vote: false,
                reason: "already voted for 3".into(),
            },
        ),
        ev(
            1,
            6,
            1302,
            RoleChanged {
                role: Role::Leader,
                term: Term(1),
                leader_id: Some(NodeId(1)),
            },
        ),
        ev(
            1,
            7,
            1302,
            EntryAppended {
                first: LogIndex(1),
                last: LogIndex(1),
                term: Term(1),
            },
        ),
        ev(
            1,
            8,
            1303,
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
            3,
            1304,
            EntryAppended {
                first: LogIndex(1),
                last: LogIndex(2),
                term: Term(1),
            },
        ),
        ev(2, 4, 1305, EntryPersisted { index: LogIndex(2) }),
        ev(1, 9, 1305, EntryPersisted { index: LogIndex(1) }),
        ev(
            1,
            10,
            1306,
            AppendAcked {
                msg: 0,
                from: NodeId(2),
                term: Term(1),
                match_index: LogIndex(1),
            },
        ),
        ev(
            1,
            11,
            1306,
            CommitAdvanced {
                commit_index: LogIndex(1),
            },
        ),
        ev(
            1,
            12,
            1310,
            AppendSent {
                msg: 0,
                to: NodeId(3),
                term: Term(1),
                prev_log_index: LogIndex(1),
                entries: 0,
                commit: LogIndex(1),
            },
        ),
    ]
}

#[test]
fn scripted_stream_gives_exact_roles_terms_logs_and_commit() {
    let mut model = ClusterModel::new(&nodes());
    for event in election_and_replication() {
        model.apply_event(event);
    }
    let state = &model.live;
    let one = &state.nodes[&NodeId(1)];
    assert_eq!(one.role, Role::Leader);
    assert_eq!(one.term, Term(1));
    assert_eq!(one.leader_id, Some(NodeId(1)));
    assert_eq!(one.log.last_index(), 1);
    assert_eq!(one.log.term_at(1), Some(1));
    assert_eq!(one.commit_index, 1);
    assert_eq!(one.persisted_index, 1);
    assert_eq!(
        one.election_deadline_ms, None,
        "a leader runs no election timer"
    );
    let two = &state.nodes[&NodeId(2)];
    assert_eq!(two.role, Role::Follower);
    assert_eq!(two.log.last_index(), 2);
    assert_eq!(two.persisted_index, 2);
    assert_eq!(two.election_deadline_ms, Some(1400));
    assert_eq!(state.leader().map(|n| n.id), Some(NodeId(1)));
    assert_eq!(state.commits.iter().map(|(_, n)| n).sum::<u64>(), 1);
}

#[test]
fn flights_follow_the_messages_with_reasons_and_counts() {
    let mut model = ClusterModel::new(&nodes());
    for event in election_and_replication() {
        model.apply_event(event);
    }
    let kinds: Vec<(u64, u64, FlightKind)> = model
        .live
        .flights
        .iter()
        .map(|f| (f.from.0, f.to.0, f.kind))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (1, 2, FlightKind::VoteRequest),
            (1, 3, FlightKind::VoteRequest),
            (2, 1, FlightKind::VoteGranted),
            (3, 1, FlightKind::VoteDenied),
            (1, 2, FlightKind::Append { entries: 1 }),
            (2, 1, FlightKind::Ack),
            (1, 3, FlightKind::Heartbeat),
        ]
    );
    let denied = &model.live.flights[3];
    assert_eq!(denied.detail, "already voted for 3");
    // An ack is reported on arrival: its flight ends at the event.
    let ack = &model.live.flights[5];
    assert_eq!(ack.end_ms, 1306);
    assert!(ack.start_ms < ack.end_ms);
    let heartbeat = &model.live.flights[6];
    assert_eq!(heartbeat.start_ms, 1310);
    assert_eq!(heartbeat.progress(1310), Some(0.0));
    assert_eq!(heartbeat.progress(1309), None);
    assert_eq!(heartbeat.progress(heartbeat.end_ms), Some(1.0));
}

#[test]
fn truncation_and_conflicting_append_rewrite_the_log() {
    let mut model = ClusterModel::new(&nodes());
    use EventKind::*;
    model.apply_event(ev(
        2,
        1,
        10,
        EntryAppended {
            first: LogIndex(1),
            last: LogIndex(5),
            term: Term(1),
        },
    ));
    model.apply_event(ev(2, 2, 11, EntryPersisted { index: LogIndex(5) }));
    model.apply_event(ev(2, 3, 12, LogTruncated { index: LogIndex(3) }));
    model.apply_event(ev(
        2,
        4,
        13,
        EntryAppended {
            first: LogIndex(4),
            last: LogIndex(6),
            term: Term(2),
        },
    ));
    let two = &model.live.nodes[&NodeId(2)];
    assert_eq!(two.log.last_index(), 6);
    assert_eq!(two.log.term_at(3), Some(1));
    assert_eq!(two.log.term_at(4), Some(2));
    assert_eq!(two.log.term_at(7), None);
    assert_eq!(
        two.persisted_index, 3,
        "truncated entries are no longer durable"
    );
}

#[test]
fn paused_view_rebuilds_an_earlier_moment_and_live_returns() {
    let mut model = ClusterModel::new(&nodes());
    for event in election_and_replication() {
        model.apply_event(event);
    }
    // Position 3 is node 1 becoming a candidate.
    model.mode = ViewMode::Paused { position: 3 };
    assert_eq!(model.view().nodes[&NodeId(1)].role, Role::Candidate);
    assert_eq!(model.view_time_ms(99_999), 1300);
    model.step(5);
    assert_eq!(model.mode, ViewMode::Paused { position: 8 });
    assert_eq!(model.view().nodes[&NodeId(1)].role, Role::Leader);
    model.step(-100);
    assert_eq!(model.mode, ViewMode::Paused { position: 0 });
    model.replay(2.0);
    model.advance_replay(100.0);
    assert_eq!(model.view_time_ms(0), 1200);
    model.advance_replay(10_000.0);
    assert_eq!(
        model.mode,
        ViewMode::Live,
        "replay reaching the end goes live"
    );
}

#[test]
fn bounded_recording_still_rebuilds_exact_states() {
    let capacity = 5_000;
    let mut model = ClusterModel::with_capacity(&nodes(), capacity);
    let mut expected_commit_at = Vec::new();
    for i in 1..=12_000u64 {
        model.apply_event(ev(
            1,
            i,
            i,
            EventKind::CommitAdvanced {
                commit_index: LogIndex(i),
            },
        ));
        expected_commit_at.push(i);
    }
    assert_eq!(model.timeline.len(), capacity);
    assert_eq!(model.timeline.start(), 7_000);
    for position in [7_000u64, 7_999, 9_500, 11_999] {
        let state = model.timeline.state_at(position);
        assert_eq!(state.nodes[&NodeId(1)].commit_index, position + 1);
    }
}

#[test]
fn status_fills_what_events_did_not_say() {
    use flotilla_shared::api::{PeerStatus, Status};
    let mut model = ClusterModel::new(&nodes());
    let status = Status {
        id: NodeId(3),
        role: Role::Leader,
        term: Term(4),
        voted_for: Some(NodeId(3)),
        leader_id: Some(NodeId(3)),
        commit_index: LogIndex(7),
        last_applied: LogIndex(7),
        last_log_index: LogIndex(8),
        last_log_term: Term(4),
        persisted_index: LogIndex(8),
        peers: vec![PeerStatus {
            id: NodeId(1),
            addr: "x".into(),
            match_index: LogIndex(7),
            next_index: LogIndex(8),
            reachable: true,
        }],
        isolated_from: vec![],
        heartbeat_ms: 500,
        election_timeout_ms: [1500, 3000],
        snapshot_index: LogIndex(0),
        snapshot_term: Term(0),
        first_log_index: LogIndex(1),
        members: vec![],
        config_index: LogIndex(0),
        link_faults: vec![],
        disk_write_delay_ms: 0,
    };
    model.record(Record::Status {
        at_ms: 5,
        status: Box::new(status),
    });
    model.record(Record::Process {
        at_ms: 6,
        node: NodeId(2),
        state: ProcessState::Dead,
    });
    let state = &model.live;
    assert_eq!(state.leader().map(|n| n.id), Some(NodeId(3)));
    assert_eq!(state.nodes[&NodeId(3)].log.last_index(), 8);
    assert_eq!(
        state.nodes[&NodeId(3)].log.term_at(8),
        Some(0),
        "term not seen yet"
    );
    assert_eq!(state.nodes[&NodeId(3)].peers[0].match_index, LogIndex(7));
    assert_eq!(state.nodes[&NodeId(2)].process, ProcessState::Dead);
    assert!(!state.nodes[&NodeId(2)].is_up());
}

#[test]
fn news_sent_before_a_kill_does_not_revive_the_node() {
    let mut model = ClusterModel::new(&nodes());
    model.record(Record::Process {
        at_ms: 2000,
        node: NodeId(2),
        state: ProcessState::Dead,
    });
    // An event the node sent just before it died, read from the socket after the kill.
    model.apply_event(ev(2, 9, 1990, EventKind::TermChanged { term: Term(3) }));
    assert_eq!(model.live.nodes[&NodeId(2)].process, ProcessState::Dead);
    // After a restart, its news counts again.
    model.record(Record::Process {
        at_ms: 3000,
        node: NodeId(2),
        state: ProcessState::Running,
    });
    model.record(Record::Reachable {
        at_ms: 3001,
        node: NodeId(2),
        reachable: false,
    });
    model.apply_event(ev(2, 10, 3100, EventKind::TermChanged { term: Term(4) }));
    let two = &model.live.nodes[&NodeId(2)];
    assert_eq!(two.process, ProcessState::Running);
    assert!(two.reachable);
}
