//! Message identity: every envelope a core sends carries its own per-sender number, the send event of
//! that envelope carries the same number, and every message taken in is announced with its sender's.

use super::*;

fn sent(ready: &Ready) -> Vec<&Envelope> {
    ready
        .messages
        .iter()
        .chain(&ready.persisted_messages)
        .collect()
}

#[test]
fn envelopes_are_numbered_from_one_and_their_send_events_name_them() {
    let (mut core, disk) = core_with(config(1, 3), &[1], 1);
    core.tick(300);
    let ready = core.ready();
    let votes: Vec<(NodeId, u64)> = sent(&ready).iter().map(|m| (m.to, m.msg)).collect();
    assert_eq!(votes, vec![(NodeId(2), 1), (NodeId(3), 2)]);
    let events: Vec<_> = ready
        .events
        .iter()
        .filter_map(EventKind::sent_message)
        .collect();
    assert_eq!(events, votes);
    persist(&mut core, &disk, &ready);

    let mut grant = envelope(2, 1, 2, vote_granted());
    grant.msg = 41;
    core.step(grant);
    let ready = core.ready();
    assert!(ready.events.contains(&EventKind::MessageReceived {
        from: NodeId(2),
        msg: 41,
        message: "request_vote_response".into(),
    }));
    let appends: Vec<(NodeId, u64)> = sent(&ready).iter().map(|m| (m.to, m.msg)).collect();
    assert_eq!(appends, vec![(NodeId(2), 3), (NodeId(3), 4)]);
    let events: Vec<_> = ready
        .events
        .iter()
        .filter_map(EventKind::sent_message)
        .collect();
    assert_eq!(events, appends);
    persist(&mut core, &disk, &ready);

    // The leader's `append_acked` names the response's own number on the follower.
    let mut ack = envelope(2, 1, 2, append_ok(2, 0));
    ack.msg = 77;
    core.step(ack);
    let ready = core.ready();
    assert!(ready.events.iter().any(|event| matches!(
        event,
        EventKind::AppendAcked {
            from: NodeId(2),
            msg: 77,
            ..
        }
    )));
}

#[test]
fn a_successful_append_response_is_numbered_without_a_send_event() {
    let (mut core, _disk) = core_with(config(2, 3), &[1], 1);
    let mut heartbeat = envelope(1, 2, 1, append((1, 1), vec![], 1));
    heartbeat.msg = 12;
    core.step(heartbeat);
    let mut rejected = envelope(1, 2, 1, append((5, 1), vec![], 1));
    rejected.msg = 13;
    core.step(rejected);
    let ready = core.ready();
    let answers: Vec<u64> = sent(&ready).iter().map(|m| m.msg).collect();
    assert_eq!(answers, vec![1, 2]);
    // Only the rejection has a send event.
    let events: Vec<_> = ready
        .events
        .iter()
        .filter_map(EventKind::sent_message)
        .collect();
    assert_eq!(events, vec![(NodeId(1), 2)]);
    let received: Vec<u64> = ready
        .events
        .iter()
        .filter_map(|event| match event {
            EventKind::MessageReceived { from, msg, message } => {
                assert_eq!((*from, message.as_str()), (NodeId(1), "append_entries"));
                Some(*msg)
            }
            _ => None,
        })
        .collect();
    assert_eq!(received, vec![12, 13]);
}
