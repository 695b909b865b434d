//! Refusals: peers are input (see `crate::validation`); a refused message changes nothing.

use super::*;

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
        // A stranger claiming the term whose leader this node follows.
        (envelope(4, 2, 2, append((3, 1), vec![], 3)), "unknown_peer"),
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
