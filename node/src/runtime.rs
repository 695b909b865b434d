//! The one task that owns the Raft core and carries out its output (no `Mutex<Raft>`).
//!
//! Each round: take the core's `Ready`, send its messages at once, and queue its hard state, entries and
//! committed entries for the storage thread. The storage thread writes one batch at a time (one
//! transaction, one fsync); whatever accumulates meanwhile becomes the next batch (group commit). When a
//! batch is durable the held-back replies go out, the core learns what is persisted, and the clients whose
//! entries were applied get their answers. The leader's own write runs in parallel with replication
//! (Raft thesis §10.2.1): its appends leave before its fsync. A small write that needs no fsync (the
//! leader applying a few committed entries) is done on this task when the storage thread is idle.

use crate::clock::Clock;
use crate::events::EventHub;
use crate::metrics::Metrics;
use crate::raft::{
    CoreStatus, Entry, Envelope, HardState, LogId, LogIndex, LogRead, Message, NodeId, Payload,
    Proposal, ProposeError, Raft, ReadError, ReadState, Term, TransferError,
};
use crate::storage::sqlite::SqliteReader;
use crate::storage::{ApplyOutcome, LogStore, StorageError, WriteBatch};
use crate::transport::{Partition, Transport};
use crate::validation::Rejected;
use flotilla_shared::api::{PeerStatus, Status};
use flotilla_shared::event::{EventKind, Role};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// Most applies a batch may carry to be written on the runtime's own task (see `Runtime::write_here`).
/// Under load this task is the leader's busiest thread: with 8, 256-client throughput fell ~6%.
const WRITE_HERE_MAX_APPLIES: usize = 2;
/// How often the core's clock advances. Timeouts are tens of milliseconds, so 5 ms is fine-grained enough.
const TICK: Duration = Duration::from_millis(5);
/// Requests handled per wake-up before the round's output is produced (keeps batches large under load
/// and latency low when idle).
const INBOX_BUDGET: usize = 4_096;

/// What a client's proposal came to.
#[derive(Debug)]
pub enum ProposeOutcome {
    /// Committed and applied as a new entry.
    Committed {
        index: LogIndex,
        term: Term,
    },
    /// The `request_id` had been applied before, at `index`.
    Duplicate {
        index: LogIndex,
        term: Term,
    },
    NotLeader {
        leader: Option<NodeId>,
    },
    TransferInProgress {
        to: NodeId,
    },
    /// The entry was appended but replaced by a new leader's: it was certainly not applied.
    Overwritten,
    /// Not appended: the leader already holds `pending` entries not yet committed or durable.
    Overloaded {
        pending: u64,
        limit: u64,
    },
    /// Not appended: the node is stopping.
    Stopping,
}

/// Everything the rest of the node asks of the runtime.
pub enum Request {
    Propose {
        payload: Payload,
        received: Instant,
        reply: oneshot::Sender<ProposeOutcome>,
    },
    /// A linearizable read: answers with the read index once applied up to it.
    Read {
        reply: oneshot::Sender<Result<LogIndex, ReadError>>,
    },
    /// A Raft message from a peer. `reply` receives the core's verdict: its response once durable (a
    /// vote or append answer), `None` for a message that has none, or why the message was refused.
    Step {
        envelope: Envelope,
        reply: Option<oneshot::Sender<StepVerdict>>,
    },
    Transfer {
        to: NodeId,
        reply: oneshot::Sender<Result<(), TransferError>>,
    },
    SetTiming {
        heartbeat_ms: u64,
        election_timeout_ms: (u64, u64),
        reply: oneshot::Sender<Result<(), String>>,
    },
    SetPartition {
        isolate_from: BTreeSet<NodeId>,
        reply: oneshot::Sender<()>,
    },
    Unreachable(NodeId),
}

/// What became of a stepped Raft message (see [`Request::Step`]).
pub type StepVerdict = Result<Option<Envelope>, Rejected>;

/// The core's read access to the durable log, through its own SQLite connection. A read error is
/// fatal: the node stops rather than run on a disk it cannot trust.
pub struct CoreLog(pub SqliteReader);

