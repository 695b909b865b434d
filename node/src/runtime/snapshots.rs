//! Snapshots in the runtime (Raft §7): when to take one, reading and sending the chunks a leader's
//! core asks for, and the writes a follower's core asks for, in order with the rest of its writes.
//!
//! Every piece of storage work goes through the writer as a [`SnapshotTask`] of a batch, done after
//! the batch's entries and applies: a snapshot is taken at an entry whose apply is already written,
//! and an install comes after the writes queued before it and before any queued after it (the write
//! queue never merges later work into a batch that installs). Chunks are read on a blocking thread
//! through a state reader (its own connection), one at a time per follower (the core asks for the
//! next once it knows where the last one ends); the core keeps a bounded window of chunks unanswered,
//! so memory stays bounded on both sides whatever the snapshot's size.

use super::writer::Batch;
use super::Runtime;
use crate::http::StateReader;
use crate::raft::{
    Envelope, LogId, LogIndex, LogRead, NodeId, SnapshotMeta, SnapshotOp, SnapshotSend,
    MAX_SNAPSHOT_CHUNK_BYTES,
};
use crate::storage::{read_image_chunk, LogStore, StorageError};
use flotilla_shared::api::{Member, MessageEntry, SnapshotResponse};
use flotilla_shared::event::{EventKind, Role};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Default for `--snapshot-threshold`: entries applied since the last snapshot before the next.
pub const DEFAULT_SNAPSHOT_THRESHOLD: u64 = 10_000;
/// Most entries a compaction leaves behind the snapshot, so that a follower slightly behind still
/// gets plain appends.
const MAX_TAIL: u64 = 1_000;
/// Log entries one compaction step removes. Each step is a transaction of its own on the storage
/// thread, riding with one batch of writes, so that compacting many entries never holds up the writes
/// queued behind it for long.
const COMPACTION_STEP: u64 = 1_000;

/// How the node snapshots.
#[derive(Clone, Debug, Default)]
pub struct SnapshotConfig {
    /// Take a snapshot once this many entries were applied since the last (0: never by count).
    pub threshold: u64,
}

impl SnapshotConfig {
    /// Entries a compaction keeps behind the snapshot.
    pub fn tail(&self) -> u64 {
        (self.threshold / 2).min(MAX_TAIL)
    }
}

/// Storage work for the writer, done after the batch's own writes.
#[derive(Clone, Debug)]
pub(super) enum SnapshotTask {
    /// Take a snapshot at `at` (applied).
    Take {
        at: LogId,
        members: Vec<Member>,
        config_index: LogIndex,
    },
    /// Remove the log entries up to `up_to` (covered by the snapshot).
    Compact {
        up_to: LogIndex,
    },
    Stage {
        offset: u64,
        records: Vec<MessageEntry>,
    },
    Install(SnapshotMeta),
}

impl SnapshotTask {
    pub(super) fn is_install(&self) -> bool {
        matches!(self, SnapshotTask::Install(_))
    }
}

/// What a task came to.
#[derive(Clone, Debug)]
pub(super) enum SnapshotDone {
    Taken(SnapshotMeta),
    /// The log now starts at this index.
    Compacted(LogIndex),
    Staged,
    Installed(SnapshotMeta),
}

/// Does `task` on `store`.
pub(super) fn run_task(
    store: &mut dyn LogStore,
    task: &SnapshotTask,
) -> Result<SnapshotDone, StorageError> {
    match task {
        SnapshotTask::Take {
            at,
            members,
            config_index,
        } => Ok(SnapshotDone::Taken(store.take_snapshot(
            *at,
            members,
            *config_index,
        )?)),
        SnapshotTask::Compact { up_to } => Ok(SnapshotDone::Compacted(store.compact(*up_to)?)),
        SnapshotTask::Stage { offset, records } => {
            store.stage_snapshot(*offset, records)?;
            Ok(SnapshotDone::Staged)
        }
        SnapshotTask::Install(meta) => {
            store.install_snapshot(meta)?;
            Ok(SnapshotDone::Installed(meta.clone()))
        }
    }
}

/// A chunk read off the runtime's task: the message to send and its event.
pub(super) type ChunkRead = Result<(Envelope, EventKind), StorageError>;

/// Reads the chunk `send` asks for: the image's messages after `send.after`, up to
/// `MAX_SNAPSHOT_CHUNK_BYTES` (at least one).
fn read_chunk(reader: &dyn StateReader, from: NodeId, send: SnapshotSend) -> ChunkRead {
    let (records, bytes) = read_image_chunk(
        |lo, hi, limit| reader.messages(lo, hi, limit),
        send.after,
        send.meta.last.index,
        MAX_SNAPSHOT_CHUNK_BYTES as u64,
    )?;
    let (to, index, term) = (send.to, send.meta.last.index, send.meta.last.term);
    let (offset, total_bytes, msg) = (send.offset, send.meta.bytes, send.msg);
    let (envelope, done) = send.into_envelope(from, records, bytes);
    let event = EventKind::SnapshotSent {
        to,
        index,
        term,
        offset,
        bytes,
        total_bytes,
        done,
        msg,
    };
    Ok((envelope, event))
}

/// The runtime's snapshot state.
pub(super) struct Snapshotting {
    pub(super) config: SnapshotConfig,
    reader: Arc<dyn StateReader>,
    chunks_tx: mpsc::UnboundedSender<ChunkRead>,
    pub(super) chunks: mpsc::UnboundedReceiver<ChunkRead>,
    /// A `Take` is queued and not yet done.
    taking: bool,
    /// Compact the log up to here, a step at a time; a step is queued and not yet done.
    compact_goal: LogIndex,
    compacting: bool,
    /// `POST /v1/admin/snapshot` callers waiting for the next snapshot.
    waiters: Vec<oneshot::Sender<Result<SnapshotResponse, String>>>,
}

