//! Snapshot checks every store must pass (Raft §7): taking one, compacting the log behind it,
//! staging and installing one received from a leader, and what a restart finds between any two of
//! these steps (each is one transaction: a crash leaves the state before it or after it).

use super::*;
use crate::raft::SnapshotMeta;
use flotilla_shared::api::{Member, MemberRole};
use flotilla_shared::rpc::snapshot_record_bytes;

fn members() -> Vec<Member> {
    (1..=3)
        .map(|id| Member {
            id: NodeId(id),
            addr: format!("127.0.0.1:700{id}"),
            role: MemberRole::Voter,
        })
        .collect()
}

/// A log of 1..=`last`: a no-op at 1, then messages "m<i>" with request id "r<i>", except that entry 4
/// repeats request id "r2" (a duplicate); all applied.
fn applied_log(store: &mut impl LogStore, last: u64) -> Vec<Entry> {
    let mut entries = vec![noop(1, 1)];
    entries.extend(messages_in(2, last, 1));
    entries[3] = message(4, 1, "m4", Some("r2"));
    store
        .write(WriteBatch {
            hard_state: Some(HardState {
                term: Term(1),
                voted_for: None,
                commit: LogIndex(last),
            }),
            entries: &entries,
            apply: &entries,
        })
        .expect("write and apply");
    entries
}

fn image_bytes(messages: &[MessageEntry], up_to: u64) -> u64 {
    messages
        .iter()
        .filter(|m| m.index.0 <= up_to)
        .map(snapshot_record_bytes)
        .sum()
}

pub(super) fn snapshot_compacts_and_survives_restart(backend: &mut impl Backend) {
    let mut store = backend.open();
    applied_log(&mut store, 10);
    let messages = all_messages(&store);
    assert_eq!(store.snapshot().unwrap(), SnapshotMeta::default());

    let meta = store
        .take_snapshot(log_id(8, 1), &members(), LogIndex(0))
        .expect("snapshot at 8");
    assert_eq!(meta.last, log_id(8, 1));
    assert_eq!(meta.members, members());
    assert_eq!(meta.bytes, image_bytes(&messages, 8));
    assert_eq!(store.snapshot().unwrap(), meta);
    // A later snapshot adds the messages after the last one to the size.
    let later = store
        .take_snapshot(log_id(9, 1), &members(), LogIndex(0))
        .expect("snapshot at 9");
    assert_eq!(later.bytes, image_bytes(&messages, 9));

    assert_eq!(store.compact(LogIndex(6)).unwrap(), LogIndex(7));
    let state = store.initial_state().unwrap();
    assert_eq!(
        (state.first_index, state.snapshot, state.last, state.applied),
        (LogIndex(7), log_id(9, 1), log_id(10, 1), LogIndex(10))
    );
    assert_eq!(
        all_entries(&store)
            .iter()
            .map(|e| e.index.0)
            .collect::<Vec<_>>(),
        (7..=10).collect::<Vec<_>>(),
        "entries before the first index are gone"
    );
    assert_eq!(store.term(LogIndex(5)).unwrap(), None);
    assert_eq!(store.term(LogIndex(9)).unwrap(), Some(Term(1)));
    assert_eq!(
        all_messages(&store),
        messages,
        "compaction removes log entries, never messages"
    );
    assert_eq!(store.find_request("r3").unwrap(), Some(log_id(3, 1)));

    // A restart finds the snapshot, the compacted log and the whole state machine.
    let mut store = backend.reopen(store);
    assert_eq!(store.initial_state().unwrap(), state);
    assert_eq!(store.snapshot().unwrap(), later);
    assert_eq!(all_messages(&store), messages);
    // Dedupe lasts for the life of the data: an id whose entry was compacted away is still known.
    let again = vec![message(11, 2, "m3 again", Some("r3"))];
    append(&mut store, &again);
    assert_eq!(
        apply(&mut store, &again),
        vec![ApplyOutcome::Duplicate {
            index: LogIndex(11),
            original: log_id(3, 1)
        }]
    );
    // Compacting everything up to the snapshot leaves its last entry's term known.
    assert_eq!(store.compact(LogIndex(9)).unwrap(), LogIndex(10));
    assert_eq!(store.term(LogIndex(9)).unwrap(), Some(Term(1)));
    let store = backend.reopen(store);
    assert_eq!(store.initial_state().unwrap().first_index, LogIndex(10));
    assert_eq!(all_messages(&store), messages);
}

pub(super) fn refuses_invalid_snapshots(backend: &mut impl Backend) {
    let mut store = backend.open();
    applied_log(&mut store, 6);
    append(&mut store, &messages_in(7, 8, 1));
    store
        .take_snapshot(log_id(4, 1), &members(), LogIndex(0))
        .expect("snapshot at 4");
    let before = observe(&store);
    let refused: Vec<(&str, Result<(), StorageError>)> = vec![
        (
            "past applied",
            store
                .take_snapshot(log_id(7, 1), &members(), LogIndex(0))
                .map(drop),
        ),
        (
            "wrong term",
            store
                .take_snapshot(log_id(5, 3), &members(), LogIndex(0))
                .map(drop),
        ),
        (
            "older than the latest",
            store
                .take_snapshot(log_id(3, 1), &members(), LogIndex(0))
                .map(drop),
        ),
        (
            "compact past the snapshot",
            store.compact(LogIndex(5)).map(drop),
        ),
    ];
    for (what, result) in refused {
        assert!(
            matches!(result, Err(StorageError::Invalid(_))),
            "{what}: {result:?}"
        );
    }
    store.compact(LogIndex(4)).expect("compact to the snapshot");
    let rewrite = store.write(WriteBatch {
        entries: &messages_in(3, 3, 1),
        ..WriteBatch::default()
    });
    assert!(
        matches!(rewrite, Err(StorageError::Invalid(_))),
        "entries inside the snapshot: {rewrite:?}"
    );
    assert_eq!(observe(&store).messages, before.messages);
}

