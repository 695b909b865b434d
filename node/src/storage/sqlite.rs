//! The durable [`LogStore`]: one SQLite file per node (`<data-dir>/node-<id>.db`).
//!
//! WAL journal with `synchronous=FULL`: a transaction is on disk when `COMMIT` returns, and readers on
//! other connections ([`SqliteReader`]) see the last committed transaction while the writer works.
//! Each [`WriteBatch`] is one transaction, so one fsync, however many entries it carries; a batch that
//! only applies committed entries is written without its own fsync (`set_sync_for` says why), and
//! `write_deciding_early` may commit a batch's applies first, in a transaction of their own.
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

use super::{
    apply_outcome, plan_write, recent_terms::RecentTerms, take_within_bytes, ApplyOutcome,
    InitialState, LogStore, StorageError, WriteBatch,
};
use crate::raft::{Entry, HardState, LogId, LogIndex, NodeId, Payload, Term};
use flotilla_shared::api::MessageEntry;
use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior};
use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Bumped whenever the schema changes incompatibly; an unknown version is refused, older known ones
/// are migrated on open.
const FORMAT_VERSION: i64 = 3;
/// How the request ids applied since the last flush go into the `request_ids` index (see
/// `SqliteStore::unindexed`).
#[derive(Clone, Copy, Debug)]
struct IdFlush {
    /// Ids held in memory before they are sorted into a generation to insert.
    generation: usize,
    /// Least ids of a generation each transaction inserts; twice its applies if that is more, so a
    /// generation is always in before the next is due.
    chunk: usize,
}

const ID_FLUSH: IdFlush = IdFlush {
    generation: 16_384,
    chunk: 256,
};
/// `PRAGMA application_id`: marks the file as Flotilla's ("Flot").
const APPLICATION_ID: i64 = 0x466C_6F74;
/// How long a reader waits for a lock held during a WAL checkpoint before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// A reader connection's page cache: `PRAGMA cache_size`, negative meaning KiB.
const READER_CACHE_SIZE: i64 = -256;

