//! Reads, from the writer's connection or from a [`SqliteReader`] on another thread.

use super::*;

/// How long a reader waits for a lock held during a WAL checkpoint before giving up.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// A reader connection's page cache: `PRAGMA cache_size`, negative meaning KiB.
pub(super) const READER_CACHE_SIZE: i64 = -256;

/// A read-only connection to a node's database, for reads on other threads while the writer works.
pub struct SqliteReader {
    conn: Connection,
    path: PathBuf,
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
        .map_err(|e| sql_error(&shown, "cannot open for reading", e))?;
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

    /// The newest configuration entry at or below `at_most`: where a restarted node's configuration
    /// comes from (the core takes in newer ones itself, see `Raft::restore_membership`).
    pub fn last_configuration(&self, at_most: LogIndex) -> Result<Option<Entry>, StorageError> {
        let at_most = i64::try_from(at_most.0).unwrap_or(i64::MAX);
        let fail = |e| {
            sql_error(
                &self.path.display().to_string(),
                "reading the configuration",
                e,
            )
        };
        let index: Option<i64> = self
            .conn
            .prepare_cached(
                "SELECT idx FROM log WHERE kind = ?1 AND idx <= ?2 ORDER BY idx DESC LIMIT 1",
            )
            .and_then(|mut statement| {
                statement
                    .query_row([KIND_CONFIGURATION, at_most], |row| row.get(0))
                    .optional()
            })
            .map_err(fail)?;
        let Some(index) = index else {
            return Ok(None);
        };
        let index = LogIndex(from_sql(index, "log index")?);
        Ok(self.entries(index, index, usize::MAX)?.pop())
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

pub(super) fn read_term(
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

pub(super) fn read_entries(
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

pub(super) fn read_messages(
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

pub(super) fn read_request(
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

pub(super) fn read_log_id(row: &rusqlite::Row<'_>, first_column: usize) -> rusqlite::Result<LogId> {
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
