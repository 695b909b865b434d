//! The runtime: the one task that owns the Raft core and carries out its output (no `Mutex<Raft>`),
//! and its storage writer ([`writer`]). What others may ask of it is in [`request`]; what it
//! publishes as `/v1/status`, in [`status`].
//!
//! Owns the core, the clients waiting on it, and the order in which its output is carried out. It may
//! not write storage except through the writer, nor build HTTP answers: requests come in on its inbox
//! and leave as channel replies, and the transport carries its messages.
//!
//! Each round: take the core's `Ready`, send its messages at once, and queue its hard state, entries and
//! committed entries for the storage thread. The storage thread writes one batch at a time (one
//! transaction, one fsync); whatever accumulates meanwhile becomes the next batch (group commit). When a
//! batch is durable the held-back replies go out, the core learns what is persisted, and the clients whose
//! entries were applied get their answers. The leader's own write runs in parallel with replication
//! (Raft thesis §10.2.1): its appends leave before its fsync. A small write that needs no fsync (the
//! leader applying a few committed entries) is done on this task when the storage thread is idle.

mod membership;
mod request;
mod snapshots;
mod status;
#[cfg(test)]
mod tests;
mod writer;

pub use request::{ProposeOutcome, Request, StepVerdict};
pub use snapshots::{SnapshotConfig, DEFAULT_SNAPSHOT_THRESHOLD};

use crate::clock::Clock;
use crate::events::EventHub;
use crate::faults::Faults;
use crate::metrics::Metrics;
use crate::raft::{
    Entry, Envelope, LogId, LogIndex, LogRead, Message, NodeId, Proposal, ProposeError, Raft,
    ReadError, Term,
};
use crate::storage::sqlite::SqliteReader;
use crate::storage::{ApplyOutcome, LogStore, StorageError};
use crate::transport::{Partition, PeerDirectory, Transport};
use flotilla_shared::api::Status;
use flotilla_shared::event::{EventKind, Role};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use writer::{
    storage_thread_died, ApplyOutcomes, Batch, WriteDone, WriteHere, Writer, WriterReport,
};

/// How often the core's clock advances. Timeouts are tens of milliseconds, so 5 ms is fine-grained enough.
const TICK: Duration = Duration::from_millis(5);
/// Requests handled per wake-up before the round's output is produced (keeps batches large under load
/// and latency low when idle).
const INBOX_BUDGET: usize = 4_096;

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

/// Facts for `/v1/status`.
#[derive(Clone)]
pub struct NodeInfo {
    pub id: NodeId,
    /// The other members and their addresses, kept in step with the configuration in force.
    pub peers: PeerDirectory,
}

pub struct Runtime<S: LogRead> {
    raft: Raft<S>,
    info: NodeInfo,
    clock: Clock,
    inbox: mpsc::Receiver<Request>,
    writer: Writer,
    written: mpsc::UnboundedReceiver<WriterReport>,
    waiters: BTreeMap<LogIndex, Vec<Waiter>>,
    reads: HashMap<u64, oneshot::Sender<Result<LogIndex, ReadError>>>,
    next_read_ctx: u64,
    /// Per peer, HTTP requests waiting for the core's reply, in the order they were stepped.
    pending_replies: HashMap<NodeId, VecDeque<oneshot::Sender<StepVerdict>>>,
    transport: Transport,
    partition: Arc<Partition>,
    faults: Arc<Faults>,
    events: EventHub,
    status: watch::Sender<Arc<Status>>,
    metrics: Arc<Metrics>,
    /// Applied as far as storage has committed: what readers of the state machine can see.
    stored_applied: LogIndex,
    /// Most entries a leader holds beyond its commit index or its own durable index.
    max_uncommitted: u64,
    member_waiters: Vec<membership::MemberWaiter>,
    /// The peers the transport has senders for.
    sending_to: BTreeMap<NodeId, String>,
    snapshots: snapshots::Snapshotting,
}

pub struct RuntimeParts<S: LogRead> {
    pub raft: Raft<S>,
    pub info: NodeInfo,
    pub clock: Clock,
    pub inbox: mpsc::Receiver<Request>,
    pub store: Box<dyn LogStore>,
    pub transport: Transport,
    pub partition: Arc<Partition>,
    pub faults: Arc<Faults>,
    pub events: EventHub,
    pub status: watch::Sender<Arc<Status>>,
    pub metrics: Arc<Metrics>,
    /// The applied index found on disk at start.
    pub stored_applied: LogIndex,
    pub max_uncommitted: u64,
    pub snapshot: SnapshotConfig,
    /// Reads the state machine off the runtime's task (snapshot chunks).
    pub state_reader: Arc<dyn crate::http::StateReader>,
}

