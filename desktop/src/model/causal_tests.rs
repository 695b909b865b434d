//! The live view keeps causal order: a message's dot is drawn travelling before anything it may
//! have caused, and the view never trails the cluster by more than a bound.

use super::tests::ev;
use super::*;
use flotilla_shared::event::{EventKind, Role};
use flotilla_shared::{LogIndex, Term};
use std::collections::BTreeMap;

fn timing(heartbeat_ms: u64) -> EventKind {
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

/// A deterministic stream of a 5-node cluster: an election with pre-votes, then replication rounds
/// every `period_ms` (an entry every other round, heartbeats otherwise), with each node's events
/// delivered late by its own jitter, as separate streams are.
struct Stream {
    events: Vec<Event>,
    seq: [u64; 6],
    last_at: [u64; 6],
    rng: u64,
}

impl Stream {
    fn random(&mut self, below: u64) -> u64 {
        self.rng = self
            .rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.rng >> 33) % below
    }

    fn push(&mut self, node: u64, at_ms: u64, kind: EventKind) {
        let at_ms = at_ms.max(self.last_at[node as usize]);
        self.last_at[node as usize] = at_ms;
        self.seq[node as usize] += 1;
        self.events
            .push(ev(node, self.seq[node as usize], at_ms, kind));
    }

    fn cluster(heartbeat_ms: u64, period_ms: u64, rounds: u64, seed: u64) -> Vec<Event> {
        use EventKind::*;
        let mut s = Stream {
            events: Vec::new(),
            seq: [0; 6],
            last_at: [0; 6],
            rng: seed,
        };
        for node in 1..=5 {
            s.push(node, 10, timing(heartbeat_ms));
        }
        let mut t = 1_000;
        for (pre_vote, term) in [(true, 0), (false, 1)] {
            s.push(
                1,
                t,
                RoleChanged {
                    role: if pre_vote {
                        Role::PreCandidate
                    } else {
                        Role::Candidate
                    },
                    term: Term(term),
                    leader_id: None,
                },
            );
            for to in 2..=5 {
                s.push(
                    1,
                    t,
                    VoteRequested {
                        to: NodeId(to),
                        term: Term(term),
                        pre_vote,
                        last_log_index: LogIndex(0),
                        last_log_term: Term(0),
                    },
                );
            }
            for voter in 2..=5 {
                let at = t + 1 + s.random(3);
                if voter == 5 {
                    let reason = "already voted".to_string();
                    s.push(
                        voter,
                        at,
                        VoteDenied {
                            to: NodeId(1),
                            term: Term(term),
                            pre_vote,
                            reason,
                        },
                    );
                } else {
                    s.push(
                        voter,
                        at,
                        VoteGranted {
                            to: NodeId(1),
                            term: Term(term),
                            pre_vote,
                        },
                    );
                }
            }
            t += 5;
        }
        s.push(
            1,
            t,
            RoleChanged {
                role: Role::Leader,
                term: Term(1),
                leader_id: Some(NodeId(1)),
            },
        );
        let mut last_index = 0;
        for round in 0..rounds {
            let t = t + 1 + round * period_ms;
            let entries = u64::from(round % 2 == 0);
            if entries > 0 {
                last_index += 1;
                s.push(
                    1,
                    t,
                    EntryAppended {
                        first: LogIndex(last_index),
                        last: LogIndex(last_index),
                        term: Term(1),
                    },
                );
            }
            for to in 2..=5 {
                s.push(
                    1,
                    t,
                    AppendSent {
                        to: NodeId(to),
                        term: Term(1),
                        prev_log_index: LogIndex(last_index - entries),
                        entries,
                        commit: LogIndex(last_index.saturating_sub(1)),
                    },
                );
            }
            let mut acked = Vec::new();
            for follower in 2..=5 {
                let at = t + 1 + s.random(3);
                s.push(
                    follower,
                    at,
                    ElectionTimerReset {
                        deadline_ms: at + heartbeat_ms * 4,
                        timeout_ms: heartbeat_ms * 4,
                    },
                );
                if entries > 0 {
                    s.push(
                        follower,
                        at,
                        EntryAppended {
                            first: LogIndex(last_index),
                            last: LogIndex(last_index),
                            term: Term(1),
                        },
                    );
                    s.push(
                        follower,
                        at,
                        EntryPersisted {
                            index: LogIndex(last_index),
                        },
                    );
                }
                acked.push((at + 1 + s.random(2), follower));
            }
            acked.sort();
            for (at, follower) in acked {
                s.push(
                    1,
                    at,
                    AppendAcked {
                        from: NodeId(follower),
                        term: Term(1),
                        match_index: LogIndex(last_index),
                    },
                );
            }
            if entries > 0 {
                let at = s.last_at[1];
                s.push(
                    1,
                    at,
                    CommitAdvanced {
                        commit_index: LogIndex(last_index),
                    },
                );
            }
        }
        // Delivered as the desktop gets them: each node's stream a few milliseconds late.
        s.events.sort_by_key(arrival_ms);
        s.events
    }
}

