//! Numbered messages: a dot lands only where its receiver reported taking it in; drops stop where
//! they died; an unknown arrival stops short; clock offsets between streams are corrected.

use super::causal_tests::timing;
use super::tests::ev;
use super::*;
use flotilla_shared::event::{DropReason, EventKind, Role};
use flotilla_shared::{LogIndex, Term};
use std::collections::{BTreeMap, BTreeSet};

fn append(to: u64, msg: u64, entries: u64) -> EventKind {
    EventKind::AppendSent {
        to: NodeId(to),
        term: Term(1),
        prev_log_index: LogIndex(0),
        entries,
        commit: LogIndex(0),
        msg,
    }
}

fn received(from: u64, msg: u64) -> EventKind {
    EventKind::MessageReceived {
        from: NodeId(from),
        msg,
        message: "append_entries".into(),
    }
}

fn rejected(to: u64, msg: u64) -> EventKind {
    EventKind::AppendRejected {
        to: NodeId(to),
        term: Term(1),
        reason: "log mismatch".into(),
        hint_index: None,
        msg,
    }
}

fn leader_of_three() -> Vec<Event> {
    vec![
        ev(1, 1, 900, timing(500)),
        ev(2, 1, 900, timing(500)),
        ev(3, 1, 900, timing(500)),
        ev(
            1,
            2,
            900,
            EventKind::RoleChanged {
                role: Role::Leader,
                term: Term(1),
                leader_id: Some(NodeId(1)),
            },
        ),
    ]
}

/// The `(sender, msg)` of every receive in `records`.
fn receives(records: &[Record]) -> BTreeSet<(NodeId, u64)> {
    records
        .iter()
        .filter_map(|record| match &record.event()?.kind {
            EventKind::MessageReceived { from, msg, .. } => Some((*from, *msg)),
            _ => None,
        })
        .collect()
}

/// Draws the live view every millisecond up to `until_ms` and checks every frame: a dot at its receiver, or
/// a flight that will land, only for a receive in the script (or an ack, which its receiver reports).
/// Returns the furthest each `(sender, msg, event seq)` got and how it ended.
fn frames(
    model: &mut ClusterModel,
    records: &[Record],
    from_ms: u64,
    until_ms: u64,
) -> BTreeMap<(NodeId, u64, u64), (f32, Arrival, bool)> {
    let receives = receives(records);
    let mut seen = BTreeMap::new();
    let mut now = from_ms;
    while now <= until_ms {
        model.advance(now);
        for flight in &model.shown().flights {
            let reported =
                flight.kind == FlightKind::Ack || receives.contains(&(flight.from, flight.msg));
            if flight.arrival == Arrival::Lands {
                assert!(reported, "a landing without a receive: {flight:?}");
            }
            let Some(drawn) = flight.drawn(now) else {
                continue;
            };
            assert!(
                reported || (!drawn.landed && drawn.progress <= 0.85 + f32::EPSILON),
                "drawn at its receiver without a receive at {now}: {flight:?}"
            );
            let entry = seen
                .entry((flight.from, flight.msg, flight.seq))
                .or_insert((0.0f32, flight.arrival, false));
            entry.0 = entry.0.max(drawn.progress);
            entry.1 = flight.arrival;
            entry.2 |= drawn.landed;
        }
        now += 1;
    }
    seen
}

