//! Peer transport: one task per peer, each with a bounded queue and a bounded number of requests in
//! flight, so an unreachable or slow peer never blocks the others or the core.
//!
//! A request (vote, append, timeout-now) is POSTed to `/raft/<message>`; the peer answers with its reply
//! envelope in the response body once it is durable. Each request carries `X-Flotilla-Stream:
//! <incarnation>-<seq>` so the receiver can step pipelined requests in the order they were sent.
//!
//! Owns the outgoing side of peer traffic: the per-peer tasks and their kept-alive connections
//! ([`client`]), peer reachability, this node's partition list, the order gate for pipelined
//! requests, and carrying out link faults ([`Faults`]) on what it sends. It may not touch the Raft
//! core or storage: it carries the envelopes the runtime gives it, hands replies and unreachable peers
//! back to the runtime's inbox, and announces every message that certainly did not arrive
//! (`message_dropped`).

pub mod client;
mod directory;

pub use directory::PeerDirectory;

use crate::events::EventHub;
use crate::faults::{Fate, Faults};
use crate::metrics::Metrics;
use crate::runtime::Request;
use client::{Call, Pool, SendError};
use flotilla_shared::event::{DropReason, EventKind};
use flotilla_shared::rpc::Envelope;
use flotilla_shared::NodeId;
use hyper::header::HeaderName;
use hyper::{Method, StatusCode};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify, Semaphore};

pub const STREAM_HEADER: &str = "x-flotilla-stream";
pub const CLUSTER_TOKEN_HEADER: &str = "x-flotilla-cluster-token";
/// `<id> <advertise-url>` of the sending node, so that every node can name the leader's advertise URL
/// in `X-Raft-Leader` (a header rather than a field of the envelope: older nodes ignore it).
pub const ADVERTISE_HEADER: &str = "x-flotilla-advertise";
/// Messages queued per peer; beyond this they are dropped (Raft tolerates loss) rather than buffered.
const PEER_QUEUE: usize = 4_096;
/// How long a receiver holds a request back waiting for an earlier one of the same stream.
const REORDER_WAIT: Duration = Duration::from_millis(20);

/// The peers this node isolates itself from (admin partition). Shared by the transport (outbound) and
/// the HTTP layer (inbound Raft RPCs and client forwards).
#[derive(Default)]
pub struct Partition(RwLock<BTreeSet<NodeId>>);

impl Partition {
    pub fn contains(&self, peer: NodeId) -> bool {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&peer)
    }

    pub fn replace(&self, peers: BTreeSet<NodeId>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = peers;
    }

    pub fn list(&self) -> Vec<NodeId> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .copied()
            .collect()
    }
}

#[derive(Clone)]
pub struct TransportConfig {
    pub id: NodeId,
    pub peers: BTreeMap<NodeId, String>,
    pub cluster_token: Option<String>,
    /// This node's `ADVERTISE_HEADER` value.
    pub advertise: String,
    pub max_inflight: usize,
    pub request_timeout: Duration,
}

struct PeerHandle {
    addr: String,
    queue: mpsc::Sender<Envelope>,
    reachable: Arc<AtomicBool>,
}

pub struct Transport {
    peers: BTreeMap<NodeId, PeerHandle>,
    metrics: Arc<Metrics>,
    events: EventHub,
    config: TransportConfig,
    shared: TransportShared,
    incarnation: u64,
}

/// What the peer tasks share with the rest of the node.
#[derive(Clone)]
pub struct TransportShared {
    pub inbox: mpsc::Sender<Request>,
    pub partition: Arc<Partition>,
    pub faults: Arc<Faults>,
    pub metrics: Arc<Metrics>,
    pub events: EventHub,
}

