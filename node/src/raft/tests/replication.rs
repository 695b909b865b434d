//! Replication and commitment: consistency checks, conflicts, commit rules, batching, heartbeats and
//! flow control (Raft §5.1, §5.3, §5.4.2; thesis §10.2.1).

use super::*;

/// Raft §5.3: "If a follower's log is inconsistent with the leader's, the AppendEntries consistency
/// check will fail"; thesis §5.3: the reply names the conflicting term and its first index.
#[test]
fn append_rejected_on_mismatch_with_conflict_hint_5_3() {
    let (mut core, _disk) = core_with(config(2, 3), &[1, 1, 2, 2], 3);
    core.step(envelope(1, 2, 3, append((4, 3), vec![entry(5, 3)], 0)));
    let ready = core.ready();
    let Message::AppendEntriesResponse(resp) = &ready.persisted_messages[0].message else {
        panic!()
    };
    assert!(!resp.success);
    assert_eq!(
        (resp.index, resp.conflict_term, resp.conflict_index),
        (LogIndex(4), Some(Term(2)), Some(LogIndex(3)))
    );
    assert!(
        resp.reason
            .as_deref()
            .is_some_and(|r| r.starts_with("log mismatch at 4")),
        "{resp:?}"
    );
    assert!(names(&ready).contains(&"append_rejected"));
    // Too short: the hint is one past the last index.
    core.step(envelope(1, 2, 3, append((9, 3), vec![], 0)));
    let ready = core.ready();
    let Message::AppendEntriesResponse(resp) = &ready.persisted_messages[0].message else {
        panic!()
    };
    assert_eq!(
        (resp.conflict_term, resp.conflict_index),
        (None, Some(LogIndex(5)))
    );
}

/// Raft §5.3: "If an existing entry conflicts with a new one (same index but different terms), delete
/// the existing entry and all that follow it"; commit = min(leaderCommit, index of last new entry).
#[test]
fn conflicting_entries_are_replaced_and_commit_follows_5_3() {
    let (mut core, _disk) = core_with(config(2, 3), &[1, 1, 2], 3);
    core.step(envelope(
        1,
        2,
        3,
        append((1, 1), vec![entry(2, 1), entry(3, 3)], 9),
    ));
    let ready = core.ready();
    assert_eq!(ready.entries, vec![entry(3, 3)]);
    assert!(ready
        .events
        .contains(&EventKind::LogTruncated { index: LogIndex(2) }));
    assert!(ready.events.contains(&EventKind::CommitAdvanced {
        commit_index: LogIndex(3)
    }));
    assert_eq!(
        core.last_log(),
        LogId {
            index: LogIndex(3),
            term: Term(3)
        }
    );
    // Committed but not yet durable here: nothing to apply yet.
    assert!(ready.committed.iter().all(|e| e.index <= LogIndex(2)));
}

/// Raft §5.4.2 (Figure 8): "Raft never commits log entries from previous terms by counting replicas.
/// Only log entries from the leader's current term are committed by counting replicas."
#[test]
fn previous_term_entries_do_not_commit_by_counting_5_4_2() {
    let (mut core, _disk) = leader(3, &[1, 2], 2);
    assert_eq!(core.term(), Term(3));
    // Node 2 holds entry 2 (term 2) but not yet the no-op at 3: a majority has entry 2.
    core.step(envelope(2, 1, 3, append_ok(2, 0)));
    assert_eq!(core.commit(), LogIndex(0));
    core.step(envelope(2, 1, 3, append_ok(3, 0)));
    assert_eq!(core.commit(), LogIndex(3));

    let (mut bugged, _disk) = leader(3, &[1, 2], 2);
    bugged.plant_bug(PlantedBug::CommitPreviousTermByCount);
    bugged.step(envelope(2, 1, 3, append_ok(2, 0)));
    assert_eq!(
        bugged.commit(),
        LogIndex(2),
        "the planted bug commits by counting"
    );
}

/// The leader's own entries count toward a majority only once durable on its disk (thesis §10.2.1),
/// and committed entries are handed out only once locally durable.
#[test]
fn single_node_commits_and_applies_only_after_persisting() {
    let (mut core, disk) = core_with(config(1, 1), &[], 0);
    core.tick(300);
    assert_eq!(core.role(), Role::Leader);
    let ready = core.ready();
    assert_eq!(core.commit(), LogIndex(0));
    assert!(ready.committed.is_empty());
    persist(&mut core, &disk, &ready);
    assert_eq!(core.commit(), LogIndex(1));
    let proposal = core
        .propose(Payload::Message {
            text: "hi".into(),
            request_id: None,
        })
        .expect("leader");
    assert_eq!(proposal.index, LogIndex(2));
    let ready = core.ready();
    assert_eq!(ready.committed.len(), 1, "the no-op, durable and committed");
    assert!(names(&ready).contains(&"applied"));
    persist(&mut core, &disk, &ready);
    let ready = core.ready();
    assert_eq!(ready.committed.last().map(|e| e.index), Some(LogIndex(2)));
}

/// A retried request still pending in the leader's log returns the earlier entry.
#[test]
fn retried_request_returns_the_pending_entry() {
    let (mut core, _disk) = leader(3, &[], 0);
    let command = || Payload::Message {
        text: "x".into(),
        request_id: Some("req-1".into()),
    };
    let first = core.propose(command()).expect("leader");
    let again = core.propose(command()).expect("leader");
    assert!(!first.already_pending && again.already_pending);
    assert_eq!(again.index, first.index);
    assert_eq!(core.last_log().index, first.index);
}

