//! The live view keeps causal order over a long generated stream: a 5-node cluster's election and
//! replication rounds, every frame checked against what the stream says happened first.

use super::causal_tests::timing;
use super::tests::ev;
use super::*;
use flotilla_shared::event::{EventKind, Role};
use flotilla_shared::{LogIndex, Term};
use std::collections::BTreeMap;

/// A deterministic stream of a 5-node cluster: an election with pre-votes, then replication rounds
/// every `period_ms` (an entry every other round, heartbeats otherwise), with each node's events
/// delivered late by its own jitter, as separate streams are.
struct Stream {
    events: Vec<Event>,
    seq: [u64; 6],
    last_at: [u64; 6],
    rng: u64,
    /// Whether messages carry numbers and their receivers report them (`message_received`).
    numbered: bool,
    msg: [u64; 6],
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

    /// The number of `node`'s next message (0 in an unnumbered stream).
    fn next_msg(&mut self, node: u64) -> u64 {
        if !self.numbered {
            return 0;
        }
        self.msg[node as usize] += 1;
        self.msg[node as usize]
    }

    /// In a numbered stream, `node` takes in message `msg` from `from` at `at_ms`.
    fn receive(&mut self, node: u64, at_ms: u64, from: u64, msg: u64) {
        if self.numbered {
            self.push(
                node,
                at_ms,
                EventKind::MessageReceived {
                    from: NodeId(from),
                    msg,
                    message: "raft".into(),
                },
            );
        }
    }

    fn cluster(heartbeat_ms: u64, period_ms: u64, rounds: u64, seed: u64) -> Vec<Event> {
        Self::generate(heartbeat_ms, period_ms, rounds, seed, false)
    }

    fn generate(
        heartbeat_ms: u64,
        period_ms: u64,
        rounds: u64,
        seed: u64,
        numbered: bool,
    ) -> Vec<Event> {
        use EventKind::*;
        let mut s = Stream {
            events: Vec::new(),
            seq: [0; 6],
            last_at: [0; 6],
            rng: seed,
            numbered,
            msg: [0; 6],
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
            let mut requests = Vec::new();
            for to in 2..=5 {
                let msg = s.next_msg(1);
                requests.push(msg);
                s.push(
                    1,
                    t,
                    VoteRequested {
                        msg,
                        to: NodeId(to),
                        term: Term(term),
                        pre_vote,
                        last_log_index: LogIndex(0),
                        last_log_term: Term(0),
                    },
                );
            }
            // A receive comes after its send as stamped (the sender's clock only moves forward).
            let sent = if s.numbered { s.last_at[1] } else { t };
            for (voter, request) in (2..=5).zip(requests) {
                let at = sent + 1 + s.random(3);
                s.receive(voter, at, 1, request);
                let msg = s.next_msg(voter);
                if voter == 5 {
                    let reason = "already voted".to_string();
                    s.push(
                        voter,
                        at,
                        VoteDenied {
                            msg,
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
                            msg,
                            to: NodeId(1),
                            term: Term(term),
                            pre_vote,
                        },
                    );
                }
                s.receive(1, at + 1, voter, msg);
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
            let mut appends = Vec::new();
            for to in 2..=5 {
                let msg = s.next_msg(1);
                appends.push(msg);
                s.push(
                    1,
                    t,
                    AppendSent {
                        msg,
                        to: NodeId(to),
                        term: Term(1),
                        prev_log_index: LogIndex(last_index - entries),
                        entries,
                        commit: LogIndex(last_index.saturating_sub(1)),
                    },
                );
            }
            let mut acked = Vec::new();
            let sent = if s.numbered { s.last_at[1] } else { t };
            for (follower, append) in (2..=5).zip(appends) {
                let at = sent + 1 + s.random(3);
                s.receive(follower, at, 1, append);
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
                let reply = s.next_msg(follower);
                acked.push((at + 1 + s.random(2), follower, reply));
            }
            acked.sort();
            for (at, follower, reply) in acked {
                s.receive(1, at, follower, reply);
                s.push(
                    1,
                    at,
                    AppendAcked {
                        msg: reply,
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
    // Where each numbered message was taken in: `(from, msg, to) -> seq of the receive`.
    let receives: BTreeMap<(NodeId, u64, NodeId), u64> = events
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::MessageReceived { from, msg, .. } => {
                Some(((*from, *msg, event.node), event.seq))
            }
            _ => None,
        })
        .collect();
    // Each message with the seq that must wait for it (a send) or that it must wait for (an ack).
    // A numbered message's effect on its receiver starts at its receive; an unnumbered one's may be
    // anything the receiver reports from the millisecond of the send on.
    let mut messages: Vec<(&Event, Message, u64)> = events
        .iter()
        .filter_map(|event| {
            let message = message_of(event)?;
            let seq = match message.reported {
                Reported::AtSend if message.msg != 0 => {
                    *receives.get(&(event.node, message.msg, message.to))?
                }
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
        // A numbered dot's landing is known once its receive is scheduled; until then its end is
        // only how long it may wait.
        for flight in flights
            .values()
            .filter(|f| f.msg == 0 || f.arrival != Arrival::Unknown)
        {
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
fn numbered_messages_land_at_their_receives_in_causal_order_at_slow_tempo_and_at_full_speed() {
    let leg_ms = flight_ms(500);
    let events = Stream::generate(500, 500, 12, 7, true);
    let (longest_flight_ms, worst_lag_ms, steady_lag_ms) = check_frames(&events, 5, 4_000);
    // A receive 1-3 ms after its send is drawn as a visible flight, no longer than an unnumbered one
    // plus the receiver's own queue.
    assert!(
        longest_flight_ms >= leg_ms && longest_flight_ms <= leg_ms + 10,
        "longest flight {longest_flight_ms} ms"
    );
    assert!(
        worst_lag_ms <= DELAY_MS + 6 * leg_ms + 20,
        "worst lag {worst_lag_ms} ms"
    );
    assert!(
        steady_lag_ms <= DELAY_MS + 2 * leg_ms + 20,
        "steady lag {steady_lag_ms} ms"
    );

    let events = Stream::generate(50, 3, 300, 11, true);
    let (longest_flight_ms, worst_lag_ms, _) = check_frames(&events, 4, 0);
    assert!(longest_flight_ms <= flight_ms(50) + 10);
    assert!(
        worst_lag_ms <= MAX_LAG_MS + 4,
        "worst lag {worst_lag_ms} ms"
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