impl Transport {
    /// Starts one sender task per peer. Replies and failures go back to the runtime's inbox.
    pub fn start(config: TransportConfig, shared: TransportShared) -> Self {
        let mut transport = Self {
            peers: BTreeMap::new(),
            metrics: shared.metrics.clone(),
            events: shared.events.clone(),
            incarnation: incarnation_id(config.id),
            shared,
            config,
        };
        let peers = transport.config.peers.clone();
        transport.set_peers(&peers);
        transport
    }

    /// Follows the configuration: starts a sender for each new peer (or one whose address changed)
    /// and drops the senders of peers no longer listed (their tasks end once their queue drains).
    pub fn set_peers(&mut self, peers: &BTreeMap<NodeId, String>) {
        self.peers
            .retain(|id, handle| peers.get(id).is_some_and(|addr| *addr == handle.addr));
        for (&peer, addr) in peers {
            if peer == self.config.id || self.peers.contains_key(&peer) {
                continue;
            }
            let handle = self.spawn_peer(peer, addr);
            self.peers.insert(peer, handle);
        }
    }

    fn spawn_peer(&self, peer: NodeId, addr: &str) -> PeerHandle {
        let config = &self.config;
        let shared = &self.shared;
        let (queue, receiver) = mpsc::channel(PEER_QUEUE);
        let reachable = Arc::new(AtomicBool::new(true));
        let task = PeerTask {
            peer,
            pool: Pool::new(addr.to_owned(), config.max_inflight.max(1)),
            inbox: shared.inbox.clone(),
            partition: shared.partition.clone(),
            faults: shared.faults.clone(),
            metrics: shared.metrics.clone(),
            events: shared.events.clone(),
            reachable: reachable.clone(),
            in_flight: Arc::new(Semaphore::new(config.max_inflight.max(1))),
            delayed: Arc::new(Semaphore::new(PEER_QUEUE)),
            cluster_token: config.cluster_token.clone(),
            advertise: config.advertise.clone(),
            timeout: config.request_timeout,
            incarnation: self.incarnation,
        };
        tokio::spawn(task.run(receiver));
        PeerHandle {
            addr: addr.to_owned(),
            queue,
            reachable,
        }
    }

    pub fn send(&self, envelope: Envelope) {
        let Some(peer) = self.peers.get(&envelope.to) else {
            tracing::warn!(to = %envelope.to, "message for an unknown peer dropped");
            dropped(&self.events, &envelope, DropReason::Unreachable);
            return;
        };
        if let Err(refused) = peer.queue.try_send(envelope) {
            self.metrics
                .messages_dropped
                .fetch_add(1, Ordering::Relaxed);
            let (envelope, reason) = match refused {
                mpsc::error::TrySendError::Full(envelope) => (envelope, DropReason::QueueFull),
                // The peer's task is gone (the node is stopping).
                mpsc::error::TrySendError::Closed(envelope) => (envelope, DropReason::Unreachable),
            };
            dropped(&self.events, &envelope, reason);
        }
    }

    pub fn is_reachable(&self, peer: NodeId) -> bool {
        self.peers
            .get(&peer)
            .is_some_and(|handle| handle.reachable.load(Ordering::Relaxed))
    }
}

fn incarnation_id(id: NodeId) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64);
    nanos ^ (id.0 << 56) ^ u64::from(std::process::id())
}

/// Announces that `envelope` certainly did not reach its receiver.
pub fn dropped(events: &EventHub, envelope: &Envelope, reason: DropReason) {
    events.publish(EventKind::MessageDropped {
        to: envelope.to,
        msg: envelope.msg,
        reason,
    });
}

struct PeerTask {
    peer: NodeId,
    pool: Pool,
    inbox: mpsc::Sender<Request>,
    partition: Arc<Partition>,
    faults: Arc<Faults>,
    metrics: Arc<Metrics>,
    events: EventHub,
    reachable: Arc<AtomicBool>,
    in_flight: Arc<Semaphore>,
    /// Messages held back by a link delay, at most as many as the queue holds.
    delayed: Arc<Semaphore>,
    cluster_token: Option<String>,
    advertise: String,
    timeout: Duration,
    incarnation: u64,
}

