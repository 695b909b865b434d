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
        snapshot: Default::default(),
        first_index: state.first_index,
    };
    let core = Raft::new(config, disk.clone(), restored, 0).expect("valid config");
    (core, disk)
}

fn envelope(from: u64, to: u64, term: u64, message: Message) -> Envelope {
    Envelope {
        msg: 0,
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

mod election;
mod message_numbers;
mod reads_and_transfer;
mod refusals;
mod replication;
