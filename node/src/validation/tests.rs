//! One test per rule: a message a correct sender makes passes, and the same message bent just past the
//! rule is refused with the rule's reason. Extreme values (0, 1, the limits, i64::MAX, u64::MAX) are
//! tried at every number a message carries.

use super::*;
use crate::raft::{Entry, Payload};
use flotilla_shared::api::{Member, MemberRole, MessageEntry};
use flotilla_shared::rpc::RequestVoteResponse;

const ME: NodeId = NodeId(1);

fn is_peer(id: NodeId) -> bool {
    id == NodeId(2) || id == NodeId(3)
}

fn check(envelope: &Envelope) -> Result<(), Reason> {
    check_envelope(envelope, ME, is_peer).map_err(|rejected| rejected.reason)
}

fn envelope(term: u64, message: Message) -> Envelope {
    Envelope {
        msg: 0,
        from: NodeId(2),
        to: ME,
        term: Term(term),
        message,
    }
}

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index: LogIndex(index),
        term: Term(term),
        payload: Payload::Noop,
    }
}

fn append(term: u64, prev: (u64, u64), entries: &[(u64, u64)], commit: u64) -> Envelope {
    envelope(
        term,
        Message::AppendEntries(AppendEntries {
            prev_log_index: LogIndex(prev.0),
            prev_log_term: Term(prev.1),
            entries: entries.iter().map(|&(i, t)| entry(i, t)).collect(),
            leader_commit: LogIndex(commit),
            read_ctx: 0,
        }),
    )
}

fn vote(term: u64, last: (u64, u64), pre_vote: bool) -> Envelope {
    envelope(
        term,
        Message::RequestVote(RequestVote {
            pre_vote,
            last_log_index: LogIndex(last.0),
            last_log_term: Term(last.1),
            leadership_transfer: false,
        }),
    )
}

fn append_response(term: u64, index: u64, conflict: Option<(u64, u64)>) -> Envelope {
    envelope(
        term,
        Message::AppendEntriesResponse(AppendEntriesResponse {
            success: conflict.is_none(),
            index: LogIndex(index),
            conflict_index: conflict.map(|(i, _)| LogIndex(i)),
            conflict_term: conflict.map(|(_, t)| Term(t)),
            reason: None,
            read_ctx: 0,
        }),
    )
}

const HUGE: [u64; 3] = [MAX_STORABLE + 1, u64::MAX - 1, u64::MAX];

#[test]
fn messages_a_correct_peer_sends_pass() {
    let accepted = [
        append(3, (0, 0), &[], 0),
        append(3, (0, 0), &[(1, 1), (2, 1), (3, 3)], 2),
        append(3, (4, 2), &[(5, 2), (6, 3)], 9),
        append(7, (4, 2), &[], 4),
        vote(5, (0, 0), false),
        vote(5, (9, 4), true),
        append_response(3, 7, None),
        append_response(3, 7, Some((5, 3))),
        envelope(4, Message::TimeoutNow),
        envelope(
            0,
            Message::RequestVoteResponse(RequestVoteResponse {
                pre_vote: true,
                granted: false,
                reason: Some("candidate log older".into()),
            }),
        ),
        // The largest values that still fit.
        append(
            MAX_PEER_TERM.0,
            (MAX_INDEX.0 - 1, 1),
            &[(MAX_INDEX.0, MAX_PEER_TERM.0)],
            MAX_INDEX.0,
        ),
        vote(MAX_PEER_TERM.0, (MAX_INDEX.0, MAX_PEER_TERM.0 - 1), false),
    ];
    for message in &accepted {
        assert_eq!(check(message), Ok(()), "{message:?}");
    }
}

#[test]
fn senders_and_receivers_are_checked() {
    let mut wrong_to = append(3, (0, 0), &[], 0);
    wrong_to.to = NodeId(3);
    assert_eq!(check(&wrong_to), Err(Reason::WrongNode));
    let mut from_self = append(3, (0, 0), &[], 0);
    from_self.from = ME;
    assert_eq!(check(&from_self), Err(Reason::FromSelf));
    for from in [0, 4, 255, u64::MAX] {
        let mut unknown = envelope(3, Message::TimeoutNow);
        unknown.from = NodeId(from);
        assert_eq!(check(&unknown), Err(Reason::UnknownPeer), "from {from}");
    }
}

