//! The live view: the recorded truth shown a moment later and in causal order, so that a message is
//! seen travelling before anything it may have caused is drawn.
//!
//! Each node streams its own events, stamped with its clock, and no event says "received". So a
//! message's effects are taken conservatively: whatever a node reports after a message to it was sent
//! may have been caused by it, and is drawn only once that message's dot has landed. Every record gets a
//! display time (on the cluster's clock, as the view draws it):
//! - not before `at_ms + DELAY_MS`: the view trails the cluster a little, which lets records from the
//!   other nodes' streams arrive and fall into order first;
//! - not before the previous record about the same node: each node's story keeps its order;
//! - not before every dot flying to that node has landed.
//!
//! A dot leaves when its send is drawn and flies a fraction of a heartbeat; an ack, reported only on
//! arrival, leaves once the follower has been drawn taking in what it acknowledges. A chain of
//! messages (an election: pre-vote, grant, vote, grant) puts the view behind; it catches up by
//! quickening the dots that leave late. No dot lands later than `MAX_LAG_MS` after its message was
//! reported: when the cluster outruns the eye the dots get quicker still rather than the view falling
//! ever further behind, so the lag stays bounded.

use super::state::{flight_ms, message_of, ClusterState, Flight, Reported};
use super::timeline::Record;
use flotilla_shared::event::EventKind;
use flotilla_shared::NodeId;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// How far the view trails the cluster when nothing is in the air.
pub const DELAY_MS: u64 = 150;
/// How far at most a dot's landing trails the event that reported its message.
pub const MAX_LAG_MS: u64 = 1_500;
/// Records held at most in each queue, even if the view is never advanced.
const MAX_QUEUED: usize = 50_000;
/// Records of one millisecond looked at together when ordering them (see `pick`).
const MAX_TIE_GROUP: usize = 64;

/// What happens to the view at a display time.
enum Due {
    Record(u64, Record),
    Launch(Flight),
}

pub struct Presenter {
    shown: ClusterState,
    /// Records not yet scheduled, by their node-ordered time, with their place in the recording.
    pending: VecDeque<(u64, u64, Record)>,
    /// Places in the recording of the records not drawn yet.
    undrawn: BTreeSet<u64>,
    /// Scheduled changes by `(display time, order of scheduling)`.
    due: BTreeMap<(u64, u64), Due>,
    scheduled: u64,
    /// Each node's newest record time, so a clock stepping back cannot reorder its records.
    last_at_ms: BTreeMap<NodeId, u64>,
    /// Display time of each node's newest scheduled record.
    frontier: BTreeMap<NodeId, u64>,
    /// Latest landing of a dot flying to each node.
    inbound: BTreeMap<NodeId, u64>,
    /// Latest landing of a dot on each directed edge.
    edge: BTreeMap<(NodeId, NodeId), u64>,
    heartbeat_ms: BTreeMap<NodeId, u64>,
}

impl Presenter {
    pub fn new(initial: ClusterState) -> Self {
        let heartbeat_ms = initial
            .nodes
            .iter()
            .map(|(id, node)| (*id, node.heartbeat_ms))
            .collect();
        Self {
            shown: initial,
            pending: VecDeque::new(),
            undrawn: BTreeSet::new(),
            due: BTreeMap::new(),
            scheduled: 0,
            last_at_ms: BTreeMap::new(),
            frontier: BTreeMap::new(),
            inbound: BTreeMap::new(),
            edge: BTreeMap::new(),
            heartbeat_ms,
        }
    }

    /// The state as drawn at the time last passed to [`Self::advance`].
    pub fn shown(&self) -> &ClusterState {
        &self.shown
    }

    /// Records taken in but not drawn yet.
    pub fn backlog(&self) -> usize {
        self.pending.len() + self.due.len()
    }

    /// The newest place in the recording up to which everything is drawn, if anything waits.
    pub fn drawn_through(&self) -> Option<u64> {
        self.undrawn.first().map(|first| first.saturating_sub(1))
    }

    /// Takes in a record as soon as it is known; `position` is its place in the recording.
    pub fn push(&mut self, record: Record, position: u64) {
        let mut key = record.at_ms();
        if let Some(node) = record.node() {
            let last = self.last_at_ms.entry(node).or_default();
            key = key.max(*last);
            *last = key;
        }
        // Streams deliver nearly in time order: the place is almost always at the back.
        let at = self.pending.partition_point(|(at, _, _)| *at <= key);
        self.pending.insert(at, (key, position, record));
        self.undrawn.insert(position);
        while self.pending.len() > MAX_QUEUED {
            self.schedule_next();
        }
        while self.due.len() > MAX_QUEUED {
            self.show_next();
        }
    }

    /// Moves the view to `now_ms` (cluster clock).
    pub fn advance(&mut self, now_ms: u64) {
        while self
            .pending
            .front()
            .is_some_and(|(at, _, _)| at + DELAY_MS <= now_ms)
        {
            self.schedule_next();
        }
        while self
            .due
            .first_key_value()
            .is_some_and(|((at, _), _)| *at <= now_ms)
        {
            self.show_next();
        }
    }

    /// When the view next changes, if anything is waiting.
    pub fn next_change_ms(&self) -> Option<u64> {
        let pending = self.pending.front().map(|(at, _, _)| at + DELAY_MS);
        let due = self.due.first_key_value().map(|((at, _), _)| *at);
        pending.into_iter().chain(due).min()
    }

    fn show_next(&mut self) {
        let Some(((at, _), due)) = self.due.pop_first() else {
            return;
        };
        match due {
            Due::Record(position, record) => {
                self.shown.apply_shown(&record, at);
                self.undrawn.remove(&position);
            }
            Due::Launch(flight) => self.shown.launch(flight),
        }
    }

