//! The layout on hand-made streams: pairing, drops, collapsed heartbeats, clock offsets, the window.

use super::*;
use crate::model::ClockOffsets;
use flotilla_shared::event::DropReason;
use flotilla_shared::{LogIndex, Term};

fn ev(node: u64, seq: u64, at_ms: u64, kind: EventKind) -> Record {
    Record::Event(Event {
        node: NodeId(node),
        seq,
        at_ms,
        kind,
    })
}

fn append(to: u64, entries: u64, msg: u64) -> EventKind {
    EventKind::AppendSent {
        to: NodeId(to),
        term: Term(2),
        prev_log_index: LogIndex(0),
        entries,
        commit: LogIndex(0),
        msg,
    }
}

fn received(from: u64, msg: u64, name: &str) -> EventKind {
    EventKind::MessageReceived {
        from: NodeId(from),
        msg,
        message: name.into(),
    }
}

/// The clock corrections the live view estimates from `records`.
fn clocks_of(records: &[Record]) -> ClockOffsets {
    let mut clocks = ClockOffsets::default();
    for record in records {
        if let Record::Event(event) = record {
            clocks.observe(event);
        }
    }
    clocks
}

/// Node 1 sends node 2 an append at 1,000 on its clock; node 2 takes it in at `received_at` on its
/// own and rejects it 1 ms later; node 1 takes the rejection in at 1,005.
fn exchange(received_at: u64) -> Vec<Record> {
    vec![
        ev(1, 1, 1_000, append(2, 1, 1)),
        ev(2, 1, received_at, received(1, 1, "append_entries")),
        ev(
            2,
            2,
            received_at + 1,
            EventKind::AppendRejected {
                to: NodeId(1),
                term: Term(2),
                reason: "log mismatch".into(),
                hint_index: None,
                msg: 1,
            },
        ),
        ev(1, 2, 1_005, received(2, 1, "append_entries_response")),
    ]
}

/// The layout of `records`, on the clock corrections the live view estimates from them.
fn run(records: &[Record], window: Window, heartbeats: bool) -> Layout {
    let clocks = clocks_of(records);
    layout(
        records.iter().enumerate().map(|(p, r)| (p as u64, r)),
        &[NodeId(1), NodeId(2), NodeId(3)],
        window,
        Options { heartbeats },
        clocks.all(),
    )
}

const ALL: Window = Window {
    from_ms: 0,
    to_ms: 10_000,
};

#[test]
fn an_arrow_runs_from_the_send_to_the_receive_whichever_stream_came_first() {
    let records = vec![
        ev(1, 1, 1_000, append(2, 1, 7)),
        ev(2, 1, 1_003, received(1, 7, "append_entries")),
        // Node 3's arrival is recorded before node 1's send of it.
        ev(3, 1, 1_004, received(1, 8, "append_entries")),
        ev(1, 2, 1_001, append(3, 1, 8)),
    ];
    let layout = run(&records, ALL, true);
    assert_eq!(layout.lanes, vec![NodeId(1), NodeId(2), NodeId(3)]);
    assert_eq!(layout.arrows.len(), 2, "{:#?}", layout.arrows);
    let to_2 = &layout.arrows[0];
    assert_eq!((to_2.from, to_2.to, to_2.msg), (NodeId(1), NodeId(2), 7));
    assert_eq!(to_2.sent.map(|e| (e.at_ms, e.position)), Some((1_000, 0)));
    assert_eq!(
        to_2.received.map(|e| (e.at_ms, e.position)),
        Some((1_003, 1))
    );
    assert_eq!(to_2.kind, FlightKind::Append { entries: 1 });
    let to_3 = &layout.arrows[1];
    assert_eq!(to_3.sent.map(|e| e.at_ms), Some(1_001));
    assert_eq!(to_3.received.map(|e| e.at_ms), Some(1_004));
    assert_eq!(to_3.kind, FlightKind::Append { entries: 1 });
    assert!(to_3.describe().contains("took 3 ms"), "{}", to_3.describe());
    assert_eq!(
        layout.offsets.values().copied().collect::<Vec<_>>(),
        [0, 0, 0]
    );
}

