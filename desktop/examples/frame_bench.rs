//! Frame cost with a busy 5-node cluster: synthetic but realistic events (a leader replicating to
//! four followers, numbered messages with their `message_received` on the other end, a lost append
//! now and then with its `message_dropped`, acks, durability, commits and applies on every node, timer
//! resets) at 2,000 events/s go through the model and the real UI (kittest harness, no GPU), the
//! space-time diagram and the live checks included. Prints frame time p50/p99 and memory.
//! Then it feeds an hour of the same stream as fast as it can, to show the memory stays bounded.
//!
//! `CARGO_TARGET_DIR=... cargo run --release -p flotilla --example frame_bench [warmup_s] [frames] [soak_s]`

use egui_kittest::Harness;
use flotilla::app::{Clock, FlotillaApp};
use flotilla_shared::event::{DropReason, Event, EventKind, Role};
use flotilla_shared::{LogIndex, NodeId, Term};
use std::time::Instant;

const NODES: u64 = 5;
const EVENTS_PER_SECOND: u64 = 2_000;
/// Every this many rounds the append to the last follower is lost on the way.
const LOST_EVERY: u64 = 10;
const FRAMES_PER_SECOND: u64 = 60;

/// Produces the event stream of a steady cluster: node 1 leads term 3.
struct Cluster {
    at_ms: u64,
    seq: [u64; NODES as usize + 1],
    /// Each node's next message number.
    msg: [u64; NODES as usize + 1],
    /// The last entry each follower holds: the next append to it carries everything after it, so
    /// one that lost an append catches up with the next, as in Raft.
    matched: [u64; NODES as usize + 1],
    last_index: u64,
}

impl Cluster {
    fn event(&mut self, node: u64, kind: EventKind) -> Event {
        self.seq[node as usize] += 1;
        Event {
            node: NodeId(node),
            seq: self.seq[node as usize],
            at_ms: self.at_ms,
            kind,
        }
    }

    fn start(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        for node in 1..=NODES {
            let role = if node == 1 {
                Role::Leader
            } else {
                Role::Follower
            };
            events.push(self.event(
                node,
                EventKind::RoleChanged {
                    role,
                    term: Term(3),
                    leader_id: Some(NodeId(1)),
                },
            ));
        }
        events
    }

    fn next_msg(&mut self, node: u64) -> u64 {
        self.msg[node as usize] += 1;
        self.msg[node as usize]
    }

