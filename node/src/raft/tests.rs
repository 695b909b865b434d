//! Unit and paper tests: set up a state, make one call, check the exact output and events. Paper tests
//! are named after the rule and its section, and quote it.

use super::*;
use crate::storage::memory::MemoryStore;
use crate::storage::{LogStore, WriteBatch};
use flotilla_shared::rpc::{
    AppendEntries, AppendEntriesResponse, RequestVote, RequestVoteResponse,
};
use std::cell::RefCell;
use std::rc::Rc;

type Disk = Rc<RefCell<MemoryStore>>;

fn config(id: u64, voters: u64) -> Config {
    let mut config = Config::new(NodeId(id), (1..=voters).map(NodeId).collect());
    config.pre_vote = false;
    config.seed = 7;
    config
}

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index: LogIndex(index),
        term: Term(term),
        payload: Payload::Message {
            text: format!("e{index}"),
            request_id: None,
        },
    }
}

/// A core whose disk holds entries of the given terms (index 1 first) and the given hard state.
fn core_with(config: Config, terms: &[u64], term: u64) -> (Raft<Disk>, Disk) {
    let disk: Disk = Rc::new(RefCell::new(MemoryStore::new()));
    let entries: Vec<Entry> = terms
        .iter()
        .enumerate()
        .map(|(i, t)| entry(i as u64 + 1, *t))
        .collect();
    let hard_state = HardState {
        term: Term(term),
        voted_for: None,
        commit: LogIndex(0),
    };
    disk.borrow_mut()
        .write(WriteBatch {
            hard_state: Some(hard_state),
            entries: &entries,
            apply: &[],
        })
        .expect("setup write");
    let state = disk.borrow().initial_state().expect("memory store");
    let restored = Restored {
        hard_state: state.hard_state,
        last: state.last,
        applied: state.applied,
    };
    let core = Raft::new(config, disk.clone(), restored, 0).expect("valid config");
    (core, disk)
}

fn envelope(from: u64, to: u64, term: u64, message: Message) -> Envelope {
    Envelope {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(term),
        message,
    }
}

fn vote_request(last_index: u64, last_term: u64) -> Message {
    Message::RequestVote(RequestVote {
        pre_vote: false,
        last_log_index: LogIndex(last_index),
        last_log_term: Term(last_term),
        leadership_transfer: false,
    })
}

fn vote_granted() -> Message {
    Message::RequestVoteResponse(RequestVoteResponse {
        pre_vote: false,
        granted: true,
        reason: None,
    })
}

fn append(prev: (u64, u64), entries: Vec<Entry>, commit: u64) -> Message {
    Message::AppendEntries(AppendEntries {
        prev_log_index: LogIndex(prev.0),
        prev_log_term: Term(prev.1),
        entries,
        leader_commit: LogIndex(commit),
        read_ctx: 0,
    })
}

fn append_ok(index: u64, read_ctx: u64) -> Message {
    Message::AppendEntriesResponse(AppendEntriesResponse {
        success: true,
        index: LogIndex(index),
        conflict_index: None,
        conflict_term: None,
        reason: None,
        read_ctx,
    })
}

fn names(ready: &Ready) -> Vec<&'static str> {
    ready.events.iter().map(EventKind::name).collect()
}

/// Writes what `ready` asks to the disk and reports it durable, as the runtime does.
fn persist(core: &mut Raft<Disk>, disk: &Disk, ready: &Ready) {
    disk.borrow_mut()
        .write(WriteBatch {
            hard_state: ready.hard_state,
            entries: &ready.entries,
            apply: &ready.committed,
        })
        .expect("write");
    if let Some(last) = ready.entries.last() {
        core.persisted(LogId {
            index: last.index,
            term: last.term,
        });
    }
}