/// A leader's image at `up_to`, as chunks of at most `per_chunk` messages.
fn chunks(
    messages: &[MessageEntry],
    up_to: u64,
    per_chunk: usize,
) -> Vec<(u64, Vec<MessageEntry>)> {
    let image: Vec<MessageEntry> = messages
        .iter()
        .filter(|m| m.index.0 <= up_to)
        .cloned()
        .collect();
    let mut offset = 0;
    image
        .chunks(per_chunk)
        .map(|chunk| {
            let at = offset;
            offset += chunk.iter().map(snapshot_record_bytes).sum::<u64>();
            (at, chunk.to_vec())
        })
        .collect()
}

pub(super) fn installs_a_staged_snapshot_atomically(backend: &mut impl Backend) {
    // The leader's state machine.
    let mut leader = MemoryStore::new();
    applied_log(&mut leader, 30);
    let image = all_messages(&leader);
    let meta = SnapshotMeta {
        last: log_id(25, 1),
        members: members(),
        config_index: LogIndex(0),
        bytes: image_bytes(&image, 25),
    };

    // A follower with a short, conflicting log of its own.
    let mut store = backend.open();
    let own = vec![
        message(1, 1, "mine", Some("r5")),
        message(2, 1, "also mine", None),
    ];
    store
        .write(WriteBatch {
            hard_state: Some(HardState {
                term: Term(2),
                voted_for: None,
                commit: LogIndex(1),
            }),
            entries: &own,
            apply: &own[..1],
        })
        .unwrap();
    append(&mut store, &[message(3, 2, "uncommitted", None)]);
    let before = observe(&store);

    // Crash points: after any number of staged chunks, a restart finds the old state.
    let chunks = chunks(&image, 25, 7);
    assert!(chunks.len() >= 3);
    for (offset, records) in &chunks[..2] {
        store.stage_snapshot(*offset, records).expect("stage");
    }
    assert_eq!(observe(&store), before, "staging changes nothing visible");
    let mut store = backend.reopen(store);
    assert_eq!(
        observe(&store),
        before,
        "a restart while staging: the old state"
    );
    assert_eq!(store.snapshot().unwrap(), SnapshotMeta::default());

    // Staged again from its start (offset 0 starts afresh), then installed.
    for (offset, records) in &chunks {
        store.stage_snapshot(*offset, records).expect("stage");
    }
    store.install_snapshot(&meta).expect("install");
    let check = |store: &dyn LogStore| {
        let state = store.initial_state().unwrap();
        assert_eq!(state.last, log_id(25, 1), "the conflicting log is gone");
        assert_eq!(
            (
                state.applied,
                state.hard_state.commit,
                state.first_index,
                state.snapshot
            ),
            (LogIndex(25), LogIndex(25), LogIndex(26), log_id(25, 1))
        );
        assert_eq!(
            store
                .messages(LogIndex(0), LogIndex(u64::MAX), usize::MAX)
                .unwrap(),
            image
                .iter()
                .filter(|m| m.index.0 <= 25)
                .cloned()
                .collect::<Vec<_>>(),
            "the state machine is the image, and only it"
        );
        assert_eq!(store.find_request("r5").unwrap(), Some(log_id(5, 1)));
        assert_eq!(store.find_request("r2").unwrap(), Some(log_id(2, 1)));
        assert_eq!(store.find_request("r26").unwrap(), None);
        assert_eq!(store.snapshot().unwrap(), meta);
        assert_eq!(store.term(LogIndex(25)).unwrap(), Some(Term(1)));
    };
    check(&store);
    // A restart after the install: the new state.
    let mut store = backend.reopen(store);
    check(&store);

    // The log continues from the snapshot.
    let next = messages_in(26, 27, 1);
    append(&mut store, &next);
    assert_eq!(apply(&mut store, &next).len(), 2);
    assert_eq!(all_messages(&store).len(), image.len() - 3);
    let dup = vec![message(28, 1, "again", Some("r20"))];
    append(&mut store, &dup);
    assert_eq!(
        apply(&mut store, &dup),
        vec![ApplyOutcome::Duplicate {
            index: LogIndex(28),
            original: log_id(20, 1)
        }],
        "the dedupe state came with the image"
    );
}

/// Raft §7: a follower whose log holds the snapshot's last entry keeps the entries after it.
pub(super) fn install_keeps_the_log_after_a_matching_entry(backend: &mut impl Backend) {
    let mut leader = MemoryStore::new();
    applied_log(&mut leader, 12);
    let image = all_messages(&leader);
    let meta = SnapshotMeta {
        last: log_id(10, 1),
        members: members(),
        config_index: LogIndex(0),
        bytes: image_bytes(&image, 10),
    };
    let mut store = backend.open();
    let mut entries = all_entries(&leader);
    entries.push(message(13, 2, "m13", None));
    append(&mut store, &entries);
    for (offset, records) in chunks(&image, 10, 4) {
        store.stage_snapshot(offset, &records).unwrap();
    }
    store.install_snapshot(&meta).unwrap();
    let store = backend.reopen(store);
    let state = store.initial_state().unwrap();
    assert_eq!(state.last, log_id(13, 2));
    assert_eq!(state.first_index, LogIndex(11));
    assert_eq!(
        all_entries(&store),
        entries[10..].to_vec(),
        "the entries after the snapshot stay"
    );
    assert_eq!(state.applied, LogIndex(10));
}
