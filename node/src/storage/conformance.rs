//! One suite of storage tests, written once and run against every [`LogStore`]: each check is a
//! function over a [`Backend`], and `conformance!` instantiates it for memory and SQLite.
//! SQLite-only checks (identity, damaged files, a reader on another connection, SIGKILL) follow.

use super::memory::MemoryStore;
use super::sqlite::{SqliteReader, SqliteStore};
use super::{ApplyOutcome, InitialState, LogStore, StorageError, WriteBatch};
use crate::raft::{Entry, HardState, LogId, LogIndex, NodeId, Payload, Term};
use flotilla_shared::api::MessageEntry;
use std::path::{Path, PathBuf};

/// Creates stores and "restarts" them.
trait Backend {
    type Store: LogStore;
    fn open(&mut self) -> Self::Store;
    /// What a restart finds: SQLite drops the store and opens the file again; memory keeps a copy.
    fn reopen(&mut self, store: Self::Store) -> Self::Store;
}

struct MemoryBackend;

impl Backend for MemoryBackend {
    type Store = MemoryStore;
    fn open(&mut self) -> MemoryStore {
        MemoryStore::new()
    }
    fn reopen(&mut self, store: MemoryStore) -> MemoryStore {
        let on_disk = store.clone();
        drop(store);
        on_disk
    }
}

struct SqliteBackend {
    dir: tempfile::TempDir,
}

const CLUSTER: &str = "conformance";

impl SqliteBackend {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }
    fn path(&self) -> PathBuf {
        SqliteStore::path_in(self.dir.path(), NodeId(1))
    }
}

impl Backend for SqliteBackend {
    type Store = SqliteStore;
    fn open(&mut self) -> SqliteStore {
        SqliteStore::open(self.path(), NodeId(1), CLUSTER).expect("open the store")
    }
    fn reopen(&mut self, store: SqliteStore) -> SqliteStore {
        drop(store);
        self.open()
    }
}

// ---- entry builders ----

fn message(index: u64, term: u64, text: &str, request_id: Option<&str>) -> Entry {
    Entry {
        index: LogIndex(index),
        term: Term(term),
        payload: Payload::Message {
            text: text.into(),
            request_id: request_id.map(Into::into),
        },
    }
}

fn noop(index: u64, term: u64) -> Entry {
    Entry {
        index: LogIndex(index),
        term: Term(term),
        payload: Payload::Noop,
    }
}

/// Entries `lo..=hi` in `term`, each a message "m<index>" with request id "r<index>".
fn messages_in(lo: u64, hi: u64, term: u64) -> Vec<Entry> {
    (lo..=hi)
        .map(|i| message(i, term, &format!("m{i}"), Some(&format!("r{i}"))))
        .collect()
}

fn append(store: &mut impl LogStore, entries: &[Entry]) {
    store
        .write(WriteBatch {
            entries,
            ..WriteBatch::default()
        })
        .expect("append");
}

fn apply(store: &mut impl LogStore, entries: &[Entry]) -> Vec<ApplyOutcome> {
    store
        .write(WriteBatch {
            apply: entries,
            ..WriteBatch::default()
        })
        .expect("apply")
}

fn all_entries(store: &impl LogStore) -> Vec<Entry> {
    store
        .entries(LogIndex(1), LogIndex(u64::MAX), usize::MAX)
        .expect("read entries")
}

fn all_messages(store: &impl LogStore) -> Vec<MessageEntry> {
    store
        .messages(LogIndex(0), LogIndex(u64::MAX), usize::MAX)
        .expect("read messages")
}

fn as_message(entry: &Entry) -> MessageEntry {
    match &entry.payload {
        Payload::Message { text, request_id } => MessageEntry {
            index: entry.index,
            term: entry.term,
            text: text.clone(),
            request_id: request_id.clone(),
        },
        Payload::Noop => panic!("entry {} is a no-op", entry.index),
    }
}

fn log_id(index: u64, term: u64) -> LogId {
    LogId {
        index: LogIndex(index),
        term: Term(term),
    }
}