/// Node 1 of `voters`, elected in term `term + 1` with node 2's vote, its no-op durable.
fn leader(voters: u64, terms: &[u64], term: u64) -> (Raft<Disk>, Disk) {
    let (mut core, disk) = core_with(config(1, voters), terms, term);
    core.tick(300);
    let ready = core.ready();
    persist(&mut core, &disk, &ready);
    core.step(envelope(2, 1, term + 1, vote_granted()));
    assert_eq!(core.role(), Role::Leader);
    let ready = core.ready();
    persist(&mut core, &disk, &ready);
    (core, disk)
}

/// Raft §5.2: "To begin an election, a follower increments its current term and transitions to
/// candidate state. It then votes for itself and issues RequestVote RPCs in parallel."
#[test]
fn follower_times_out_and_campaigns_in_next_term_5_2() {
    let (mut core, _disk) = core_with(config(1, 3), &[1, 1], 1);
    core.tick(299);
    core.tick(300);
    let ready = core.ready();
    assert_eq!(core.role(), Role::Candidate);
    assert_eq!(
        ready.hard_state.map(|h| (h.term, h.voted_for)),
        Some((Term(2), Some(NodeId(1))))
    );
    // The requests wait for the new term and the self-vote to be durable (Figure 2).
    assert!(ready.messages.is_empty(), "{:?}", ready.messages);
    let to: Vec<_> = ready
        .persisted_messages
        .iter()
        .map(|m| (m.to, m.term, m.message.clone()))
        .collect();
    assert_eq!(
        to,
        vec![
            (NodeId(2), Term(2), vote_request(2, 1)),
            (NodeId(3), Term(2), vote_request(2, 1))
        ]
    );
    let events = names(&ready);
    assert!(
        events.starts_with(&[
            "election_timer_reset",
            "election_timeout",
            "term_changed",
            "role_changed"
        ]),
        "{events:?}"
    );
    assert_eq!(events.iter().filter(|e| **e == "vote_requested").count(), 2);
}

/// Raft §5.2 with Figure 2 ("persistent state ... updated on stable storage before responding to
/// RPCs"): a candidate that crashes before its new term is durable has asked nobody for a vote, so it
/// cannot have led that term; restarted in the old term, it campaigns for the same term afresh.
#[test]
fn candidate_crashing_before_its_term_is_durable_has_sent_no_votes_5_2() {
    let (mut core, disk) = core_with(config(1, 3), &[1, 1], 1);
    core.tick(300);
    let ready = core.ready();
    assert_eq!(core.term(), Term(2));
    assert!(ready.messages.is_empty(), "{:?}", ready.messages);
    assert_eq!(ready.persisted_messages.len(), 2);
    // Crash: the Ready is never written, so its requests are never sent.
    let stored = disk.borrow().initial_state().expect("read");
    assert_eq!(stored.hard_state.term, Term(1));
    let restored = Restored {
        hard_state: stored.hard_state,
        last: stored.last,
        applied: stored.applied,
    };
    let mut core = Raft::new(config(1, 3), disk.clone(), restored, 300).expect("config");
    core.tick(700);
    let ready = core.ready();
    assert_eq!(core.term(), Term(2));
    assert!(ready
        .persisted_messages
        .iter()
        .all(|m| m.term == Term(2) && matches!(m.message, Message::RequestVote(_))));
}

/// Thesis §9.6: PreVote: "a candidate would first ask other servers whether its log was up-to-date
/// enough to get their vote"; the term is not raised by the probe.
#[test]
fn pre_candidate_does_not_raise_its_term_9_6() {
    let mut cfg = config(1, 3);
    cfg.pre_vote = true;
    let (mut core, _disk) = core_with(cfg, &[1], 1);
    core.tick(300);
    let ready = core.ready();
    assert_eq!(core.role(), Role::PreCandidate);
    assert_eq!(core.term(), Term(1));
    assert_eq!(ready.hard_state, None);
    assert!(ready.messages.iter().all(
        |m| m.term == Term(2) && matches!(&m.message, Message::RequestVote(rv) if rv.pre_vote)
    ));
    // A granted pre-vote moves it on to a real campaign in term 2.
    let grant = Message::RequestVoteResponse(RequestVoteResponse {
        pre_vote: true,
        granted: true,
        reason: None,
    });
    core.step(envelope(2, 1, 2, grant));
    assert_eq!((core.role(), core.term()), (Role::Candidate, Term(2)));
}