#[test]
fn only_a_reported_receive_lands_a_dot_drops_stop_where_they_died_and_the_rest_stop_short() {
    let mut records: Vec<Record> = leader_of_three().into_iter().map(Record::Event).collect();
    records.extend(
        [
            // Taken in by node 2 a millisecond later.
            ev(1, 3, 1000, append(2, 1, 1)),
            ev(2, 2, 1001, received(1, 1)),
            ev(
                2,
                3,
                1001,
                EventKind::EntryAppended {
                    first: LogIndex(1),
                    last: LogIndex(1),
                    term: Term(1),
                },
            ),
            // Node 1's link to node 3 is cut: the heartbeat dies on it.
            ev(1, 4, 1000, append(3, 2, 0)),
            ev(
                1,
                5,
                1000,
                EventKind::MessageDropped {
                    to: NodeId(3),
                    msg: 2,
                    reason: DropReason::LinkCut,
                },
            ),
        ]
        .map(Record::Event),
    );
    // Node 3 is killed; what is sent to it later is never taken in.
    records.push(Record::Process {
        at_ms: 1050,
        node: NodeId(3),
        state: ProcessState::Dead,
    });
    records.push(Record::Event(ev(1, 6, 1100, append(3, 3, 0))));
    // An older node's message: no number, so its arrival is not known either.
    records.push(Record::Event(ev(1, 7, 1200, append(2, 0, 0))));
    let mut model = ClusterModel::new(&[NodeId(1), NodeId(2), NodeId(3)]);
    for record in &records {
        model.record(record.clone());
    }

    // The recorded truth (a paused view) ends each message the same way, on the nodes' clocks.
    let ends: Vec<(u64, Arrival)> = model
        .live
        .flights
        .iter()
        .map(|f| (f.msg, f.arrival))
        .collect();
    assert_eq!(
        ends,
        vec![
            (1, Arrival::Lands),
            (2, Arrival::Dropped(DropReason::LinkCut)),
            (3, Arrival::Unknown),
            (0, Arrival::Unknown),
        ]
    );
    assert_eq!(model.live.flights[0].end_ms, 1001);

    // The entry reaches node 2's log only when its dot lands.
    let sent_ms = 1000 + DELAY_MS;
    // The receive (at 1001) is scheduled a millisecond after the send.
    model.advance(sent_ms + 1);
    let landing = model
        .shown()
        .flights
        .iter()
        .find(|f| f.msg == 1)
        .expect("the append is in the air")
        .clone();
    assert_eq!(landing.arrival, Arrival::Lands);
    assert_eq!(landing.start_ms, sent_ms);
    assert!(landing.end_ms >= sent_ms + flight_ms(500) / 2);
    model.advance(landing.end_ms - 1);
    assert_eq!(model.shown().nodes[&NodeId(2)].log.last_index(), 0);
    model.advance(landing.end_ms);
    assert_eq!(model.shown().nodes[&NodeId(2)].log.last_index(), 1);

    let mut model = ClusterModel::new(&[NodeId(1), NodeId(2), NodeId(3)]);
    for record in &records {
        model.record(record.clone());
    }
    let seen = frames(
        &mut model,
        &records,
        900,
        1200 + DELAY_MS + UNKNOWN_HOLD_MS + FADE_MS + 100,
    );
    let of = |msg: u64, seq: u64| seen[&(NodeId(1), msg, seq)];
    assert_eq!(of(1, 3), (1.0, Arrival::Lands, true));
    let (cut_at, cut_arrival, cut_landed) = of(2, 4);
    assert_eq!(cut_arrival, Arrival::Dropped(DropReason::LinkCut));
    assert!(
        !cut_landed && (cut_at - 0.5).abs() < 1e-3,
        "stops on the link: {cut_at}"
    );
    let (dead_at, dead_arrival, dead_landed) = of(3, 6);
    assert_eq!(dead_arrival, Arrival::Unknown);
    assert!(!dead_landed && dead_at <= UNKNOWN_STOP && dead_at > UNKNOWN_STOP - 0.01);
    let (old_at, old_arrival, old_landed) = of(0, 7);
    assert_eq!(old_arrival, Arrival::Unknown);
    assert!(!old_landed && old_at <= UNKNOWN_STOP);
    // Every dot is gone once held and faded.
    assert!(model.shown().flights.iter().all(|f| f
        .drawn(1200 + DELAY_MS + UNKNOWN_HOLD_MS + FADE_MS + 100)
        .is_none()));

    let dead = model.shown().flights.iter().find(|f| f.msg == 3).unwrap();
    assert_eq!(
        dead.arrival_words(Some("dead")),
        "arrival unknown: node 3 is dead"
    );
}

