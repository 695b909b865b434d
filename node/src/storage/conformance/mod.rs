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
        Payload::Noop | Payload::Configuration { .. } => {
            panic!("entry {} is not a message", entry.index)
        }
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

mod snapshots;
mod sqlite_only;
mod suite;

use snapshots::*;
use suite::*;

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
    snapshot_compacts_and_survives_restart,
    refuses_invalid_snapshots,
    installs_a_staged_snapshot_atomically,
    install_keeps_the_log_after_a_matching_entry,
);
