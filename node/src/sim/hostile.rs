//! Hostile Raft messages, from one seeded PRNG: what the `mangled` fault profile does to messages in
//! transit, and what the property tests throw at single nodes.
//!
//! [`mangle`] bends a real message so that no correct peer could have sent it (a term past what a peer
//! may send, a wrong receiver, an unknown or own sender, entries with a gap, an overlap, a reorder or a
//! term above the message's, indexes no store can hold, ...): corruption in transit that a receiver can
//! tell, never a plausible lie (Byzantine faults are outside Raft's model). [`arbitrary`] makes anything
//! at all, plausible forgeries included, aimed at a receiver's current state.

use crate::raft::rng::SplitMix64;
use crate::raft::{Entry, Envelope, LogIndex, Message, NodeId, Payload, Term};
use crate::validation::{MAX_INDEX, MAX_PEER_TERM, MAX_STORABLE};
use flotilla_shared::api::MessageEntry;
use flotilla_shared::rpc::{
    snapshot_record_bytes, AppendEntries, AppendEntriesResponse, InstallSnapshot,
    InstallSnapshotResponse, RequestVote, RequestVoteResponse,
};

/// Numbers no message may carry: past a peer's highest term or the highest index, up to `u64::MAX`.
const TOO_LARGE: [u64; 5] = [
    MAX_PEER_TERM.0 + 1,
    MAX_STORABLE,
    MAX_STORABLE + 1,
    u64::MAX - 1,
    u64::MAX,
];

fn pick<T: Copy>(rng: &mut SplitMix64, from: &[T]) -> T {
    from[rng.range_inclusive(0, from.len() as u64 - 1) as usize]
}

/// A number past `floor`: one of the classic extremes, or anything above it.
fn too_large(rng: &mut SplitMix64, floor: u64) -> u64 {
    if rng.chance(1, 2) {
        pick(rng, &TOO_LARGE).max(floor + 1)
    } else {
        rng.range_inclusive(floor + 1, u64::MAX)
    }
}

/// A number just above `floor` (a term one to nine past the message's).
fn above(rng: &mut SplitMix64, floor: u64) -> u64 {
    rng.range_inclusive(floor.saturating_add(1), floor.saturating_add(9))
}

/// An id that is not a member of a cluster of `members`.
fn stranger(rng: &mut SplitMix64, members: &[NodeId]) -> NodeId {
    loop {
        let id = NodeId(pick(rng, &[0, 200, 255, 256, u64::MAX]));
        if !members.contains(&id) {
            return id;
        }
    }
}

/// `envelope` bent so that its receiver must refuse it (see the module docs). `members` are the
/// cluster's ids.
pub fn mangle(envelope: &Envelope, rng: &mut SplitMix64, members: &[NodeId]) -> Envelope {
    let mut bent = envelope.clone();
    // Message-specific damage half the time, when the message has something to damage.
    if rng.chance(1, 2) && mangle_message(&mut bent, rng) {
        return bent;
    }
    match rng.range_inclusive(0, 3) {
        0 => bent.term = Term(too_large(rng, MAX_PEER_TERM.0)),
        1 => {
            let others: Vec<NodeId> = members
                .iter()
                .copied()
                .filter(|m| *m != envelope.to)
                .collect();
            bent.to = if others.is_empty() || rng.chance(1, 2) {
                stranger(rng, members)
            } else {
                pick(rng, &others)
            };
        }
        2 => bent.from = envelope.to,
        _ => {
            let mut from = stranger(rng, members);
            // A valid id outside the configuration may be a member this node has not heard of yet
            // (Raft §6): its campaigns and, with no leader known, its appends are taken. Only an
            // impossible id marks those as damaged.
            let may_be_new = matches!(
                bent.message,
                Message::RequestVote(_) | Message::AppendEntries(_)
            );
            if may_be_new && NodeId::new(from.0).is_ok() {
                from = NodeId(from.0 + NodeId::MAX + 1);
            }
            bent.from = from;
        }
    }
    bent
}