impl PeerTask {
    async fn run(self, mut queue: mpsc::Receiver<Envelope>) {
        let this = Arc::new(self);
        let mut seq = 0u64;
        while let Some(envelope) = queue.recv().await {
            if this.partition.contains(this.peer) {
                this.drop_message(&envelope, DropReason::Partition);
                continue;
            }
            match this.faults.fate(this.peer) {
                Fate::Deliver => {}
                Fate::Drop(reason) => {
                    this.drop_message(&envelope, reason);
                    continue;
                }
                Fate::Delay(delay) => {
                    // Held in a task of its own, so that it delays nothing sent after it by more
                    // than its own delay (nor anything to other peers).
                    let Ok(held) = this.delayed.clone().try_acquire_owned() else {
                        this.drop_message(&envelope, DropReason::QueueFull);
                        continue;
                    };
                    seq += 1;
                    let (task, seq) = (this.clone(), seq);
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let Ok(permit) = task.in_flight.clone().acquire_owned().await else {
                            return;
                        };
                        drop(held);
                        task.deliver(envelope, seq).await;
                        drop(permit);
                    });
                    continue;
                }
            }
            let Ok(permit) = this.in_flight.clone().acquire_owned().await else {
                return;
            };
            seq += 1;
            let task = this.clone();
            tokio::spawn(async move {
                task.deliver(envelope, seq).await;
                drop(permit);
            });
        }
    }

    fn drop_message(&self, envelope: &Envelope, reason: DropReason) {
        self.metrics
            .messages_dropped
            .fetch_add(1, Ordering::Relaxed);
        dropped(&self.events, envelope, reason);
    }

    async fn deliver(&self, envelope: Envelope, seq: u64) {
        let path = format!("/raft/{}", envelope.message.name());
        let stream = format!("{}-{seq}", self.incarnation);
        let mut headers = vec![
            (HeaderName::from_static(STREAM_HEADER), stream.as_str()),
            (
                HeaderName::from_static(ADVERTISE_HEADER),
                self.advertise.as_str(),
            ),
        ];
        if let Some(token) = &self.cluster_token {
            headers.push((
                HeaderName::from_static(CLUSTER_TOKEN_HEADER),
                token.as_str(),
            ));
        }
        let body = match serde_json::to_vec(&envelope) {
            Ok(body) => body,
            Err(error) => {
                tracing::error!(%error, "could not encode a raft message");
                return;
            }
        };
        self.metrics.messages_sent.fetch_add(1, Ordering::Relaxed);
        let call = Call {
            method: Method::POST,
            path: &path,
            headers: &headers,
            json_body: Some(body),
            timeout: self.timeout,
        };
        let outcome = match self.pool.call(call).await {
            Ok((StatusCode::OK, body)) => {
                serde_json::from_slice::<Option<Envelope>>(&body).map_err(|e| e.to_string())
            }
            Ok((StatusCode::NO_CONTENT, _)) => Ok(None),
            Ok((status, body)) => {
                if let Some(reason) = refused_unread(status, &body) {
                    dropped(&self.events, &envelope, reason);
                }
                Err(format!("answered {status}"))
            }
            Err(error) => {
                let timed_out = matches!(
                    error.downcast_ref::<SendError>(),
                    Some(SendError::TimedOut { .. })
                );
                let reason = if timed_out {
                    DropReason::Timeout
                } else {
                    DropReason::Unreachable
                };
                dropped(&self.events, &envelope, reason);
                Err(format!("{error:#}"))
            }
        };
        match outcome {
            Ok(reply) => {
                self.reachable.store(true, Ordering::Relaxed);
                if let Some(reply) = reply {
                    if !self.partition.contains(self.peer) {
                        let _ = self
                            .inbox
                            .send(Request::Step {
                                envelope: reply,
                                reply: None,
                            })
                            .await;
                    }
                }
            }
            Err(error) => {
                // Report only the change to unreachable: a dead peer fails every request.
                if self.reachable.swap(false, Ordering::Relaxed) {
                    tracing::debug!(peer = %self.peer, %error, "peer unreachable");
                }
                let _ = self.inbox.try_send(Request::Unreachable(self.peer));
            }
        }
    }
}