/// SQLite holds i64: a term past that could never be stored, and one near it would leave no room for
/// the next campaign. Refused, never clamped.
#[test]
fn terms_beyond_what_a_peer_may_send_are_refused() {
    for term in [MAX_PEER_TERM.0 + 1, MAX_STORABLE - 1, MAX_STORABLE]
        .into_iter()
        .chain(HUGE)
    {
        assert_eq!(
            check(&append(term, (0, 0), &[], 0)),
            Err(Reason::TermOutOfRange),
            "append term {term}"
        );
        assert_eq!(
            check(&vote(term, (0, 0), false)),
            Err(Reason::TermOutOfRange),
            "vote term {term}"
        );
        assert_eq!(
            check(&envelope(term, Message::TimeoutNow)),
            Err(Reason::TermOutOfRange),
            "timeout_now term {term}"
        );
    }
}

#[test]
fn indexes_beyond_what_storage_holds_are_refused() {
    for huge in HUGE {
        assert_eq!(
            check(&append(3, (huge, 1), &[], 0)),
            Err(Reason::IndexOutOfRange)
        );
        assert_eq!(
            check(&append(3, (1, 1), &[], huge)),
            Err(Reason::IndexOutOfRange)
        );
        assert_eq!(
            check(&vote(3, (huge, 1), false)),
            Err(Reason::IndexOutOfRange)
        );
        assert_eq!(
            check(&append_response(3, huge, None)),
            Err(Reason::IndexOutOfRange)
        );
        assert_eq!(
            check(&append_response(3, 4, Some((huge, 1)))),
            Err(Reason::IndexOutOfRange)
        );
    }
    // The last storable index may be named, but no entry may go past it.
    assert_eq!(
        check(&append(3, (MAX_INDEX.0, 1), &[], 0)),
        Ok(()),
        "a heartbeat at the last index"
    );
    assert_eq!(
        check(&append(3, (MAX_INDEX.0, 1), &[(MAX_INDEX.0 + 1, 3)], 0)),
        Err(Reason::IndexOutOfRange)
    );
    assert_eq!(
        check(&append(3, (u64::MAX, 1), &[(0, 3)], 0)),
        Err(Reason::IndexOutOfRange),
        "prev_log_index + entries must not wrap"
    );
}

/// Raft §5.3: entries follow prev_log_index one by one.
#[test]
fn entries_with_gaps_overlaps_or_reorders_are_refused_5_3() {
    let refused: [&[(u64, u64)]; 6] = [
        &[(7, 2)],                 // a gap after prev_log_index 2
        &[(2, 2)],                 // overlapping prev_log_index
        &[(3, 2), (5, 2)],         // a gap inside
        &[(3, 2), (3, 2)],         // a duplicate
        &[(4, 2), (3, 2)],         // reordered
        &[(3, 2), (4, 2), (1, 3)], // back to index 1 with a higher term
    ];
    for entries in refused {
        assert_eq!(
            check(&append(3, (2, 1), entries, 0)),
            Err(Reason::EntriesNotContiguous),
            "{entries:?}"
        );
    }
}

/// Raft §5.3, §5.4.2: a leader's log holds entries of its own and earlier terms, in term order.
#[test]
fn entry_terms_above_the_message_or_decreasing_are_refused() {
    assert_eq!(
        check(&append(3, (0, 0), &[(1, 4)], 0)),
        Err(Reason::EntryTermAboveMessage)
    );
    assert_eq!(
        check(&append(3, (0, 0), &[(1, 1), (2, u64::MAX)], 0)),
        Err(Reason::EntryTermAboveMessage)
    );
    assert_eq!(
        check(&append(3, (0, 0), &[(1, 3), (2, 2)], 0)),
        Err(Reason::EntryTermsDecrease)
    );
    assert_eq!(
        check(&append(3, (4, 2), &[(5, 1)], 0)),
        Err(Reason::EntryTermsDecrease),
        "below prev_log_term"
    );
    assert_eq!(
        check(&append(3, (0, 0), &[(1, 0)], 0)),
        Err(Reason::EntryTermsDecrease),
        "term 0 is before any election"
    );
}