#[test]
fn a_dropped_message_ends_in_its_drop_and_an_unknown_arrival_stays_unknown() {
    let records = vec![
        ev(1, 1, 1_000, append(2, 0, 3)),
        ev(
            1,
            2,
            1_002,
            EventKind::MessageDropped {
                to: NodeId(2),
                msg: 3,
                reason: DropReason::Partition,
            },
        ),
        // An older node: no message number, so the arrival cannot be known.
        ev(1, 3, 1_100, append(3, 2, 0)),
    ];
    let layout = run(&records, ALL, true);
    assert_eq!(layout.arrows.len(), 2);
    let dropped = &layout.arrows[0];
    assert_eq!(dropped.received, None);
    let (end, reason) = dropped.dropped.clone().expect("dropped");
    assert_eq!((end.at_ms, end.position), (1_002, 1));
    assert_eq!(reason, "partition");
    assert!(dropped.describe().contains("dropped: partition"));
    let unknown = &layout.arrows[1];
    assert_eq!(
        (unknown.sent.map(|e| e.at_ms), unknown.received, unknown.msg),
        (Some(1_100), None, 0)
    );
    assert!(unknown.describe().contains("arrival not known"));
}

#[test]
fn heartbeats_and_the_acks_that_move_nothing_collapse() {
    let ack = |from: u64, matched: u64, msg: u64| EventKind::AppendAcked {
        from: NodeId(from),
        term: Term(2),
        match_index: LogIndex(matched),
        msg,
    };
    let records = vec![
        ev(1, 1, 1_000, append(2, 1, 1)),
        ev(1, 2, 1_005, ack(2, 1, 1)),
        ev(1, 3, 1_500, append(2, 0, 2)),
        ev(1, 4, 1_505, ack(2, 1, 2)),
    ];
    let shown = run(&records, ALL, true);
    assert_eq!(shown.arrows.len(), 4);
    assert_eq!(shown.hidden_heartbeats, 0);
    let collapsed = run(&records, ALL, false);
    assert_eq!(collapsed.hidden_heartbeats, 2);
    let kinds: Vec<_> = collapsed.arrows.iter().map(|a| a.kind).collect();
    assert_eq!(kinds, [FlightKind::Append { entries: 1 }, FlightKind::Ack]);
    // The ack is known only at its arrival: the follower does not report sending it.
    assert_eq!(collapsed.arrows[1].sent, None);
    assert_eq!(collapsed.arrows[1].received.map(|e| e.at_ms), Some(1_005));
}

#[test]
fn a_node_whose_clock_runs_behind_is_shifted_so_no_message_arrives_before_it_left() {
    // Node 2's clock is 500 ms behind node 1's; messages take 2 ms each way.
    let records = exchange(502);
    let layout = run(&records, ALL, true);
    assert_eq!(layout.offsets[&NodeId(1)], 0);
    assert_eq!(layout.offsets[&NodeId(2)], 500);
    for arrow in &layout.arrows {
        let (sent, received) = (arrow.sent.unwrap(), arrow.received.unwrap());
        assert!(received.at_ms >= sent.at_ms, "{arrow:?}");
    }
    assert_eq!(layout.arrows[0].received.unwrap().at_ms, 1_002);
    assert_eq!(layout.arrows[1].sent.unwrap().at_ms, 1_003);
}

#[test]
fn the_diagram_corrects_clocks_as_the_live_view_does_even_when_no_arrow_points_up() {
    // Node 2's clock is 40 ms ahead; messages take 2 ms each way, so every arrow points down on
    // the raw clocks and only the pair of quickest messages shows the skew.
    let records = exchange(1_042);
    let clocks = clocks_of(&records);
    let layout = run(&records, ALL, true);
    assert_eq!(clocks.offset(NodeId(2)), 40);
    assert_eq!(layout.offsets[&NodeId(2)], -40, "the ring's correction");
    assert_eq!(layout.arrows[0].received.unwrap().at_ms, 1_002);
    assert_eq!(layout.arrows[1].sent.unwrap().at_ms, 1_003);
}