impl Snapshotting {
    /// `latest`: the snapshot found on disk; compaction behind it goes on where a restart cut it off.
    pub(super) fn new(
        config: SnapshotConfig,
        reader: Arc<dyn StateReader>,
        latest: LogIndex,
    ) -> Self {
        let (chunks_tx, chunks) = mpsc::unbounded_channel();
        let compact_goal = LogIndex(latest.0.saturating_sub(config.tail()));
        Self {
            config,
            reader,
            chunks_tx,
            chunks,
            taking: false,
            compact_goal,
            compacting: false,
            waiters: Vec::new(),
        }
    }
}

impl<S: LogRead> Runtime<S> {
    /// `POST /v1/admin/snapshot`: a snapshot at the applied index, answered once it is taken.
    pub(super) fn request_snapshot(
        &mut self,
        reply: oneshot::Sender<Result<SnapshotResponse, String>>,
    ) {
        self.snapshots.waiters.push(reply);
    }

    /// Adds a `Take` to `batch` when one is due (by count, or asked for), and answers askers when
    /// there is nothing new to snapshot; and the next compaction step when one is due.
    pub(super) fn maybe_take_snapshot(&mut self, batch: &mut Batch) {
        self.maybe_compact_step(batch);
        if self.snapshots.taking {
            return;
        }
        let latest = self.raft.latest_snapshot().last;
        let applied = self.raft.applied();
        let threshold = self.snapshots.config.threshold;
        let due = threshold > 0 && applied.0.saturating_sub(latest.index.0) >= threshold;
        let asked = !self.snapshots.waiters.is_empty();
        if !due && !asked {
            return;
        }
        if applied <= latest.index {
            let answer = if latest.index == LogIndex::ZERO {
                Err("nothing is applied yet: there is no state to snapshot".to_string())
            } else {
                Ok(SnapshotResponse {
                    snapshot_index: latest.index,
                    snapshot_term: latest.term,
                })
            };
            for waiter in self.snapshots.waiters.drain(..) {
                let _ = waiter.send(answer.clone());
            }
            return;
        }
        let Some(term) = self.raft.log_term(applied) else {
            return;
        };
        // A configuration that committed but is not applied yet, or none yet: snapshot once there is.
        let Some(config) = self.raft.snapshot_configuration(applied) else {
            return;
        };
        batch.snapshot.push(SnapshotTask::Take {
            at: LogId {
                index: applied,
                term,
            },
            members: config.members.clone(),
            config_index: config.index,
        });
        self.snapshots.taking = true;
    }

    /// Adds the next compaction step to `batch`, if the log reaches past the goal and no step is
    /// under way.
    fn maybe_compact_step(&mut self, batch: &mut Batch) {
        let first = self.raft.first_log_index();
        let goal = self.snapshots.compact_goal;
        if self.snapshots.compacting || goal < first {
            return;
        }
        let up_to = LogIndex(goal.0.min(first.0 + COMPACTION_STEP - 1));
        batch.snapshot.push(SnapshotTask::Compact { up_to });
        self.snapshots.compacting = true;
    }

    /// The follower's core asks for chunks to be staged and images installed.
    pub(super) fn queue_snapshot_ops(&mut self, ops: Vec<SnapshotOp>, batch: &mut Batch) {
        batch.snapshot.extend(ops.into_iter().map(|op| match op {
            SnapshotOp::Stage { offset, records } => SnapshotTask::Stage { offset, records },
            SnapshotOp::Install(meta) => SnapshotTask::Install(meta),
        }));
    }

    /// The leader's core asks for chunks: each is read on a blocking thread and comes back to the
    /// runtime's task to be sent ([`Runtime::send_chunk`]).
    pub(super) fn read_chunks(&mut self, sends: Vec<SnapshotSend>) {
        for send in sends {
            let reader = self.snapshots.reader.clone();
            let done = self.snapshots.chunks_tx.clone();
            let from = self.info.id;
            tokio::task::spawn_blocking(move || {
                let _ = done.send(read_chunk(reader.as_ref(), from, send));
            });
        }
    }

    /// A chunk is read: it goes out if this node still leads the term it was read for, and the core
    /// learns where it ends (the next one may be read now).
    pub(super) fn send_chunk(&mut self, chunk: ChunkRead) -> Result<(), StorageError> {
        let (envelope, event) = chunk?;
        if self.raft.role() != Role::Leader || self.raft.term() != envelope.term {
            return Ok(());
        }
        self.raft.snapshot_chunk_read(&envelope);
        self.events.publish(event);
        self.transport.send(envelope);
        Ok(())
    }

    /// Storage finished snapshot work: the core learns of it.
    pub(super) fn snapshot_written(&mut self, done: Vec<SnapshotDone>) {
        for done in done {
            match done {
                SnapshotDone::Taken(meta) => {
                    self.snapshots.taking = false;
                    let answer = SnapshotResponse {
                        snapshot_index: meta.last.index,
                        snapshot_term: meta.last.term,
                    };
                    let tail = self.snapshots.config.tail();
                    self.snapshots.compact_goal = LogIndex(meta.last.index.0.saturating_sub(tail));
                    self.raft.snapshot_taken(meta);
                    for waiter in self.snapshots.waiters.drain(..) {
                        let _ = waiter.send(Ok(answer.clone()));
                    }
                }
                SnapshotDone::Compacted(first) => {
                    self.snapshots.compacting = false;
                    self.raft.log_compacted(first);
                }
                SnapshotDone::Staged => {}
                SnapshotDone::Installed(meta) => {
                    self.stored_applied = self.stored_applied.max(meta.last.index);
                }
            }
        }
    }
}