    fn put(&mut self, at_ms: u64, due: Due) {
        self.scheduled += 1;
        self.due.insert((at_ms, self.scheduled), due);
    }

    fn frontier(&self, node: NodeId) -> u64 {
        self.frontier.get(&node).copied().unwrap_or(0)
    }

    fn inbound(&self, node: NodeId) -> u64 {
        self.inbound.get(&node).copied().unwrap_or(0)
    }

    fn land(&mut self, from: NodeId, to: NodeId, end_ms: u64) {
        let inbound = self.inbound.entry(to).or_default();
        *inbound = (*inbound).max(end_ms);
        let edge = self.edge.entry((from, to)).or_default();
        *edge = (*edge).max(end_ms);
    }

    /// Which of the records from the oldest millisecond goes first. Milliseconds are coarse: a
    /// follower can take in an append in the same millisecond the leader sent it, and the two streams
    /// may deliver them in either order. So within a millisecond a send to a node goes before that
    /// node's records, and an ack's sender goes before the ack; each node keeps its own order.
    fn pick(&self) -> usize {
        let Some((key, _, _)) = self.pending.front() else {
            return 0;
        };
        let group = self
            .pending
            .iter()
            .take(MAX_TIE_GROUP)
            .take_while(|(at, _, _)| at == key)
            .count();
        if group < 2 {
            return 0;
        }
        let first_of =
            |node: NodeId| (0..group).find(|at| self.pending[*at].2.node() == Some(node));
        let mut choice = 0;
        // Bounded: a cycle (two nodes sending to each other in one millisecond) ends on some choice.
        for _ in 0..group {
            let record = &self.pending[choice].2;
            let Some(node) = record.node() else {
                break;
            };
            let sends_to = |to: NodeId, sender: Option<NodeId>| {
                self.pending.iter().take(group).find_map(|(_, _, other)| {
                    let Record::Event(event) = other else {
                        return None;
                    };
                    let message = message_of(event)?;
                    let wanted = message.reported == Reported::AtSend
                        && message.to == to
                        && event.node != to
                        && sender.is_none_or(|sender| sender == event.node);
                    wanted.then_some(event.node)
                })
            };
            let send_to_node = sends_to(node, None);
            // Unless the acking node is also sent something later this millisecond: then what it
            // did this millisecond may answer that, and the ack belongs to an earlier exchange.
            let acked_by = match record {
                Record::Event(event) => message_of(event)
                    .filter(|message| message.reported == Reported::AtArrival)
                    .map(|message| message.from)
                    .filter(|from| sends_to(*from, Some(node)).is_none()),
                _ => None,
            };
            match send_to_node.or(acked_by).and_then(first_of) {
                Some(next) if next != choice => choice = next,
                _ => break,
            }
        }
        choice
    }

    /// Gives the next pending record its display time.
    fn schedule_next(&mut self) {
        let Some((key, position, record)) = self.pending.remove(self.pick()) else {
            return;
        };
        let earliest = key + DELAY_MS;
        match &record {
            Record::Event(event) => {
                let node = event.node;
                if let EventKind::TimingChanged { heartbeat_ms, .. } = &event.kind {
                    self.heartbeat_ms.insert(node, *heartbeat_ms);
                }
                let mut at = earliest.max(self.frontier(node)).max(self.inbound(node));
                if let Some(message) = message_of(event) {
                    let start = match message.reported {
                        Reported::AtSend => at,
                        // The ack left once its sender took in what it acknowledges.
                        Reported::AtArrival => earliest
                            .max(self.frontier(message.from))
                            .max(self.edge.get(&(node, message.from)).copied().unwrap_or(0)),
                    };
                    // A reply normally leaves one flight after its report's time; a view further
                    // behind than that catches up by quickening its dots, down to half speed.
                    let full_ms =
                        flight_ms(self.heartbeat_ms.get(&message.from).copied().unwrap_or(0));
                    let behind_ms = start.saturating_sub(earliest + full_ms);
                    let duration = full_ms.saturating_sub(behind_ms / 4).max(full_ms / 2);
                    let end = (start + duration).min(key + MAX_LAG_MS).max(start);
                    self.land(message.from, message.to, end);
                    if message.reported == Reported::AtArrival {
                        at = at.max(end);
                    }
                    if end > start {
                        self.put(
                            start,
                            Due::Launch(Flight {
                                node,
                                seq: event.seq,
                                from: message.from,
                                to: message.to,
                                kind: message.kind,
                                start_ms: start,
                                end_ms: end,
                                detail: message.detail,
                            }),
                        );
                    }
                }
                self.frontier.insert(node, at);
                self.put(at, Due::Record(position, record));
            }
            Record::Status { status, .. } => {
                if status.heartbeat_ms > 0 {
                    self.heartbeat_ms.insert(status.id, status.heartbeat_ms);
                }
                // A snapshot shows what the node had taken in: after the dots flying to it.
                let at = earliest
                    .max(self.frontier(status.id))
                    .max(self.inbound(status.id));
                self.frontier.insert(status.id, at);
                self.put(at, Due::Record(position, record));
            }
            Record::Reachable { node, .. } | Record::Process { node, .. } => {
                let node = *node;
                let at = earliest.max(self.frontier(node));
                self.frontier.insert(node, at);
                self.put(at, Due::Record(position, record));
            }
            Record::Submitted(_) => {
                // The answer comes after the commit it reports, wherever that is drawn.
                let at = self.frontier.values().fold(earliest, |at, f| at.max(*f));
                self.put(at, Due::Record(position, record));
            }
        }
    }
}
