//! The cluster's state at one moment, built by applying records in order.

use super::failover::Failovers;
use super::flight::{Arrival, UNKNOWN_HOLD_MS};
use super::message::{message_of, FlightKind, Message, Reported};
use super::timeline::Record;
use flotilla_shared::api::{LinkFaultStatus, PeerStatus, Status};
use flotilla_shared::event::{Event, EventKind, Role};
use flotilla_shared::{LogIndex, NodeId, Term};
use std::collections::{BTreeMap, VecDeque};

/// Keeps the in-flight list bounded even if a view stops being drawn.
const MAX_FLIGHTS: usize = 4_000;
/// Flights that ended this long before the newest record are forgotten.
const FLIGHT_MEMORY_MS: u64 = 5_000;
/// Samples kept for the chart.
const MAX_SAMPLES: usize = 2_000;

/// What the desktop knows about a node's process (not its Raft role).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProcessState {
    #[default]
    Running,
    /// Stopped with SIGSTOP: alive but frozen.
    Paused,
    /// Killed or exited.
    Dead,
}

/// A node's log as runs of equal terms: compact however long the log grows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogRuns {
    /// `(first index of the run, term)`, ascending; term 0 means "exists, term not seen yet".
    runs: Vec<(u64, u64)>,
    last_index: u64,
}

impl LogRuns {
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    /// The term of entry `index`, `Some(0)` when only its existence is known.
    pub fn term_at(&self, index: u64) -> Option<u64> {
        if index == 0 || index > self.last_index {
            return None;
        }
        let run = self.runs.partition_point(|(start, _)| *start <= index);
        run.checked_sub(1).map(|at| self.runs[at].1)
    }

    pub fn truncate(&mut self, last_index: u64) {
        if last_index >= self.last_index {
            return;
        }
        self.runs.retain(|(start, _)| *start <= last_index);
        self.last_index = last_index;
    }

    /// Entries `first..=last` now hold `term`; anything after `last` is gone.
    pub fn put(&mut self, first: u64, last: u64, term: u64) {
        if first == 0 || last < first {
            return;
        }
        self.truncate(first - 1);
        self.extend_unknown(first - 1);
        match self.runs.last() {
            Some((_, run_term)) if *run_term == term => {}
            _ => self.runs.push((first, term)),
        }
        self.last_index = last;
    }

    /// The log is known to reach `last_index` (from a status), terms unknown.
    pub fn extend_unknown(&mut self, last_index: u64) {
        if last_index <= self.last_index {
            return;
        }
        match self.runs.last() {
            Some((_, 0)) => {}
            _ => self.runs.push((self.last_index + 1, 0)),
        }
        self.last_index = last_index;
    }
}

/// One node as drawn.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeView {
    pub id: NodeId,
    pub role: Role,
    pub term: Term,
    pub leader_id: Option<NodeId>,
    pub log: LogRuns,
    pub commit_index: u64,
    pub applied_index: u64,
    /// Durable (fsynced) up to here.
    pub persisted_index: u64,
    /// The running election deadline (Unix ms) and its full length, for the shrinking ring.
    pub election_deadline_ms: Option<u64>,
    pub election_timeout_ms: u64,
    pub isolated_from: Vec<NodeId>,
    pub process: ProcessState,
    /// When the desktop last changed `process` (kill, pause, ...): news older than that (events or a
    /// status still in flight when a container was killed) must not bring the node back to life.
    pub process_changed_ms: u64,
    /// Whether the last status poll got an answer.
    pub reachable: bool,
    /// The leader's view of each follower (match/next), from the last status.
    pub peers: Vec<PeerStatus>,
    pub heartbeat_ms: u64,
    /// The `seq` of this node's newest event taken in.
    pub last_seq: u64,
    /// Faults on this node's outgoing links (admin API), from its status and events.
    pub link_faults: Vec<LinkFaultStatus>,
    /// Every storage write waits this long before its fsync (admin API): a slow disk.
    pub disk_write_delay_ms: u64,
    /// Its latest snapshot and where its log starts.
    pub snapshot: super::SnapshotView,
    /// The configuration in force on it.
    pub config: super::ConfigView,
}