const KIND_NOOP: i64 = 0;
const KIND_MESSAGE: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE meta (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    format_version INTEGER NOT NULL,
    node_id INTEGER NOT NULL,
    cluster_id TEXT NOT NULL,
    created_unix_ms INTEGER NOT NULL
);
CREATE TABLE hard_state (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    term INTEGER NOT NULL,
    voted_for INTEGER,
    commit_index INTEGER NOT NULL
);
CREATE TABLE log (
    idx INTEGER PRIMARY KEY,
    term INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    text TEXT,
    request_id TEXT
);
CREATE TABLE duplicates (idx INTEGER PRIMARY KEY);
CREATE TABLE request_ids (
    request_id TEXT PRIMARY KEY,
    idx INTEGER NOT NULL,
    term INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE applied (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    idx INTEGER NOT NULL,
    request_ids_up_to INTEGER NOT NULL
);
INSERT INTO hard_state (id, term, voted_for, commit_index) VALUES (0, 0, NULL, 0);
INSERT INTO applied (id, idx, request_ids_up_to) VALUES (0, 0, 0);
CREATE VIEW messages AS
    SELECT idx, term, text, request_id FROM log
    WHERE kind = 1 AND idx <= (SELECT idx FROM applied WHERE id = 0)
      AND NOT EXISTS (SELECT 1 FROM duplicates WHERE duplicates.idx = log.idx);
";

/// Format 1 kept a UNIQUE index on `applied_messages.request_id`: every apply inserted into it at a
/// random place, dirtying one page per entry (about two thirds of all bytes written under load).
const MIGRATE_FROM_1: &str = "
CREATE TABLE applied_messages_v2 (
    idx INTEGER PRIMARY KEY,
    term INTEGER NOT NULL,
    text TEXT NOT NULL,
    request_id TEXT
);
INSERT INTO applied_messages_v2 SELECT idx, term, text, request_id FROM applied_messages;
DROP TABLE applied_messages;
ALTER TABLE applied_messages_v2 RENAME TO applied_messages;
CREATE TABLE request_ids (
    request_id TEXT PRIMARY KEY,
    idx INTEGER NOT NULL,
    term INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO request_ids SELECT request_id, idx, term FROM applied_messages WHERE request_id IS NOT NULL;
ALTER TABLE applied ADD COLUMN request_ids_up_to INTEGER NOT NULL DEFAULT 0;
UPDATE applied SET request_ids_up_to = idx;
UPDATE meta SET format_version = 2;
";

/// Format 2 copied every applied message into `applied_messages`; format 3 reads them from the log
/// and lists only the entries that applied as duplicates.
const MIGRATE_FROM_2: &str = "
CREATE TABLE duplicates (idx INTEGER PRIMARY KEY);
INSERT INTO duplicates
    SELECT idx FROM log
    WHERE kind = 1 AND idx <= (SELECT idx FROM applied WHERE id = 0)
      AND idx NOT IN (SELECT idx FROM applied_messages);
DROP TABLE applied_messages;
CREATE VIEW messages AS
    SELECT idx, term, text, request_id FROM log
    WHERE kind = 1 AND idx <= (SELECT idx FROM applied WHERE id = 0)
      AND NOT EXISTS (SELECT 1 FROM duplicates WHERE duplicates.idx = log.idx);
UPDATE meta SET format_version = 3;
";

/// `MIGRATIONS[v - 1]` turns format `v` into `v + 1`.
const MIGRATIONS: [&str; 2] = [MIGRATE_FROM_1, MIGRATE_FROM_2];

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

/// A generation of request ids on its way into the `request_ids` table.
struct Flushing {
    /// Sorted.
    ids: Vec<(String, LogId)>,
    /// `ids[..inserted]` are in the table (committed).
    inserted: usize,
    /// The applied index the generation was taken at: `request_ids_up_to` once all are in.
    up_to: LogIndex,
}

impl Flushing {
    /// Inserts up to `count` more ids, and moves `request_ids_up_to` with the last one; how many it
    /// inserted. `OR IGNORE`: after a restart, a generation may start again with ids an interrupted
    /// one had already inserted.
    fn insert_next(&self, tx: &rusqlite::Transaction<'_>, count: usize) -> rusqlite::Result<usize> {
        let end = self.ids.len().min(self.inserted + count);
        let mut insert = tx.prepare_cached(
            "INSERT OR IGNORE INTO request_ids (request_id, idx, term) VALUES (?1, ?2, ?3)",
        )?;
        for (id, at) in &self.ids[self.inserted..end] {
            insert.execute(params![id, to_sql(at.index.0)?, to_sql(at.term.0)?])?;
        }
        if end == self.ids.len() {
            tx.prepare_cached("UPDATE applied SET request_ids_up_to = ?1 WHERE id = 0")?
                .execute([to_sql(self.up_to.0)?])?;
        }
        Ok(end - self.inserted)
    }
}

/// How long opening waits for another holder of the writer lock to let go.
const LOCK_WAIT: Duration = Duration::from_secs(1);

/// Takes the exclusive lock on `<database>.lock`, so that two node processes never write one database
/// (say, the same `--id` and `--data-dir` started twice). The OS drops the lock when the process ends,
/// however it ends, so a crash leaves nothing stale behind.
fn lock_for_writing(path: &Path) -> Result<File, StorageError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| StorageError::Io(format!("{}: cannot open: {e}", lock_path.display())))?;
    // Retry briefly: a process that just forked holds a copy of the lock until it execs, and a node
    // being restarted may still be on its way out.
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(TryLockError::WouldBlock) => {
                return Err(StorageError::Io(format!(
                    "{}: in use by another running node (its lock {} is held)",
                    path.display(),
                    lock_path.display()
                )))
            }
            Err(TryLockError::Error(e)) => {
                return Err(StorageError::Io(format!(
                    "{}: cannot lock: {e}",
                    lock_path.display()
                )))
            }
        }
    }
}

/// A read-only connection to a node's database, for reads on other threads while the writer works.
pub struct SqliteReader {
    conn: Connection,
    path: PathBuf,
}

impl SqliteStore {
    /// Where node `id` keeps its database inside `data_dir`.
    pub fn path_in(data_dir: &Path, id: NodeId) -> PathBuf {
        data_dir.join(format!("node-{id}.db"))
    }