#[test]
fn prev_log_term_must_fit_the_message() {
    assert_eq!(
        check(&append(3, (4, 4), &[], 0)),
        Err(Reason::PrevLogInconsistent)
    );
    assert_eq!(
        check(&append(3, (0, 1), &[], 0)),
        Err(Reason::PrevLogInconsistent)
    );
}

/// Raft §5.2: a candidate's term is above every term in its log.
#[test]
fn vote_requests_must_campaign_above_their_log_5_2() {
    for pre_vote in [false, true] {
        assert_eq!(
            check(&vote(5, (9, 5), pre_vote)),
            Err(Reason::LastLogInconsistent)
        );
        assert_eq!(
            check(&vote(5, (9, u64::MAX), pre_vote)),
            Err(Reason::LastLogInconsistent)
        );
        assert_eq!(
            check(&vote(5, (0, 2), pre_vote)),
            Err(Reason::LastLogInconsistent)
        );
    }
}

#[test]
fn responses_must_fit_their_term() {
    assert_eq!(
        check(&append_response(3, 4, Some((2, 4)))),
        Err(Reason::ResponseInconsistent)
    );
}

#[test]
fn submits_need_text_and_a_sane_request_id() {
    let submit = |text: &str, request_id: Option<&str>| {
        check_submit(&SubmitRequest {
            text: text.into(),
            request_id: request_id.map(Into::into),
        })
        .map_err(|rejected| rejected.reason)
    };
    assert_eq!(submit("hello", None), Ok(()));
    assert_eq!(submit("line one\nline two", Some("client-7/42")), Ok(()));
    assert_eq!(submit("héllo", Some("ünïcode-id")), Ok(()));
    assert_eq!(submit("x", Some(&"r".repeat(MAX_REQUEST_ID_LEN))), Ok(()));
    assert_eq!(submit("", None), Err(Reason::EmptyText));
    assert_eq!(submit(" \n\t", None), Err(Reason::EmptyText));
    assert_eq!(submit("x", Some("")), Err(Reason::BadRequestId));
    assert_eq!(
        submit("x", Some(&"r".repeat(MAX_REQUEST_ID_LEN + 1))),
        Err(Reason::BadRequestId)
    );
    for id in ["a\0b", "a\nb", "tab\there", "\u{7f}", "bell\u{7}"] {
        assert_eq!(submit("x", Some(id)), Err(Reason::BadRequestId), "{id:?}");
    }
}

#[test]
fn every_reason_has_its_own_code_and_slot() {
    let mut codes: Vec<&str> = Reason::ALL.iter().map(|r| r.code()).collect();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), Reason::ALL.len());
    for (slot, reason) in Reason::ALL.iter().enumerate() {
        assert_eq!(reason.slot(), slot, "{reason}");
    }
}

fn member(id: u64, addr: &str, role: MemberRole) -> Member {
    Member {
        id: NodeId(id),
        addr: addr.to_string(),
        role,
    }
}

fn config_append(members: Vec<Member>, promoting: Vec<NodeId>) -> Envelope {
    let mut message = append(2, (1, 1), &[(2, 2)], 1);
    if let Message::AppendEntries(ae) = &mut message.message {
        ae.entries[0].payload = Payload::Configuration { members, promoting };
    }
    message
}