/// Damages the message's own fields; returns false when it has none that a receiver can check.
fn mangle_message(envelope: &mut Envelope, rng: &mut SplitMix64) -> bool {
    let term = envelope.term;
    match &mut envelope.message {
        Message::AppendEntries(append) => {
            let count = append.entries.len();
            match rng.range_inclusive(0, 8) {
                0 => append.prev_log_index = LogIndex(too_large(rng, MAX_INDEX.0)),
                1 => append.leader_commit = LogIndex(too_large(rng, MAX_INDEX.0)),
                2 => append.prev_log_term = Term(above(rng, term.0)),
                3 if append.prev_log_index.0 == 0 => {
                    append.prev_log_term = Term(rng.range_inclusive(1, term.0.max(1)))
                }
                4 if count > 0 => {
                    // A gap or an overlap: one entry's index moves.
                    let at = rng.range_inclusive(0, count as u64 - 1) as usize;
                    let index = append.entries[at].index.0;
                    let moved = match rng.range_inclusive(0, 2) {
                        0 => index.saturating_add(rng.range_inclusive(1, 9)),
                        1 => index.saturating_sub(rng.range_inclusive(1, 3)),
                        _ => too_large(rng, MAX_INDEX.0),
                    };
                    append.entries[at].index =
                        LogIndex(if moved == index { index ^ 1 } else { moved });
                }
                5 if count > 1 => {
                    let (a, b) = (0, rng.range_inclusive(1, count as u64 - 1) as usize);
                    append.entries.swap(a, b);
                }
                6 if count > 0 => {
                    let at = rng.range_inclusive(0, count as u64 - 1) as usize;
                    let copy = append.entries[at].clone();
                    append.entries.insert(at + 1, copy);
                }
                7 if count > 0 => {
                    let at = rng.range_inclusive(0, count as u64 - 1) as usize;
                    append.entries[at].term = if rng.chance(1, 2) {
                        Term(0)
                    } else {
                        Term(above(rng, term.0))
                    };
                }
                8 if count > 1 => {
                    append.entries.remove(0);
                }
                _ => return false,
            }
        }
        Message::RequestVote(vote) => match rng.range_inclusive(0, 2) {
            0 => vote.last_log_index = LogIndex(too_large(rng, MAX_INDEX.0)),
            1 => vote.last_log_term = Term(above(rng, term.0.saturating_sub(1))),
            _ => {
                vote.last_log_index = LogIndex::ZERO;
                vote.last_log_term = Term(rng.range_inclusive(1, term.0.saturating_add(1)));
            }
        },
        Message::AppendEntriesResponse(response) => match rng.range_inclusive(0, 2) {
            0 => response.index = LogIndex(too_large(rng, MAX_INDEX.0)),
            1 => response.conflict_index = Some(LogIndex(too_large(rng, MAX_INDEX.0))),
            _ => response.conflict_term = Some(Term(above(rng, term.0))),
        },
        Message::InstallSnapshot(install) => match rng.range_inclusive(0, 3) {
            0 => install.last_index = LogIndex(too_large(rng, MAX_INDEX.0)),
            1 => install.last_term = Term(above(rng, term.0)),
            2 if !install.records.is_empty() => install.total_bytes = 0,
            _ => match install.records.first_mut() {
                Some(record) => record.index = LogIndex(too_large(rng, MAX_INDEX.0)),
                None => install.after = LogIndex(too_large(rng, MAX_INDEX.0)),
            },
        },
        Message::InstallSnapshotResponse(response) => {
            response.next_after = LogIndex(too_large(rng, MAX_INDEX.0))
        }
        Message::RequestVoteResponse(_) | Message::TimeoutNow => return false,
    }
    true
}

/// A chunk of an image near `target`'s commit point, sizes adding up (before it is mangled).
fn forged_chunk(rng: &mut SplitMix64, target: Target) -> InstallSnapshot {
    let last = target.commit.0.saturating_add(rng.range_inclusive(1, 8));
    let after = rng.range_inclusive(0, last / 2);
    let term = target.term.0.max(1);
    let records: Vec<MessageEntry> = (0..rng.range_inclusive(1, 3))
        .map(|i| MessageEntry {
            index: LogIndex(after + 1 + i),
            term: Term(rng.range_inclusive(1, term)),
            text: format!("forged image {i}"),
            request_id: rng
                .chance(1, 2)
                .then(|| format!("forged-{}", rng.next_u64() % 8)),
        })
        .collect();
    let bytes: u64 = records.iter().map(snapshot_record_bytes).sum();
    let offset = if after == 0 {
        0
    } else {
        rng.range_inclusive(1, 64)
    };
    InstallSnapshot {
        last_index: LogIndex(last),
        last_term: Term(term),
        members: Vec::new(),
        config_index: LogIndex::ZERO,
        total_bytes: offset + bytes,
        offset,
        after: LogIndex(after),
        records,
        done: true,
    }
}