impl LogRead for CoreLog {
    fn term(&self, index: LogIndex) -> Option<Term> {
        self.0
            .term(index)
            .unwrap_or_else(|error| fatal_storage_error(&error))
    }

    fn entries(&self, lo: LogIndex, hi: LogIndex, max_bytes: usize) -> Vec<Entry> {
        self.0
            .entries(lo, hi, max_bytes)
            .unwrap_or_else(|error| fatal_storage_error(&error))
    }
}

fn fatal_storage_error(error: &StorageError) -> ! {
    tracing::error!(%error, "storage read failed; stopping the node");
    eprintln!("flotilla-node: storage read failed: {error}");
    std::process::exit(74)
}

/// A client waiting for the entry at some index to be applied.
struct Waiter {
    term: Term,
    already_pending: bool,
    received: Instant,
    reply: oneshot::Sender<ProposeOutcome>,
}

/// What accumulates for the next storage write.
#[derive(Default)]
struct Batch {
    hard_state: Option<HardState>,
    entries: Vec<Entry>,
    apply: Vec<Entry>,
    /// Replies held back until this batch is durable (thesis §3.8).
    persisted_messages: Vec<Envelope>,
    reads: Vec<ReadState>,
    /// Clients wait on some of the applies (see `LogStore::write_deciding_early`).
    clients_waiting: bool,
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
    }

    fn is_empty(&self) -> bool {
        self.hard_state.is_none()
            && self.entries.is_empty()
            && self.apply.is_empty()
            && self.persisted_messages.is_empty()
            && self.reads.is_empty()
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
    /// The storage thread sleeps until there is work (only then is it woken: waking costs a syscall).
    idle: bool,
    closed: bool,
}

