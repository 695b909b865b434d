//! The storage writer: the queue of batches waiting to be written, the storage thread that writes
//! them, and the store both share.
//!
//! The owner task adds each round's output with [`Writer::queue`]; the storage thread takes everything
//! queued as one batch, writes it (one transaction, one fsync) and reports back, in this order for
//! each batch: [`WriterReport::Applied`] with how its committed entries applied (possibly before the
//! rest of the batch is durable), then [`WriterReport::Written`]. The storage thread is always in one
//! of three states:
//! - **writing**: it holds the store and writes one batch; whatever is queued meanwhile merges into
//!   the next batch (group commit);
//! - **idle**: asleep with nothing queued, woken only when work arrives. Only then may the owner write
//!   a small batch that needs no fsync on its own task ([`Writer::write_here`]), holding the queue so
//!   that the thread cannot take work meanwhile;
//! - **closed**: once [`Writer::close`] is called (or the `Writer` dropped) it writes what is left,
//!   reports, and exits. It also exits after a failed write, once it has reported it, and when the
//!   owner no longer listens.
//!
//! It may not touch the Raft core: what a written batch means for the core is the owner's to act on.

use super::snapshots::{run_task, SnapshotDone, SnapshotTask};
use crate::faults::Faults;
use crate::metrics::Metrics;
use crate::raft::{Entry, Envelope, HardState, LogId, ReadState};
use crate::storage::{ApplyOutcome, LogStore, StorageError, WriteBatch};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Most applies a batch may carry to be written on the owner's own task (see `Writer::write_here`).
/// Under load that task is the leader's busiest thread: with 8, 256-client throughput fell ~6%.
const WRITE_HERE_MAX_APPLIES: usize = 2;

/// What accumulates for the next storage write.
#[derive(Default)]
pub(super) struct Batch {
    pub hard_state: Option<HardState>,
    pub entries: Vec<Entry>,
    pub apply: Vec<Entry>,
    /// Replies held back until this batch is durable (thesis §3.8).
    pub persisted_messages: Vec<Envelope>,
    pub reads: Vec<ReadState>,
    /// Clients wait on some of the applies (see `LogStore::write_applies_first`).
    pub clients_waiting: bool,
    /// Snapshot work, done in order after the batch's writes.
    pub snapshot: Vec<SnapshotTask>,
}

impl Batch {
    /// Adds `later`, the output of a later round, to this batch.
    fn absorb(&mut self, later: Batch) {
        self.clients_waiting |= later.clients_waiting;
        if later.hard_state.is_some() {
            self.hard_state = later.hard_state;
        }
        if let Some(first) = later.entries.first() {
            // Later entries replace queued ones from the same index on (a conflict was truncated);
            // ones already taken are replaced on disk (the store truncates).
            let first = first.index;
            self.entries.retain(|entry| entry.index < first);
            self.entries.extend(later.entries);
        }
        self.apply.extend(later.apply);
        self.persisted_messages.extend(later.persisted_messages);
        self.reads.extend(later.reads);
        self.snapshot.extend(later.snapshot);
    }

    fn is_empty(&self) -> bool {
        self.hard_state.is_none()
            && self.entries.is_empty()
            && self.apply.is_empty()
            && self.persisted_messages.is_empty()
            && self.reads.is_empty()
            && self.snapshot.is_empty()
    }

    /// Whether later work may not merge into this batch: an installed snapshot replaces the log and
    /// the state machine, so what follows it must be written after it, not before.
    fn installs(&self) -> bool {
        self.snapshot.iter().any(SnapshotTask::is_install)
    }
}

/// The next batch: the runtime adds to it, and the storage thread takes it the moment the previous
/// write is done. Handing batches over by message made every write wait for the runtime's turn on a
/// busy thread (about a third of the leader's write cycle under load), time the disk sat idle.
#[derive(Default)]
struct WriteQueue {
    state: Mutex<QueueState>,
    wake: Condvar,
}

#[derive(Default)]
struct QueueState {
    next: Batch,
    /// Batches that may not merge into `next` (it installs a snapshot), in order.
    later: VecDeque<Batch>,
    /// The storage thread sleeps until there is work (only then is it woken: waking costs a syscall).
    idle: bool,
    closed: bool,
}

impl WriteQueue {
    fn add(&self, batch: Batch) {
        let mut state = self.lock();
        let after_install = state
            .later
            .back()
            .map_or(state.next.installs(), Batch::installs);
        if after_install {
            state.later.push_back(batch);
        } else if let Some(last) = state.later.back_mut() {
            last.absorb(batch);
        } else {
            state.next.absorb(batch);
        }
        if state.idle && !state.next.is_empty() {
            state.idle = false;
            self.wake.notify_one();
        }
    }

