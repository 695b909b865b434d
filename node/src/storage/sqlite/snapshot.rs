//! Snapshots (Raft §7): recording one, compacting the log behind it, and staging and installing one
//! received from the leader.
//!
//! The image at a snapshot index is every message applied up to it; messages never change once
//! applied, so taking a snapshot reads nothing that later writes touch and copies nothing: it records
//! the index and sums the image's size. Compaction moves the messages of the removed log entries into
//! `compacted_messages`. Installing swaps the staged image in within one transaction.
//!
//! Staged chunks are committed without an fsync of their own. Nothing depends on them surviving a
//! crash: opening the store empties the staging area (a restarted follower answers the next chunk
//! with an empty copy, and the leader starts over), and a follower's answer to a chunk only tells the
//! leader where to go on, never anything Raft counts. The install's commit is fsynced
//! (`synchronous=FULL`), and in WAL mode that fsync covers every frame written before it, the staged
//! chunks included: once the install returns, the whole image is on disk. A power cut before that
//! loses a tail of WAL transactions at most (SQLite recovers the WAL's longest valid prefix of
//! commits), so the store comes back with its old state and some or none of the staging, which the
//! open discards.

use super::*;
use crate::raft::SnapshotMeta;
use crate::storage::{check_compact, check_take_snapshot};
use flotilla_shared::api::Member;

/// The size of a message in an image, as `snapshot_record_bytes` counts it, in SQL.
const RECORD_BYTES_SQL: &str =
    "16 + length(CAST(text AS BLOB)) + COALESCE(length(CAST(request_id AS BLOB)), 0)";

impl SqliteStore {
    /// Taking and installing a snapshot are durable when they return; staging a chunk and compacting
    /// are not (see the module's documentation and `compact_to`).
    fn commit_synchronously(&mut self, full: bool) -> Result<(), StorageError> {
        self.set_synchronous(full)
            .map_err(|e| sql_error(&self.shown(), "setting synchronous", e))
    }

