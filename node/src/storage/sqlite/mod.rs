//! The durable [`LogStore`]: one SQLite file per node (`<data-dir>/node-<id>.db`).
//!
//! Owns the file: its schema and migrations, the identity checks on open, writes and reads. It may not
//! touch the Raft core, tokio or the network; like every store it only answers [`LogStore`] calls.
//!
//! WAL journal with `synchronous=FULL`: a transaction is on disk when `COMMIT` returns, and readers on
//! other connections ([`SqliteReader`]) see the last committed transaction while the writer works.
//! Each [`WriteBatch`] is one transaction, so one fsync, however many entries it carries; a batch that
//! only applies committed entries is written without its own fsync (`set_sync_for` says why), and
//! `write_applies_first` may commit a batch's applies first, in a transaction of their own.
//!
//! Tables:
//! - `meta`: one row: format version, node id, cluster id, creation time. A file recording another
//!   node or cluster is refused, never reset.
//! - `hard_state`: one row: term, voted_for, commit.
//! - `log`: `idx` (primary key), `term`, `kind` (0 no-op, 1 message), `text`, `request_id`.
//! - The state machine, the view `messages`, is the log's message entries up to `applied.idx`, less
//!   those listed in `duplicates`. A request id is applied at most once for the life of the data: a later entry
//!   carrying it is answered with the original and listed in `duplicates` (by `idx`). Format 2 kept
//!   a copy of every applied message in a table of its own, a second row insert per entry on every
//!   node.
//! - `request_ids`: the dedupe index (`request_id` → `idx`, `term`) of every id applied up to
//!   `applied.request_ids_up_to`; ids applied after that are held in memory and flushed here in
//!   sorted generations, a chunk per transaction (`SqliteStore::unindexed` says why). It may also
//!   hold some ids applied after `request_ids_up_to`: a generation cut short by a restart.
//! - `applied`: one row: the applied index and how far `request_ids` reaches.
//! - Snapshots (format 4, `snapshot` says more): `compacted_messages` holds the messages of log entries
//!   compacted away, and `messages` lists it first; `snapshot` (one row) the latest snapshot's index,
//!   term, configuration and size; `snapshot_staging` the chunks of one being received.
//!
//! Files: `schema` (format, migrations, value mapping), `open` (lock, identity and integrity checks,
//! loading), `write` (batches and request-id generations), `reader` (reads on any connection).

use super::{
    apply_outcome, plan_write, recent_terms::RecentTerms, take_within_bytes, ApplyOutcome, Failed,
    InitialState, LogStore, StorageError, WriteBatch,
};
use crate::raft::{Entry, HardState, LogId, LogIndex, NodeId, Payload, Term};
use flotilla_shared::api::MessageEntry;
use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior};
use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod open;
mod reader;
mod schema;
mod snapshot;
#[cfg(test)]
mod tests;
mod write;

pub use reader::SqliteReader;
use reader::*;
use schema::*;
use write::*;

/// The writer: owns the node's database file. `Send`, so it can run on a blocking thread.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    /// Mirrors the last committed transaction.
    state: InitialState,
    /// Whether the connection currently fsyncs every commit (see `set_sync_for`).
    sync_full: bool,
    /// Held for the store's lifetime: a second writer on the same file would corrupt the log.
    _writer_lock: File,
    /// Request ids applied after `request_ids_up_to`. The state machine's dedupe (a request id is
    /// applied once, for the life of the data) consults this map and then the table. Inserting each id
    /// into an on-disk index as it is applied cost one random page write per entry. Sorted and
    /// inserted together, ids that share a prefix (a client's) share pages: a generation of 16,384
    /// halved the bytes written per commit against one of 2,048. Inserted all in one transaction, a
    /// generation stalled the batch that carried it (p99 at 256 clients went from ~40 to ~70 ms), so
    /// each transaction inserts a chunk (`flushing`). Rebuilt on open from the applied part of the
    /// log, so it holds nothing the disk does not.
    unindexed: HashMap<String, LogId>,
    /// The generation being inserted, if any: its ids stay in `unindexed` until all are in.
    flushing: Option<Flushing>,
    id_flush: IdFlush,
    /// Terms of the newest entries, so checking a batch reads no term from disk.
    recent_terms: RecentTerms,
}