    /// Opens (creating if missing) the database of node `node_id` in cluster `cluster_id`.
    ///
    /// Refuses, with a one-line reason naming the file: a file that is not a SQLite database or not
    /// Flotilla's, a damaged one, or one that records another node id or cluster id.
    pub fn open(
        path: impl AsRef<Path>,
        node_id: NodeId,
        cluster_id: &str,
    ) -> Result<Self, StorageError> {
        let path = path.as_ref().to_path_buf();
        let shown = path.display().to_string();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.is_dir() {
                return Err(StorageError::Io(format!(
                    "{shown}: the directory {} does not exist",
                    parent.display()
                )));
            }
        }
        let writer_lock = lock_for_writing(&path)?;
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StorageError::Io(format!("{shown}: cannot open: {e}")))?;
        let mut store = Self {
            conn,
            path,
            state: InitialState::default(),
            sync_full: true,
            _writer_lock: writer_lock,
            unindexed: HashMap::new(),
            flushing: None,
            id_flush: ID_FLUSH,
            recent_terms: RecentTerms::default(),
        };
        store.check_is_sqlite()?;
        store.configure()?;
        if store.is_blank()? {
            store.create(node_id, cluster_id)?;
        } else {
            let version = store.check_identity(node_id, cluster_id)?;
            store.check_integrity()?;
            if version < FORMAT_VERSION {
                store.migrate_from(version)?;
            }
        }
        store.state = store.load_state()?;
        store.recent_terms = RecentTerms::new(store.state.last);
        store.unindexed = store.load_unindexed()?;
        Ok(store)
    }

    /// A new read-only connection to this store's file.
    pub fn reader(&self) -> Result<SqliteReader, StorageError> {
        SqliteReader::open(&self.path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn shown(&self) -> String {
        self.path.display().to_string()
    }

    fn io(&self, doing: &str) -> impl FnOnce(rusqlite::Error) -> StorageError + '_ {
        let shown = self.shown();
        let doing = doing.to_string();
        move |e| sql_error(&shown, &doing, e)
    }

    /// SQLite reads nothing until the first statement; this is where a non-database file shows.
    fn check_is_sqlite(&self) -> Result<(), StorageError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM sqlite_schema", [], |row| {
                row.get::<_, i64>(0)
            })
            .map(|_| ())
            .map_err(|e| match e.sqlite_error_code() {
                Some(ErrorCode::NotADatabase) => StorageError::Mismatch(format!(
                    "{}: not a SQLite database (not Flotilla data); refusing to touch it",
                    self.shown()
                )),
                _ => sql_error(&self.shown(), "reading the schema", e),
            })
    }

    fn configure(&self) -> Result<(), StorageError> {
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(self.io("enabling the WAL journal"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StorageError::Io(format!(
                "{}: cannot use a WAL journal (got {mode})",
                self.shown()
            )));
        }
        // FULL: a commit fsyncs the WAL, so an acknowledged write survives power loss, not only a crash.
        self.conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(self.io("setting synchronous=FULL"))?;
        self.conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(self.io("setting the busy timeout"))?;
        self.conn.set_prepared_statement_cache_capacity(32);
        Ok(())
    }

    /// A brand-new (or empty) file: no tables and no application id yet.
    fn is_blank(&self) -> Result<bool, StorageError> {
        let tables: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM sqlite_schema", [], |row| row.get(0))
            .map_err(self.io("reading the schema"))?;
        let application_id: i64 = self
            .conn
            .query_row("PRAGMA application_id", [], |row| row.get(0))
            .map_err(self.io("reading the application id"))?;
        Ok(tables == 0 && application_id == 0)
    }

    fn create(&mut self, node_id: NodeId, cluster_id: &str) -> Result<(), StorageError> {
        let created_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let node = sql_int(node_id.0, "node id")?;
        let shown = self.shown();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| sql_error(&shown, "creating the database", e))?;
        tx.execute_batch(SCHEMA)
            .and_then(|()| {
                tx.execute(
                    "INSERT INTO meta (id, format_version, node_id, cluster_id, created_unix_ms)
                     VALUES (0, ?1, ?2, ?3, ?4)",
                    params![FORMAT_VERSION, node, cluster_id, created_unix_ms],
                )
            })
            .and_then(|_| tx.pragma_update(None, "application_id", APPLICATION_ID))
            .and_then(|()| tx.commit())
            .map_err(|e| sql_error(&shown, "creating the database", e))
    }

    /// Checks the file is this node's and returns its format version (current, or one to migrate).
    fn check_identity(&self, node_id: NodeId, cluster_id: &str) -> Result<i64, StorageError> {
        let shown = self.shown();
        let not_ours = |why: &str| {
            StorageError::Mismatch(format!(
                "{shown}: a SQLite database but not Flotilla data ({why}); refusing to touch it"
            ))
        };
        let application_id: i64 = self
            .conn
            .query_row("PRAGMA application_id", [], |row| row.get(0))
            .map_err(self.io("reading the application id"))?;
        if application_id != APPLICATION_ID {
            return Err(not_ours(&format!(
                "application id {application_id:#x}, expected {APPLICATION_ID:#x}"
            )));
        }
        let meta = self
            .conn
            .query_row(
                "SELECT format_version, node_id, cluster_id FROM meta WHERE id = 0",
                [],
                |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, String>(2)?,
                    ))
                },
            )
            .optional();
        let (version, stored_node, stored_cluster) = match meta {
            Ok(Some(meta)) => meta,
            Ok(None) => return Err(not_ours("the meta table is empty")),
            Err(e) => return Err(not_ours(&format!("no readable meta table: {e}"))),
        };
        if !(1..=FORMAT_VERSION).contains(&version) {
            return Err(StorageError::Mismatch(format!(
                "{shown}: data format version {version}, this build reads version {FORMAT_VERSION}"
            )));
        }
        if stored_node != sql_int(node_id.0, "node id")? {
            return Err(StorageError::Mismatch(format!(
                "{shown}: belongs to node {stored_node} (cluster \"{stored_cluster}\"), \
                 but this is node {node_id}; refusing to start on another node's data"
            )));
        }
        if stored_cluster != cluster_id {
            return Err(StorageError::Mismatch(format!(
                "{shown}: belongs to cluster \"{stored_cluster}\", but this node (node {node_id}) is in \
                 cluster \"{cluster_id}\"; refusing to start on another cluster's data"
            )));
        }
        Ok(version)
    }

    /// Brings format `version` data up to the current format, in one transaction.
    fn migrate_from(&mut self, version: i64) -> Result<(), StorageError> {
        let shown = self.shown();
        let doing = format!("migrating from format {version}");
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| sql_error(&shown, &doing, e))?;
        MIGRATIONS[(version - 1) as usize..]
            .iter()
            .try_for_each(|step| tx.execute_batch(step))
            .and_then(|()| tx.commit())
            .map_err(|e| sql_error(&shown, &doing, e))
    }

    fn load_unindexed(&self) -> Result<HashMap<String, LogId>, StorageError> {
        let fail = |e| sql_error(&self.shown(), "reading recent request ids", e);
        let mut statement = self
            .conn
            .prepare(
                "SELECT request_id, idx, term FROM messages
                 WHERE idx > (SELECT request_ids_up_to FROM applied WHERE id = 0)
                   AND request_id IS NOT NULL",
            )
            .map_err(fail)?;
        let rows = statement
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, read_log_id(row, 1)?))
            })
            .map_err(fail)?;
        rows.collect::<Result<_, _>>().map_err(fail)
    }

    fn check_integrity(&self) -> Result<(), StorageError> {
        let mut statement = self
            .conn
            .prepare("PRAGMA quick_check")
            .map_err(|e| sql_error(&self.shown(), "checking integrity", e))?;
        let problems: Vec<String> = statement
            .query_map([], |row| row.get::<_, String>(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| sql_error(&self.shown(), "checking integrity", e))?;
        if problems.len() != 1 || problems[0] != "ok" {
            return Err(StorageError::Corrupt(format!(
                "{}: damaged database (quick_check: {})",
                self.shown(),
                problems.join("; ")
            )));
        }
        Ok(())
    }

    /// Reads the last committed state and checks it hangs together.
    fn load_state(&self) -> Result<InitialState, StorageError> {
        let shown = self.shown();
        let corrupt = |why: String| StorageError::Corrupt(format!("{shown}: {why}"));
        let (term, voted_for, commit) = self
            .conn
            .query_row(
                "SELECT term, voted_for, commit_index FROM hard_state WHERE id = 0",
                [],
                |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, Option<i64>>(1)?,
                        row.get::<_, i64>(2)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| sql_error(&shown, "reading the hard state", e))?
            .ok_or_else(|| corrupt("the hard state row is missing".into()))?;
        let applied: i64 = self
            .conn
            .query_row("SELECT idx FROM applied WHERE id = 0", [], |row| row.get(0))
            .optional()
            .map_err(|e| sql_error(&shown, "reading the applied index", e))?
            .ok_or_else(|| corrupt("the applied index row is missing".into()))?;
        let (count, first, last, last_term) = self
            .conn
            .query_row(
                "SELECT COUNT(*), MIN(idx), MAX(idx), (SELECT term FROM log ORDER BY idx DESC LIMIT 1)
                 FROM log",
                [],
                |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, Option<i64>>(1)?,
                        row.get::<_, Option<i64>>(2)?,
                        row.get::<_, Option<i64>>(3)?,
                    ))
                },
            )
            .map_err(|e| sql_error(&shown, "reading the log bounds", e))?;
        let last_index = last.unwrap_or(0);
        if count > 0 && (first != Some(1) || count != last_index) {
            return Err(corrupt(format!(
                "the log has holes: {count} entries between index {} and {last_index}",
                first.unwrap_or(0)
            )));
        }
        if applied > last_index {
            return Err(corrupt(format!(
                "applied index {applied} is past the last log entry {last_index}"
            )));
        }
        let voted_for = voted_for
            .map(|id| from_sql(id, "voted_for").map(NodeId))
            .transpose()
            .map_err(|e| corrupt(e.to_string()))?;
        let read =
            |value: i64, what: &str| from_sql(value, what).map_err(|e| corrupt(e.to_string()));
        Ok(InitialState {
            hard_state: HardState {
                term: Term(read(term, "term")?),
                voted_for,
                commit: LogIndex(read(commit, "commit index")?),
            },
            last: LogId {
                index: LogIndex(read(last_index, "last index")?),
                term: Term(read(last_term.unwrap_or(0), "last term")?),
            },
            applied: LogIndex(read(applied, "applied index")?),
        })
    }

    /// Only log entries, the term and the vote must be on disk before the node acts on them (replies
    /// wait for them). A batch that only applies committed entries and advances the commit index needs
    /// no fsync of its own: it is atomic and survives a killed process (WAL, `synchronous=NORMAL`), and
    /// should a power cut lose it, the commit and applied indexes fall back together to an earlier
    /// transaction's (Raft keeps the commit index volatile; it is learned again from the leader) and the
    /// entries, durable in the log, are applied again. The next fsynced batch makes it durable too. This
    /// takes the second of two serial fsyncs off every client write's path on the leader.
    fn set_sync_for(&mut self, batch: &WriteBatch<'_>) -> Result<(), rusqlite::Error> {
        let full = self.needs_fsync(batch);
        if full != self.sync_full {
            self.conn
                .pragma_update(None, "synchronous", if full { "FULL" } else { "NORMAL" })?;
            self.sync_full = full;
        }
        Ok(())
    }

    fn needs_fsync(&self, batch: &WriteBatch<'_>) -> bool {
        let stored = self.state.hard_state;
        !batch.entries.is_empty()
            || batch
                .hard_state
                .is_some_and(|new| new.term != stored.term || new.voted_for != stored.voted_for)
    }

    /// One batch, one transaction.
    fn write_one(&mut self, batch: WriteBatch<'_>) -> Result<Vec<ApplyOutcome>, StorageError> {
        let plan = plan_write(&self.state, &batch, |index| self.term(index))?;
        self.set_sync_for(&batch)
            .map_err(|e| sql_error(&self.shown(), "setting synchronous", e))?;
        let outcomes = self
            .write_in_transaction(&batch, plan.truncate_from)
            .map_err(|e| sql_error(&self.shown(), "writing a batch", e))?;
        if let Some(hard_state) = batch.hard_state {
            self.state.hard_state = hard_state;
        }
        self.state.last = plan.last;
        self.state.applied = plan.applied;
        self.recent_terms
            .record_write(plan.truncate_from, batch.entries);
        Ok(outcomes)
    }

    fn write_in_transaction(
        &mut self,
        batch: &WriteBatch<'_>,
        truncate_from: Option<LogIndex>,
    ) -> Result<Vec<ApplyOutcome>, rusqlite::Error> {
        self.start_generation_if_due();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Some(hard_state) = batch.hard_state {
            tx.prepare_cached(
                "UPDATE hard_state SET term = ?1, voted_for = ?2, commit_index = ?3 WHERE id = 0",
            )?
            .execute(params![
                to_sql(hard_state.term.0)?,
                hard_state.voted_for.map(|id| to_sql(id.0)).transpose()?,
                to_sql(hard_state.commit.0)?
            ])?;
        }
        if let Some(from) = truncate_from {
            // Raft §5.3: a conflicting entry and all that follow it are deleted.
            tx.prepare_cached("DELETE FROM log WHERE idx >= ?1")?
                .execute([to_sql(from.0)?])?;
        }
        if !batch.entries.is_empty() {
            let mut insert = tx.prepare_cached(
                "INSERT INTO log (idx, term, kind, text, request_id) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for entry in batch.entries {
                let (kind, text, request_id) = encode_payload(&entry.payload);
                insert.execute(params![
                    to_sql(entry.index.0)?,
                    to_sql(entry.term.0)?,
                    kind,
                    text,
                    request_id
                ])?;
            }
        }
        let mut outcomes = Vec::with_capacity(batch.apply.len());
        let mut newly_applied = Vec::new();
        if let Some(last_applied) = batch.apply.last() {
            let mut duplicate = tx.prepare_cached("INSERT INTO duplicates (idx) VALUES (?1)")?;
            let mut find =
                tx.prepare_cached("SELECT idx, term FROM request_ids WHERE request_id = ?1")?;
            for entry in batch.apply {
                let Payload::Message { request_id, .. } = &entry.payload else {
                    outcomes.push(apply_outcome(entry, None));
                    continue;
                };
                let earlier = match request_id {
                    Some(id) => match self.unindexed.get(id) {
                        Some(&original) => Some(original),
                        None => find.query_row([id], |row| read_log_id(row, 0)).optional()?,
                    },
                    None => None,
                };
                match (earlier, request_id) {
                    (Some(_), _) => {
                        duplicate.execute([to_sql(entry.index.0)?])?;
                    }
                    (None, Some(id)) => {
                        let applied = LogId {
                            index: entry.index,
                            term: entry.term,
                        };
                        // Seen by later entries of this same batch; taken back if the batch fails.
                        self.unindexed.insert(id.clone(), applied);
                        newly_applied.push(id.as_str());
                    }
                    (None, None) => {}
                }
                outcomes.push(apply_outcome(entry, earlier));
            }
            tx.prepare_cached("UPDATE applied SET idx = ?1 WHERE id = 0")?
                .execute([to_sql(last_applied.index.0)?])?;
        }
        let inserted = match &self.flushing {
            Some(flushing) => {
                flushing.insert_next(&tx, self.id_flush.chunk.max(2 * batch.apply.len()))?
            }
            None => 0,
        };
        match tx.commit() {
            Ok(()) => self.chunk_inserted(inserted),
            Err(error) => {
                for id in newly_applied {
                    self.unindexed.remove(id);
                }
                return Err(error);
            }
        }
        Ok(outcomes)
    }

    /// Takes the ids in `unindexed` as the next generation once there are enough and the last is in.
    /// Every id there is committed (a failed batch takes its own back), so this needs no undoing.
    fn start_generation_if_due(&mut self) {
        if self.flushing.is_some() || self.unindexed.len() < self.id_flush.generation {
            return;
        }
        let mut ids: Vec<(String, LogId)> = self
            .unindexed
            .iter()
            .map(|(id, at)| (id.clone(), *at))
            .collect();
        ids.sort_unstable();
        self.flushing = Some(Flushing {
            ids,
            inserted: 0,
            up_to: self.state.applied,
        });
    }

    /// After the commit of a transaction that inserted `count` ids of the generation.
    fn chunk_inserted(&mut self, count: usize) {
        let Some(flushing) = &mut self.flushing else {
            return;
        };
        flushing.inserted += count;
        if flushing.inserted == flushing.ids.len() {
            for (id, _) in &flushing.ids {
                self.unindexed.remove(id);
            }
            self.flushing = None;
        }
    }
}

