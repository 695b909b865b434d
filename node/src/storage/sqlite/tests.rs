use super::*;

fn message(index: u64) -> Entry {
    Entry {
        index: LogIndex(index),
        term: Term(1),
        payload: Payload::Message {
            text: format!("m{index}"),
            request_id: None,
        },
    }
}

/// Only what a node acts on before it is durable (entries, term, vote) costs an fsync; a batch
/// that applies entries and moves the commit index does not.
#[test]
fn fsyncs_only_batches_with_entries_term_or_vote() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(dir.path().join("node-1.db"), NodeId(1), "c").unwrap();
    let voted = HardState {
        term: Term(1),
        voted_for: Some(NodeId(1)),
        commit: LogIndex(0),
    };
    let entries = [message(1), message(2)];
    let write = |store: &mut SqliteStore, batch: WriteBatch<'_>| {
        store.write(batch).unwrap();
        store.sync_full
    };
    let vote_and_entries = WriteBatch {
        hard_state: Some(voted),
        entries: &entries,
        apply: &[],
    };
    assert!(write(&mut store, vote_and_entries));
    let commit_and_apply = WriteBatch {
        hard_state: Some(HardState {
            commit: LogIndex(2),
            ..voted
        }),
        entries: &[],
        apply: &entries,
    };
    assert!(!write(&mut store, commit_and_apply));
    let new_term = WriteBatch {
        hard_state: Some(HardState {
            term: Term(2),
            voted_for: None,
            commit: LogIndex(2),
        }),
        entries: &[],
        apply: &[],
    };
    assert!(write(&mut store, new_term));
    // And the commit index written without an fsync is read back after a restart.
    drop(store);
    let store = SqliteStore::open(dir.path().join("node-1.db"), NodeId(1), "c").unwrap();
    assert_eq!(
        store.initial_state().unwrap().hard_state.commit,
        LogIndex(2)
    );
}

/// When a batch both applies and appends, the applies are written and announced first: a reader
/// already sees the applied messages, while the new entry (which needs the fsync) is not written
/// yet. The announced outcomes are the ones the write returns.
#[test]
fn applies_are_visible_and_decided_before_the_new_entries_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(dir.path().join("node-1.db"), NodeId(1), "c").unwrap();
    let entries = [message(1), message(2)];
    store
        .write(WriteBatch {
            entries: &entries,
            ..WriteBatch::default()
        })
        .unwrap();
    let reader = store.reader().unwrap();
    let seen = || {
        let messages = reader.messages(LogIndex(1), LogIndex(3), 10).unwrap().len();
        let logged = reader
            .entries(LogIndex(1), LogIndex(3), 1 << 20)
            .unwrap()
            .len();
        (messages, logged)
    };
    let mut decided = None;
    let outcomes = store
        .write_applies_first(
            WriteBatch {
                entries: &[message(3)],
                apply: &entries,
                ..WriteBatch::default()
            },
            &mut |outcomes| decided = Some((outcomes.to_vec(), seen())),
        )
        .unwrap();
    let (decided, seen_then) = decided.expect("outcomes were decided");
    assert_eq!(decided, outcomes);
    assert_eq!(outcomes.len(), 2);
    assert_eq!(seen_then, (2, 2));
    assert_eq!(seen(), (2, 3));
}