impl NodeView {
    fn new(id: NodeId) -> Self {
        Self {
            id,
            role: Role::Follower,
            term: Term(0),
            leader_id: None,
            log: LogRuns::default(),
            commit_index: 0,
            applied_index: 0,
            persisted_index: 0,
            election_deadline_ms: None,
            election_timeout_ms: 0,
            isolated_from: Vec::new(),
            process: ProcessState::Running,
            process_changed_ms: 0,
            reachable: false,
            peers: Vec::new(),
            heartbeat_ms: 0,
            last_seq: 0,
            link_faults: Vec::new(),
            disk_write_delay_ms: 0,
            snapshot: Default::default(),
            config: Default::default(),
        }
    }

    /// Whether the node can take part in Raft right now, as far as the desktop knows.
    pub fn is_up(&self) -> bool {
        self.process == ProcessState::Running && self.reachable
    }
}

/// Visible but shorter than a heartbeat, so successive messages on one edge stay apart.
pub fn flight_ms(heartbeat_ms: u64) -> u64 {
    (heartbeat_ms * 2 / 5).clamp(60, 400)
}

/// A message drawn travelling along an edge, keyed by the event that reported it.
#[derive(Clone, Debug, PartialEq)]
pub struct Flight {
    pub node: NodeId,
    pub seq: u64,
    pub from: NodeId,
    pub to: NodeId,
    pub kind: FlightKind,
    pub start_ms: u64,
    pub end_ms: u64,
    /// The reason for a denial or rejection, shown on hover.
    pub detail: String,
    /// The sender's number for the message (`0`: not known, an older node).
    pub msg: u64,
    /// Whether and how it arrived; only a reported arrival lands (see `flight.rs`).
    pub arrival: Arrival,
    /// How long the dot travels before it stops short, while its arrival is unknown.
    pub travel_ms: u64,
}

impl Flight {
    /// 0.0 at the sender, 1.0 at the receiver; `None` when not in the air at `now_ms`.
    pub fn progress(&self, now_ms: u64) -> Option<f32> {
        if now_ms < self.start_ms || now_ms > self.end_ms {
            return None;
        }
        let span = (self.end_ms - self.start_ms).max(1) as f32;
        Some((now_ms - self.start_ms) as f32 / span)
    }
}

/// A message submitted from the desktop and its outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct SubmitRecord {
    /// When the answer came.
    pub at_ms: u64,
    pub text: String,
    pub outcome: Result<(LogIndex, Term), String>,
    pub latency_ms: f64,
}

/// The whole cluster at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterState {
    pub nodes: BTreeMap<NodeId, NodeView>,
    pub flights: VecDeque<Flight>,
    pub submits: VecDeque<SubmitRecord>,
    /// `(at_ms, entries)` each time the leader's commit index advanced.
    pub commits: VecDeque<(u64, u64)>,
    /// The newest record time applied.
    pub last_at_ms: u64,
    pub events_applied: u64,
    /// The failover stopwatch and its past runs.
    pub failovers: Failovers,
    /// Snapshots on their way to followers.
    pub transfers: Vec<super::SnapshotTransfer>,
}

impl ClusterState {
    pub fn new(nodes: &[NodeId]) -> Self {
        Self {
            nodes: nodes.iter().map(|id| (*id, NodeView::new(*id))).collect(),
            flights: VecDeque::new(),
            submits: VecDeque::new(),
            commits: VecDeque::new(),
            last_at_ms: 0,
            events_applied: 0,
            failovers: Failovers::default(),
            transfers: Vec::new(),
        }
    }

    /// The leader: a node in the leader role with the highest term among those up.
    pub fn leader(&self) -> Option<&NodeView> {
        self.nodes
            .values()
            .filter(|node| node.role == Role::Leader && node.process != ProcessState::Dead)
            .max_by_key(|node| node.term)
    }

    pub fn max_term(&self) -> Term {
        self.nodes
            .values()
            .map(|node| node.term)
            .max()
            .unwrap_or_default()
    }

    /// Applies `record` as it happened: messages fly on the reporting node's clock.
    pub fn apply(&mut self, record: &Record) {
        self.apply_at(record, None);
    }