/// Raft §5.4.1: "the voter denies its vote if its own log is more up-to-date than that of the
/// candidate."
#[test]
fn vote_denied_to_candidate_with_older_log_5_4_1() {
    let (mut core, _disk) = core_with(config(2, 3), &[1, 2], 2);
    core.step(envelope(1, 2, 3, vote_request(5, 1)));
    let ready = core.ready();
    assert!(ready.messages.is_empty());
    let [reply] = &ready.persisted_messages[..] else {
        panic!("one reply: {ready:?}")
    };
    let Message::RequestVoteResponse(resp) = &reply.message else {
        panic!("{reply:?}")
    };
    assert!(!resp.granted);
    assert!(
        resp.reason
            .as_deref()
            .is_some_and(|r| r.starts_with("candidate log older")),
        "{resp:?}"
    );
    // The higher term is adopted (and made durable) even though the vote is denied (§5.1).
    assert_eq!(
        ready.hard_state.map(|h| (h.term, h.voted_for)),
        Some((Term(3), None))
    );
    assert!(names(&ready).contains(&"vote_denied"));
}

/// Raft §5.2: "Each server will vote for at most one candidate in a given term, on a first-come-
/// first-served basis"; the vote is durable before the reply is sent (thesis §3.8).
#[test]
fn one_vote_per_term_and_durable_before_reply_5_2() {
    let (mut core, _disk) = core_with(config(2, 3), &[1], 4);
    core.step(envelope(1, 2, 5, vote_request(1, 1)));
    let ready = core.ready();
    assert_eq!(ready.hard_state.map(|h| h.voted_for), Some(Some(NodeId(1))));
    assert!(ready.messages.is_empty(), "vote replies wait for the disk");
    assert!(matches!(&ready.persisted_messages[0].message,
        Message::RequestVoteResponse(r) if r.granted));
    core.step(envelope(3, 2, 5, vote_request(1, 1)));
    let ready = core.ready();
    let Message::RequestVoteResponse(resp) = &ready.persisted_messages[0].message else {
        panic!()
    };
    assert_eq!(
        resp.reason.as_deref(),
        Some("already voted for 1 in term 5")
    );
}

/// Thesis §6.2 / §9.6: with CheckQuorum, a server that heard from a current leader within the
/// minimum election timeout does not grant votes (unless the leader is handing over).
#[test]
fn leader_lease_denies_votes_unless_transferring_6_2() {
    let mut cfg = config(2, 3);
    cfg.check_quorum = true;
    let (mut core, _disk) = core_with(cfg, &[1], 1);
    core.step(envelope(1, 2, 1, append((1, 1), vec![], 0)));
    core.tick(100);
    core.step(envelope(3, 2, 2, vote_request(1, 1)));
    let ready = core.ready();
    let Message::RequestVoteResponse(resp) = &ready.persisted_messages[1].message else {
        panic!()
    };
    assert_eq!(
        resp.reason.as_deref(),
        Some("leader lease: heard from leader 1 recently")
    );
    assert_eq!(core.term(), Term(1));
    let transfer = Message::RequestVote(RequestVote {
        pre_vote: false,
        last_log_index: LogIndex(1),
        last_log_term: Term(1),
        leadership_transfer: true,
    });
    core.step(envelope(3, 2, 2, transfer));
    let ready = core.ready();
    assert!(
        matches!(&ready.persisted_messages[0].message, Message::RequestVoteResponse(r) if r.granted)
    );
    assert_eq!(core.term(), Term(2));
}

