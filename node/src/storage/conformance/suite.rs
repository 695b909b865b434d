//! The checks every store must pass, each a function over a [`Backend`].

use super::*;

pub(super) fn empty_initial_state(backend: &mut impl Backend) {
    let store = backend.open();
    assert_eq!(
        store.initial_state().unwrap(),
        InitialState {
            first_index: LogIndex(1),
            ..InitialState::default()
        }
    );
    assert_eq!(store.term(LogIndex(0)).unwrap(), Some(Term(0)));
    assert_eq!(store.term(LogIndex(1)).unwrap(), None);
    assert!(all_entries(&store).is_empty());
    assert!(all_messages(&store).is_empty());
    assert_eq!(store.find_request("r1").unwrap(), None);
}

pub(super) fn append_and_read_back(backend: &mut impl Backend) {
    let mut store = backend.open();
    let mut entries = vec![noop(1, 1)];
    entries.extend(messages_in(2, 5, 1));
    append(&mut store, &entries[..2]);
    append(&mut store, &entries[2..]);
    assert_eq!(store.initial_state().unwrap().last, log_id(5, 1));
    assert_eq!(all_entries(&store), entries);
    for entry in &entries {
        assert_eq!(store.term(entry.index).unwrap(), Some(entry.term));
    }
    assert_eq!(store.term(LogIndex(6)).unwrap(), None);
    assert_eq!(
        store.entries(LogIndex(2), LogIndex(3), usize::MAX).unwrap(),
        entries[1..3]
    );
    assert_eq!(
        store
            .entries(LogIndex(4), LogIndex(100), usize::MAX)
            .unwrap(),
        entries[3..],
        "a range past the end stops at the last entry"
    );
    assert!(store
        .entries(LogIndex(6), LogIndex(9), usize::MAX)
        .unwrap()
        .is_empty());
    assert!(store
        .entries(LogIndex(4), LogIndex(3), usize::MAX)
        .unwrap()
        .is_empty());
    // Nothing applied by appending.
    assert!(all_messages(&store).is_empty());
}

pub(super) fn truncates_on_conflict(backend: &mut impl Backend) {
    let mut store = backend.open();
    append(&mut store, &messages_in(1, 5, 1));
    // A new leader's entries conflict from index 3 on: 3.. are replaced, 5 disappears.
    let replacement = vec![message(3, 2, "x3", Some("x3")), message(4, 2, "x4", None)];
    append(&mut store, &replacement);
    let mut expected = messages_in(1, 2, 1);
    expected.extend(replacement.clone());
    assert_eq!(all_entries(&store), expected);
    assert_eq!(store.initial_state().unwrap().last, log_id(4, 2));
    assert_eq!(store.term(LogIndex(5)).unwrap(), None);
    // Appending right after the new end continues the log.
    append(&mut store, &messages_in(5, 6, 2));
    assert_eq!(store.initial_state().unwrap().last, log_id(6, 2));

    let store = backend.reopen(store);
    expected.extend(messages_in(5, 6, 2));
    assert_eq!(all_entries(&store), expected);
}

pub(super) fn entries_respect_byte_limit(backend: &mut impl Backend) {
    let mut store = backend.open();
    let entries = messages_in(1, 10, 1);
    append(&mut store, &entries);
    let one = entries[0].approx_size();
    let read = |max_bytes| store.entries(LogIndex(1), LogIndex(10), max_bytes).unwrap();
    assert_eq!(read(0), entries[..1], "always at least one entry");
    assert_eq!(read(1), entries[..1]);
    assert_eq!(read(one), entries[..1]);
    assert_eq!(read(2 * one), entries[..2]);
    assert_eq!(read(2 * one + 1), entries[..2]);
    assert_eq!(read(usize::MAX), entries);
    let big = message(11, 1, &"z".repeat(10_000), None);
    append(&mut store, std::slice::from_ref(&big));
    assert_eq!(
        store.entries(LogIndex(11), LogIndex(11), 100).unwrap(),
        vec![big],
        "an entry larger than the limit still comes back alone"
    );
}