    /// Applies `record` as the live view shows it at `shown_ms` (view clock). Its message, if any, is
    /// not drawn here: the caller launches it with [`Self::launch`] at the right moment.
    pub(crate) fn apply_shown(&mut self, record: &Record, shown_ms: u64) {
        self.apply_at(record, Some(shown_ms));
    }

    /// Puts a message in the air.
    pub(crate) fn launch(&mut self, flight: Flight) {
        self.flights.push_back(flight);
        self.forget_old_flights();
    }

    fn apply_at(&mut self, record: &Record, shown_ms: Option<u64>) {
        let at_ms = record.at_ms();
        let failover_cause = self.failover_cause(record);
        self.last_at_ms = self.last_at_ms.max(at_ms);
        match record {
            Record::Event(event) => self.apply_event(event, shown_ms),
            Record::Status { status, at_ms } => self.apply_status(status, *at_ms),
            Record::Reachable {
                node, reachable, ..
            } => {
                if let Some(view) = self.nodes.get_mut(node) {
                    view.reachable = *reachable;
                }
            }
            Record::Process { node, state, .. } => {
                if let Some(view) = self.nodes.get_mut(node) {
                    view.process = *state;
                    view.process_changed_ms = at_ms;
                    if *state != ProcessState::Running {
                        view.election_deadline_ms = None;
                    }
                }
            }
            Record::Submitted(submit) => {
                self.submits.push_back(submit.clone());
                while self.submits.len() > MAX_SAMPLES {
                    self.submits.pop_front();
                }
            }
        }
        self.time_failover(record, failover_cause, shown_ms.unwrap_or(at_ms));
        if super::membership::may_change_members(record) {
            self.forget_departed();
        }
        self.forget_old_flights();
    }

    /// A flight timed by the event's own clock: a message reported on arrival ends at the event,
    /// any other starts at it.
    fn add_flight(&mut self, event: &Event, message: Message) {
        let heartbeat = self
            .nodes
            .get(&message.from)
            .map_or(0, |node| node.heartbeat_ms);
        let duration = flight_ms(heartbeat);
        // Only the receiver's report lands a dot: an ack is one; a send waits for its receive.
        let (start_ms, end_ms, arrival) = match message.reported {
            Reported::AtArrival => (
                event.at_ms.saturating_sub(duration),
                event.at_ms,
                Arrival::Lands,
            ),
            Reported::AtSend if message.msg == 0 => {
                (event.at_ms, event.at_ms + duration, Arrival::Unknown)
            }
            Reported::AtSend => (event.at_ms, event.at_ms + UNKNOWN_HOLD_MS, Arrival::Unknown),
        };
        self.flights.push_back(Flight {
            node: event.node,
            seq: event.seq,
            from: message.from,
            to: message.to,
            kind: message.kind,
            start_ms,
            end_ms,
            detail: message.detail,
            msg: message.msg,
            arrival,
            travel_ms: duration,
        });
    }

    fn forget_old_flights(&mut self) {
        let horizon = self.last_at_ms.saturating_sub(FLIGHT_MEMORY_MS);
        while self.flights.len() > MAX_FLIGHTS
            || self.flights.front().is_some_and(|f| f.gone_ms() < horizon)
        {
            self.flights.pop_front();
        }
    }

