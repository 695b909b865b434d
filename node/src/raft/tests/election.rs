//! Elections: timeouts, PreVote, votes and the lease, becoming leader, CheckQuorum (Raft §5.2, §5.4.1;
//! thesis §6.2, §9.6).

use super::*;

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
        snapshot: Default::default(),
        first_index: stored.first_index,
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