pub(super) fn hard_state_round_trip(backend: &mut impl Backend) {
    let mut store = backend.open();
    let hard_state = HardState {
        term: Term(7),
        voted_for: Some(NodeId(3)),
        commit: LogIndex(0),
    };
    store
        .write(WriteBatch {
            hard_state: Some(hard_state),
            ..WriteBatch::default()
        })
        .unwrap();
    assert_eq!(store.initial_state().unwrap().hard_state, hard_state);
    let mut store = backend.reopen(store);
    assert_eq!(store.initial_state().unwrap().hard_state, hard_state);

    // A new term with no vote yet, written together with entries and a commit.
    let next = HardState {
        term: Term(8),
        voted_for: None,
        commit: LogIndex(2),
    };
    store
        .write(WriteBatch {
            hard_state: Some(next),
            entries: &messages_in(1, 2, 8),
            apply: &[],
        })
        .unwrap();
    let store = backend.reopen(store);
    let initial = store.initial_state().unwrap();
    assert_eq!(initial.hard_state, next);
    assert_eq!(initial.last, log_id(2, 8));
}

pub(super) fn applies_and_dedupes_request_ids(backend: &mut impl Backend) {
    let mut store = backend.open();
    let entries = vec![
        noop(1, 1),
        message(2, 1, "first", Some("a")),
        message(3, 1, "second", Some("b")),
        message(4, 1, "first again", Some("a")),
        message(5, 1, "anonymous", None),
        message(6, 1, "anonymous", None),
    ];
    // Entries and their application in one batch, as a leader commits in one round.
    let outcomes = store
        .write(WriteBatch {
            hard_state: None,
            entries: &entries,
            apply: &entries,
        })
        .unwrap();
    assert_eq!(
        outcomes,
        vec![
            ApplyOutcome::Noop { index: LogIndex(1) },
            ApplyOutcome::Applied {
                index: LogIndex(2),
                term: Term(1)
            },
            ApplyOutcome::Applied {
                index: LogIndex(3),
                term: Term(1)
            },
            ApplyOutcome::Duplicate {
                index: LogIndex(4),
                original: log_id(2, 1)
            },
            ApplyOutcome::Applied {
                index: LogIndex(5),
                term: Term(1)
            },
            ApplyOutcome::Applied {
                index: LogIndex(6),
                term: Term(1)
            },
        ]
    );
    assert_eq!(store.initial_state().unwrap().applied, LogIndex(6));
    assert_eq!(store.find_request("a").unwrap(), Some(log_id(2, 1)));
    assert_eq!(store.find_request("b").unwrap(), Some(log_id(3, 1)));
    assert_eq!(store.find_request("c").unwrap(), None);
    let listed: Vec<LogIndex> = all_messages(&store).iter().map(|m| m.index).collect();
    assert_eq!(
        listed,
        vec![LogIndex(2), LogIndex(3), LogIndex(5), LogIndex(6)],
        "no-ops and duplicates are not part of the state machine"
    );

    // Dedupe outlives the batch and a restart.
    let mut store = backend.reopen(store);
    let later = vec![message(7, 2, "b once more", Some("b"))];
    append(&mut store, &later);
    assert_eq!(
        apply(&mut store, &later),
        vec![ApplyOutcome::Duplicate {
            index: LogIndex(7),
            original: log_id(3, 1)
        }]
    );
    assert_eq!(all_messages(&store).len(), 4);
    assert_eq!(store.initial_state().unwrap().applied, LogIndex(7));
}