impl LogStore for SqliteStore {
    fn initial_state(&self) -> Result<InitialState, StorageError> {
        Ok(self.state)
    }

    fn write(&mut self, batch: WriteBatch<'_>) -> Result<Vec<ApplyOutcome>, StorageError> {
        self.write_one(batch)
    }

    /// Under load nearly every batch both applies committed entries and appends new ones: one
    /// transaction would make the clients of the applied entries wait for the fsync the new entries
    /// need. Applies of entries already in the durable log are committed first, in a transaction of
    /// their own that needs no fsync (`set_sync_for`), and announced; then the rest of the batch.
    fn writes_without_fsync(&self, batch: &WriteBatch<'_>) -> bool {
        !self.needs_fsync(batch)
    }

    fn write_deciding_early(
        &mut self,
        batch: WriteBatch<'_>,
        decided: &mut dyn FnMut(&[ApplyOutcome]),
    ) -> Result<Vec<ApplyOutcome>, StorageError> {
        let applies_are_durable = batch
            .apply
            .last()
            .is_some_and(|entry| entry.index <= self.state.last.index);
        if applies_are_durable && self.needs_fsync(&batch) {
            let outcomes = self.write_one(WriteBatch {
                apply: batch.apply,
                ..WriteBatch::default()
            })?;
            decided(&outcomes);
            self.write_one(WriteBatch {
                apply: &[],
                ..batch
            })?;
            return Ok(outcomes);
        }
        let outcomes = self.write_one(batch)?;
        if !outcomes.is_empty() {
            decided(&outcomes);
        }
        Ok(outcomes)
    }