/// Raft §6: a configuration entry from a peer is input like the rest: one no correct leader writes is
/// refused whole.
#[test]
fn configurations_a_leader_cannot_write_are_refused() {
    use MemberRole::{Learner, Voter};
    let good = vec![member(1, "a:1", Voter), member(4, "node4:5000", Learner)];
    assert_eq!(check(&config_append(good.clone(), vec![NodeId(4)])), Ok(()));
    let bad = [
        (vec![member(4, "a:1", Learner)], vec![]),
        (
            vec![member(1, "a:1", Voter), member(1, "b:1", Voter)],
            vec![],
        ),
        (vec![member(0, "a:1", Voter)], vec![]),
        (vec![member(300, "a:1", Voter)], vec![]),
        (vec![member(1, "", Voter)], vec![]),
        (vec![member(1, "no-port", Voter)], vec![]),
        (vec![member(1, "a:99999", Voter)], vec![]),
        (vec![member(1, "a b:1", Voter)], vec![]),
        (
            vec![member(1, &format!("{}:1", "h".repeat(300)), Voter)],
            vec![],
        ),
        (good.clone(), vec![NodeId(1)]),
        (good.clone(), vec![NodeId(9)]),
        (
            (1..=65).map(|id| member(id, "a:1", Voter)).collect(),
            vec![],
        ),
    ];
    for (members, promoting) in bad {
        let shown = format!("{members:?} {promoting:?}");
        assert_eq!(
            check(&config_append(members, promoting)),
            Err(Reason::BadConfiguration),
            "{shown}"
        );
    }
}

fn record(index: u64, term: u64, text: &str, request_id: Option<&str>) -> MessageEntry {
    MessageEntry {
        index: LogIndex(index),
        term: Term(term),
        text: text.into(),
        request_id: request_id.map(Into::into),
    }
}

/// A chunk of the image at 10 (term 3) holding `records`, starting at `offset` after `after`.
fn chunk(
    offset: u64,
    after: u64,
    records: Vec<MessageEntry>,
    total_bytes: u64,
    done: bool,
) -> InstallSnapshot {
    InstallSnapshot {
        last_index: LogIndex(10),
        last_term: Term(3),
        members: vec![member(1, "a:1", MemberRole::Voter)],
        config_index: LogIndex(0),
        total_bytes,
        offset,
        after: LogIndex(after),
        records,
        done,
    }
}

fn install(term: u64, chunk: InstallSnapshot) -> Envelope {
    envelope(term, Message::InstallSnapshot(chunk))
}

