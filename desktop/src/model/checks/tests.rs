//! Each check holds on a healthy stream and fails on a stream with its violation planted.

use super::*;
use crate::model::ProcessState;
use flotilla_shared::{LogIndex, Term};

fn ev(node: u64, seq: u64, kind: EventKind) -> Record {
    Record::Event(Event {
        node: NodeId(node),
        seq,
        at_ms: 1_000 + seq,
        kind,
    })
}

fn leader(node: u64, seq: u64, term: u64) -> Record {
    ev(
        node,
        seq,
        EventKind::RoleChanged {
            role: Role::Leader,
            term: Term(term),
            leader_id: Some(NodeId(node)),
        },
    )
}

fn appended(node: u64, seq: u64, first: u64, last: u64, term: u64) -> Record {
    ev(
        node,
        seq,
        EventKind::EntryAppended {
            first: LogIndex(first),
            last: LogIndex(last),
            term: Term(term),
        },
    )
}

fn commit(node: u64, seq: u64, index: u64) -> Record {
    ev(
        node,
        seq,
        EventKind::CommitAdvanced {
            commit_index: LogIndex(index),
        },
    )
}

fn applied(node: u64, seq: u64, index: u64) -> Record {
    ev(
        node,
        seq,
        EventKind::Applied {
            index: LogIndex(index),
        },
    )
}

fn submit(text: &str, invoked_ms: u64, completed_ms: u64, index: u64, term: u64) -> Record {
    Record::Submitted(SubmitRecord {
        at_ms: completed_ms,
        text: text.into(),
        outcome: Ok((LogIndex(index), Term(term))),
        latency_ms: (completed_ms - invoked_ms) as f64,
    })
}

fn run(records: &[Record]) -> Checks {
    let mut timeline = Timeline::new(
        super::super::ClusterState::new(&[NodeId(1), NodeId(2), NodeId(3)]),
        10_000,
    );
    let mut checks = Checks::new();
    for record in records {
        timeline.push(record.clone());
        // Fed as the window does: a few records at a time.
        if timeline.len().is_multiple_of(3) {
            checks.catch_up(&timeline);
        }
    }
    checks.catch_up(&timeline);
    checks
}

/// Node 1 leads term 2; entries 1..=3 of term 2 reach every node, commit and apply; the desktop's
/// two submits were acknowledged at 2 and 3.
fn healthy() -> Vec<Record> {
    let mut records = vec![leader(1, 1, 2)];
    for node in 1..=3 {
        records.push(appended(node, 10, 1, 3, 2));
    }
    records.push(submit("a", 900, 950, 2, 2));
    records.push(submit("b", 960, 990, 3, 2));
    for node in 1..=3 {
        records.push(commit(node, 11, 3));
        records.push(applied(node, 12, 3));
    }
    records
}

fn only_violation(checks: &Checks) -> Option<CheckId> {
    let broken: Vec<CheckId> = checks
        .statuses()
        .into_iter()
        .filter_map(|status| status.violation.map(|v| v.check))
        .collect();
    assert!(broken.len() <= 1, "more than one check broke: {broken:?}");
    broken.first().copied()
}

#[test]
fn a_healthy_stream_passes_every_check() {
    let checks = run(&healthy());
    assert_eq!(only_violation(&checks), None);
    let statuses = checks.statuses();
    assert_eq!(statuses.len(), 5);
    assert_eq!(statuses[1].covered, "committed entries: 3");
    assert_eq!(statuses[4].covered, "submits: 2");
}

#[test]
fn two_leaders_in_one_term_break_the_first_check_naming_both() {
    let mut records = healthy();
    records.push(leader(3, 13, 2));
    let checks = run(&records);
    assert_eq!(only_violation(&checks), Some(CheckId::SingleLeader));
    let violation = checks.violation(CheckId::SingleLeader).unwrap();
    assert_eq!(violation.positions, vec![0, records.len() as u64 - 1]);
    assert!(
        violation.text.contains("node 1 and node 3"),
        "{}",
        violation.text
    );
    // A leader in a later term is no violation.
    let mut later = healthy();
    later.push(leader(3, 13, 3));
    assert_eq!(only_violation(&run(&later)), None);
}