#[test]
fn a_receiver_heard_one_way_only_is_moved_just_enough() {
    // Node 3 only receives, and its clock is behind: the live view cannot estimate it (no pair),
    // so the diagram moves it until its arrival meets the send.
    let records = vec![
        ev(1, 1, 1_000, append(3, 1, 1)),
        ev(3, 1, 700, received(1, 1, "append_entries")),
    ];
    let layout = run(&records, ALL, true);
    assert_eq!(layout.offsets[&NodeId(1)], 0);
    assert_eq!(layout.offsets[&NodeId(3)], 300);
    assert_eq!(layout.arrows[0].received.unwrap().at_ms, 1_000);
}

#[test]
fn only_the_window_is_laid_out_and_marks_say_what_happened() {
    let records = vec![
        ev(1, 1, 100, append(2, 1, 1)),
        ev(
            1,
            2,
            2_000,
            EventKind::RoleChanged {
                role: Role::Leader,
                term: Term(4),
                leader_id: Some(NodeId(1)),
            },
        ),
        ev(1, 3, 2_010, append(3, 1, 2)),
        ev(
            3,
            1,
            2_020,
            EventKind::CommitAdvanced {
                commit_index: LogIndex(9),
            },
        ),
        Record::Process {
            at_ms: 2_030,
            node: NodeId(2),
            state: ProcessState::Dead,
        },
        ev(1, 4, 5_000, append(2, 1, 3)),
    ];
    let window = Window {
        from_ms: 1_500,
        to_ms: 3_000,
    };
    let layout = run(&records, window, true);
    assert_eq!(layout.arrows.len(), 1);
    assert_eq!(layout.arrows[0].msg, 2);
    let marks: Vec<_> = layout
        .marks
        .iter()
        .map(|m| (m.node.0, m.position, m.label.as_str()))
        .collect();
    assert_eq!(
        marks,
        [(1, 1, "leader t4"), (3, 3, "commit 9"), (2, 4, "killed")]
    );
}

#[test]
fn a_link_fault_mark_says_the_fault_in_words() {
    let fault = |cut, delay_ms| EventKind::LinkFaultChanged {
        to: NodeId(2),
        fault: Some(flotilla_shared::api::LinkFault {
            cut,
            delay_ms,
            jitter_ms: 0,
            loss: 0.0,
        }),
    };
    let records = vec![
        ev(1, 1, 100, fault(true, 0)),
        ev(1, 2, 200, fault(false, 800)),
        ev(
            1,
            3,
            300,
            EventKind::LinkFaultChanged {
                to: NodeId(2),
                fault: None,
            },
        ),
    ];
    let labels: Vec<_> = run(&records, ALL, false)
        .marks
        .into_iter()
        .map(|m| m.label)
        .collect();
    assert_eq!(
        labels,
        [
            "link to 2: cut",
            "link to 2: slow 800±0 ms",
            "link to 2 healed"
        ]
    );
}

#[test]
fn the_timeline_hands_over_only_the_window_and_its_margin() {
    let mut timeline = Timeline::new(
        super::super::ClusterState::new(&[NodeId(1), NodeId(2)]),
        1_000,
    );
    for at in 0..100u64 {
        timeline.push(ev(1, at + 1, at * 100, append(2, 1, at + 1)));
    }
    let window = Window {
        from_ms: 5_000,
        to_ms: 6_000,
    };
    let positions: Vec<u64> = window_records(&timeline, window, u64::MAX)
        .map(|(p, _)| p)
        .collect();
    assert_eq!(positions.first(), Some(&40));
    assert_eq!(positions.last(), Some(&70));
    // Nothing past what the rest of the window has drawn.
    let drawn: Vec<u64> = window_records(&timeline, window, 55)
        .map(|(p, _)| p)
        .collect();
    assert_eq!(drawn.last(), Some(&55));
}