impl<S: LogRead> Runtime<S> {
    pub fn new(parts: RuntimeParts<S>) -> Result<Self, StorageError> {
        let (writer, written) =
            Writer::start(parts.store, parts.metrics.clone(), parts.faults.clone()).map_err(
                |error| StorageError::Io(format!("cannot start the storage thread: {error}")),
            )?;
        let latest = parts.raft.latest_snapshot().last.index;
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
            faults: parts.faults,
            events: parts.events,
            status: parts.status,
            metrics: parts.metrics,
            stored_applied: parts.stored_applied,
            max_uncommitted: parts.max_uncommitted,
            member_waiters: Vec::new(),
            sending_to: BTreeMap::new(),
            snapshots: snapshots::Snapshotting::new(parts.snapshot, parts.state_reader, latest),
        })
    }

    /// Runs until `shutdown` fires or storage fails. A storage error ends the node.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), StorageError> {
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        self.follow_membership();
        self.publish_status();
        loop {
            // Biased: shutdown first, then finished writes (they release replies and answers), then new
            // requests, then time (the select is otherwise randomly fair).
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                report = self.written.recv() => match report {
                    Some(WriterReport::Applied(outcomes)) => self.on_applied(outcomes),
                    Some(WriterReport::Written(done)) => self.on_written(*done)?,
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
                Some(chunk) = self.snapshots.chunks.recv() => self.send_chunk(chunk)?,
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
        self.writer.close();
        while let Some(report) = self.written.recv().await {
            match report {
                WriterReport::Applied(outcomes) => self.on_applied(outcomes),
                WriterReport::Written(done) => self.on_written(*done)?,
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
                    Message::RequestVote(_)
                        | Message::AppendEntries(_)
                        | Message::InstallSnapshot(_)
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
            Request::SetLinkFault { to, fault, reply } => {
                let fault = self.faults.set_link(to, fault);
                self.events
                    .publish(EventKind::LinkFaultChanged { to, fault });
                let _ = reply.send(());
                self.publish_status();
            }
            Request::SetDiskFault {
                write_delay_ms,
                reply,
            } => {
                self.faults.set_disk_write_delay_ms(write_delay_ms);
                self.events
                    .publish(EventKind::DiskFaultChanged { write_delay_ms });
                let _ = reply.send(());
                self.publish_status();
            }
            Request::Unreachable(peer) => self.raft.report_unreachable(peer),
            Request::ChangeMembers { change, reply } => self.change_members(change, reply),
            Request::TakeSnapshot { reply } => self.request_snapshot(reply),
        }
    }

    /// Takes the core's output, sends what may go now, and writes the rest here or queues it for the
    /// storage thread.
    fn drive(&mut self) -> Result<(), StorageError> {
        if !self.raft.has_ready() {
            let mut batch = Batch::default();
            self.maybe_take_snapshot(&mut batch);
            if !batch.snapshot.is_empty() {
                self.writer.queue(batch);
            }
            return Ok(());
        }
        let ready = self.raft.ready();
        let membership_changed = ready
            .events
            .iter()
            .any(|event| matches!(event, EventKind::MembershipChanged { .. }));
        self.events.publish_all(ready.events);
        if membership_changed {
            self.follow_membership();
            self.answer_member_waiters();
        }
        for message in ready.messages {
            self.transport.send(message);
        }
        self.read_chunks(ready.snapshot_sends);
        let clients_waiting = ready
            .committed
            .iter()
            .any(|entry| self.waiters.contains_key(&entry.index));
        let mut batch = Batch {
            hard_state: ready.hard_state,
            entries: ready.entries,
            apply: ready.committed,
            persisted_messages: ready.persisted_messages,
            reads: ready.reads,
            clients_waiting,
            snapshot: Vec::new(),
        };
        self.queue_snapshot_ops(ready.snapshot_ops, &mut batch);
        self.maybe_take_snapshot(&mut batch);
        for ctx in ready.failed_reads {
            if let Some(reply) = self.reads.remove(&ctx) {
                let leader = self.raft.status().leader;
                let _ = reply.send(Err(ReadError::NotLeader { leader }));
            }
        }
        match self.writer.write_here(batch, &self.written, &self.metrics) {
            // `on_written` publishes the status.
            WriteHere::Written((applied, done)) => {
                if let Some(outcomes) = applied {
                    self.on_applied(outcomes);
                }
                self.on_written(done)
            }
            WriteHere::Declined(batch) => {
                self.publish_status();
                self.writer.queue(batch);
                Ok(())
            }
        }
    }

    fn on_written(&mut self, done: WriteDone) -> Result<(), StorageError> {
        done.result?;
        if let Some(took) = done.took {
            self.metrics.fsync_latency.observe(took);
        }
        let batch = done.batch;
        self.snapshot_written(done.snapshot);
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
    fn on_applied(&mut self, outcomes: ApplyOutcomes) {
        if let Some((last, _)) = outcomes.last() {
            self.stored_applied = self.stored_applied.max(last.index);
            self.publish_status();
        }
        self.answer_waiters(outcomes);
    }

    fn answer_waiters(&mut self, outcomes: ApplyOutcomes) {
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
}