    fn term(&self, index: LogIndex) -> Result<Option<Term>, StorageError> {
        match self.recent_terms.get(index) {
            Some(term) => Ok(Some(term)),
            None => read_term(&self.conn, &self.path, index),
        }
    }

    fn entries(
        &self,
        lo: LogIndex,
        hi: LogIndex,
        max_bytes: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        read_entries(&self.conn, &self.path, lo, hi, max_bytes)
    }

    fn messages(
        &self,
        from: LogIndex,
        up_to: LogIndex,
        limit: usize,
    ) -> Result<Vec<MessageEntry>, StorageError> {
        read_messages(&self.conn, &self.path, from, up_to, limit)
    }

    fn find_request(&self, request_id: &str) -> Result<Option<LogId>, StorageError> {
        read_request(&self.conn, &self.path, request_id)
    }
}

impl SqliteReader {
    /// Opens `path` read-only. The file must already be a node's database (the writer creates it).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StorageError> {
        let path = path.as_ref().to_path_buf();
        let shown = path.display().to_string();
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StorageError::Io(format!("{shown}: cannot open for reading: {e}")))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| sql_error(&shown, "setting the busy timeout", e))?;
        // Readers are many and pages are in the OS cache anyway: a small cache each keeps memory flat.
        conn.pragma_update(None, "cache_size", READER_CACHE_SIZE)
            .map_err(|e| sql_error(&shown, "setting the cache size", e))?;
        conn.set_prepared_statement_cache_capacity(16);
        Ok(Self { conn, path })
    }

    pub fn term(&self, index: LogIndex) -> Result<Option<Term>, StorageError> {
        read_term(&self.conn, &self.path, index)
    }

    pub fn entries(
        &self,
        lo: LogIndex,
        hi: LogIndex,
        max_bytes: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        read_entries(&self.conn, &self.path, lo, hi, max_bytes)
    }

    pub fn messages(
        &self,
        from: LogIndex,
        up_to: LogIndex,
        limit: usize,
    ) -> Result<Vec<MessageEntry>, StorageError> {
        read_messages(&self.conn, &self.path, from, up_to, limit)
    }

    pub fn find_request(&self, request_id: &str) -> Result<Option<LogId>, StorageError> {
        read_request(&self.conn, &self.path, request_id)
    }

    /// The state machine's applied index as last committed: a read point that every message read
    /// afterwards is sure to cover (the applied index only grows).
    pub fn applied(&self) -> Result<LogIndex, StorageError> {
        let fail = |e| {
            sql_error(
                &self.path.display().to_string(),
                "reading the applied index",
                e,
            )
        };
        let applied: i64 = self
            .conn
            .prepare_cached("SELECT idx FROM applied WHERE id = 0")
            .map_err(fail)?
            .query_row([], |row| row.get(0))
            .map_err(fail)?;
        from_sql(applied, "applied index").map(LogIndex)
    }
}