impl WriteQueue {
    fn add(&self, batch: Batch) {
        let mut state = self.lock();
        state.next.absorb(batch);
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
                return Some(std::mem::take(&mut state.next));
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
        write: impl FnOnce(Batch) -> WrittenHere<R>,
    ) -> WrittenHere<R> {
        let state = self.lock();
        if state.idle && state.next.is_empty() && !state.closed {
            write(batch)
        } else {
            WrittenHere::No(batch)
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether the runtime wrote a batch itself, or it goes to the storage thread.
enum WrittenHere<R> {
    Yes(R),
    No(Batch),
}

/// The runtime's end of the queue: dropping it lets the storage thread finish and exit.
struct Writer {
    queue: Arc<WriteQueue>,
    /// Locked by whoever writes: the storage thread, or the runtime when the thread is idle.
    store: Arc<Mutex<Box<dyn LogStore>>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.queue.close();
    }
}

struct WriteDone {
    batch: Batch,
    result: Result<(), StorageError>,
    /// How long the store took; `None` when the batch had nothing to store (only replies or reads
    /// waiting their turn behind earlier writes).
    took: Option<Duration>,
}

/// How a batch's committed entries applied.
type Decided = Vec<(LogId, ApplyOutcome)>;

/// What the storage thread reports, in this order for each batch.
enum StorageNews {
    /// How the batch's committed entries applied, once written, possibly before the rest of the batch
    /// is durable (see `LogStore::write_deciding_early`): their clients can be answered now.
    Decided(Decided),
    Written(WriteDone),
}

/// Static facts for `/v1/status`.
#[derive(Clone)]
pub struct NodeInfo {
    pub id: NodeId,
    pub peers: BTreeMap<NodeId, String>,
}

pub struct Runtime<S: LogRead> {
    raft: Raft<S>,
    info: NodeInfo,
    clock: Clock,
    inbox: mpsc::Receiver<Request>,
    writer: Writer,
    written: mpsc::UnboundedReceiver<StorageNews>,
    waiters: BTreeMap<LogIndex, Vec<Waiter>>,
    reads: HashMap<u64, oneshot::Sender<Result<LogIndex, ReadError>>>,
    next_read_ctx: u64,
    /// Per peer, HTTP requests waiting for the core's reply, in the order they were stepped.
    pending_replies: HashMap<NodeId, VecDeque<oneshot::Sender<StepVerdict>>>,
    transport: Transport,
    partition: Arc<Partition>,
    events: EventHub,
    status: watch::Sender<Arc<Status>>,
    metrics: Arc<Metrics>,
    /// Applied as far as storage has committed: what readers of the state machine can see.
    stored_applied: LogIndex,
    /// Most entries a leader holds beyond its commit index or its own durable index.
    max_uncommitted: u64,
}

pub struct RuntimeParts<S: LogRead> {
    pub raft: Raft<S>,
    pub info: NodeInfo,
    pub clock: Clock,
    pub inbox: mpsc::Receiver<Request>,
    pub store: Box<dyn LogStore>,
    pub transport: Transport,
    pub partition: Arc<Partition>,
    pub events: EventHub,
    pub status: watch::Sender<Arc<Status>>,
    pub metrics: Arc<Metrics>,
    /// The applied index found on disk at start.
    pub stored_applied: LogIndex,
    pub max_uncommitted: u64,
}

impl<S: LogRead> Runtime<S> {
    pub fn new(parts: RuntimeParts<S>) -> Result<Self, StorageError> {
        let (writer, written) =
            spawn_writer(parts.store, parts.metrics.clone()).map_err(|error| {
                StorageError::Io(format!("cannot start the storage thread: {error}"))
            })?;
        Ok(Self {
            raft: parts.raft,
            info: parts.info,
            clock: parts.clock,
            inbox: parts.inbox,
            writer,
            written,
            waiters: BTreeMap::new(),
            reads: HashMap::new(),
            next_read_ctx: 1,
            pending_replies: HashMap::new(),
            transport: parts.transport,
            partition: parts.partition,
            events: parts.events,
            status: parts.status,
            metrics: parts.metrics,
            stored_applied: parts.stored_applied,
            max_uncommitted: parts.max_uncommitted,
        })
    }

    /// Runs until `shutdown` fires or storage fails. A storage error ends the node.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), StorageError> {
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        self.publish_status();
        loop {
            // Biased: shutdown first, then finished writes (they release replies and answers), then new
            // requests, then time (the select is otherwise randomly fair).
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                news = self.written.recv() => match news {
                    Some(StorageNews::Decided(outcomes)) => self.on_decided(outcomes),
                    Some(StorageNews::Written(done)) => self.on_written(done)?,
                    // Without its storage thread a leader would go on heartbeating while never
                    // persisting again: stop, so that a supervisor restarts the node.
                    None => return Err(storage_thread_died()),
                },
                Some(request) = self.inbox.recv() => {
                    self.handle(request);
                    for _ in 0..INBOX_BUDGET {
                        match self.inbox.try_recv() {
                            Ok(request) => self.handle(request),
                            Err(_) => break,
                        }
                    }
                }
                _ = ticker.tick() => self.raft.tick(self.clock.now_ms()),
            }
            self.drive()?;
        }
        self.events.publish(EventKind::ShuttingDown);
        // Proposals never handed to the core are certainly not appended: say so. Waiters whose
        // entries are in the log are dropped at the end, and their clients learn the outcome is unknown.
        self.inbox.close();
        while let Ok(request) = self.inbox.try_recv() {
            if let Request::Propose { reply, .. } = request {
                let _ = reply.send(ProposeOutcome::Stopping);
            }
        }
        // Let the queued writes finish so that their replies are not lost to an early exit.
        self.writer.queue.close();
        while let Some(news) = self.written.recv().await {
            match news {
                StorageNews::Decided(outcomes) => self.on_decided(outcomes),
                StorageNews::Written(done) => self.on_written(done)?,
            }
        }
        Ok(())
    }

    /// The entries a leader holds that are not yet both committed and on its own disk, if over the
    /// bound: a leader whose disk or followers stall must not take in entries without end.
    fn over_uncommitted_bound(&self) -> Option<u64> {
        if self.raft.role() != Role::Leader {
            return None;
        }
        let floor = self.raft.commit().min(self.raft.durable());
        let pending = self.raft.last_log().index.0.saturating_sub(floor.0);
        (pending >= self.max_uncommitted).then_some(pending)
    }