#[test]
fn nodes_committing_different_terms_at_one_index_break_log_matching() {
    let mut records = vec![leader(1, 1, 2)];
    records.push(appended(1, 2, 1, 3, 2));
    records.push(appended(2, 2, 1, 2, 2));
    records.push(appended(2, 3, 3, 3, 3));
    records.push(commit(1, 3, 3));
    let planted = records.len() as u64;
    records.push(commit(2, 4, 3));
    let checks = run(&records);
    assert_eq!(only_violation(&checks), Some(CheckId::CommittedPrefixes));
    let violation = checks.violation(CheckId::CommittedPrefixes).unwrap();
    assert!(violation.text.starts_with("entry 3:"), "{}", violation.text);
    assert_eq!(violation.positions, vec![1, 3, planted]);
}

#[test]
fn a_node_removing_a_committed_entry_breaks_log_matching() {
    let mut records = vec![appended(2, 1, 1, 3, 2), commit(2, 2, 3)];
    records.push(ev(2, 3, EventKind::LogTruncated { index: LogIndex(1) }));
    let checks = run(&records);
    assert_eq!(only_violation(&checks), Some(CheckId::CommittedPrefixes));
    // Removing only what was not committed is Raft doing its job.
    let fine = vec![
        appended(2, 1, 1, 3, 2),
        commit(2, 2, 2),
        ev(2, 3, EventKind::LogTruncated { index: LogIndex(2) }),
    ];
    assert_eq!(only_violation(&run(&fine)), None);
}

#[test]
fn commit_moving_back_without_a_restart_breaks_monotonicity_and_a_restart_excuses_it() {
    let records = vec![commit(2, 1, 5), commit(2, 2, 3)];
    let checks = run(&records);
    assert_eq!(only_violation(&checks), Some(CheckId::CommitMonotonic));
    assert_eq!(
        checks
            .violation(CheckId::CommitMonotonic)
            .unwrap()
            .positions,
        vec![0, 1]
    );
    let killed = vec![
        commit(2, 1, 5),
        Record::Process {
            at_ms: 1_002,
            node: NodeId(2),
            state: ProcessState::Dead,
        },
        commit(2, 2, 3),
    ];
    assert_eq!(only_violation(&run(&killed)), None);
    // A new process numbers its events from 1 again: that too is a restart.
    let renumbered = vec![commit(2, 7, 5), commit(2, 1, 3)];
    assert_eq!(only_violation(&run(&renumbered)), None);
}

#[test]
fn an_acknowledged_submit_missing_on_a_node_that_applied_past_it_is_flagged() {
    let mut records = vec![
        leader(1, 1, 2),
        appended(1, 2, 1, 3, 2),
        submit("kept?", 900, 950, 3, 2),
    ];
    // Node 3 holds another term at index 3 and applies past it.
    records.push(appended(3, 1, 1, 2, 2));
    records.push(appended(3, 2, 3, 4, 4));
    records.push(applied(3, 3, 4));
    let checks = run(&records);
    assert_eq!(only_violation(&checks), Some(CheckId::AckedKept));
    let violation = checks.violation(CheckId::AckedKept).unwrap();
    assert!(violation.text.contains("\"kept?\""), "{}", violation.text);
    assert_eq!(violation.positions, vec![2, 4, 5]);
    // The same node applying only up to 2 says nothing about index 3.
    let mut short = records.clone();
    short[5] = applied(3, 3, 2);
    assert_eq!(only_violation(&run(&short)), None);
}

#[test]
fn submits_whose_indexes_contradict_their_real_time_order_are_not_linearizable() {
    // "first" finished before "second" started, yet got the later index.
    let records = vec![
        submit("first", 100, 200, 7, 2),
        submit("second", 300, 400, 5, 2),
    ];
    let checks = run(&records);
    assert_eq!(only_violation(&checks), Some(CheckId::Linearizable));
    let violation = checks.violation(CheckId::Linearizable).unwrap();
    assert!(
        violation.text.contains("\"second\" at index 5"),
        "{}",
        violation.text
    );
    assert_eq!(violation.positions, vec![1]);
    // Overlapping in time, either order is possible.
    let overlapping = vec![
        submit("first", 100, 350, 7, 2),
        submit("second", 300, 400, 5, 2),
    ];
    assert_eq!(only_violation(&run(&overlapping)), None);
    // Two acknowledgements of one index cannot both be true.
    let twice = vec![submit("a", 100, 300, 5, 2), submit("b", 150, 320, 5, 2)];
    assert_eq!(only_violation(&run(&twice)), Some(CheckId::Linearizable));
}