/// Raft §5.2 and §8: a candidate that wins a majority becomes leader and appends a no-op entry of its
/// term, then replicates it.
#[test]
fn majority_makes_leader_which_appends_a_noop_5_2() {
    let (mut core, _disk) = core_with(config(1, 3), &[1], 1);
    core.tick(300);
    core.ready();
    core.step(envelope(2, 1, 2, vote_granted()));
    let ready = core.ready();
    assert_eq!(core.role(), Role::Leader);
    assert_eq!(
        ready.entries,
        vec![Entry {
            index: LogIndex(2),
            term: Term(2),
            payload: Payload::Noop
        }]
    );
    let appends: Vec<_> = ready
        .messages
        .iter()
        .map(|m| match &m.message {
            Message::AppendEntries(ae) => (m.to, ae.prev_log_index, ae.entries.len()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        appends,
        vec![(NodeId(2), LogIndex(1), 1), (NodeId(3), LogIndex(1), 1)]
    );
}

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

/// Thesis §6.4 ReadIndex: the leader records its commit index, confirms leadership with a round of
/// heartbeats, then serves the read once applied up to it.
#[test]
fn read_index_waits_for_a_heartbeat_quorum_6_4() {
    let (mut core, disk) = leader(3, &[1], 1);
    core.step(envelope(2, 1, 2, append_ok(2, 0)));
    let ready = core.ready();
    persist(&mut core, &disk, &ready);
    assert_eq!(core.commit(), LogIndex(2));
    core.read_index(77).expect("leader");
    let ready = core.ready();
    assert!(ready.reads.is_empty());
    let ctx = ready
        .messages
        .iter()
        .find_map(|m| match &m.message {
            Message::AppendEntries(ae) if ae.read_ctx != 0 => Some(ae.read_ctx),
            _ => None,
        })
        .expect("a read heartbeat");
    core.step(envelope(3, 1, 2, append_ok(0, ctx)));
    let ready = core.ready();
    assert_eq!(
        ready.reads,
        vec![ReadState {
            ctx: 77,
            index: LogIndex(2)
        }]
    );
    assert!(names(&ready).contains(&"read_released"));
}

/// Thesis §6.4: reads pending on a leader that loses leadership fail.
#[test]
fn pending_reads_fail_when_leadership_is_lost_6_4() {
    let (mut core, _disk) = leader(3, &[1], 1);
    core.read_index(5).expect("leader");
    core.step(envelope(2, 1, 9, append((0, 0), vec![], 0)));
    let ready = core.ready();
    assert_eq!(ready.failed_reads, vec![5]);
    assert_eq!(core.role(), Role::Follower);
    assert_eq!(
        core.read_index(6),
        Err(ReadError::NotLeader {
            leader: Some(NodeId(2))
        })
    );
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

/// Thesis §3.10: during a transfer the leader stops accepting proposals and sends TimeoutNow once the
/// target is up to date; the target campaigns at once.
#[test]
fn leadership_transfer_sends_timeout_now_when_target_caught_up_3_10() {
    let (mut core, _disk) = leader(3, &[1], 1);
    core.transfer_leadership(NodeId(3)).expect("leader");
    assert_eq!(
        core.propose(Payload::Noop),
        Err(ProposeError::TransferInProgress { to: NodeId(3) })
    );
    assert!(!core
        .ready()
        .messages
        .iter()
        .any(|m| m.message == Message::TimeoutNow));
    core.step(envelope(3, 1, 2, append_ok(2, 0)));
    let ready = core.ready();
    assert!(ready
        .messages
        .iter()
        .any(|m| m.to == NodeId(3) && m.message == Message::TimeoutNow));
    assert!(names(&ready).contains(&"timeout_now_sent"));

    let (mut target, _d) = core_with(config(3, 3), &[1, 2], 2);
    // The target follows the leader of term 2 (it heard from it before being caught up).
    target.step(envelope(1, 3, 2, append((2, 2), vec![], 2)));
    target.ready();
    target.step(envelope(1, 3, 2, Message::TimeoutNow));
    let ready = target.ready();
    assert_eq!(target.role(), Role::Candidate);
    assert!(ready.messages.iter().all(|m| matches!(&m.message,
        Message::RequestVote(rv) if rv.leadership_transfer && !rv.pre_vote)));
}

/// Thesis §6.2 CheckQuorum: a leader that has not heard from a majority within an election timeout
/// steps down.
#[test]
fn leader_without_quorum_steps_down_6_2() {
    let mut cfg = config(1, 3);
    cfg.check_quorum = true;
    let (mut core, disk) = core_with(cfg, &[], 0);
    core.tick(300);
    let ready = core.ready();
    persist(&mut core, &disk, &ready);
    core.step(envelope(2, 1, 1, vote_granted()));
    assert_eq!(core.role(), Role::Leader);
    core.tick(400);
    assert_eq!(core.role(), Role::Leader);
    core.tick(460);
    assert_eq!(core.role(), Role::Follower);
    assert!(core
        .ready()
        .events
        .contains(&EventKind::CheckQuorumFailed { term: Term(1) }));
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

// ----- refusals: peers are input (see `crate::validation`) -----

/// Everything a node shows of its state: a refused message must leave all of it as it was.
fn state(core: &Raft<Disk>) -> (CoreStatus, Vec<Entry>) {
    let last = core.last_log().index;
    (core.status(), core.log_entries(LogIndex(1), last))
}

fn rejected_reason(ready: &Ready) -> Vec<String> {
    ready
        .events
        .iter()
        .filter_map(|e| match e {
            EventKind::MessageRejected { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

/// A follower with three committed entries of term 1 in term 2, following node 1.
fn committed_follower() -> (Raft<Disk>, Disk) {
    let (mut core, disk) = core_with(config(2, 3), &[1, 1, 1], 2);
    core.step(envelope(1, 2, 2, append((3, 1), vec![], 3)));
    let ready = core.ready();
    persist(&mut core, &disk, &ready);
    assert_eq!(
        (core.commit(), core.leader()),
        (LogIndex(3), Some(NodeId(1)))
    );
    core.ready();
    (core, disk)
}

/// The attacks that brought nodes down: a term no store can hold, a gap after prev_log_index, and
/// entries back at index 1 with a higher term. Each is refused whole: no term adopted, no timer reset,
/// no response, nothing appended; a `message_rejected` event says why. Reference: §5.1, §5.3, §5.4.
#[test]
fn malformed_appends_are_refused_and_change_nothing() {
    let (mut core, _disk) = committed_follower();
    let attacks = [
        (
            envelope(1, 2, i64::MAX as u64, append((3, 1), vec![], 3)),
            "term_out_of_range",
        ),
        (
            envelope(1, 2, 2, append((2, 1), vec![entry(7, 2)], 3)),
            "entries_not_contiguous",
        ),
        (
            envelope(1, 2, 3, append((3, 1), vec![entry(1, 3)], 3)),
            "entries_not_contiguous",
        ),
        (
            envelope(1, 2, 2, append((0, 0), vec![entry(1, 3)], 3)),
            "entry_term_above_message",
        ),
        (
            envelope(1, 2, 2, append((u64::MAX, 1), vec![], 3)),
            "index_out_of_range",
        ),
        (envelope(4, 2, 9, append((3, 1), vec![], 3)), "unknown_peer"),
        (envelope(1, 3, 9, append((3, 1), vec![], 3)), "wrong_node"),
    ];
    for (attack, reason) in attacks {
        let before = state(&core);
        let refused = core.try_step(attack.clone()).expect_err("refused");
        assert_eq!(refused.reason.code(), reason, "{attack:?}");
        let ready = core.ready();
        assert_eq!(rejected_reason(&ready), vec![reason.to_string()]);
        assert!(ready.persisted_messages.is_empty() && ready.messages.is_empty());
        assert!(ready.hard_state.is_none() && ready.entries.is_empty());
        assert_eq!(state(&core), before, "{attack:?}");
    }
}

/// Raft §5.1: a refused vote request with the highest term changes nothing either: the term is not
/// adopted and no vote is cast (one vote per term stays true, §5.2).
#[test]
fn vote_request_with_the_max_term_is_refused_5_2() {
    let (mut core, _disk) = core_with(config(2, 3), &[1], 1);
    let before = state(&core);
    for term in [i64::MAX as u64, u64::MAX] {
        let refused = core
            .try_step(envelope(3, 2, term, vote_request(1, 1)))
            .expect_err("refused");
        assert_eq!(refused.reason.code(), "term_out_of_range");
    }
    assert_eq!(state(&core), before);
    assert_eq!(core.status().voted_for, None);
}

/// Thesis §3.10: only this node's leader, in its term, may ask it to campaign at once.
#[test]
fn timeout_now_from_anyone_but_the_leader_is_refused_3_10() {
    let (mut core, _disk) = committed_follower();
    for forged in [
        envelope(3, 2, 2, Message::TimeoutNow),
        envelope(1, 2, 3, Message::TimeoutNow),
        envelope(3, 2, 5, Message::TimeoutNow),
    ] {
        let before = state(&core);
        let refused = core.try_step(forged.clone()).expect_err("refused");
        assert_eq!(refused.reason.code(), "not_from_leader", "{forged:?}");
        assert_eq!(state(&core), before, "{forged:?}");
    }
    // A stale one is ignored, as any stale message (Raft §5.1).
    assert_eq!(
        core.try_step(envelope(1, 2, 1, Message::TimeoutNow)),
        Ok(())
    );
    assert_eq!(core.role(), Role::Follower);
    // The leader's own starts the campaign.
    assert_eq!(
        core.try_step(envelope(1, 2, 2, Message::TimeoutNow)),
        Ok(())
    );
    assert_eq!((core.role(), core.term()), (Role::Candidate, Term(3)));
}

/// A leader counts a follower only for what it sent it: an acknowledgement past its log, or an echo of
/// a read round it never started, is refused rather than clamped (it would count replicas or
/// leadership confirmations that never happened: §5.4.2, thesis §6.4).
#[test]
fn leader_refuses_replies_to_what_it_never_sent() {
    let (mut core, _disk) = leader(3, &[1], 1);
    let before = state(&core);
    let refused = core
        .try_step(envelope(2, 1, 2, append_ok(99, 0)))
        .expect_err("past the log");
    assert_eq!(refused.reason.code(), "unknown_reply");
    let refused = core
        .try_step(envelope(2, 1, 2, append_ok(1, 7)))
        .expect_err("unknown read round");
    assert_eq!(refused.reason.code(), "unknown_reply");
    assert_eq!(state(&core), before);
    assert_eq!(core.try_step(envelope(2, 1, 2, append_ok(2, 0))), Ok(()));
    assert_eq!(core.status().progress[&NodeId(2)].0, LogIndex(2));
}

/// The core's own check stands even if a message never met the HTTP boundary: with it switched off (a
/// planted bug), the gap that once panicked the runtime reaches the log, which refuses it without a
/// panic (the last line of defence), answering nothing.
#[test]
fn the_log_refuses_a_gap_even_when_validation_is_skipped() {
    let (mut core, _disk) = committed_follower();
    core.plant_bug(PlantedBug::TrustEnvelopes);
    let refused = core
        .try_step(envelope(1, 2, 2, append((3, 1), vec![entry(7, 2)], 3)))
        .expect_err("refused by the log");
    assert_eq!(refused.reason.code(), "log_refused");
    assert!(refused.detail.contains("hole"), "{refused}");
    let ready = core.ready();
    assert!(ready.persisted_messages.is_empty() && ready.entries.is_empty());
    assert_eq!(core.last_log().index, LogIndex(3));
}