    fn handle(&mut self, request: Request) {
        match request {
            Request::Propose {
                payload,
                received,
                reply,
            } => {
                if let Some(pending) = self.over_uncommitted_bound() {
                    let limit = self.max_uncommitted;
                    let _ = reply.send(ProposeOutcome::Overloaded { pending, limit });
                    return;
                }
                match self.raft.propose(payload) {
                    Ok(Proposal {
                        index,
                        term,
                        already_pending,
                    }) => self.waiters.entry(index).or_default().push(Waiter {
                        term,
                        already_pending,
                        received,
                        reply,
                    }),
                    Err(ProposeError::NotLeader { leader }) => {
                        let _ = reply.send(ProposeOutcome::NotLeader { leader });
                    }
                    Err(ProposeError::TransferInProgress { to }) => {
                        let _ = reply.send(ProposeOutcome::TransferInProgress { to });
                    }
                }
            }
            Request::Read { reply } => {
                let ctx = self.next_read_ctx;
                self.next_read_ctx += 1;
                match self.raft.read_index(ctx) {
                    Ok(()) => {
                        self.reads.insert(ctx, reply);
                    }
                    Err(error) => {
                        let _ = reply.send(Err(error));
                    }
                }
            }
            Request::Step { envelope, reply } => {
                let from = envelope.from;
                let answered_later = matches!(
                    envelope.message,
                    Message::RequestVote(_) | Message::AppendEntries(_)
                );
                match self.raft.try_step(envelope) {
                    Err(rejected) => {
                        self.metrics
                            .rejections
                            .record("raft message", Some(from), &rejected);
                        if let Some(reply) = reply {
                            reply.send(Err(rejected)).ok();
                        }
                    }
                    // The core answers an accepted request once its round is durable; the answer goes
                    // to the oldest waiter of that peer (see `send_persisted`).
                    Ok(()) if answered_later => {
                        if let Some(reply) = reply {
                            self.pending_replies
                                .entry(from)
                                .or_default()
                                .push_back(reply);
                        }
                    }
                    Ok(()) => {
                        if let Some(reply) = reply {
                            reply.send(Ok(None)).ok();
                        }
                    }
                }
            }
            Request::Transfer { to, reply } => {
                let _ = reply.send(self.raft.transfer_leadership(to));
            }
            Request::SetTiming {
                heartbeat_ms,
                election_timeout_ms,
                reply,
            } => {
                let result = self
                    .raft
                    .set_timing(heartbeat_ms, election_timeout_ms)
                    .map_err(|error| error.to_string());
                if result.is_ok() {
                    self.events.publish(EventKind::TimingChanged {
                        heartbeat_ms,
                        election_timeout_ms: [election_timeout_ms.0, election_timeout_ms.1],
                    });
                    // The status shows the timing at once, not at the next write.
                    self.publish_status();
                }
                let _ = reply.send(result);
            }
            Request::SetPartition {
                isolate_from,
                reply,
            } => {
                self.partition.replace(isolate_from);
                self.events.publish(EventKind::PartitionChanged {
                    isolated_from: self.partition.list(),
                });
                let _ = reply.send(());
                self.publish_status();
            }
            Request::Unreachable(peer) => self.raft.report_unreachable(peer),
        }
    }

    /// Takes the core's output, sends what may go now, and writes the rest here or queues it for the
    /// storage thread.
    fn drive(&mut self) -> Result<(), StorageError> {
        if !self.raft.has_ready() {
            return Ok(());
        }
        let ready = self.raft.ready();
        self.events.publish_all(ready.events);
        for message in ready.messages {
            self.transport.send(message);
        }
        let clients_waiting = ready
            .committed
            .iter()
            .any(|entry| self.waiters.contains_key(&entry.index));
        let batch = Batch {
            hard_state: ready.hard_state,
            entries: ready.entries,
            apply: ready.committed,
            persisted_messages: ready.persisted_messages,
            reads: ready.reads,
            clients_waiting,
        };
        for ctx in ready.failed_reads {
            if let Some(reply) = self.reads.remove(&ctx) {
                let leader = self.raft.status().leader;
                let _ = reply.send(Err(ReadError::NotLeader { leader }));
            }
        }
        match self.write_here(batch) {
            // `on_written` publishes the status.
            WrittenHere::Yes((decided, done)) => {
                if let Some(outcomes) = decided {
                    self.on_decided(outcomes);
                }
                self.on_written(done)
            }
            WrittenHere::No(batch) => {
                self.publish_status();
                self.writer.queue.add(batch);
                Ok(())
            }
        }
    }

