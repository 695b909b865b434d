use super::*;
use flotilla_shared::api::{MessageEntry, Status};
use flotilla_shared::event::Role;
use flotilla_shared::{LogIndex, NodeId, Term};
use reqwest::StatusCode;
use std::collections::BTreeMap;

fn status(id: u64, role: Role, term: u64, leader: Option<u64>) -> Status {
    Status {
        id: NodeId(id),
        role,
        term: Term(term),
        voted_for: None,
        leader_id: leader.map(NodeId),
        commit_index: LogIndex(0),
        last_applied: LogIndex(0),
        last_log_index: LogIndex(0),
        last_log_term: Term(0),
        persisted_index: LogIndex(0),
        peers: Vec::new(),
        isolated_from: Vec::new(),
        heartbeat_ms: 50,
        election_timeout_ms: [150, 300],
        ..Default::default()
    }
}

#[test]
fn a_leader_is_agreed_only_when_everyone_names_it_in_one_term() {
    let agreed: BTreeMap<NodeId, Status> = [
        status(1, Role::Leader, 3, Some(1)),
        status(2, Role::Follower, 3, Some(1)),
    ]
    .into_iter()
    .map(|s| (s.id, s))
    .collect();
    assert_eq!(agreed_leader(&agreed), Some(NodeId(1)));

    let mut other_term = agreed.clone();
    other_term.get_mut(&NodeId(2)).unwrap().term = Term(4);
    assert_eq!(agreed_leader(&other_term), None);

    let mut stepped_down = agreed.clone();
    stepped_down.get_mut(&NodeId(1)).unwrap().role = Role::Follower;
    assert_eq!(agreed_leader(&stepped_down), None);

    let mut unknown = agreed;
    unknown.get_mut(&NodeId(2)).unwrap().leader_id = None;
    assert_eq!(agreed_leader(&unknown), None);
}

fn message(index: u64, text: &str, request_id: &str) -> MessageEntry {
    MessageEntry {
        index: LogIndex(index),
        term: Term(1),
        text: text.into(),
        request_id: Some(request_id.into()),
    }
}

fn ack(index: u64, text: &str, request_id: &str) -> Ack {
    Ack {
        request_id: request_id.into(),
        text: text.into(),
        index: LogIndex(index),
        attempts: 1,
    }
}

#[test]
fn acknowledged_writes_must_be_present_once_at_their_index() {
    let messages = vec![message(2, "a", "r-a"), message(3, "b", "r-b")];
    assert!(check_acked_exactly_once(&messages, &[ack(2, "a", "r-a")]).is_ok());
    assert!(check_acked_exactly_once(&messages, &[ack(4, "c", "r-c")]).is_err());
    assert!(check_acked_exactly_once(&messages, &[ack(3, "a", "r-a")]).is_err());
    let twice = vec![message(2, "a", "r-a"), message(5, "a", "r-a")];
    assert!(check_acked_exactly_once(&twice, &[]).is_err());
}

#[test]
fn the_leader_header_is_parsed() {
    let reply = Reply {
        status: StatusCode::CREATED,
        leader_header: Some("2 http://127.0.0.1:7002".into()),
        body: Vec::new(),
    };
    assert_eq!(
        reply.leader_hint(),
        Some((NodeId(2), "http://127.0.0.1:7002".to_string()))
    );
}