/// When an event reaches the desktop: its node's stream delivers it a few milliseconds late.
fn arrival_ms(event: &Event) -> u64 {
    event.at_ms + (event.node.0 * 7) % 31
}

/// What a frame may show, checked against the stream: no receiver's event from the millisecond of a
/// send on is drawn before that message's dot landed; an ack leaves only after what it acknowledges
/// is drawn; the view trails the cluster by at most `MAX_LAG_MS`. Returns the longest flight drawn and
/// the worst lag seen, overall and for events from `steady_from_ms` on.
fn check_frames(events: &[Event], frame_ms: u64, steady_from_ms: u64) -> (u64, u64, u64) {
    let nodes: Vec<NodeId> = (1..=5).map(NodeId).collect();
    let mut model = ClusterModel::new(&nodes);
    // Each node's `(at_ms, seq)` in order; seqs run 1, 2, 3, ...
    let mut by_node: BTreeMap<NodeId, Vec<(u64, u64)>> = BTreeMap::new();
    let mut sorted: Vec<&Event> = events.iter().collect();
    sorted.sort_by_key(|e| (e.node, e.seq));
    for event in &sorted {
        by_node
            .entry(event.node)
            .or_default()
            .push((event.at_ms, event.seq));
    }
    let first_seq_from = |node: NodeId, at_ms: u64| {
        let list = &by_node[&node];
        list.get(list.partition_point(|(at, _)| *at < at_ms))
            .map(|(_, seq)| *seq)
    };
    let last_seq_until = |node: NodeId, at_ms: u64| {
        let list = &by_node[&node];
        list.partition_point(|(at, _)| *at <= at_ms) as u64
    };
    // Each message with the seq that must wait for it (a send) or that it must wait for (an ack).
    let mut messages: Vec<(&Event, Message, u64)> = events
        .iter()
        .filter_map(|event| {
            let message = message_of(event)?;
            let seq = match message.reported {
                Reported::AtSend => first_seq_from(message.to, event.at_ms)?,
                // What an ack answers happened in an earlier millisecond; within its own millisecond
                // the acking node may already be taking in the next append.
                Reported::AtArrival => last_seq_until(message.from, event.at_ms - 1),
            };
            Some((event, message, seq))
        })
        .collect();
    messages.sort_by_key(|(event, _, _)| event.at_ms);
    let end_ms = events.iter().map(|e| e.at_ms).max().unwrap_or(0) + MAX_LAG_MS + 100;
    let mut delivered = events.iter().peekable();
    let mut longest_flight_ms = 0;
    let mut worst_lag_ms = 0;
    let mut worst_steady_lag_ms = 0;
    let mut now_ms = 0;
    while now_ms <= end_ms {
        while let Some(event) = delivered.next_if(|e| arrival_ms(e) <= now_ms) {
            model.apply_event(event.clone());
        }
        model.advance(now_ms);
        let view = model.shown();
        let flights: BTreeMap<(NodeId, u64), &Flight> = view
            .flights
            .iter()
            .map(|flight| ((flight.node, flight.seq), flight))
            .collect();
        for flight in flights.values() {
            longest_flight_ms = longest_flight_ms.max(flight.end_ms - flight.start_ms);
        }
        let shown_seq = |node: NodeId| view.nodes[&node].last_seq;
        // Older messages are covered by the lag bound below.
        let from = messages.partition_point(|(e, _, _)| e.at_ms + MAX_LAG_MS + 50 < now_ms);
        for (event, message, seq) in &messages[from..] {
            let flight = flights.get(&(event.node, event.seq));
            match message.reported {
                Reported::AtSend => {
                    if shown_seq(message.to) >= *seq {
                        assert!(
                            shown_seq(event.node) >= event.seq,
                            "at {now_ms}: node {} shows event {seq} before the send {event:?}",
                            message.to
                        );
                        assert!(
                            flight.is_none_or(|f| f.end_ms <= now_ms),
                            "at {now_ms}: node {} shows event {seq} while {event:?} is in the air",
                            message.to
                        );
                    }
                }
                Reported::AtArrival => {
                    let left = flight.is_some_and(|f| f.start_ms <= now_ms);
                    if left || shown_seq(event.node) >= event.seq {
                        assert!(
                            shown_seq(message.from) >= *seq,
                            "at {now_ms}: {event:?} left before node {} took in what it acks",
                            message.from
                        );
                    }
                    if shown_seq(event.node) >= event.seq {
                        assert!(flight.is_none_or(|f| f.end_ms <= now_ms));
                    }
                }
            }
        }
        for (node, list) in &by_node {
            let due = last_seq_until(*node, now_ms.saturating_sub(MAX_LAG_MS));
            assert!(
                shown_seq(*node) >= due,
                "at {now_ms}: node {node} trails by more than {MAX_LAG_MS} ms"
            );
            if let Some((at_ms, _)) = list.get(shown_seq(*node) as usize) {
                let lag_ms = now_ms.saturating_sub(*at_ms);
                worst_lag_ms = worst_lag_ms.max(lag_ms);
                if *at_ms >= steady_from_ms {
                    worst_steady_lag_ms = worst_steady_lag_ms.max(lag_ms);
                }
            }
        }
        now_ms += frame_ms;
    }
    assert_eq!(model.backlog(), 0, "everything is drawn in the end");
    // And the view ends at the truth (timers aside: the view draws them on its own clock).
    let without_timers = |state: &ClusterState| -> Vec<NodeView> {
        state
            .nodes
            .values()
            .map(|node| NodeView {
                election_deadline_ms: None,
                ..node.clone()
            })
            .collect()
    };
    assert_eq!(without_timers(model.shown()), without_timers(&model.live));
    (longest_flight_ms, worst_lag_ms, worst_steady_lag_ms)
}