pub(super) fn pages_messages(backend: &mut impl Backend) {
    let mut store = backend.open();
    // Messages at odd indexes, no-ops at even ones.
    let entries: Vec<Entry> = (1..=20u64)
        .map(|i| {
            if i.is_multiple_of(2) {
                noop(i, 1)
            } else {
                message(i, 1, &format!("m{i}"), Some(&format!("r{i}")))
            }
        })
        .collect();
    append(&mut store, &entries);
    apply(&mut store, &entries[..15]);
    let indexes = |from: u64, up_to: u64, limit: usize| -> Vec<u64> {
        store
            .messages(LogIndex(from), LogIndex(up_to), limit)
            .unwrap()
            .iter()
            .map(|m| m.index.0)
            .collect()
    };
    assert_eq!(indexes(1, 100, 1000), vec![1, 3, 5, 7, 9, 11, 13, 15]);
    assert_eq!(indexes(0, 100, 3), vec![1, 3, 5]);
    assert_eq!(indexes(4, 100, 2), vec![5, 7]);
    assert_eq!(indexes(5, 5, 10), vec![5]);
    assert_eq!(
        indexes(6, 6, 10),
        Vec::<u64>::new(),
        "a no-op index lists nothing"
    );
    assert_eq!(
        indexes(1, 8, 100),
        vec![1, 3, 5, 7],
        "up_to bounds the page"
    );
    assert_eq!(indexes(16, 100, 100), Vec::<u64>::new(), "not applied yet");
    assert_eq!(indexes(1, 100, 0), Vec::<u64>::new());
    assert_eq!(indexes(9, 3, 10), Vec::<u64>::new());
    let page = store.messages(LogIndex(3), LogIndex(3), 1).unwrap();
    assert_eq!(page, vec![as_message(&entries[2])]);
}

pub(super) fn applied_index_persists(backend: &mut impl Backend) {
    let mut store = backend.open();
    let entries = messages_in(1, 6, 1);
    append(&mut store, &entries);
    apply(&mut store, &entries[..2]);
    apply(&mut store, &entries[2..4]);
    let store = backend.reopen(store);
    let initial = store.initial_state().unwrap();
    assert_eq!(initial.applied, LogIndex(4));
    assert_eq!(initial.last, log_id(6, 1));
    assert_eq!(
        all_messages(&store),
        entries[..4].iter().map(as_message).collect::<Vec<_>>()
    );
}

pub(super) fn reopen_keeps_everything(backend: &mut impl Backend) {
    let mut store = backend.open();
    let entries = {
        let mut entries = vec![noop(1, 2)];
        entries.extend(messages_in(2, 30, 2));
        entries
    };
    store
        .write(WriteBatch {
            hard_state: Some(HardState {
                term: Term(2),
                voted_for: Some(NodeId(1)),
                commit: LogIndex(20),
            }),
            entries: &entries,
            apply: &entries[..20],
        })
        .unwrap();
    let before = observe(&store);
    let store = backend.reopen(store);
    assert_eq!(observe(&store), before);
    for entry in &entries[..20] {
        if let Payload::Message {
            request_id: Some(id),
            ..
        } = &entry.payload
        {
            assert_eq!(
                store.find_request(id).unwrap(),
                Some(log_id(entry.index.0, 2))
            );
        }
    }
}