    /// Writes a small batch that needs no fsync on this task when the storage thread is idle and all
    /// its news is handled (so news stays in order): on a lightly loaded leader, handing the applies to
    /// the storage thread and hearing back cost two thread wake-ups on every client write's path.
    /// Gives the batch back when it has to go to the storage thread.
    fn write_here(&self, batch: Batch) -> WrittenHere<(Option<Decided>, WriteDone)> {
        if !batch.entries.is_empty() || batch.apply.len() > WRITE_HERE_MAX_APPLIES {
            return WrittenHere::No(batch);
        }
        self.writer.queue.write_if_idle(batch, |batch| {
            if !self.written.is_empty() {
                return WrittenHere::No(batch);
            }
            // Free: the storage thread lets go of the store before it reports and goes to sleep.
            let mut store = self
                .writer
                .store
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let quick = store.writes_without_fsync(&WriteBatch {
                hard_state: batch.hard_state,
                entries: &[],
                apply: &batch.apply,
            });
            if !quick {
                return WrittenHere::No(batch);
            }
            let mut decided = None;
            let done = write_batch(store.as_mut(), batch, &self.metrics, &mut |outcomes| {
                decided = Some(outcomes)
            });
            WrittenHere::Yes((decided, done))
        })
    }

    fn on_written(&mut self, done: WriteDone) -> Result<(), StorageError> {
        done.result?;
        if let Some(took) = done.took {
            self.metrics.fsync_latency.observe(took);
        }
        let batch = done.batch;
        if let Some(last) = batch.entries.last() {
            self.raft.persisted(LogId {
                index: last.index,
                term: last.term,
            });
        }
        for message in batch.persisted_messages {
            self.send_persisted(message);
        }
        if let Some(last) = batch.apply.last() {
            self.stored_applied = last.index;
        }
        for read in batch.reads {
            if let Some(reply) = self.reads.remove(&read.ctx) {
                let _ = reply.send(Ok(read.index));
            }
        }
        self.publish_status();
        Ok(())
    }

    /// A reply goes back in the HTTP response of the request it answers when that request is still
    /// waiting; anything else travels as a request of its own.
    fn send_persisted(&mut self, message: Envelope) {
        if message.message.is_response() {
            if let Some(queue) = self.pending_replies.get_mut(&message.to) {
                while let Some(waiting) = queue.pop_front() {
                    if !waiting.is_closed() {
                        let _ = waiting.send(Ok(Some(message)));
                        return;
                    }
                }
            }
        }
        self.transport.send(message);
    }

    /// The applies are written (readers see them): their clients get their answers now, and the
    /// status shows them applied, whether or not the rest of their batch is durable yet.
    fn on_decided(&mut self, outcomes: Decided) {
        if let Some((last, _)) = outcomes.last() {
            self.stored_applied = self.stored_applied.max(last.index);
            self.publish_status();
        }
        self.answer_waiters(outcomes);
    }

    fn answer_waiters(&mut self, outcomes: Decided) {
        for (entry, outcome) in outcomes {
            let Some(waiters) = self.waiters.remove(&entry.index) else {
                continue;
            };
            for waiter in waiters {
                let answer = if waiter.term != entry.term {
                    ProposeOutcome::Overwritten
                } else {
                    match &outcome {
                        ApplyOutcome::Noop { .. } => ProposeOutcome::Overwritten,
                        ApplyOutcome::Applied { index, term } if waiter.already_pending => {
                            ProposeOutcome::Duplicate {
                                index: *index,
                                term: *term,
                            }
                        }
                        ApplyOutcome::Applied { index, term } => ProposeOutcome::Committed {
                            index: *index,
                            term: *term,
                        },
                        ApplyOutcome::Duplicate { original, .. } => ProposeOutcome::Duplicate {
                            index: original.index,
                            term: original.term,
                        },
                    }
                };
                self.metrics
                    .append_latency
                    .observe(waiter.received.elapsed());
                let _ = waiter.reply.send(answer);
            }
        }
    }

