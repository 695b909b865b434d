//! Opening a node's database: the writer lock, the identity and integrity checks, migrations, and
//! loading what the node finds on disk.

use super::*;

/// How long opening waits for another holder of the writer lock to let go.
pub(super) const LOCK_WAIT: Duration = Duration::from_secs(1);

/// Takes the exclusive lock on `<database>.lock`, so that two node processes never write one database
/// (say, the same `--id` and `--data-dir` started twice). The OS drops the lock when the process ends,
/// however it ends, so a crash leaves nothing stale behind.
pub(super) fn lock_for_writing(path: &Path) -> Result<File, StorageError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| {
            StorageError::File(Failed::new(lock_path.display(), "cannot open", source))
        })?;
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
                return Err(StorageError::File(Failed::new(
                    lock_path.display(),
                    "cannot lock",
                    e,
                )))
            }
        }
    }
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
        .map_err(|e| sql_error(&shown, "cannot open", e))?;
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
        // A snapshot half received before a restart is received again from its start.
        store
            .conn
            .execute("DELETE FROM snapshot_staging", [])
            .map_err(|e| sql_error(&store.shown(), "clearing the snapshot staging area", e))?;
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

    pub(super) fn shown(&self) -> String {
        self.path.display().to_string()
    }

    pub(super) fn io(&self, doing: &str) -> impl FnOnce(rusqlite::Error) -> StorageError + '_ {
        let shown = self.shown();
        let doing = doing.to_string();
        move |e| sql_error(&shown, &doing, e)
    }

    /// SQLite reads nothing until the first statement; this is where a non-database file shows.
    pub(super) fn check_is_sqlite(&self) -> Result<(), StorageError> {
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

    pub(super) fn configure(&self) -> Result<(), StorageError> {
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
    pub(super) fn is_blank(&self) -> Result<bool, StorageError> {
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

    pub(super) fn create(&mut self, node_id: NodeId, cluster_id: &str) -> Result<(), StorageError> {
        let created_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let node = sql_int(node_id.0, "node id")?;
        let shown = self.shown();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| sql_error(&shown, "creating the database", e))?;
        // Format 3's schema, then the snapshot tables of format 4 on top.
        tx.execute_batch(SCHEMA)
            .and_then(|()| tx.execute_batch(MIGRATE_FROM_3))
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
    pub(super) fn check_identity(
        &self,
        node_id: NodeId,
        cluster_id: &str,
    ) -> Result<i64, StorageError> {
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
    pub(super) fn migrate_from(&mut self, version: i64) -> Result<(), StorageError> {
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

    pub(super) fn load_unindexed(&self) -> Result<HashMap<String, LogId>, StorageError> {
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

    pub(super) fn check_integrity(&self) -> Result<(), StorageError> {
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
    pub(super) fn load_state(&self) -> Result<InitialState, StorageError> {
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
        let (snapshot_index, snapshot_term): (i64, i64) = self
            .conn
            .query_row("SELECT idx, term FROM snapshot WHERE id = 0", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()
            .map_err(|e| sql_error(&shown, "reading the snapshot", e))?
            .ok_or_else(|| corrupt("the snapshot row is missing".into()))?;
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
        // The log starts at 1, or inside or right after the snapshot (compaction keeps a tail).
        let first_index = first.unwrap_or(snapshot_index + 1);
        let last_index = last.unwrap_or(snapshot_index);
        if count > 0 && (first_index > snapshot_index + 1 || count != last_index - first_index + 1)
        {
            return Err(corrupt(format!(
                "the log has holes: {count} entries between index {first_index} and {last_index} \
                 (snapshot at {snapshot_index})"
            )));
        }
        if last_index < snapshot_index {
            return Err(corrupt(format!(
                "the log ends at {last_index}, before the snapshot at {snapshot_index}"
            )));
        }
        let last_term = if count > 0 {
            last_term
        } else {
            Some(snapshot_term)
        };
        if applied > last_index || applied < snapshot_index {
            return Err(corrupt(format!(
                "applied index {applied} is outside the log and snapshot ({snapshot_index}..={last_index})"
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
            snapshot: LogId {
                index: LogIndex(read(snapshot_index, "snapshot index")?),
                term: Term(read(snapshot_term, "snapshot term")?),
            },
            first_index: LogIndex(read(first_index, "first log index")?),
        })
    }
}