fn read_term(
    conn: &Connection,
    path: &Path,
    index: LogIndex,
) -> Result<Option<Term>, StorageError> {
    if index == LogIndex::ZERO {
        return Ok(Some(Term(0)));
    }
    let Ok(idx) = i64::try_from(index.0) else {
        return Ok(None);
    };
    let fail = |e| sql_error(&path.display().to_string(), "reading a term", e);
    let term = conn
        .prepare_cached("SELECT term FROM log WHERE idx = ?1")
        .map_err(fail)?
        .query_row([idx], |row| row.get::<_, i64>(0))
        .optional()
        .map_err(fail)?;
    term.map(|t| from_sql(t, "term").map(Term)).transpose()
}

fn read_entries(
    conn: &Connection,
    path: &Path,
    lo: LogIndex,
    hi: LogIndex,
    max_bytes: usize,
) -> Result<Vec<Entry>, StorageError> {
    let lo = lo.max(LogIndex(1));
    if lo > hi {
        return Ok(Vec::new());
    }
    let Ok(lo_sql) = i64::try_from(lo.0) else {
        return Ok(Vec::new());
    };
    let hi_sql = i64::try_from(hi.0).unwrap_or(i64::MAX);
    let fail = |e| sql_error(&path.display().to_string(), "reading log entries", e);
    let mut statement = conn
        .prepare_cached(
            "SELECT idx, term, kind, text, request_id FROM log WHERE idx >= ?1 AND idx <= ?2
             ORDER BY idx",
        )
        .map_err(fail)?;
    let rows = statement
        .query_map([lo_sql, hi_sql], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, Option<String>>(3)?,
                row.get::<_, Option<String>>(4)?,
            ))
        })
        .map_err(fail)?;
    let entries = rows.map(|row| {
        let (idx, term, kind, text, request_id) = row.map_err(fail)?;
        Ok(Entry {
            index: LogIndex(from_sql(idx, "log index")?),
            term: Term(from_sql(term, "log term")?),
            payload: decode_payload(kind, text, request_id).map_err(|why| {
                StorageError::Corrupt(format!("{}: entry {idx}: {why}", path.display()))
            })?,
        })
    });
    take_within_bytes(entries, max_bytes)
}