/// Raft §7: a chunk is part of a state machine's image (applied messages in index order, up to the
/// snapshot, of terms up to its own, with sizes adding up); anything else is refused whole.
#[test]
fn install_snapshot_chunks_must_describe_an_image() {
    let a = record(2, 1, "a", Some("r-a"));
    let b = record(7, 3, "b", None);
    let size = |r: &MessageEntry| flotilla_shared::rpc::snapshot_record_bytes(r);
    let total = size(&a) + size(&b);
    let whole = chunk(0, 0, vec![a.clone(), b.clone()], total, true);
    assert_eq!(check(&install(4, whole.clone())), Ok(()));
    let first = chunk(0, 0, vec![a.clone()], total, false);
    assert_eq!(check(&install(4, first)), Ok(()));
    let second = chunk(size(&a), 2, vec![b.clone()], total, true);
    assert_eq!(check(&install(4, second)), Ok(()));
    let empty_image = chunk(0, 0, Vec::new(), 0, true);
    assert_eq!(check(&install(4, empty_image)), Ok(()));

    let refused: Vec<(&str, Envelope, Reason)> = vec![
        (
            "snapshot term above the message's",
            install(2, whole.clone()),
            Reason::EntryTermAboveMessage,
        ),
        (
            "records out of order",
            install(
                4,
                InstallSnapshot {
                    records: vec![b.clone(), a.clone()],
                    ..whole.clone()
                },
            ),
            Reason::SnapshotInconsistent,
        ),
        (
            "a record past the snapshot",
            install(
                4,
                InstallSnapshot {
                    records: vec![a.clone(), record(11, 3, "late", None)],
                    ..whole.clone()
                },
            ),
            Reason::SnapshotInconsistent,
        ),
        (
            "a record of a later term",
            install(
                4,
                InstallSnapshot {
                    records: vec![a.clone(), record(7, 4, "b", None)],
                    ..whole.clone()
                },
            ),
            Reason::SnapshotInconsistent,
        ),
        (
            "a record at or before `after`",
            install(4, chunk(size(&a), 7, vec![b.clone()], total, true)),
            Reason::SnapshotInconsistent,
        ),
        (
            "sizes past the total",
            install(
                4,
                InstallSnapshot {
                    total_bytes: total - 1,
                    ..whole.clone()
                },
            ),
            Reason::SnapshotInconsistent,
        ),
        (
            "the last chunk short of the total",
            install(
                4,
                InstallSnapshot {
                    total_bytes: total + 1,
                    ..whole.clone()
                },
            ),
            Reason::SnapshotInconsistent,
        ),
        (
            "a later chunk at offset 0",
            install(4, chunk(0, 2, vec![b.clone()], total, true)),
            Reason::SnapshotInconsistent,
        ),
        (
            "a blank message",
            install(
                4,
                InstallSnapshot {
                    records: vec![record(2, 1, "  ", None), b.clone()],
                    ..whole.clone()
                },
            ),
            Reason::SnapshotInconsistent,
        ),
        (
            "a request id with a control character",
            install(
                4,
                InstallSnapshot {
                    records: vec![record(2, 1, "a", Some("r\n")), b.clone()],
                    ..whole.clone()
                },
            ),
            Reason::SnapshotInconsistent,
        ),
        (
            "no snapshot at all",
            install(
                4,
                InstallSnapshot {
                    last_index: LogIndex(0),
                    last_term: Term(0),
                    records: Vec::new(),
                    total_bytes: 0,
                    ..whole.clone()
                },
            ),
            Reason::SnapshotInconsistent,
        ),
        (
            "no configuration",
            install(
                4,
                InstallSnapshot {
                    members: Vec::new(),
                    ..whole.clone()
                },
            ),
            Reason::BadConfiguration,
        ),
        (
            "a configuration of learners only",
            install(
                4,
                InstallSnapshot {
                    members: vec![member(1, "a:1", MemberRole::Learner)],
                    ..whole.clone()
                },
            ),
            Reason::BadConfiguration,
        ),
        (
            "a member without an address in a configuration from the log",
            install(
                4,
                InstallSnapshot {
                    members: vec![member(1, "", MemberRole::Voter)],
                    config_index: LogIndex(5),
                    ..whole.clone()
                },
            ),
            Reason::BadConfiguration,
        ),
        (
            "a member's address given as a URL",
            install(
                4,
                InstallSnapshot {
                    members: vec![member(1, "http://a:1", MemberRole::Voter)],
                    config_index: LogIndex(5),
                    ..whole.clone()
                },
            ),
            Reason::BadConfiguration,
        ),
        (
            "config_index past the snapshot",
            install(
                4,
                InstallSnapshot {
                    config_index: LogIndex(11),
                    ..whole.clone()
                },
            ),
            Reason::SnapshotInconsistent,
        ),
    ];
    for (what, message, reason) in refused {
        assert_eq!(check(&message), Err(reason), "{what}");
    }
    for huge in HUGE {
        let message = install(
            4,
            InstallSnapshot {
                last_index: LogIndex(huge),
                ..whole.clone()
            },
        );
        assert_eq!(check(&message), Err(Reason::IndexOutOfRange), "{huge}");
    }
    let response = |next_after: u64, last: u64| {
        envelope(
            4,
            Message::InstallSnapshotResponse(InstallSnapshotResponse {
                last_index: LogIndex(last),
                success: true,
                next_offset: 0,
                next_after: LogIndex(next_after),
                done: false,
                reason: None,
            }),
        )
    };
    assert_eq!(check(&response(5, 10)), Ok(()));
    assert_eq!(check(&response(11, 10)), Err(Reason::SnapshotInconsistent));
    assert_eq!(check(&response(0, u64::MAX)), Err(Reason::IndexOutOfRange));
}