    fn apply_event(&mut self, event: &Event, shown_ms: Option<u64>) {
        self.events_applied += 1;
        let node = event.node;
        self.nodes
            .entry(node)
            .or_insert_with(|| NodeView::new(node));
        if shown_ms.is_none() {
            if let Some(message) = message_of(event) {
                self.add_flight(event, message);
            }
            // The other end of a numbered message, on the reporting nodes' own clocks.
            match &event.kind {
                EventKind::MessageReceived { from, msg, .. } => {
                    self.settle(*from, node, *msg, Arrival::Lands, event.at_ms);
                }
                EventKind::MessageDropped { to, msg, reason } => {
                    self.settle(node, *to, *msg, Arrival::Dropped(*reason), event.at_ms);
                }
                _ => {}
            }
        }
        // Times the node reported, moved to the clock they are drawn on.
        let lag_ms = shown_ms.map_or(0, |shown| shown.saturating_sub(event.at_ms));
        self.note_transfer(event, lag_ms);
        let Some(view) = self.nodes.get_mut(&node) else {
            return;
        };
        // An event proves the process runs and answers (unless it was sent before the last kill).
        if event.at_ms >= view.process_changed_ms {
            view.process = ProcessState::Running;
            view.reachable = true;
        }
        view.last_seq = event.seq;
        super::snapshots::apply_node_event(view, &event.kind);
        super::membership::apply_node_event(view, &event.kind);
        match &event.kind {
            EventKind::RoleChanged {
                role,
                term,
                leader_id,
            } => {
                view.role = *role;
                view.term = (*term).max(view.term);
                view.leader_id = if *role == Role::Leader {
                    Some(node)
                } else {
                    *leader_id
                };
                if *role == Role::Leader {
                    view.election_deadline_ms = None;
                }
            }
            EventKind::TermChanged { term } => {
                view.term = (*term).max(view.term);
                view.leader_id = None;
            }
            EventKind::AppendSent { term, .. } | EventKind::AppendRejected { term, .. } => {
                view.term = (*term).max(view.term);
            }
            EventKind::EntryAppended { first, last, term } => {
                view.log.put(first.0, last.0, term.0);
                view.persisted_index = view.persisted_index.min(first.0.saturating_sub(1));
            }
            EventKind::LogTruncated { index } => {
                view.log.truncate(index.0);
                view.persisted_index = view.persisted_index.min(index.0);
            }
            EventKind::EntryPersisted { index } => {
                view.persisted_index = index.0.min(view.log.last_index());
            }
            EventKind::CommitAdvanced { commit_index } => {
                let advanced = commit_index.0.saturating_sub(view.commit_index);
                view.commit_index = commit_index.0;
                if view.role == Role::Leader && advanced > 0 {
                    self.commits.push_back((event.at_ms + lag_ms, advanced));
                    while self.commits.len() > MAX_SAMPLES {
                        self.commits.pop_front();
                    }
                }
            }
            EventKind::Applied { index } => view.applied_index = index.0,
            EventKind::ElectionTimerReset {
                deadline_ms,
                timeout_ms,
            } => {
                view.election_deadline_ms = Some(deadline_ms + lag_ms);
                view.election_timeout_ms = *timeout_ms;
            }
            EventKind::PartitionChanged { isolated_from } => {
                view.isolated_from = isolated_from.clone();
            }
            EventKind::TimingChanged { heartbeat_ms, .. } => view.heartbeat_ms = *heartbeat_ms,
            EventKind::LinkFaultChanged { to, fault } => {
                view.link_faults.retain(|link| link.to != *to);
                if let Some(fault) = fault.filter(|fault| !fault.is_healed()) {
                    view.link_faults.push(LinkFaultStatus { to: *to, fault });
                    view.link_faults.sort_by_key(|link| link.to);
                }
            }
            EventKind::DiskFaultChanged { write_delay_ms } => {
                view.disk_write_delay_ms = *write_delay_ms;
            }
            EventKind::ShuttingDown => {
                view.process = ProcessState::Dead;
                view.election_deadline_ms = None;
            }
            _ => {}
        }
    }

    fn apply_status(&mut self, status: &Status, at_ms: u64) {
        let view = self
            .nodes
            .entry(status.id)
            .or_insert_with(|| NodeView::new(status.id));
        if at_ms >= view.process_changed_ms {
            view.reachable = true;
            view.process = ProcessState::Running;
        }
        view.role = status.role;
        view.term = status.term;
        view.leader_id = if status.role == Role::Leader {
            Some(status.id)
        } else {
            status.leader_id
        };
        view.commit_index = view.commit_index.max(status.commit_index.0);
        view.applied_index = view.applied_index.max(status.last_applied.0);
        view.log.extend_unknown(status.last_log_index.0);
        view.persisted_index = view.persisted_index.max(status.persisted_index.0);
        view.peers = status.peers.clone();
        view.isolated_from = status.isolated_from.clone();
        view.link_faults = status.link_faults.clone();
        view.disk_write_delay_ms = status.disk_write_delay_ms;
        if status.heartbeat_ms > 0 {
            view.heartbeat_ms = status.heartbeat_ms;
        }
        if status.role == Role::Leader {
            view.election_deadline_ms = None;
        }
        super::snapshots::apply_status(view, status);
        super::membership::apply_status(view, status);
    }
}