fn read_messages(
    conn: &Connection,
    path: &Path,
    from: LogIndex,
    up_to: LogIndex,
    limit: usize,
) -> Result<Vec<MessageEntry>, StorageError> {
    if from > up_to || limit == 0 {
        return Ok(Vec::new());
    }
    let Ok(from_sql_index) = i64::try_from(from.0) else {
        return Ok(Vec::new());
    };
    let up_to = i64::try_from(up_to.0).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let fail = |e| sql_error(&path.display().to_string(), "reading messages", e);
    let mut statement = conn
        .prepare_cached(
            "SELECT idx, term, text, request_id FROM messages WHERE idx >= ?1 AND idx <= ?2
             ORDER BY idx LIMIT ?3",
        )
        .map_err(fail)?;
    let rows = statement
        .query_map([from_sql_index, up_to, limit], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, Option<String>>(3)?,
            ))
        })
        .map_err(fail)?;
    rows.map(|row| {
        let (idx, term, text, request_id) = row.map_err(fail)?;
        Ok(MessageEntry {
            index: LogIndex(from_sql(idx, "message index")?),
            term: Term(from_sql(term, "message term")?),
            text,
            request_id,
        })
    })
    .collect()
}

fn read_request(
    conn: &Connection,
    path: &Path,
    request_id: &str,
) -> Result<Option<LogId>, StorageError> {
    let fail = |e| sql_error(&path.display().to_string(), "looking up a request id", e);
    // The index, then those applied since its last flush (a range scan over at most two generations
    // of `ID_FLUSH` rows).
    conn.prepare_cached(
        "SELECT idx, term FROM request_ids WHERE request_id = ?1
         UNION ALL
         SELECT idx, term FROM messages
         WHERE idx > (SELECT request_ids_up_to FROM applied WHERE id = 0) AND request_id = ?1
         LIMIT 1",
    )
    .map_err(fail)?
    .query_row([request_id], |row| read_log_id(row, 0))
    .optional()
    .map_err(fail)
}

