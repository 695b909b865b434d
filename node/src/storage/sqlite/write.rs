//! Writes: one transaction per batch, when it needs an fsync, and the request-id index filled in
//! sorted generations.

use super::*;
use crate::raft::SnapshotMeta;
use flotilla_shared::api::Member;

/// How the request ids applied since the last flush go into the `request_ids` index (see
/// `SqliteStore::unindexed`).
#[derive(Clone, Copy, Debug)]
pub(super) struct IdFlush {
    /// Ids held in memory before they are sorted into a generation to insert.
    pub(super) generation: usize,
    /// Least ids of a generation each transaction inserts; twice its applies if that is more, so a
    /// generation is always in before the next is due.
    pub(super) chunk: usize,
}

pub(super) const ID_FLUSH: IdFlush = IdFlush {
    generation: 16_384,
    chunk: 256,
};

/// A generation of request ids on its way into the `request_ids` table.
pub(super) struct Flushing {
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
    pub(super) fn insert_next(
        &self,
        tx: &rusqlite::Transaction<'_>,
        count: usize,
    ) -> rusqlite::Result<usize> {
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

impl SqliteStore {
    /// Only log entries, the term and the vote must be on disk before the node acts on them (replies
    /// wait for them). A batch that only applies committed entries and advances the commit index needs
    /// no fsync of its own: it is atomic and survives a killed process (WAL, `synchronous=NORMAL`), and
    /// should a power cut lose it, the commit and applied indexes fall back together to an earlier
    /// transaction's (Raft keeps the commit index volatile; it is learned again from the leader) and the
    /// entries, durable in the log, are applied again. The next fsynced batch makes it durable too. This
    /// takes the second of two serial fsyncs off every client write's path on the leader.
    pub(super) fn set_sync_for(&mut self, batch: &WriteBatch<'_>) -> Result<(), rusqlite::Error> {
        self.set_synchronous(self.needs_fsync(batch))
    }

    /// `synchronous=FULL` (a commit fsyncs the WAL) or `NORMAL` (it does not) for the next commits.
    pub(super) fn set_synchronous(&mut self, full: bool) -> Result<(), rusqlite::Error> {
        if full != self.sync_full {
            self.conn
                .pragma_update(None, "synchronous", if full { "FULL" } else { "NORMAL" })?;
            self.sync_full = full;
        }
        Ok(())
    }

    pub(super) fn needs_fsync(&self, batch: &WriteBatch<'_>) -> bool {
        let stored = self.state.hard_state;
        !batch.entries.is_empty()
            || batch
                .hard_state
                .is_some_and(|new| new.term != stored.term || new.voted_for != stored.voted_for)
    }

    /// One batch, one transaction.
    pub(super) fn write_one(
        &mut self,
        batch: WriteBatch<'_>,
    ) -> Result<Vec<ApplyOutcome>, StorageError> {
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

    pub(super) fn write_in_transaction(
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
    pub(super) fn start_generation_if_due(&mut self) {
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
    pub(super) fn chunk_inserted(&mut self, count: usize) {
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

    fn write_applies_first(
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
        if index == self.state.snapshot.index {
            return Ok(Some(self.state.snapshot.term));
        }
        if index < self.state.first_index {
            return Ok((index == LogIndex::ZERO).then_some(Term(0)));
        }
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

    fn snapshot(&self) -> Result<SnapshotMeta, StorageError> {
        self.read_snapshot()
    }

    fn take_snapshot(
        &mut self,
        at: LogId,
        members: &[Member],
        config_index: LogIndex,
    ) -> Result<SnapshotMeta, StorageError> {
        self.take_snapshot_at(at, members, config_index)
    }

    fn compact(&mut self, up_to: LogIndex) -> Result<LogIndex, StorageError> {
        self.compact_to(up_to)
    }

    fn stage_snapshot(
        &mut self,
        offset: u64,
        records: &[MessageEntry],
    ) -> Result<(), StorageError> {
        self.stage_chunk(offset, records)
    }

    fn install_snapshot(&mut self, meta: &SnapshotMeta) -> Result<(), StorageError> {
        self.install_staged(meta)
    }
}