#[test]
fn at_slow_tempo_every_dot_flies_its_full_time_and_the_view_keeps_up() {
    // 10x slower than real: heartbeat 500 ms; network and disks still answer within milliseconds.
    // The election is over at 1010; rounds run every 500 ms from 1011 to 6511.
    let events = Stream::cluster(500, 500, 12, 7);
    let leg_ms = flight_ms(500);
    let (longest_flight_ms, worst_lag_ms, steady_lag_ms) = check_frames(&events, 5, 4_000);
    assert_eq!(longest_flight_ms, leg_ms, "dots fly their full time");
    // Four legs of election, then a round trip: the most the view falls behind.
    assert!(
        worst_lag_ms <= DELAY_MS + 6 * leg_ms,
        "worst lag {worst_lag_ms} ms"
    );
    // Caught up a few heartbeats later: a round trip behind its delay at most.
    assert!(
        steady_lag_ms <= DELAY_MS + 2 * leg_ms + 10,
        "steady lag {steady_lag_ms} ms"
    );
}

#[test]
fn at_full_speed_dots_get_quicker_and_the_lag_stays_bounded() {
    // Real speed: heartbeat 50 ms and a replication round every 3 ms.
    let events = Stream::cluster(50, 3, 300, 11);
    let (longest_flight_ms, worst_lag_ms, _) = check_frames(&events, 4, 0);
    assert!(longest_flight_ms <= flight_ms(50));
    assert!(
        worst_lag_ms <= MAX_LAG_MS + 4,
        "worst lag {worst_lag_ms} ms"
    );
}