pub(super) fn refuses_invalid_writes(backend: &mut impl Backend) {
    let mut store = backend.open();
    let entries = messages_in(1, 5, 2);
    store
        .write(WriteBatch {
            hard_state: Some(HardState {
                term: Term(2),
                voted_for: Some(NodeId(2)),
                commit: LogIndex(3),
            }),
            entries: &entries,
            apply: &entries[..2],
        })
        .unwrap();
    let before = observe(&store);

    let mut refused = |what: &str, batch: WriteBatch<'_>| {
        match store.write(batch) {
            Err(StorageError::Invalid(message)) => assert!(!message.is_empty()),
            other => panic!("{what}: expected an invalid-write error, got {other:?}"),
        }
        assert_eq!(
            observe(&store),
            before,
            "{what}: a refused batch changed the store"
        );
    };
    refused(
        "a hole after the last entry",
        WriteBatch {
            entries: &messages_in(7, 8, 2),
            ..WriteBatch::default()
        },
    );
    refused(
        "index 0",
        WriteBatch {
            entries: &[noop(0, 2)],
            ..WriteBatch::default()
        },
    );
    refused(
        "a batch with a gap inside",
        WriteBatch {
            entries: &[noop(6, 2), noop(8, 2)],
            ..WriteBatch::default()
        },
    );
    refused(
        "replacing an applied entry",
        WriteBatch {
            entries: &messages_in(2, 6, 3),
            ..WriteBatch::default()
        },
    );
    refused(
        "replacing an entry under the durable commit index",
        WriteBatch {
            entries: &messages_in(3, 6, 3),
            ..WriteBatch::default()
        },
    );
    refused(
        "applying out of order",
        WriteBatch {
            apply: &entries[3..4],
            ..WriteBatch::default()
        },
    );
    refused(
        "applying twice",
        WriteBatch {
            apply: &entries[1..2],
            ..WriteBatch::default()
        },
    );
    refused(
        "applying an entry that is not in the log",
        WriteBatch {
            apply: &[message(3, 9, "not there", None)],
            ..WriteBatch::default()
        },
    );
    refused(
        "applying past the end",
        WriteBatch {
            entries: &[],
            hard_state: None,
            apply: &messages_in(3, 6, 2),
        },
    );
    refused(
        "the term going back",
        WriteBatch {
            hard_state: Some(HardState {
                term: Term(1),
                voted_for: None,
                commit: LogIndex(3),
            }),
            ..WriteBatch::default()
        },
    );
    refused(
        "a second vote in one term",
        WriteBatch {
            hard_state: Some(HardState {
                term: Term(2),
                voted_for: Some(NodeId(3)),
                commit: LogIndex(3),
            }),
            ..WriteBatch::default()
        },
    );

    // Rewriting committed entries with themselves is harmless and allowed.
    let mut store = backend.reopen(store);
    append(&mut store, &entries[1..]);
    assert_eq!(observe(&store), before);
}

/// Dedupe lasts for the life of the data: thousands of applies later, and across restarts, a request
/// id applied long ago, one applied just before and a repeat within one batch are all duplicates.
pub(super) fn dedupe_outlives_many_applies_and_restarts(backend: &mut impl Backend) {
    const MANY: u64 = 5_000;
    let mut store = backend.open();
    for lo in (1..=MANY).step_by(250) {
        let entries = messages_in(lo, lo + 249, 1);
        append(&mut store, &entries);
        apply(&mut store, &entries);
    }
    let retries = |at: u64| {
        vec![
            message(at, 2, "again", Some("r1")),
            message(at + 1, 2, "again", Some(&format!("r{MANY}"))),
            message(at + 2, 2, "new", Some("fresh")),
            message(at + 3, 2, "new again", Some("fresh")),
        ]
    };
    let originals = |outcomes: Vec<ApplyOutcome>| -> Vec<Option<LogId>> {
        outcomes
            .into_iter()
            .map(|outcome| match outcome {
                ApplyOutcome::Duplicate { original, .. } => Some(original),
                _ => None,
            })
            .collect()
    };
    let (oldest, newest, fresh) = (log_id(1, 1), log_id(MANY, 1), log_id(MANY + 3, 2));
    let first = retries(MANY + 1);
    append(&mut store, &first);
    assert_eq!(
        originals(apply(&mut store, &first)),
        [Some(oldest), Some(newest), None, Some(fresh)]
    );
    let mut store = backend.reopen(store);
    let second = retries(MANY + 5);
    append(&mut store, &second);
    assert_eq!(
        originals(apply(&mut store, &second)),
        [Some(oldest), Some(newest), Some(fresh), Some(fresh)]
    );
    assert_eq!(store.find_request("r1").unwrap(), Some(log_id(1, 1)));
    assert_eq!(
        store.find_request("fresh").unwrap(),
        Some(log_id(MANY + 3, 2))
    );
    assert_eq!(store.find_request("never").unwrap(), None);
    assert_eq!(all_messages(&store).len() as u64, MANY + 1);
}