    pub(super) fn read_snapshot(&self) -> Result<SnapshotMeta, StorageError> {
        let shown = self.shown();
        let (index, term, config_index, members, bytes): (i64, i64, i64, String, i64) = self
            .conn
            .prepare_cached(
                "SELECT idx, term, config_index, members, bytes FROM snapshot WHERE id = 0",
            )
            .and_then(|mut statement| {
                statement.query_row([], |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                    ))
                })
            })
            .map_err(|e| sql_error(&shown, "reading the snapshot", e))?;
        let members: Vec<Member> = serde_json::from_str(&members)
            .map_err(|e| StorageError::Corrupt(format!("{shown}: the snapshot's members: {e}")))?;
        Ok(SnapshotMeta {
            last: LogId {
                index: LogIndex(from_sql(index, "snapshot index")?),
                term: Term(from_sql(term, "snapshot term")?),
            },
            members,
            config_index: LogIndex(from_sql(config_index, "snapshot config index")?),
            bytes: from_sql(bytes, "snapshot size")?,
        })
    }

    pub(super) fn take_snapshot_at(
        &mut self,
        at: LogId,
        members: &[Member],
        config_index: LogIndex,
    ) -> Result<SnapshotMeta, StorageError> {
        let stored_term = self.term(at.index)?;
        check_take_snapshot(&self.state, at, stored_term)?;
        let previous = self.read_snapshot()?;
        self.commit_synchronously(true)?;
        let shown = self.shown();
        let members_json = serde_json::to_string(members)
            .map_err(|e| StorageError::Invalid(format!("the snapshot's members: {e}")))?;
        let meta = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let added: i64 = tx.query_row(
                &format!(
                    "SELECT COALESCE(SUM({RECORD_BYTES_SQL}), 0) FROM messages
                     WHERE idx > ?1 AND idx <= ?2"
                ),
                [to_sql(previous.last.index.0)?, to_sql(at.index.0)?],
                |row| row.get(0),
            )?;
            let bytes = previous.bytes.saturating_add(added.max(0) as u64);
            tx.execute(
                "UPDATE snapshot SET idx = ?1, term = ?2, config_index = ?3, members = ?4, bytes = ?5
                 WHERE id = 0",
                params![
                    to_sql(at.index.0)?,
                    to_sql(at.term.0)?,
                    to_sql(config_index.0)?,
                    members_json,
                    to_sql(bytes)?
                ],
            )?;
            tx.commit()?;
            Ok(SnapshotMeta {
                last: at,
                members: members.to_vec(),
                config_index,
                bytes,
            })
        })()
        .map_err(|e| sql_error(&shown, "taking a snapshot", e))?;
        self.state.snapshot = at;
        Ok(meta)
    }

    pub(super) fn compact_to(&mut self, up_to: LogIndex) -> Result<LogIndex, StorageError> {
        check_compact(&self.state, up_to)?;
        if up_to < self.state.first_index {
            return Ok(self.state.first_index);
        }
        // No fsync of its own: a compaction changes what the store holds, not what it says. Lost to a
        // power cut, the log is simply longer again (the snapshot behind it is durable already) and
        // the next open goes on compacting; the next fsynced commit makes it durable with the WAL
        // frames before it.
        self.commit_synchronously(false)?;
        let shown = self.shown();
        (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let up_to = to_sql(up_to.0)?;
            // Up to the snapshot, so every entry here is applied: its message (if it is one and not a
            // duplicate) belongs to the state machine and moves, the rest of the entry goes.
            tx.execute(
                "INSERT INTO compacted_messages (idx, term, text, request_id)
                 SELECT idx, term, text, request_id FROM log
                 WHERE idx <= ?1 AND kind = 1
                   AND NOT EXISTS (SELECT 1 FROM duplicates WHERE duplicates.idx = log.idx)",
                [up_to],
            )?;
            tx.execute("DELETE FROM duplicates WHERE idx <= ?1", [up_to])?;
            tx.execute("DELETE FROM log WHERE idx <= ?1", [up_to])?;
            tx.commit()
        })()
        .map_err(|e| sql_error(&shown, "compacting the log", e))?;
        self.state.first_index = up_to.next();
        Ok(self.state.first_index)
    }

    pub(super) fn stage_chunk(
        &mut self,
        offset: u64,
        records: &[MessageEntry],
    ) -> Result<(), StorageError> {
        self.commit_synchronously(false)?;
        let shown = self.shown();
        (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            if offset == 0 {
                tx.execute("DELETE FROM snapshot_staging", [])?;
            }
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO snapshot_staging (idx, term, text, request_id)
                     VALUES (?1, ?2, ?3, ?4)",
                )?;
                for record in records {
                    insert.execute(params![
                        to_sql(record.index.0)?,
                        to_sql(record.term.0)?,
                        record.text,
                        record.request_id
                    ])?;
                }
            }
            tx.commit()
        })()
        .map_err(|e| sql_error(&shown, "staging a snapshot chunk", e))
    }

    pub(super) fn install_staged(&mut self, meta: &SnapshotMeta) -> Result<(), StorageError> {
        if meta.last.index <= self.state.applied {
            return Err(StorageError::Invalid(format!(
                "installing a snapshot at {} over a state machine applied up to {}",
                meta.last.index, self.state.applied
            )));
        }
        self.commit_synchronously(true)?;
        let shown = self.shown();
        let members_json = serde_json::to_string(&meta.members)
            .map_err(|e| StorageError::Invalid(format!("the snapshot's members: {e}")))?;
        let last = meta.last;
        let retain =
            self.term(last.index)? == Some(last.term) && last.index <= self.state.last.index;
        (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let index = to_sql(last.index.0)?;
            // Raft §7: entries after the snapshot stay only if the log holds its last entry.
            if retain {
                tx.execute("DELETE FROM log WHERE idx <= ?1", [index])?;
            } else {
                tx.execute("DELETE FROM log", [])?;
            }
            tx.execute("DELETE FROM duplicates", [])?;
            // The staging area holds the chunks of this image from its start (a chunk at offset 0
            // empties it); nothing past the image's last entry may slip into the state machine.
            tx.execute("DELETE FROM snapshot_staging WHERE idx > ?1", [index])?;
            tx.execute_batch(SWAP_IN_STAGED_IMAGE)?;
            // The dedupe index rebuilt from the image; the first application of an id wins. Inserted
            // in key order (a sort that spills to temporary files past SQLite's cache, so memory stays
            // bounded): each row goes at the end of the index's B-tree, about twice as fast as
            // inserting in index order, which scatters them over it.
            tx.execute_batch(
                "DELETE FROM request_ids;
                 INSERT OR IGNORE INTO request_ids (request_id, idx, term)
                     SELECT request_id, idx, term FROM compacted_messages
                     WHERE request_id IS NOT NULL ORDER BY request_id, idx;",
            )?;
            tx.execute(
                "UPDATE applied SET idx = ?1, request_ids_up_to = ?1 WHERE id = 0",
                [index],
            )?;
            tx.execute(
                "UPDATE hard_state SET commit_index = MAX(commit_index, ?1) WHERE id = 0",
                [index],
            )?;
            tx.execute(
                "UPDATE snapshot SET idx = ?1, term = ?2, config_index = ?3, members = ?4, bytes = ?5
                 WHERE id = 0",
                params![
                    index,
                    to_sql(last.term.0)?,
                    to_sql(meta.config_index.0)?,
                    members_json,
                    to_sql(meta.bytes)?
                ],
            )?;
            tx.commit()
        })()
        .map_err(|e| sql_error(&shown, "installing a snapshot", e))?;
        self.unindexed.clear();
        self.flushing = None;
        self.state.applied = last.index;
        self.state.hard_state.commit = self.state.hard_state.commit.max(last.index);
        if !retain {
            self.state.last = last;
        }
        self.state.snapshot = last;
        self.state.first_index = last.index.next();
        self.recent_terms = RecentTerms::new(self.state.last);
        Ok(())
    }
}