/// Request ids reach the index in sorted generations, a chunk per transaction, and
/// `request_ids_up_to` moves only with a generation's last chunk; a restart in the middle of one
/// starts it again over ids already inserted. Dedupe holds all along.
#[test]
fn request_ids_are_indexed_a_chunk_per_transaction_and_dedupe_throughout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node-1.db");
    let open = || {
        let mut store = SqliteStore::open(&path, NodeId(1), "c").unwrap();
        store.id_flush = IdFlush {
            generation: 8,
            chunk: 2,
        };
        store
    };
    // Appends an entry with `id`, then applies it: two transactions.
    let submit = |store: &mut SqliteStore, id: &str| {
        let index = store.state.last.index.next();
        let entry = Entry {
            index,
            term: Term(1),
            payload: Payload::Message {
                text: format!("m{index}"),
                request_id: Some(id.into()),
            },
        };
        store
            .write(WriteBatch {
                entries: std::slice::from_ref(&entry),
                ..WriteBatch::default()
            })
            .unwrap();
        store
            .write(WriteBatch {
                apply: std::slice::from_ref(&entry),
                ..WriteBatch::default()
            })
            .unwrap()
            .remove(0)
    };
    let indexed = |store: &SqliteStore| -> (i64, i64) {
        store
            .conn
            .query_row(
                "SELECT (SELECT COUNT(*) FROM request_ids), request_ids_up_to FROM applied",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap()
    };
    let id = |k: u64| format!("client-{k}");

    let mut store = open();
    for k in 0..8 {
        assert!(matches!(
            submit(&mut store, &id(k)),
            ApplyOutcome::Applied { .. }
        ));
        assert_eq!(indexed(&store), (0, 0), "before the generation is due");
    }
    // c-0..c-7 become a generation: two ids per transaction, two transactions per submit.
    submit(&mut store, &id(8));
    assert_eq!(indexed(&store), (4, 0));
    // Cut short: the reopened store takes every id after `request_ids_up_to` (0) again.
    drop(store);
    let mut store = open();
    assert_eq!(store.unindexed.len(), 9);
    submit(&mut store, &id(9));
    assert_eq!(indexed(&store), (4, 0), "re-inserting ids already there");
    submit(&mut store, &id(10));
    assert_eq!(indexed(&store), (8, 0));
    submit(&mut store, &id(11));
    // The generation taken on reopening (c-0..c-8, applied up to index 9) is all in.
    assert_eq!(indexed(&store), (9, 9));
    assert_eq!(store.unindexed.len(), 3);

    for k in 0..12 {
        let outcome = submit(&mut store, &id(k));
        let ApplyOutcome::Duplicate { original, .. } = outcome else {
            panic!("{} applied twice: {outcome:?}", id(k));
        };
        assert_eq!(original.index, LogIndex(k + 1), "{}", id(k));
    }
    let distinct: i64 = store
        .conn
        .query_row(
            "SELECT COUNT(DISTINCT request_id) FROM request_ids",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(distinct, indexed(&store).0);
}

fn configuration(index: u64, ids: &[u64]) -> Entry {
    let members = ids
        .iter()
        .map(|&id| flotilla_shared::api::Member {
            id: NodeId(id),
            addr: format!("node{id}:5000"),
            role: flotilla_shared::api::MemberRole::Voter,
        })
        .collect();
    Entry {
        index: LogIndex(index),
        term: Term(1),
        payload: Payload::Configuration {
            members,
            promoting: vec![NodeId(ids[0])],
        },
    }
}

/// Raft §6: configuration entries are stored whole, applied as no message, and the newest at or below
/// an index is found again after a restart (where a node's configuration comes from).
#[test]
fn configurations_are_stored_and_found_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node-1.db");
    let mut store = SqliteStore::open(&path, NodeId(1), "c").unwrap();
    let entries = [
        message(1),
        configuration(2, &[1, 2]),
        message(3),
        configuration(4, &[1, 2, 3]),
        message(5),
    ];
    store
        .write(WriteBatch {
            hard_state: None,
            entries: &entries,
            apply: &[],
        })
        .unwrap();
    let outcomes = store
        .write(WriteBatch {
            hard_state: None,
            entries: &[],
            apply: &entries,
        })
        .unwrap();
    assert!(
        matches!(outcomes[1], ApplyOutcome::Noop { .. }),
        "{outcomes:?}"
    );
    drop(store);
    let reader = SqliteReader::open(&path).unwrap();
    assert_eq!(
        reader
            .entries(LogIndex(1), LogIndex(5), usize::MAX)
            .unwrap(),
        entries
    );
    let at = |index| reader.last_configuration(LogIndex(index)).unwrap();
    assert_eq!(at(1), None);
    assert_eq!(at(3), Some(entries[1].clone()));
    assert_eq!(at(5), Some(entries[3].clone()));
    let listed = reader.messages(LogIndex(1), LogIndex(5), 10).unwrap();
    assert_eq!(
        listed.len(),
        3,
        "configurations are not messages: {listed:?}"
    );
}