/// What [`arbitrary`] aims at: the receiver's state, so that plausible messages land near it.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    pub id: NodeId,
    pub term: Term,
    pub last: LogIndex,
    pub commit: LogIndex,
}

/// Any message at all for `target`, from any sender: random fields with extreme values, plausible
/// messages near the receiver's state (forgeries a correct peer could have sent, too), and those
/// mangled. For tests that feed single nodes; never for the cluster simulator's safety runs, where a
/// plausible forgery is a Byzantine fault.
pub fn arbitrary(rng: &mut SplitMix64, members: &[NodeId], target: Target) -> Envelope {
    let near = |rng: &mut SplitMix64, around: u64| -> u64 {
        match rng.range_inclusive(0, 5) {
            0 => 0,
            1 => 1,
            2 => around.saturating_sub(rng.range_inclusive(0, 3)),
            3 => around.saturating_add(rng.range_inclusive(0, 3)),
            4 => pick(rng, &TOO_LARGE),
            _ => rng.range_inclusive(0, around.saturating_mul(2).max(8)),
        }
    };
    let from = if rng.chance(9, 10) {
        pick(rng, members)
    } else {
        stranger(rng, members)
    };
    let to = if rng.chance(9, 10) {
        target.id
    } else {
        pick(rng, members)
    };
    let term = Term(near(rng, target.term.0));
    let message = match rng.range_inclusive(0, 6) {
        0 => {
            let prev = near(rng, target.last.0);
            let count = rng.range_inclusive(0, 5);
            let mut entry_term = rng.range_inclusive(1, term.0.clamp(1, 1 << 20));
            let entries = (0..count)
                .map(|i| {
                    if rng.chance(1, 4) {
                        entry_term = near(rng, entry_term);
                    }
                    Entry {
                        index: LogIndex(prev.wrapping_add(1 + i)),
                        term: Term(entry_term),
                        payload: Payload::Message {
                            text: format!("forged {i}"),
                            request_id: rng
                                .chance(1, 2)
                                .then(|| format!("forged-{}", rng.next_u64() % 8)),
                        },
                    }
                })
                .collect();
            Message::AppendEntries(AppendEntries {
                prev_log_index: LogIndex(prev),
                prev_log_term: Term(near(rng, target.term.0)),
                entries,
                leader_commit: LogIndex(near(rng, target.commit.0)),
                read_ctx: if rng.chance(1, 4) { rng.next_u64() } else { 0 },
            })
        }
        1 => Message::RequestVote(RequestVote {
            pre_vote: rng.chance(1, 2),
            last_log_index: LogIndex(near(rng, target.last.0)),
            last_log_term: Term(near(rng, target.term.0)),
            leadership_transfer: rng.chance(1, 4),
        }),
        2 => Message::AppendEntriesResponse(AppendEntriesResponse {
            success: rng.chance(1, 2),
            index: LogIndex(near(rng, target.last.0)),
            conflict_index: rng.chance(1, 2).then(|| LogIndex(near(rng, target.last.0))),
            conflict_term: rng.chance(1, 2).then(|| Term(near(rng, target.term.0))),
            reason: None,
            read_ctx: if rng.chance(1, 4) { near(rng, 2) } else { 0 },
        }),
        3 => Message::RequestVoteResponse(RequestVoteResponse {
            pre_vote: rng.chance(1, 2),
            granted: rng.chance(1, 2),
            reason: None,
        }),
        4 => Message::TimeoutNow,
        5 => Message::InstallSnapshot(forged_chunk(rng, target)),
        _ => Message::InstallSnapshotResponse(InstallSnapshotResponse {
            last_index: LogIndex(near(rng, target.commit.0)),
            success: rng.chance(1, 2),
            next_offset: near(rng, 64),
            next_after: LogIndex(near(rng, target.commit.0 / 2)),
            done: rng.chance(1, 2),
            reason: None,
        }),
    };
    // A well-formed snapshot from a member would replace the node's state: a Byzantine fault, not
    // bad input. Snapshot messages come mangled only, and each must be refused.
    let snapshot = matches!(
        message,
        Message::InstallSnapshot(_) | Message::InstallSnapshotResponse(_)
    );
    let envelope = Envelope {
        msg: 0,
        from,
        // Addressed to the target, so that damage to the address cannot make it the target's.
        to: if snapshot { target.id } else { to },
        term,
        message,
    };
    if snapshot || rng.chance(1, 3) {
        mangle(&envelope, rng, members)
    } else {
        envelope
    }
}