    /// The next batch to write; `None` once closed and everything added has been taken.
    fn take(&self) -> Option<Batch> {
        let mut state = self.lock();
        loop {
            if !state.next.is_empty() {
                let following = state.later.pop_front().unwrap_or_default();
                return Some(std::mem::replace(&mut state.next, following));
            }
            if state.closed {
                return None;
            }
            state.idle = true;
            state = self
                .wake
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.idle = false;
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }

    /// Runs `write` on the calling thread if the storage thread is asleep with nothing queued, holding
    /// the queue's lock throughout so that it cannot take work meanwhile; else gives `batch` back.
    fn write_if_idle<R>(
        &self,
        batch: Batch,
        write: impl FnOnce(Batch) -> WriteHere<R>,
    ) -> WriteHere<R> {
        let state = self.lock();
        if state.idle && state.next.is_empty() && !state.closed {
            write(batch)
        } else {
            WriteHere::Declined(batch)
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether the owner wrote a batch itself, or gets it back to queue for the storage thread.
pub(super) enum WriteHere<R> {
    Written(R),
    Declined(Batch),
}

/// The owner's end of the queue: dropping it lets the storage thread finish and exit.
pub(super) struct Writer {
    queue: Arc<WriteQueue>,
    /// Locked by whoever writes: the storage thread, or the owner when the thread is idle.
    store: Arc<Mutex<Box<dyn LogStore>>>,
}

impl Writer {
    /// Starts the storage thread, which writes to `store` until the writer is closed.
    pub fn start(
        store: Box<dyn LogStore>,
        metrics: Arc<Metrics>,
        faults: Arc<Faults>,
    ) -> std::io::Result<(Writer, mpsc::UnboundedReceiver<WriterReport>)> {
        let queue = Arc::new(WriteQueue::default());
        let store = Arc::new(Mutex::new(store));
        let (jobs, thread_store) = (queue.clone(), store.clone());
        let (done, written) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("flotilla-storage".into())
            .spawn(move || {
                while let Some(batch) = jobs.take() {
                    let mut store = thread_store.lock().unwrap_or_else(PoisonError::into_inner);
                    let slow_disk = faults.disk_write_delay();
                    let done_writing = write_batch(
                        store.as_mut(),
                        batch,
                        &metrics,
                        slow_disk,
                        &mut |outcomes| {
                            let _ = done.send(WriterReport::Applied(outcomes));
                        },
                    );
                    // Released before the report goes out: once the owner hears, it may write itself.
                    drop(store);
                    let failed = done_writing.result.is_err();
                    if done
                        .send(WriterReport::Written(Box::new(done_writing)))
                        .is_err()
                        || failed
                    {
                        return;
                    }
                }
            })?;
        Ok((Writer { queue, store }, written))
    }

    /// Adds `batch` to what the storage thread writes next.
    pub fn queue(&self, batch: Batch) {
        self.queue.add(batch);
    }

    /// Lets the storage thread write what is queued, then exit.
    pub fn close(&self) {
        self.queue.close();
    }

    /// Writes a small batch that needs no fsync on the calling task when the storage thread is idle
    /// and all its reports are handled (`reports` is empty, so reports stay in order): on a lightly
    /// loaded leader, handing the applies to the storage thread and hearing back cost two thread
    /// wake-ups on every client write's path. Gives the batch back when it has to go to the storage
    /// thread.
    pub fn write_here(
        &self,
        batch: Batch,
        reports: &mpsc::UnboundedReceiver<WriterReport>,
        metrics: &Metrics,
    ) -> WriteHere<(Option<ApplyOutcomes>, WriteDone)> {
        if !batch.entries.is_empty()
            || batch.apply.len() > WRITE_HERE_MAX_APPLIES
            || !batch.snapshot.is_empty()
        {
            return WriteHere::Declined(batch);
        }
        self.queue.write_if_idle(batch, |batch| {
            if !reports.is_empty() {
                return WriteHere::Declined(batch);
            }
            // Free: the storage thread lets go of the store before it reports and goes to sleep.
            let mut store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
            let quick = store.writes_without_fsync(&WriteBatch {
                hard_state: batch.hard_state,
                entries: &[],
                apply: &batch.apply,
            });
            if !quick {
                return WriteHere::Declined(batch);
            }
            let mut applied = None;
            // Only writes without an fsync are done here: a slow disk does not hold them back.
            let done = write_batch(store.as_mut(), batch, metrics, None, &mut |outcomes| {
                applied = Some(outcomes)
            });
            WriteHere::Written((applied, done))
        })
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.queue.close();
    }
}

pub(super) struct WriteDone {
    pub batch: Batch,
    /// What the batch's snapshot tasks came to, in order.
    pub snapshot: Vec<SnapshotDone>,
    pub result: Result<(), StorageError>,
    /// How long the store took; `None` when the batch had nothing to store (only replies or reads
    /// waiting their turn behind earlier writes).
    pub took: Option<Duration>,
}

/// How a batch's committed entries applied.
pub(super) type ApplyOutcomes = Vec<(LogId, ApplyOutcome)>;

/// What the storage thread reports, in this order for each batch.
pub(super) enum WriterReport {
    /// How the batch's committed entries applied, once written, possibly before the rest of the batch
    /// is durable (see `LogStore::write_applies_first`): their clients can be answered now.
    Applied(ApplyOutcomes),
    /// Boxed: a batch's report is large, and most reports are `Applied`.
    Written(Box<WriteDone>),
}

pub(super) fn storage_thread_died() -> StorageError {
    StorageError::Io("the storage thread stopped unexpectedly (it panicked)".into())
}

/// Writes `batch`, handing the outcomes of its applies to `applied` as soon as they are written. A
/// `slow_disk` (admin disk fault) first holds back every write that fsyncs by that long.
fn write_batch(
    store: &mut dyn LogStore,
    batch: Batch,
    metrics: &Metrics,
    slow_disk: Option<Duration>,
    applied: &mut dyn FnMut(ApplyOutcomes),
) -> WriteDone {
    let started = Instant::now();
    let write = WriteBatch {
        hard_state: batch.hard_state,
        entries: &batch.entries,
        apply: &batch.apply,
    };
    let mut announce = |outcomes: &[ApplyOutcome]| {
        let ids = batch.apply.iter().map(|entry| LogId {
            index: entry.index,
            term: entry.term,
        });
        applied(ids.zip(outcomes.iter().cloned()).collect());
    };
    let nothing_to_store =
        write.hard_state.is_none() && write.entries.is_empty() && write.apply.is_empty();
    if let Some(delay) = slow_disk {
        if !nothing_to_store && !store.writes_without_fsync(&write) {
            std::thread::sleep(delay);
        }
    }
    // Splitting a batch costs a transaction; it pays only when clients wait on the applies.
    let result = if nothing_to_store {
        Ok(())
    } else if batch.clients_waiting {
        store.write_applies_first(write, &mut announce).map(drop)
    } else {
        store.write(write).map(|outcomes| announce(&outcomes))
    };
    let mut snapshot = Vec::with_capacity(batch.snapshot.len());
    let result = result.and_then(|()| {
        for task in &batch.snapshot {
            snapshot.push(run_task(store, task)?);
        }
        Ok(())
    });
    let nothing_to_store = nothing_to_store && batch.snapshot.is_empty();
    let took = (!nothing_to_store).then(|| started.elapsed());
    if took.is_some() {
        metrics
            .entries_written
            .fetch_add(batch.entries.len() as u64, Ordering::Relaxed);
        metrics.batches_written.fetch_add(1, Ordering::Relaxed);
    }
    WriteDone {
        batch,
        snapshot,
        result,
        took,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{LogIndex, Payload, Term};

    fn noop(index: u64) -> Entry {
        Entry {
            index: LogIndex(index),
            term: Term(1),
            payload: Payload::Noop,
        }
    }

    fn appending(index: u64) -> Batch {
        Batch {
            entries: vec![noop(index)],
            ..Batch::default()
        }
    }

    /// What is added while the storage thread writes goes into one next batch; a sleeping storage
    /// thread wakes for new work; closing lets it take what is left, then stop.
    #[test]
    fn the_write_queue_merges_wakes_and_drains_before_closing() {
        let queue = Arc::new(WriteQueue::default());
        queue.add(appending(1));
        queue.add(appending(2));
        let first = queue.take().expect("a batch");
        assert_eq!(first.entries, [noop(1), noop(2)]);

        let storage = std::thread::spawn({
            let queue = queue.clone();
            move || {
                let mut taken = Vec::new();
                while let Some(batch) = queue.take() {
                    taken.extend(batch.entries);
                }
                taken
            }
        });
        // Give the thread time to fall asleep on an empty queue before work arrives.
        std::thread::sleep(Duration::from_millis(50));
        queue.add(appending(3));
        queue.add(appending(4));
        queue.close();
        assert_eq!(storage.join().unwrap(), [noop(3), noop(4)]);
    }

    /// The owner writes a batch itself only while the storage thread sleeps with nothing queued.
    #[test]
    fn a_batch_is_written_here_only_while_the_storage_thread_is_idle() {
        let batch = |index| Batch {
            apply: vec![noop(index)],
            ..Batch::default()
        };
        let written_here = |queue: &WriteQueue, index| {
            let written =
                queue.write_if_idle(batch(index), |batch| WriteHere::Written(batch.apply));
            matches!(written, WriteHere::Written(_))
        };
        let queue = Arc::new(WriteQueue::default());
        // Not asleep yet (it has not asked for work): the write goes to it.
        assert!(!written_here(&queue, 1));

        let (taken_tx, taken) = std::sync::mpsc::channel();
        let storage = std::thread::spawn({
            let queue = queue.clone();
            move || {
                while let Some(batch) = queue.take() {
                    taken_tx.send(batch.apply).unwrap();
                }
            }
        });
        let asleep = || queue.lock().idle;
        while !asleep() {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(written_here(&queue, 2));
        assert!(asleep(), "writing here does not wake the storage thread");

        // Queued work not taken yet: it goes first, so this one must queue behind it.
        {
            let mut state = queue.lock();
            state.next.apply.push(noop(3));
        }
        assert!(!written_here(&queue, 4));
        queue.add(Batch::default());
        assert_eq!(taken.recv().unwrap(), [noop(3)]);
        queue.close();
        storage.join().unwrap();
        assert!(!written_here(&queue, 5), "closed");
    }
}