/// A read/write register: the search must try orders, not only sort.
struct Register;

#[derive(Clone, Debug, PartialEq)]
enum RegisterOp {
    Write(u64),
    Read(u64),
}

impl Model for Register {
    type State = u64;
    type Input = RegisterOp;
    fn init() -> u64 {
        0
    }
    fn step(value: &u64, op: &RegisterOp) -> Option<u64> {
        match op {
            RegisterOp::Write(v) => Some(*v),
            RegisterOp::Read(v) => (v == value).then_some(*value),
        }
    }
}

fn op(invoked_ms: u64, completed_ms: u64, input: RegisterOp) -> Operation<RegisterOp> {
    Operation {
        invoked_ms,
        completed_ms,
        input,
    }
}

#[test]
fn the_search_finds_an_order_among_concurrent_operations_or_proves_there_is_none() {
    use RegisterOp::*;
    // Two concurrent writes; reads after both see 1 then 2: write 1 must go first.
    let fits = vec![
        op(0, 10, Write(2)),
        op(1, 11, Write(1)),
        op(5, 12, Read(1)),
        op(20, 30, Read(2)),
    ];
    assert_eq!(
        linearizable::<Register>(&fits, 1_000),
        Verdict::Linearizable
    );
    // After both writes completed, reads see 1 then 2 then 1: no order fits.
    let broken = vec![
        op(0, 10, Write(1)),
        op(1, 11, Write(2)),
        op(20, 30, Read(1)),
        op(40, 50, Read(2)),
        op(60, 70, Read(1)),
    ];
    assert!(matches!(
        linearizable::<Register>(&broken, 1_000),
        Verdict::NotLinearizable { .. }
    ));
    // Too little budget says so instead of guessing.
    assert_eq!(linearizable::<Register>(&broken, 2), Verdict::Undecided);
}

#[test]
fn entries_every_node_settled_long_ago_are_let_go_and_later_ones_still_checked() {
    let last = SETTLED_KEPT * 3;
    let mut records = vec![leader(1, 1, 2)];
    for node in 1..=3 {
        records.push(appended(node, 2, 1, last, 2));
        records.push(commit(node, 3, last));
        records.push(applied(node, 4, last));
    }
    let mut checks = run(&records);
    assert_eq!(only_violation(&checks), None);
    assert_eq!(checks.committed.base, last - SETTLED_KEPT);
    assert!(checks
        .logs
        .values()
        .all(|log| log.entries.base == last - SETTLED_KEPT));
    // A committed entry still kept, rewritten with another term, is still caught.
    let mut timeline = Timeline::new(
        super::super::ClusterState::new(&[NodeId(1), NodeId(2), NodeId(3)]),
        10_000,
    );
    for record in &records {
        timeline.push(record.clone());
    }
    timeline.push(appended(2, 5, last - 5, last - 5, 7));
    checks.catch_up(&timeline);
    assert_eq!(only_violation(&checks), Some(CheckId::CommittedPrefixes));
}

#[test]
fn a_node_that_never_comes_back_does_not_hold_every_later_index() {
    // Node 3 shuts down for good at index 10 while nodes 1 and 2 go on committing.
    let last = MOST_KEPT * 3;
    let mut records = vec![leader(1, 1, 2)];
    for node in 1..=3 {
        records.push(appended(node, 2, 1, 10, 2));
    }
    records.push(ev(3, 3, EventKind::ShuttingDown));
    for node in 1..=2 {
        records.push(appended(node, 4, 11, last, 2));
        records.push(commit(node, 5, last));
        records.push(applied(node, 6, last));
    }
    let mut checks = run(&records);
    assert_eq!(only_violation(&checks), None);
    assert_eq!(checks.committed.base, last - MOST_KEPT);
    assert!(checks.logs[&NodeId(1)].entries.values.len() as u64 <= MOST_KEPT);
    // What is still kept is still checked: node 2 rewriting a committed entry is caught.
    let mut timeline = Timeline::new(
        super::super::ClusterState::new(&[NodeId(1), NodeId(2), NodeId(3)]),
        10_000,
    );
    for record in &records {
        timeline.push(record.clone());
    }
    timeline.push(appended(2, 7, last - 5, last - 5, 7));
    checks.catch_up(&timeline);
    assert_eq!(only_violation(&checks), Some(CheckId::CommittedPrefixes));
}