#[test]
fn a_receive_learned_late_lands_the_waiting_dot_at_its_real_time() {
    let mut model = ClusterModel::new(&[NodeId(1), NodeId(2)]);
    for event in leader_of_three()
        .into_iter()
        .take(2)
        .chain([ev(1, 2, 900, append(2, 0, 0))])
    {
        model.apply_event(event);
    }
    // A slow link: sent at 1000, taken in at 1800.
    model.apply_event(ev(1, 3, 1000, append(2, 9, 1)));
    let sent_ms = 1000 + DELAY_MS;
    model.advance(sent_ms + 300);
    let waiting = model
        .shown()
        .flights
        .iter()
        .find(|f| f.msg == 9)
        .unwrap()
        .clone();
    assert_eq!(
        waiting.arrival,
        Arrival::Unknown,
        "nobody said it arrived yet"
    );
    let drawn = waiting.drawn(sent_ms + 300).unwrap();
    assert!(!drawn.landed && drawn.progress <= UNKNOWN_STOP);

    model.apply_event(ev(2, 2, 1800, received(1, 9)));
    let mut landed_at = None;
    for now in (sent_ms + 300..=1800 + DELAY_MS + 10).step_by(1) {
        model.advance(now);
        let flight = model.shown().flights.iter().find(|f| f.msg == 9).unwrap();
        if flight.drawn(now).is_some_and(|d| d.landed) {
            landed_at = Some(now);
            break;
        }
    }
    assert_eq!(
        landed_at,
        Some(1800 + DELAY_MS),
        "the slow link's dot is 800 ms in flight"
    );
}

/// Node 2's clock runs `skew` ms ahead of node 1's; a message each way takes 1 ms.
fn skewed_exchange(skew: i64) -> Vec<Event> {
    let on_two = |at: u64| at.saturating_add_signed(skew);
    let mut events = leader_of_three().into_iter().take(2).collect::<Vec<_>>();
    events[1].at_ms = on_two(900);
    let mut seq1 = 2;
    let mut seq2 = 1;
    for round in 0..4u64 {
        let t = 1000 + round * 600;
        seq1 += 1;
        events.push(ev(1, seq1, t, append(2, round + 1, 1)));
        seq2 += 1;
        events.push(ev(2, seq2, on_two(t + 1), received(1, round + 1)));
        seq2 += 1;
        events.push(ev(2, seq2, on_two(t + 2), rejected(1, round + 1)));
        seq1 += 1;
        events.push(ev(1, seq1, t + 3, received(2, round + 1)));
    }
    events
}

#[test]
fn clock_offsets_between_streams_are_estimated_from_message_pairs_and_corrected() {
    for skew in [700i64, -700] {
        let events = skewed_exchange(skew);
        let mut model = ClusterModel::new(&[NodeId(1), NodeId(2)]);
        let records: Vec<Record> = events.iter().cloned().map(Record::Event).collect();
        for event in events {
            model.apply_event(event);
        }
        assert_eq!(model.clock_offsets().offset(NodeId(2)), skew);
        assert_eq!(model.clock_offsets().offset(NodeId(1)), 0);
        let seen = frames(&mut model, &records, 900, 1000 + 4 * 600 + 2_000);
        // Every message lands, whichever stream's clock is ahead.
        for ((from, msg, _), (_, arrival, landed)) in &seen {
            assert_eq!(*arrival, Arrival::Lands, "{from} #{msg} with skew {skew}");
            assert!(landed);
        }
        // Once the offset is known, a 1 ms hop is drawn as a short flight, not 700 ms.
        let last = model
            .shown()
            .flights
            .iter()
            .rev()
            .find(|f| f.from == NodeId(1))
            .unwrap();
        assert!(
            last.end_ms - last.start_ms <= flight_ms(500),
            "skew {skew}: {last:?}"
        );
    }
}