    fn publish_status(&self) {
        let core = self.raft.status();
        let mut status = status_from_core(&core, &self.info, &self.transport, &self.partition);
        // The core counts entries as applied once handed out; readers see them once stored.
        status.last_applied = self.stored_applied;
        self.status.send_replace(Arc::new(status));
    }
}

fn status_from_core(
    core: &CoreStatus,
    info: &NodeInfo,
    transport: &Transport,
    partition: &Partition,
) -> Status {
    let peers = info
        .peers
        .iter()
        .map(|(&id, addr)| {
            let (match_index, next_index) = core.progress.get(&id).copied().unwrap_or_default();
            PeerStatus {
                id,
                addr: addr.clone(),
                match_index,
                next_index,
                reachable: transport.is_reachable(id) && !partition.contains(id),
            }
        })
        .collect();
    Status {
        id: core.id,
        role: core.role,
        term: core.term,
        voted_for: core.voted_for,
        leader_id: core.leader,
        commit_index: core.commit,
        last_applied: core.applied,
        last_log_index: core.last.index,
        last_log_term: core.last.term,
        persisted_index: core.persisted,
        peers,
        isolated_from: partition.list(),
        heartbeat_ms: core.heartbeat_ms,
        election_timeout_ms: [core.election_timeout_ms.0, core.election_timeout_ms.1],
    }
}

/// The storage thread: writes one batch at a time.
fn spawn_writer(
    store: Box<dyn LogStore>,
    metrics: Arc<Metrics>,
) -> std::io::Result<(Writer, mpsc::UnboundedReceiver<StorageNews>)> {
    let queue = Arc::new(WriteQueue::default());
    let store = Arc::new(Mutex::new(store));
    let (jobs, thread_store) = (queue.clone(), store.clone());
    let (done, written) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("flotilla-storage".into())
        .spawn(move || {
            while let Some(batch) = jobs.take() {
                let mut store = thread_store.lock().unwrap_or_else(PoisonError::into_inner);
                let done_writing = write_batch(store.as_mut(), batch, &metrics, &mut |decided| {
                    let _ = done.send(StorageNews::Decided(decided));
                });
                // Released before the news goes out: once the runtime hears, it may write itself.
                drop(store);
                let failed = done_writing.result.is_err();
                if done.send(StorageNews::Written(done_writing)).is_err() || failed {
                    return;
                }
            }
        })?;
    Ok((Writer { queue, store }, written))
}

fn storage_thread_died() -> StorageError {
    StorageError::Io("the storage thread stopped unexpectedly (it panicked)".into())
}