fn read_log_id(row: &rusqlite::Row<'_>, first_column: usize) -> rusqlite::Result<LogId> {
    let index: i64 = row.get(first_column)?;
    let term: i64 = row.get(first_column + 1)?;
    let non_negative = |value: i64, column: usize| {
        u64::try_from(value).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(column, value))
    };
    Ok(LogId {
        index: LogIndex(non_negative(index, first_column)?),
        term: Term(non_negative(term, first_column + 1)?),
    })
}

fn encode_payload(payload: &Payload) -> (i64, Option<&str>, Option<&str>) {
    match payload {
        Payload::Noop => (KIND_NOOP, None, None),
        Payload::Message { text, request_id } => {
            (KIND_MESSAGE, Some(text.as_str()), request_id.as_deref())
        }
    }
}

fn decode_payload(
    kind: i64,
    text: Option<String>,
    request_id: Option<String>,
) -> Result<Payload, String> {
    match (kind, text) {
        (KIND_NOOP, _) => Ok(Payload::Noop),
        (KIND_MESSAGE, Some(text)) => Ok(Payload::Message { text, request_id }),
        (KIND_MESSAGE, None) => Err("a message entry without text".into()),
        (other, _) => Err(format!("unknown entry kind {other}")),
    }
}

/// Indexes, terms and ids are u64 in Raft and i64 in SQLite; values past i64::MAX are refused.
fn to_sql(value: u64) -> rusqlite::Result<i64> {
    i64::try_from(value).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn sql_int(value: u64, what: &str) -> Result<i64, StorageError> {
    i64::try_from(value)
        .map_err(|_| StorageError::Invalid(format!("{what} {value} does not fit in SQLite")))
}

fn from_sql(value: i64, what: &str) -> Result<u64, StorageError> {
    u64::try_from(value).map_err(|_| StorageError::Corrupt(format!("negative {what} {value}")))
}

fn sql_error(shown: &str, doing: &str, error: rusqlite::Error) -> StorageError {
    match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
            StorageError::Corrupt(format!("{shown}: damaged database while {doing}: {error}"))
        }
        _ => StorageError::Io(format!("{shown}: {doing}: {error}")),
    }
}

#[cfg(test)]
mod tests {
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
            .write_deciding_early(
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
}
