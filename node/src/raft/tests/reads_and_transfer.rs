//! ReadIndex reads (thesis §6.4) and leadership transfer (thesis §3.10).

use super::*;

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