#[test]
fn the_recording_pairs_each_send_with_its_receive_or_drop_on_one_clock() {
    let events = skewed_exchange(700);
    let mut model = ClusterModel::new(&[NodeId(1), NodeId(2)]);
    for event in events.iter().cloned() {
        model.apply_event(event);
    }
    model.apply_event(ev(1, 20, 4000, append(2, 50, 0)));
    model.apply_event(ev(
        1,
        21,
        4001,
        EventKind::MessageDropped {
            to: NodeId(2),
            msg: 50,
            reason: DropReason::Loss,
        },
    ));
    let timeline = &model.timeline;
    let end = timeline.end() - 1;
    let words = |event: &Event, until: u64| timeline.pairs().describe_other_end(event, until);
    // The last round: its send, the receive on node 2's clock (700 ms ahead), the reply's receive.
    let send = &events[events.len() - 4];
    let receive = &events[events.len() - 3];
    assert_eq!(
        words(send, end).as_deref(),
        Some("-> taken in by node 2 after 1 ms")
    );
    assert_eq!(
        words(receive, end).as_deref(),
        Some("<- sent as append_sent by node 1, 1 ms in flight")
    );
    // Nothing recorded after the moment shown is told.
    let send_position = timeline
        .iter()
        .find(|(_, record)| record.event() == Some(send))
        .map(|(position, _)| position)
        .unwrap();
    assert_eq!(
        words(send, send_position).as_deref(),
        Some("-> arrival not reported (yet)")
    );
    let lost = timeline.get(end - 1).and_then(Record::event).unwrap();
    assert_eq!(
        words(lost, end).as_deref(),
        Some("-> dropped: lost on a lossy link")
    );
    // An unnumbered message has no pair.
    assert_eq!(words(&ev(1, 1, 1, append(2, 0, 0)), end), None);
}

fn leader_is(node: u64, term: u64) -> EventKind {
    EventKind::RoleChanged {
        role: Role::Leader,
        term: Term(term),
        leader_id: Some(NodeId(node)),
    }
}

#[test]
fn the_failover_stopwatch_times_a_new_leader_and_its_first_commit() {
    let mut model = ClusterModel::new(&[NodeId(1), NodeId(2), NodeId(3)]);
    for event in leader_of_three() {
        model.apply_event(event);
    }
    assert_eq!(model.live.failovers.running, None);
    model.record(Record::Process {
        at_ms: 2_000,
        node: NodeId(1),
        state: ProcessState::Dead,
    });
    let running = model.live.failovers.running.clone().expect("started");
    assert_eq!(running.cause, "leader 1 killed");
    // A leader of the old term is no new leader; a commit before the new leader is not counted.
    model.apply_event(ev(3, 5, 2_100, leader_is(3, 1)));
    model.apply_event(ev(
        3,
        6,
        2_200,
        EventKind::CommitAdvanced {
            commit_index: LogIndex(1),
        },
    ));
    model.apply_event(ev(2, 5, 3_500, leader_is(2, 2)));
    assert_eq!(
        model
            .live
            .failovers
            .running
            .as_ref()
            .and_then(Failover::to_leader_ms),
        Some(1_500)
    );
    model.apply_event(ev(
        2,
        6,
        3_600,
        EventKind::CommitAdvanced {
            commit_index: LogIndex(2),
        },
    ));
    assert_eq!(model.live.failovers.running, None);
    let done = &model.live.failovers.past[0];
    assert_eq!(
        done.new_leader.map(|(node, term, _)| (node, term)),
        Some((NodeId(2), Term(2)))
    );
    assert_eq!(
        (done.to_leader_ms(), done.to_commit_ms()),
        (Some(1_500), Some(1_600))
    );
    // The live view times it the same way, on the records' own clocks.
    model.advance(10_000);
    let shown = &model.shown().failovers.past[0];
    assert_eq!(shown.shown_started_ms, 2_000 + DELAY_MS);
    assert_eq!(
        (shown.to_leader_ms(), shown.to_commit_ms()),
        (Some(1_500), Some(1_600))
    );
}