/// Why a peer's error answer means it never took the message in (`None`: it read the message and
/// refused it).
fn refused_unread(status: StatusCode, body: &[u8]) -> Option<DropReason> {
    if status != StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    #[derive(serde::Deserialize)]
    struct ErrorCode<'a> {
        error: &'a str,
    }
    // 503 is `partitioned` (the peer isolates itself from this node) or a node shutting down.
    match serde_json::from_slice::<ErrorCode>(body) {
        Ok(ErrorCode {
            error: "partitioned",
        }) => Some(DropReason::Partition),
        _ => Some(DropReason::Unreachable),
    }
}

/// Receiver side of the stream ordering: pipelined requests from one sender may arrive on different
/// connections out of order; each waits briefly for its predecessor so the core sees them in order.
#[derive(Default)]
pub struct OrderGate {
    next: Mutex<HashMap<NodeId, (u64, u64)>>,
    turn: Notify,
}

impl OrderGate {
    /// Parses `<incarnation>-<seq>`.
    pub fn parse(header: &str) -> Option<(u64, u64)> {
        let (incarnation, seq) = header.split_once('-')?;
        Some((incarnation.parse().ok()?, seq.parse().ok()?))
    }

    /// Waits until every earlier request of this stream has been handed on, or `REORDER_WAIT` passed.
    pub async fn wait_turn(&self, from: NodeId, incarnation: u64, seq: u64) {
        let deadline = Instant::now() + REORDER_WAIT;
        loop {
            let notified = self.turn.notified();
            {
                let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
                let entry = next.entry(from).or_insert((incarnation, seq));
                if entry.0 != incarnation {
                    *entry = (incarnation, seq);
                }
                if seq <= entry.1 {
                    return;
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            let _ = tokio::time::timeout(deadline - now, notified).await;
        }
    }

    /// Marks a request as handed on, letting its successor go.
    pub fn done(&self, from: NodeId, incarnation: u64, seq: u64) {
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = next.get_mut(&from) {
            if entry.0 == incarnation && seq >= entry.1 {
                entry.1 = seq + 1;
            }
        }
        drop(next);
        self.turn.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn gate_releases_requests_in_sequence_order() {
        let gate = Arc::new(OrderGate::default());
        gate.wait_turn(NodeId(2), 9, 1).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let late = {
            let (gate, order) = (gate.clone(), order.clone());
            tokio::spawn(async move {
                gate.wait_turn(NodeId(2), 9, 3).await;
                order.lock().unwrap().push(3);
                gate.done(NodeId(2), 9, 3);
            })
        };
        tokio::time::sleep(Duration::from_millis(2)).await;
        gate.done(NodeId(2), 9, 1);
        gate.wait_turn(NodeId(2), 9, 2).await;
        order.lock().unwrap().push(2);
        gate.done(NodeId(2), 9, 2);
        late.await.unwrap();
        assert_eq!(*order.lock().unwrap(), vec![2, 3]);
    }

    #[tokio::test]
    async fn gate_gives_up_waiting_for_a_lost_request() {
        let gate = OrderGate::default();
        gate.wait_turn(NodeId(2), 1, 1).await;
        gate.done(NodeId(2), 1, 1);
        let started = Instant::now();
        gate.wait_turn(NodeId(2), 1, 5).await;
        assert!(started.elapsed() >= REORDER_WAIT);
    }

    #[test]
    fn stream_header_parses() {
        assert_eq!(OrderGate::parse("12-3"), Some((12, 3)));
        assert_eq!(OrderGate::parse("x-3"), None);
        assert_eq!(OrderGate::parse("12"), None);
    }
}