/// Everything observable about a store, to compare before and after.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    initial: InitialState,
    entries: Vec<Entry>,
    messages: Vec<MessageEntry>,
}

fn observe(store: &impl LogStore) -> Observed {
    Observed {
        initial: store.initial_state().expect("initial state"),
        entries: all_entries(store),
        messages: all_messages(store),
    }
}

// ---- the suite ----

fn empty_initial_state(backend: &mut impl Backend) {
    let store = backend.open();
    assert_eq!(store.initial_state().unwrap(), InitialState::default());
    assert_eq!(store.term(LogIndex(0)).unwrap(), Some(Term(0)));
    assert_eq!(store.term(LogIndex(1)).unwrap(), None);
    assert!(all_entries(&store).is_empty());
    assert!(all_messages(&store).is_empty());
    assert_eq!(store.find_request("r1").unwrap(), None);
}

fn append_and_read_back(backend: &mut impl Backend) {
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

fn truncates_on_conflict(backend: &mut impl Backend) {
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

fn entries_respect_byte_limit(backend: &mut impl Backend) {
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

fn hard_state_round_trip(backend: &mut impl Backend) {
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

fn applies_and_dedupes_request_ids(backend: &mut impl Backend) {
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

fn pages_messages(backend: &mut impl Backend) {
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

fn applied_index_persists(backend: &mut impl Backend) {
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

fn reopen_keeps_everything(backend: &mut impl Backend) {
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

fn refuses_invalid_writes(backend: &mut impl Backend) {
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
fn dedupe_outlives_many_applies_and_restarts(backend: &mut impl Backend) {
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

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod memory {
            $(#[test] fn $check() { super::$check(&mut super::MemoryBackend) })*
        }
        mod sqlite {
            $(#[test] fn $check() { super::$check(&mut super::SqliteBackend::new()) })*
        }
    };
}

conformance!(
    empty_initial_state,
    append_and_read_back,
    truncates_on_conflict,
    entries_respect_byte_limit,
    hard_state_round_trip,
    applies_and_dedupes_request_ids,
    dedupe_outlives_many_applies_and_restarts,
    pages_messages,
    applied_index_persists,
    reopen_keeps_everything,
    refuses_invalid_writes,
);

// ---- SQLite only ----

mod sqlite_only {
    use super::*;
    use std::io::Write as _;
    use std::time::{Duration, Instant};

    fn open_err(path: &Path, node: u64, cluster: &str) -> StorageError {
        match SqliteStore::open(path, NodeId(node), cluster) {
            Ok(_) => panic!(
                "opening {} as node {node} of {cluster:?} succeeded",
                path.display()
            ),
            Err(e) => e,
        }
    }

    #[test]
    fn creates_the_file_with_wal_and_full_sync() {
        let dir = tempfile::tempdir().unwrap();
        let path = SqliteStore::path_in(dir.path(), NodeId(4));
        assert!(path.ends_with("node-4.db"));
        let store = SqliteStore::open(&path, NodeId(4), "c").unwrap();
        assert!(path.is_file());
        let conn = rusqlite::Connection::open(&path).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(store);
    }

    /// What formats 1 and 2 share: the file's marks, `meta`, `hard_state` and `log`.
    const OLD_FORMATS_BASE: &str = "PRAGMA journal_mode = WAL;
        PRAGMA application_id = 1181511540;
        CREATE TABLE meta (id INTEGER PRIMARY KEY CHECK (id = 0), format_version INTEGER NOT NULL,
            node_id INTEGER NOT NULL, cluster_id TEXT NOT NULL, created_unix_ms INTEGER NOT NULL);
        CREATE TABLE hard_state (id INTEGER PRIMARY KEY CHECK (id = 0), term INTEGER NOT NULL,
            voted_for INTEGER, commit_index INTEGER NOT NULL);
        CREATE TABLE log (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL, kind INTEGER NOT NULL,
            text TEXT, request_id TEXT);";

    /// Writes a database of an old format at `path`: `OLD_FORMATS_BASE`, then `tables_and_rows`.
    fn write_old_format(path: &Path, tables_and_rows: &str) {
        let old = rusqlite::Connection::open(path).unwrap();
        old.execute_batch(&format!("{OLD_FORMATS_BASE}\n{tables_and_rows}"))
            .unwrap();
    }

    /// The format version recorded in the file, read without opening it as a store.
    fn recorded_format(path: &Path) -> i64 {
        rusqlite::Connection::open(path)
            .unwrap()
            .query_row("SELECT format_version FROM meta", [], |row| row.get(0))
            .unwrap()
    }

    /// A database written by format 1 (request ids kept unique by an index on the applied table) opens,
    /// is migrated in place, and keeps its messages and its dedupe.
    #[test]
    fn migrates_format_1_data_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node-1.db");
        write_old_format(
            &path,
            "CREATE TABLE applied_messages (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL,
                 text TEXT NOT NULL, request_id TEXT UNIQUE);
             CREATE TABLE applied (id INTEGER PRIMARY KEY CHECK (id = 0), idx INTEGER NOT NULL);
             INSERT INTO meta VALUES (0, 1, 1, 'blue', 0);
             INSERT INTO hard_state VALUES (0, 2, 1, 3);
             INSERT INTO log VALUES (1, 1, 0, NULL, NULL), (2, 1, 1, 'hello', 'a'), (3, 2, 1, 'world', NULL);
             INSERT INTO applied_messages VALUES (2, 1, 'hello', 'a'), (3, 2, 'world', NULL);
             INSERT INTO applied VALUES (0, 3);",
        );

        let mut store = SqliteStore::open(&path, NodeId(1), "blue").unwrap();
        assert_eq!(store.initial_state().unwrap().applied, LogIndex(3));
        assert_eq!(
            all_messages(&store),
            [
                as_message(&message(2, 1, "hello", Some("a"))),
                as_message(&message(3, 2, "world", None))
            ]
        );
        assert_eq!(store.find_request("a").unwrap(), Some(log_id(2, 1)));
        let retry = [message(4, 2, "hello", Some("a"))];
        append(&mut store, &retry);
        assert_eq!(
            apply(&mut store, &retry),
            [ApplyOutcome::Duplicate {
                index: LogIndex(4),
                original: log_id(2, 1)
            }]
        );
        drop(store);
        assert_eq!(recorded_format(&path), 3);
        // Opening again is a plain open of current data.
        drop(SqliteStore::open(&path, NodeId(1), "blue").unwrap());
    }

    /// Format 2 kept a copy of each applied message; format 3 reads messages from the log. A format 2
    /// file keeps its messages, the entry that applied as a duplicate stays out of them, and ids both
    /// in the `request_ids` index and applied after its last flush still dedupe.
    #[test]
    fn migrates_format_2_data_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node-1.db");
        write_old_format(
            &path,
            "CREATE TABLE applied_messages (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL,
                 text TEXT NOT NULL, request_id TEXT);
             CREATE TABLE request_ids (request_id TEXT PRIMARY KEY, idx INTEGER NOT NULL,
                 term INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE applied (id INTEGER PRIMARY KEY CHECK (id = 0), idx INTEGER NOT NULL,
                 request_ids_up_to INTEGER NOT NULL);
             INSERT INTO meta VALUES (0, 2, 1, 'blue', 0);
             INSERT INTO hard_state VALUES (0, 2, 1, 4);
             INSERT INTO log VALUES (1, 1, 0, NULL, NULL), (2, 1, 1, 'hello', 'a'),
                 (3, 2, 1, 'hello', 'a'), (4, 2, 1, 'world', 'b'), (5, 2, 1, 'later', NULL);
             INSERT INTO applied_messages VALUES (2, 1, 'hello', 'a'), (4, 2, 'world', 'b');
             INSERT INTO request_ids VALUES ('a', 2, 1);
             INSERT INTO applied VALUES (0, 4, 2);",
        );

        let mut store = SqliteStore::open(&path, NodeId(1), "blue").unwrap();
        assert_eq!(store.initial_state().unwrap().applied, LogIndex(4));
        // Entry 5 is in the log but not applied: not a message yet.
        assert_eq!(
            all_messages(&store),
            [
                as_message(&message(2, 1, "hello", Some("a"))),
                as_message(&message(4, 2, "world", Some("b")))
            ]
        );
        assert_eq!(store.find_request("a").unwrap(), Some(log_id(2, 1)));
        assert_eq!(store.find_request("b").unwrap(), Some(log_id(4, 2)));
        let retries = [
            message(6, 2, "hello", Some("a")),
            message(7, 2, "world", Some("b")),
        ];
        append(&mut store, &retries);
        let later = [message(5, 2, "later", None)];
        assert_eq!(
            apply(&mut store, &later),
            [ApplyOutcome::Applied {
                index: LogIndex(5),
                term: Term(2)
            }]
        );
        assert_eq!(
            apply(&mut store, &retries),
            [
                ApplyOutcome::Duplicate {
                    index: LogIndex(6),
                    original: log_id(2, 1)
                },
                ApplyOutcome::Duplicate {
                    index: LogIndex(7),
                    original: log_id(4, 2)
                }
            ]
        );
        assert_eq!(all_messages(&store).len(), 3);
        drop(store);
        assert_eq!(recorded_format(&path), 3);
    }

    #[test]
    fn refuses_a_second_writer_while_the_first_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node-1.db");
        let first = SqliteStore::open(&path, NodeId(1), "blue").unwrap();
        let error = open_err(&path, 1, "blue");
        let text = error.to_string();
        assert!(
            text.contains("node-1.db") && text.contains("in use"),
            "{text}"
        );
        assert!(!text.contains('\n'), "one line: {text}");
        // Readers are not writers: they still open while the writer holds the lock.
        SqliteReader::open(&path).unwrap();
        drop(first);
        drop(SqliteStore::open(&path, NodeId(1), "blue").unwrap());
    }

    #[test]
    fn refuses_another_nodes_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node-1.db");
        drop(SqliteStore::open(&path, NodeId(1), "blue").unwrap());
        let error = open_err(&path, 2, "blue");
        let text = error.to_string();
        assert!(matches!(error, StorageError::Mismatch(_)), "{error:?}");
        assert!(text.contains("node-1.db"), "names the file: {text}");
        assert!(
            text.contains("node 1") && text.contains("node 2"),
            "names both ids: {text}"
        );
        assert!(!text.contains('\n'), "one line: {text}");
    }

    #[test]
    fn refuses_another_clusters_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node-1.db");
        drop(SqliteStore::open(&path, NodeId(1), "blue").unwrap());
        let error = open_err(&path, 1, "green");
        let text = error.to_string();
        assert!(matches!(error, StorageError::Mismatch(_)), "{error:?}");
        assert!(text.contains("node-1.db"), "{text}");
        assert!(
            text.contains("\"blue\"") && text.contains("\"green\""),
            "{text}"
        );
        // And the data is untouched: the right node still opens it.
        drop(SqliteStore::open(&path, NodeId(1), "blue").unwrap());
    }

    #[test]
    fn refuses_a_file_that_is_not_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node-1.db");
        let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 3) as u8).collect();
        std::fs::write(&path, &garbage).unwrap();
        let error = open_err(&path, 1, "c");
        assert!(matches!(error, StorageError::Mismatch(_)), "{error:?}");
        assert!(
            error.to_string().contains("not a SQLite database"),
            "{error}"
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            garbage,
            "the file is untouched"
        );
    }

    #[test]
    fn refuses_a_sqlite_database_that_is_not_flotillas() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node-1.db");
        let other = rusqlite::Connection::open(&path).unwrap();
        other
            .execute_batch("CREATE TABLE recipes (name TEXT); INSERT INTO recipes VALUES ('soup');")
            .unwrap();
        drop(other);
        let error = open_err(&path, 1, "c");
        assert!(matches!(error, StorageError::Mismatch(_)), "{error:?}");
        assert!(error.to_string().contains("not Flotilla data"), "{error}");
        let other = rusqlite::Connection::open(&path).unwrap();
        let rows: i64 = other
            .query_row("SELECT COUNT(*) FROM recipes", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 1, "the foreign database is untouched");
    }

    #[test]
    fn refuses_a_damaged_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node-1.db");
        let mut store = SqliteStore::open(&path, NodeId(1), "c").unwrap();
        append(&mut store, &messages_in(1, 2000, 1));
        drop(store);
        // Fold the WAL into the main file, then overwrite pages in the middle of it.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
        drop(conn);
        let mut bytes = std::fs::read(&path).unwrap();
        assert!(
            bytes.len() > 16 * 4096,
            "the database is big enough to damage"
        );
        for byte in &mut bytes[8 * 4096..12 * 4096] {
            *byte = 0xA5;
        }
        std::fs::write(&path, &bytes).unwrap();
        let error = open_err(&path, 1, "c");
        assert!(matches!(error, StorageError::Corrupt(_)), "{error:?}");
        assert!(error.to_string().contains("node-1.db"), "{error}");
    }

    #[test]
    fn refuses_a_missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-dir").join("node-1.db");
        let error = open_err(&path, 1, "c");
        assert!(matches!(error, StorageError::Io(_)), "{error:?}");
        assert!(error.to_string().contains("does not exist"), "{error}");
    }

    #[test]
    fn reader_on_another_connection_sees_committed_writes() {
        let mut backend = SqliteBackend::new();
        let mut store = backend.open();
        let reader = store.reader().unwrap();
        assert_eq!(reader.term(LogIndex(1)).unwrap(), None);
        let entries = messages_in(1, 50, 3);
        append(&mut store, &entries);
        apply(&mut store, &entries[..10]);
        assert_eq!(reader.term(LogIndex(50)).unwrap(), Some(Term(3)));
        assert_eq!(
            reader
                .entries(LogIndex(1), LogIndex(50), usize::MAX)
                .unwrap(),
            entries
        );
        assert_eq!(
            reader.entries(LogIndex(5), LogIndex(50), 0).unwrap(),
            entries[4..5]
        );
        assert_eq!(
            reader.messages(LogIndex(1), LogIndex(100), 100).unwrap(),
            all_messages(&store)
        );
        assert_eq!(reader.find_request("r7").unwrap(), Some(log_id(7, 3)));
        assert_eq!(reader.find_request("r11").unwrap(), None);
        assert_eq!(reader.applied().unwrap(), LogIndex(10));

        // A reader opened by path works from another thread while the writer keeps writing.
        let path = backend.path();
        let handle = std::thread::spawn(move || {
            let reader = SqliteReader::open(&path).unwrap();
            let mut seen = 0;
            for _ in 0..200 {
                let entries = reader
                    .entries(LogIndex(1), LogIndex(u64::MAX), usize::MAX)
                    .unwrap();
                assert!(
                    entries.len() >= seen,
                    "a reader never sees the log shrink here"
                );
                for (offset, entry) in entries.iter().enumerate() {
                    assert_eq!(entry.index, LogIndex(offset as u64 + 1), "no holes");
                }
                seen = entries.len();
            }
            seen
        });
        for start in (51..=250).step_by(10) {
            append(&mut store, &messages_in(start, start + 9, 3));
        }
        let seen = handle.join().unwrap();
        assert!(seen >= 50);
    }

    // ---- crash safety: a child process writes batches until it is SIGKILLed ----

    const CRASH_CHILD_ENV: &str = "FLOTILLA_STORAGE_CRASH_CHILD";

    /// The deterministic content of entry `index` in the crash test: every seventh is a no-op.
    fn crash_entry(index: u64) -> Entry {
        let term = 1 + index / 97;
        if index.is_multiple_of(7) {
            noop(index, term)
        } else {
            message(
                index,
                term,
                &format!("message {index} {}", "x".repeat((index % 13) as usize)),
                Some(&format!("req-{index}")),
            )
        }
    }

    /// The child: continues the log where the file ends, one transaction per batch, forever.
    /// Each batch appends 1..=64 new entries, raises the commit to the previous batch's end and
    /// applies up to it (entries become committed only once durable, as in Raft).
    fn crash_child(path: &Path) -> ! {
        let mut store = SqliteStore::open(path, NodeId(1), CLUSTER).expect("child: open");
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut stdout = std::io::stdout();
        let mut round = 0u64;
        while Instant::now() < deadline {
            let state = store.initial_state().expect("child: state");
            let last = state.last.index.0;
            let count = 1 + (round * 31 + last) % 64;
            let new: Vec<Entry> = (last + 1..=last + count).map(crash_entry).collect();
            let apply: Vec<Entry> = (state.applied.0 + 1..=last).map(crash_entry).collect();
            let term = crash_entry(last + count).term;
            store
                .write(WriteBatch {
                    hard_state: Some(HardState {
                        term,
                        voted_for: Some(NodeId(1)),
                        commit: LogIndex(last),
                    }),
                    entries: &new,
                    apply: &apply,
                })
                .expect("child: write");
            // Tell the parent how far the durable log got (the parent waits for progress).
            let _ = writeln!(stdout, "durable {}", last + count);
            let _ = stdout.flush();
            round += 1;
        }
        std::process::exit(0)
    }

    fn check_after_crash(path: &Path) -> InitialState {
        let store = SqliteStore::open(path, NodeId(1), CLUSTER).expect("reopen after SIGKILL");
        let state = store.initial_state().unwrap();
        let last = state.last.index.0;
        let log = all_entries(&store);
        assert_eq!(
            log.len() as u64,
            last,
            "the log is contiguous from 1 to last"
        );
        for entry in &log {
            assert_eq!(
                *entry,
                crash_entry(entry.index.0),
                "entry {} intact",
                entry.index
            );
        }
        assert_eq!(state.last.term, crash_entry(last).term);
        assert!(
            state.applied.0 <= last,
            "applied {} <= last {last}",
            state.applied
        );
        assert!(
            state.applied <= state.hard_state.commit && state.hard_state.commit.0 <= last,
            "applied {} <= commit {} <= last {last}",
            state.applied,
            state.hard_state.commit
        );
        // The hard state and the log come from the same transaction.
        assert_eq!(state.hard_state.term, crash_entry(last).term);
        let expected: Vec<MessageEntry> = (1..=state.applied.0)
            .map(crash_entry)
            .filter(|e| matches!(e.payload, Payload::Message { .. }))
            .map(|e| as_message(&e))
            .collect();
        assert_eq!(
            all_messages(&store),
            expected,
            "the state machine is exactly the applied prefix"
        );
        state
    }

    #[test]
    fn survives_sigkill_mid_write() {
        if let Some(path) = std::env::var_os(CRASH_CHILD_ENV) {
            crash_child(Path::new(&path));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node-1.db");
        let exe = std::env::current_exe().unwrap();
        let mut previous_last = 0;
        for round in 0..5 {
            let mut child = std::process::Command::new(&exe)
                .args([
                    "storage::conformance::sqlite_only::survives_sigkill_mid_write",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CRASH_CHILD_ENV, &path)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("spawn the writer");
            // Let it commit a few batches past where the last round ended, then kill it mid-stream.
            let stdout = child.stdout.take().unwrap();
            let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
            let target = previous_last + 500 + round * 137;
            let mut durable = 0;
            while durable < target {
                let Some(Ok(line)) = lines.next() else {
                    let status = child.wait();
                    panic!("the writer stopped early ({status:?}) at {durable}");
                };
                if let Some(n) = line.strip_prefix("durable ") {
                    durable = n.trim().parse().unwrap();
                }
            }
            child.kill().expect("SIGKILL the writer");
            child.wait().unwrap();
            let state = check_after_crash(&path);
            assert!(
                state.last.index.0 >= durable,
                "round {round}: a write acknowledged durable at {durable} was lost (last {})",
                state.last.index
            );
            previous_last = state.last.index.0;
        }
    }
}