#[test]
fn isolating_a_follower_does_not_start_the_stopwatch_and_a_later_kill_is_timed_from_the_kill() {
    let mut model = ClusterModel::new(&[NodeId(1), NodeId(2), NodeId(3)]);
    for event in leader_of_three() {
        model.apply_event(event);
    }
    // Node 3 isolated: every other node, the leader too, lists it as cut off.
    model.apply_event(ev(
        1,
        10,
        2_000,
        EventKind::PartitionChanged {
            isolated_from: vec![NodeId(3)],
        },
    ));
    assert_eq!(
        model.live.failovers.running, None,
        "the leader still reaches node 2, a majority with itself"
    );
    model.record(Record::Process {
        at_ms: 3_000,
        node: NodeId(1),
        state: ProcessState::Dead,
    });
    let running = model.live.failovers.running.clone().expect("started");
    assert_eq!(running.cause, "leader 1 killed");
    assert_eq!(running.started_ms, 3_000);
}

#[test]
fn cutting_the_leaders_links_starts_the_stopwatch_only_once_it_cannot_reach_a_majority() {
    let cut = |to: u64| EventKind::LinkFaultChanged {
        to: NodeId(to),
        fault: Some(flotilla_shared::api::LinkFault {
            cut: true,
            ..Default::default()
        }),
    };
    let mut model = ClusterModel::new(&[NodeId(1), NodeId(2), NodeId(3)]);
    for event in leader_of_three() {
        model.apply_event(event);
    }
    model.apply_event(ev(1, 10, 2_000, cut(2)));
    assert_eq!(
        model.live.failovers.running, None,
        "one follower still hears it"
    );
    model.apply_event(ev(1, 11, 2_100, cut(3)));
    assert_eq!(
        model
            .live
            .failovers
            .running
            .as_ref()
            .map(|f| f.cause.as_str()),
        Some("leader 1's links cut to 2 nodes")
    );
    // Healed before anyone took over: the table says so.
    model.apply_event(ev(
        1,
        12,
        2_500,
        EventKind::LinkFaultChanged {
            to: NodeId(2),
            fault: None,
        },
    ));
    model.apply_event(ev(
        1,
        13,
        2_600,
        EventKind::LinkFaultChanged {
            to: NodeId(3),
            fault: None,
        },
    ));
    assert_eq!(model.live.failovers.running, None);
    assert_eq!(
        model.live.failovers.past[0].abandoned.as_deref(),
        Some("the links were healed before a new leader")
    );
}

#[test]
fn a_leader_that_stops_answering_starts_the_stopwatch_and_answering_again_ends_it() {
    let mut model = ClusterModel::new(&[NodeId(1), NodeId(2), NodeId(3)]);
    for event in leader_of_three() {
        model.apply_event(event);
    }
    let reachable = |at_ms: u64, reachable: bool| Record::Reachable {
        at_ms,
        node: NodeId(1),
        reachable,
    };
    model.record(reachable(2_000, false));
    assert_eq!(
        model
            .live
            .failovers
            .running
            .as_ref()
            .map(|f| f.cause.as_str()),
        Some("leader 1 stopped answering")
    );
    model.record(reachable(2_250, true));
    assert_eq!(model.live.failovers.running, None);
    assert_eq!(
        model.live.failovers.past[0].abandoned.as_deref(),
        Some("the leader answered again before a new leader")
    );
    // Partitioned off: timed to the new leader of term 2 and its first commit.
    model.apply_event(ev(
        1,
        20,
        3_000,
        EventKind::PartitionChanged {
            isolated_from: vec![NodeId(2), NodeId(3)],
        },
    ));
    assert_eq!(
        model
            .live
            .failovers
            .running
            .as_ref()
            .map(|f| f.cause.as_str()),
        Some("leader 1 cut off by a partition")
    );
    model.apply_event(ev(3, 20, 3_400, leader_is(3, 2)));
    model.apply_event(ev(
        3,
        21,
        3_450,
        EventKind::CommitAdvanced {
            commit_index: LogIndex(2),
        },
    ));
    let done = model.live.failovers.past.back().unwrap();
    assert_eq!(
        (done.to_leader_ms(), done.to_commit_ms()),
        (Some(400), Some(450))
    );
}