    /// One replication round: a new entry to every follower with its receive, the followers'
    /// durability and replies with their receives, the acks and the commit (about 32 events). Every
    /// `LOST_EVERY` rounds the last follower's append is lost instead.
    fn round(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        let index = self.last_index + 1;
        let lost = index.is_multiple_of(LOST_EVERY).then_some(NODES);
        let mut sent = Vec::new();
        let mut replies = Vec::new();
        self.last_index = index;
        let term = Term(3);
        events.push(self.event(
            1,
            EventKind::EntryAppended {
                first: LogIndex(index),
                last: LogIndex(index),
                term,
            },
        ));
        for follower in 2..=NODES {
            let msg = self.next_msg(1);
            sent.push((follower, msg));
            let matched = self.matched[follower as usize];
            events.push(self.event(
                1,
                EventKind::AppendSent {
                    msg,
                    to: NodeId(follower),
                    term,
                    prev_log_index: LogIndex(matched),
                    entries: index - matched,
                    commit: LogIndex(index - 1),
                },
            ));
        }
        for (follower, msg) in sent {
            if lost == Some(follower) {
                events.push(self.event(
                    1,
                    EventKind::MessageDropped {
                        to: NodeId(follower),
                        msg,
                        reason: DropReason::Loss,
                    },
                ));
                continue;
            }
            events.push(self.event(
                follower,
                EventKind::MessageReceived {
                    from: NodeId(1),
                    msg,
                    message: "append_entries".into(),
                },
            ));
            replies.push((follower, self.next_msg(follower)));
            events.push(self.event(
                follower,
                EventKind::ElectionTimerReset {
                    deadline_ms: self.at_ms + 2_000,
                    timeout_ms: 2_000,
                },
            ));
            let first = self.matched[follower as usize] + 1;
            self.matched[follower as usize] = index;
            events.push(self.event(
                follower,
                EventKind::EntryAppended {
                    first: LogIndex(first),
                    last: LogIndex(index),
                    term,
                },
            ));
            events.push(self.event(
                follower,
                EventKind::EntryPersisted {
                    index: LogIndex(index),
                },
            ));
            // The append carried the leader's commit index: the follower commits and applies to it.
            events.push(self.event(
                follower,
                EventKind::CommitAdvanced {
                    commit_index: LogIndex(index - 1),
                },
            ));
            events.push(self.event(
                follower,
                EventKind::Applied {
                    index: LogIndex(index - 1),
                },
            ));
        }
        events.push(self.event(
            1,
            EventKind::EntryPersisted {
                index: LogIndex(index),
            },
        ));
        for (follower, msg) in replies {
            events.push(self.event(
                1,
                EventKind::MessageReceived {
                    from: NodeId(follower),
                    msg,
                    message: "append_entries_response".into(),
                },
            ));
            events.push(self.event(
                1,
                EventKind::AppendAcked {
                    msg,
                    from: NodeId(follower),
                    term,
                    match_index: LogIndex(index),
                },
            ));
        }
        events.push(self.event(
            1,
            EventKind::CommitAdvanced {
                commit_index: LogIndex(index),
            },
        ));
        events.push(self.event(
            1,
            EventKind::Applied {
                index: LogIndex(index),
            },
        ));
        events
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| {
                    line.split_whitespace()
                        .nth(1)
                        .and_then(|kib| kib.parse().ok())
                })
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

fn main() {
    let warmup_seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let measured_frames: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let soak_seconds: u64 = std::env::args()
        .nth(3)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3_600);
    let nodes: Vec<NodeId> = (1..=NODES).map(NodeId).collect();
    let (sender, _receiver) = tokio::sync::mpsc::unbounded_channel();
    let mut app = FlotillaApp::detached(&nodes, sender, true);
    let mut cluster = Cluster {
        at_ms: 1_700_000_000_000,
        seq: [0; NODES as usize + 1],
        msg: [0; NODES as usize + 1],
        matched: [0; NODES as usize + 1],
        last_index: 0,
    };
    for event in cluster.start() {
        app.model.apply_event(event);
    }
    let rss_start = rss_kib();
    // Fill the recording as an app left running would: `warmup_seconds` at 2,000 events/s.
    let mut pending = Vec::new();
    let mut fed = 0u64;
    let per_ms = EVENTS_PER_SECOND as f64 / 1000.0;
    let feed_until = |app: &mut FlotillaApp,
                      cluster: &mut Cluster,
                      until_ms: u64,
                      pending: &mut Vec<Event>,
                      fed: &mut u64| {
        while cluster.at_ms < until_ms {
            if pending.is_empty() {
                *pending = cluster.round();
                pending.reverse();
            }
            // Spread the round's events over time so the rate is 2,000/s.
            if let Some(event) = pending.pop() {
                app.model.apply_event(event);
                *fed += 1;
            }
            cluster.at_ms = 1_700_000_000_000 + (*fed as f64 / per_ms) as u64;
        }
    };
    let warm_until = cluster.at_ms + warmup_seconds * 1000;
    let warm_started = Instant::now();
    // The live view advances once a frame, as in the window.
    while cluster.at_ms < warm_until {
        let until = cluster.at_ms + 1000 / FRAMES_PER_SECOND;
        feed_until(&mut app, &mut cluster, until, &mut pending, &mut fed);
        app.model.advance(cluster.at_ms);
    }
    let warm_elapsed = warm_started.elapsed();
    println!(
        "model: {fed} events applied in {:.1} ms ({:.2} µs/event); recording holds {} records",
        warm_elapsed.as_secs_f64() * 1000.0,
        warm_elapsed.as_secs_f64() * 1e6 / fed.max(1) as f64,
        app.model.timeline.len()
    );
    app.clock = Clock::Fixed(cluster.at_ms);
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1280.0, 800.0))
        .build_ui_state(|ui, app: &mut FlotillaApp| app.frame_ui(ui), app);
    harness.step();
    let frame_ms = 1000 / FRAMES_PER_SECOND;
    let mut frame_times = Vec::with_capacity(measured_frames);
    for _ in 0..measured_frames {
        let until = cluster.at_ms + frame_ms;
        let started = Instant::now();
        {
            let app = harness.state_mut();
            feed_until(app, &mut cluster, until, &mut pending, &mut fed);
            app.clock = Clock::Fixed(cluster.at_ms);
        }
        harness.step();
        frame_times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    frame_times.sort_by(f64::total_cmp);
    let rss_end = rss_kib();
    println!(
        "frames: {} at {FRAMES_PER_SECOND} fps with {EVENTS_PER_SECOND} events/s from {NODES} nodes ({} events in total)",
        frame_times.len(),
        fed
    );
    println!(
        "frame time (model update + UI, no GPU): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&frame_times, 0.5),
        percentile(&frame_times, 0.99),
        frame_times.last().copied().unwrap_or(0.0)
    );
    println!(
        "memory: RSS {:.1} MiB at start, {:.1} MiB with {} records recorded (+{:.1} MiB)",
        rss_start as f64 / 1024.0,
        rss_end as f64 / 1024.0,
        harness.state().model.timeline.len(),
        (rss_end.saturating_sub(rss_start)) as f64 / 1024.0
    );

    // An hour of the same stream, fed as fast as possible; the live view advances once per
    // simulated second, the least a window would do.
    let app = harness.state_mut();
    let soak_started = Instant::now();
    let fed_before = fed;
    let mut samples = Vec::new();
    for second in 1..=soak_seconds {
        let until = cluster.at_ms + 1000;
        feed_until(app, &mut cluster, until, &mut pending, &mut fed);
        app.model.advance(cluster.at_ms);
        if second % 600 == 0 || second == soak_seconds {
            samples.push(format!(
                "{}m {:.1} MiB",
                second / 60,
                rss_kib() as f64 / 1024.0
            ));
        }
    }
    if soak_seconds > 0 {
        let elapsed = soak_started.elapsed().as_secs_f64();
        let view = app.model.shown();
        println!(
            "soak: {} s of cluster time ({} events) fed in {elapsed:.1} s; RSS {}",
            soak_seconds,
            fed - fed_before,
            samples.join(", ")
        );
        println!(
            "soak end: recording holds {} records (cap), live view: {} flights, {} submits, {} commit samples, backlog {}",
            app.model.timeline.len(),
            view.flights.len(),
            view.submits.len(),
            view.commits.len(),
            app.model.backlog()
        );
    }
}