/// Writes `batch`, handing the outcomes of its applies to `decided` as soon as they are written.
fn write_batch(
    store: &mut dyn LogStore,
    batch: Batch,
    metrics: &Metrics,
    decided: &mut dyn FnMut(Decided),
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
        decided(ids.zip(outcomes.iter().cloned()).collect());
    };
    let nothing_to_store =
        write.hard_state.is_none() && write.entries.is_empty() && write.apply.is_empty();
    // Splitting a batch costs a transaction; it pays only when clients wait on the applies.
    let result = if nothing_to_store {
        Ok(())
    } else if batch.clients_waiting {
        store.write_deciding_early(write, &mut announce).map(drop)
    } else {
        store.write(write).map(|outcomes| announce(&outcomes))
    };
    let took = (!nothing_to_store).then(|| started.elapsed());
    if took.is_some() {
        metrics
            .entries_written
            .fetch_add(batch.entries.len() as u64, Ordering::Relaxed);
        metrics.batches_written.fetch_add(1, Ordering::Relaxed);
    }
    WriteDone {
        batch,
        result,
        took,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::Payload;

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

    use crate::storage::memory::SharedMemoryStore;

    /// A memory store whose writes can be made to panic (a bug or a failing disk library) or to hang
    /// (a stalled disk) from some moment on.
    struct FaultyStore {
        disk: SharedMemoryStore,
        fault: Arc<Mutex<Fault>>,
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Fault {
        None,
        Panic,
        /// Writes wait until the fault is cleared, then fail.
        Stall,
    }

    impl LogStore for FaultyStore {
        fn initial_state(&self) -> Result<crate::storage::InitialState, StorageError> {
            self.disk.initial_state()
        }
        fn write(&mut self, batch: WriteBatch<'_>) -> Result<Vec<ApplyOutcome>, StorageError> {
            let fault = *self.fault.lock().unwrap();
            match fault {
                Fault::None => self.disk.write(batch),
                Fault::Panic => panic!("the disk library fell over"),
                Fault::Stall => {
                    while *self.fault.lock().unwrap() == Fault::Stall {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(StorageError::Io("the disk came back broken".into()))
                }
            }
        }
        fn term(&self, index: LogIndex) -> Result<Option<Term>, StorageError> {
            LogStore::term(&self.disk, index)
        }
        fn entries(
            &self,
            lo: LogIndex,
            hi: LogIndex,
            max: usize,
        ) -> Result<Vec<Entry>, StorageError> {
            LogStore::entries(&self.disk, lo, hi, max)
        }
        fn messages(
            &self,
            from: LogIndex,
            up_to: LogIndex,
            limit: usize,
        ) -> Result<Vec<flotilla_shared::api::MessageEntry>, StorageError> {
            self.disk.messages(from, up_to, limit)
        }
        fn find_request(&self, request_id: &str) -> Result<Option<LogId>, StorageError> {
            self.disk.find_request(request_id)
        }
    }

    struct SingleNode {
        runtime: Runtime<SharedMemoryStore>,
        inbox: mpsc::Sender<Request>,
        status: watch::Receiver<Arc<Status>>,
        fault: Arc<Mutex<Fault>>,
    }

    /// A one-voter node (it elects itself) over a `FaultyStore`.
    fn single_node(max_uncommitted: u64) -> SingleNode {
        let id = NodeId(1);
        let disk = SharedMemoryStore::default();
        let fault = Arc::new(Mutex::new(Fault::None));
        let clock = Clock::new();
        let raft = Raft::new(
            crate::raft::Config::new(id, vec![id]),
            disk.clone(),
            crate::raft::Restored::default(),
            clock.now_ms(),
        )
        .unwrap();
        let (inbox_tx, inbox) = mpsc::channel(64);
        let metrics = Arc::new(Metrics::default());
        let partition = Arc::new(Partition::default());
        let transport = Transport::start(
            crate::transport::TransportConfig {
                id,
                peers: BTreeMap::new(),
                cluster_token: None,
                advertise: String::new(),
                max_inflight: 1,
                request_timeout: Duration::from_secs(1),
            },
            inbox_tx.clone(),
            partition.clone(),
            metrics.clone(),
        );
        let (status, status_rx) = watch::channel(Arc::new(Status {
            id,
            role: Role::Follower,
            term: Term(0),
            voted_for: None,
            leader_id: None,
            commit_index: LogIndex(0),
            last_applied: LogIndex(0),
            last_log_index: LogIndex(0),
            last_log_term: Term(0),
            persisted_index: LogIndex(0),
            peers: Vec::new(),
            isolated_from: Vec::new(),
            heartbeat_ms: 50,
            election_timeout_ms: [150, 300],
        }));
        let runtime = Runtime::new(RuntimeParts {
            raft,
            info: NodeInfo {
                id,
                peers: BTreeMap::new(),
            },
            clock,
            inbox,
            store: Box::new(FaultyStore {
                disk,
                fault: fault.clone(),
            }),
            transport,
            partition,
            events: EventHub::new(id, clock),
            status,
            metrics,
            stored_applied: LogIndex(0),
            max_uncommitted,
        })
        .unwrap();
        SingleNode {
            runtime,
            inbox: inbox_tx,
            status: status_rx,
            fault,
        }
    }

    /// A dead storage thread ends the runtime with an error (the node exits and is restarted), rather
    /// than leaving a leader that heartbeats but never persists again.
    #[tokio::test]
    async fn a_storage_thread_that_panics_stops_the_runtime_with_an_error() {
        let node = single_node(16);
        *node.fault.lock().unwrap() = Fault::Panic;
        let (_stop, stopped) = watch::channel(false);
        // The lone voter campaigns, and its first write (its vote) kills the storage thread.
        let ended = tokio::time::timeout(Duration::from_secs(10), node.runtime.run(stopped))
            .await
            .expect("the runtime noticed the dead storage thread");
        let error = ended.expect_err("the runtime ends with an error");
        assert!(error.to_string().contains("storage thread"), "{error}");
    }

    fn propose(text: &str) -> (Request, oneshot::Receiver<ProposeOutcome>) {
        let (reply, answer) = oneshot::channel();
        let payload = Payload::Message {
            text: text.into(),
            request_id: None,
        };
        let request = Request::Propose {
            payload,
            received: Instant::now(),
            reply,
        };
        (request, answer)
    }

    /// When the leader's disk stalls, it takes entries only up to the bound and refuses the rest
    /// without appending them.
    #[tokio::test]
    async fn a_leader_whose_disk_stalls_refuses_entries_beyond_the_bound() {
        let SingleNode {
            runtime,
            inbox,
            mut status,
            fault,
        } = single_node(3);
        let (stop, stopped) = watch::channel(false);
        let running = tokio::spawn(runtime.run(stopped));
        tokio::time::timeout(Duration::from_secs(10), async {
            while status.borrow_and_update().role != Role::Leader {
                status.changed().await.unwrap();
            }
        })
        .await
        .expect("the lone voter leads");
        // Let the new leader's no-op commit, then stall the disk.
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let now = status.borrow_and_update().clone();
                if now.commit_index >= now.last_log_index && now.last_log_index.0 > 0 {
                    break;
                }
                status.changed().await.unwrap();
            }
        })
        .await
        .expect("the no-op commits");
        *fault.lock().unwrap() = Fault::Stall;
        let held_up_to = LogIndex(status.borrow().last_log_index.0 + 3);

        let mut held = Vec::new();
        for n in 0..3 {
            let (request, answer) = propose(&format!("held {n}"));
            inbox.send(request).await.unwrap();
            held.push(answer);
        }
        tokio::time::timeout(Duration::from_secs(10), async {
            while status.borrow_and_update().last_log_index < held_up_to {
                status.changed().await.unwrap();
            }
        })
        .await
        .expect("the three are appended");
        let (request, refused) = propose("one too many");
        inbox.send(request).await.unwrap();
        match tokio::time::timeout(Duration::from_secs(5), refused).await {
            Ok(Ok(ProposeOutcome::Overloaded { pending, limit })) => {
                assert_eq!((pending, limit), (3, 3));
            }
            other => panic!("expected Overloaded, got {other:?}"),
        }
        for mut answer in held {
            assert!(
                matches!(answer.try_recv(), Err(oneshot::error::TryRecvError::Empty)),
                "entries on a stalled disk are not answered"
            );
        }
        assert_eq!(
            status.borrow().last_log_index,
            held_up_to,
            "nothing appended"
        );

        let _ = stop.send(true);
        *fault.lock().unwrap() = Fault::None;
        let _ = tokio::time::timeout(Duration::from_secs(10), running).await;
    }

    /// The runtime writes a batch itself only while the storage thread sleeps with nothing queued.
    #[test]
    fn a_batch_is_written_here_only_while_the_storage_thread_is_idle() {
        let batch = |index| Batch {
            apply: vec![noop(index)],
            ..Batch::default()
        };
        let written_here = |queue: &WriteQueue, index| {
            let written = queue.write_if_idle(batch(index), |batch| WrittenHere::Yes(batch.apply));
            matches!(written, WrittenHere::Yes(_))
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