/// Proposals made between two rounds are one batch: one append event for the run, every entry written
/// and sent in one append per follower.
#[test]
fn proposals_between_rounds_are_one_batch_with_one_event() {
    let (mut core, _disk) = leader(3, &[], 0);
    // Both followers hold the no-op: appends to them are pipelined from here.
    core.step(envelope(2, 1, 1, append_ok(1, 0)));
    core.step(envelope(3, 1, 1, append_ok(1, 0)));
    core.ready();
    for text in ["a", "b", "c"] {
        core.propose(Payload::Message {
            text: text.into(),
            request_id: None,
        })
        .expect("leader");
    }
    let ready = core.ready();
    let appended: Vec<&EventKind> = ready
        .events
        .iter()
        .filter(|e| matches!(e, EventKind::EntryAppended { .. }))
        .collect();
    assert_eq!(
        appended,
        vec![&EventKind::EntryAppended {
            first: LogIndex(2),
            last: LogIndex(4),
            term: Term(1)
        }]
    );
    assert_eq!(
        ready.entries.iter().map(|e| e.index.0).collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    let batch_sizes: Vec<usize> = ready
        .messages
        .iter()
        .filter_map(|m| match &m.message {
            Message::AppendEntries(ae) if !ae.entries.is_empty() => Some(ae.entries.len()),
            _ => None,
        })
        .collect();
    assert_eq!(batch_sizes, vec![3, 3]);
}

/// Raft §5.1: "If a server receives a request with a stale term number, it rejects the request."
#[test]
fn stale_term_append_is_rejected_with_current_term_5_1() {
    let (mut core, _disk) = core_with(config(2, 3), &[1], 5);
    core.step(envelope(1, 2, 3, append((1, 1), vec![], 1)));
    let ready = core.ready();
    let reply = &ready.persisted_messages[0];
    assert_eq!(reply.term, Term(5));
    assert!(matches!(&reply.message, Message::AppendEntriesResponse(r) if !r.success));
}

/// Heartbeats carry commit = min(commit, follower's match), as etcd-raft does, so a follower never
/// learns a commit index past what it is known to hold.
#[test]
fn heartbeat_commit_is_capped_at_the_followers_match() {
    let (mut core, _disk) = leader(3, &[1, 1], 1);
    core.step(envelope(2, 1, 2, append_ok(3, 0)));
    assert_eq!(core.commit(), LogIndex(3));
    core.ready();
    core.tick(360);
    let ready = core.ready();
    let commits: Vec<_> = ready
        .messages
        .iter()
        .filter_map(|m| match &m.message {
            Message::AppendEntries(ae) if ae.entries.is_empty() => {
                Some((m.to, ae.prev_log_index, ae.leader_commit))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        commits,
        vec![
            (NodeId(2), LogIndex(3), LogIndex(3)),
            (NodeId(3), LogIndex(0), LogIndex(0))
        ]
    );
}

/// Pipelining is bounded: a follower in replicate state gets at most `max_inflight_appends` appends
/// in flight.
#[test]
fn appends_in_flight_are_bounded_per_follower() {
    let mut cfg = config(1, 3);
    cfg.max_inflight_appends = 2;
    cfg.max_append_entries = 1;
    let (mut core, disk) = core_with(cfg, &[], 0);
    core.tick(300);
    let ready = core.ready();
    persist(&mut core, &disk, &ready);
    core.step(envelope(2, 1, 1, vote_granted()));
    core.ready();
    core.step(envelope(2, 1, 1, append_ok(1, 0)));
    for i in 0..5 {
        core.propose(Payload::Message {
            text: format!("{i}"),
            request_id: None,
        })
        .expect("leader");
    }
    let ready = core.ready();
    let to_two = ready.messages.iter().filter(|m| m.to == NodeId(2)).count();
    assert_eq!(to_two, 2);
    core.validate().expect("invariants hold");
}

/// `status()` is what `/v1/status` shows: role, term, indexes and the leader's view of each follower.
#[test]
fn status_reports_the_leaders_view() {
    let (mut core, _disk) = leader(3, &[1], 1);
    core.step(envelope(2, 1, 2, append_ok(2, 0)));
    let status = core.status();
    assert_eq!(
        (status.role, status.term, status.leader),
        (Role::Leader, Term(2), Some(NodeId(1)))
    );
    assert_eq!(
        (status.commit, status.persisted, status.last.index),
        (LogIndex(2), LogIndex(2), LogIndex(2))
    );
    assert_eq!(
        status.progress.get(&NodeId(2)),
        Some(&(LogIndex(2), LogIndex(3)))
    );
    assert_eq!(
        status.progress.get(&NodeId(3)).map(|p| p.0),
        Some(LogIndex(0))
    );
    assert_eq!(status.election_timeout_ms, (150, 300));
}

/// A follower the transport cannot reach is probed again from its match point: one append at a time.
#[test]
fn unreachable_follower_falls_back_to_probing() {
    let (mut core, _disk) = leader(3, &[1], 1);
    core.step(envelope(2, 1, 2, append_ok(2, 0)));
    core.ready();
    core.propose(Payload::Noop).expect("leader");
    core.report_unreachable(NodeId(2));
    let ready = core.ready();
    let to_two: Vec<_> = ready
        .messages
        .iter()
        .filter_map(|m| match &m.message {
            Message::AppendEntries(ae) if m.to == NodeId(2) => Some(ae.prev_log_index),
            _ => None,
        })
        .collect();
    assert_eq!(to_two, vec![LogIndex(2)], "one probe from the match point");
    core.propose(Payload::Noop).expect("leader");
    assert!(
        core.ready().messages.iter().all(|m| m.to != NodeId(2)),
        "no more until it answers"
    );
}
