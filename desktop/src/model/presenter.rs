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
//!
//! A numbered message (`msg` > 0) has its other end in the streams: its receiver's
//! `message_received`, or its sender's `message_dropped`. Its dot leaves at the send and lands when
//! the receive is drawn (never earlier than a visible flight after it left); a drop stops it where
//! it died; with neither it stops short of the receiver, saying its arrival is unknown. The receive
//! is the message's effect on the receiver, so only it waits for the dot. The streams' clocks are
//! brought to one from the numbered messages' pairs (`clock.rs`) before anything is ordered.

use super::clock::ClockOffsets;
use super::flight::{settle_flight, Arrival, UNKNOWN_HOLD_MS};
use super::message::{message_of, FlightKind, Reported};
use super::state::{flight_ms, ClusterState, Flight};
use super::timeline::Record;
use flotilla_shared::event::EventKind;
use flotilla_shared::NodeId;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

/// How far the view trails the cluster when nothing is in the air.
pub const DELAY_MS: u64 = 150;
/// How far at most a dot's landing trails the event that reported its message.
pub const MAX_LAG_MS: u64 = 1_500;
/// Records held at most in each queue, even if the view is never advanced.
const MAX_QUEUED: usize = 50_000;
/// Records of one millisecond looked at together when ordering them (see `pick`).
const MAX_TIE_GROUP: usize = 64;

/// Numbered messages in the air whose end is not scheduled yet, at most; the oldest are forgotten.
const MAX_OPEN: usize = 10_000;

/// A numbered message launched (or about to be) whose receive or drop is not scheduled yet.
struct Open {
    to: NodeId,
    start_ms: u64,
    /// The send's own earliest display time: how far behind the view was when it left.
    earliest_ms: u64,
    /// Its launch in `due`, while not drawn yet.
    due_key: (u64, u64),
}

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
    /// The streams' clock offsets, learned from message pairs.
    clocks: ClockOffsets,
    /// Numbered messages in the air, by `(sender, msg)`.
    open: HashMap<(NodeId, u64), Open>,
    /// Numbered sends pushed but not scheduled yet, by `(sender, msg)`: a receive waits for them.
    unscheduled_sends: HashSet<(NodeId, u64)>,
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
            clocks: ClockOffsets::default(),
            open: HashMap::new(),
            unscheduled_sends: HashSet::new(),
        }
    }

    /// The clock offsets the view corrects the streams by.
    pub fn clocks(&self) -> &ClockOffsets {
        &self.clocks
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
        if let Record::Event(event) = &record {
            self.clocks.observe(event);
            key = self.clocks.corrected(event.node, key);
            if let Some(message) = message_of(event) {
                if message.msg != 0 && message.reported == Reported::AtSend {
                    self.unscheduled_sends.insert((event.node, message.msg));
                }
            }
        }
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

    fn put(&mut self, at_ms: u64, due: Due) -> (u64, u64) {
        self.scheduled += 1;
        self.due.insert((at_ms, self.scheduled), due);
        (at_ms, self.scheduled)
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

    /// A receive whose send is still pending (its stream's clock not corrected yet, or behind):
    /// the sender's own records go first, in their order up to the send, so the dot leaves before
    /// it lands and each node's story keeps its order.
    fn send_first(&self, mut index: usize) -> usize {
        // Bounded: streams whose clocks disagree can wait on each other in a circle.
        for _ in 0..8 {
            let Some((_, _, Record::Event(event))) = self.pending.get(index) else {
                return index;
            };
            let EventKind::MessageReceived { from, msg, .. } = &event.kind else {
                return index;
            };
            if !self.unscheduled_sends.contains(&(*from, *msg)) {
                return index;
            }
            match self
                .pending
                .iter()
                .position(|(_, _, record)| record.node() == Some(*from))
            {
                Some(first) if first != index => index = first,
                _ => return index,
            }
        }
        index
    }

    fn heartbeat_of(&self, node: NodeId) -> u64 {
        self.heartbeat_ms.get(&node).copied().unwrap_or(0)
    }

    /// A visible flight for a message that left at `start_ms`, quickened when the view is behind
    /// (it left later than its own `earliest_ms`), down to half.
    fn visible_ms(&self, from: NodeId, start_ms: u64, earliest_ms: u64) -> u64 {
        let full_ms = flight_ms(self.heartbeat_of(from));
        let behind_ms = start_ms.saturating_sub(earliest_ms + full_ms);
        full_ms.saturating_sub(behind_ms / 4).max(full_ms / 2)
    }

    /// Gives the flight of an open message its end, wherever the flight is now.
    fn settle(&mut self, from: NodeId, msg: u64, open: &Open, arrival: Arrival, end_ms: u64) {
        if let Some(Due::Launch(flight)) = self.due.get_mut(&open.due_key) {
            settle_flight(flight, arrival, end_ms);
        } else {
            self.shown.settle(from, open.to, msg, arrival, end_ms);
        }
        if arrival == Arrival::Lands {
            self.land(from, open.to, end_ms);
        }
    }

    /// The receive or drop of a numbered message: lands or stops its dot. Returns the time the
    /// record itself may be drawn.
    fn end_of_message(&mut self, node: NodeId, kind: &EventKind, key: u64, at: u64) -> u64 {
        match kind {
            EventKind::MessageReceived { from, msg, .. } if *msg != 0 => {
                // Not a message to this node: a restarted sender's reused number, left alone.
                if self
                    .open
                    .get(&(*from, *msg))
                    .is_none_or(|open| open.to != node)
                {
                    return at;
                }
                let Some(open) = self.open.remove(&(*from, *msg)) else {
                    return at;
                };
                let visible = self.visible_ms(*from, open.start_ms, open.earliest_ms);
                let end = at.max((open.start_ms + visible).min(key + MAX_LAG_MS));
                self.settle(*from, *msg, &open, Arrival::Lands, end);
                end
            }
            EventKind::MessageDropped { to, msg, reason } if *msg != 0 => {
                match self.open.remove(&(node, *msg)) {
                    Some(open) => {
                        let visible = self.visible_ms(node, open.start_ms, open.earliest_ms);
                        let end = at.max(open.start_ms + visible);
                        self.settle(node, *msg, &open, Arrival::Dropped(*reason), end);
                    }
                    // A reply no event reports sending (an append's success), lost: drawn dying
                    // as it leaves.
                    None => {
                        let visible = flight_ms(self.heartbeat_of(node)) / 2;
                        self.put(
                            at,
                            Due::Launch(Flight {
                                node,
                                seq: 0,
                                from: node,
                                to: *to,
                                kind: FlightKind::Ack,
                                start_ms: at,
                                end_ms: at + visible.max(1),
                                detail: "its send is not in the recording (an append's reply \
                                         is never reported sent)"
                                    .into(),
                                msg: *msg,
                                arrival: Arrival::Dropped(*reason),
                                travel_ms: visible,
                            }),
                        );
                    }
                }
                at
            }
            _ => at,
        }
    }

    /// Gives the next pending record its display time.
    fn schedule_next(&mut self) {
        let index = self.send_first(self.pick());
        let Some((key, position, record)) = self.pending.remove(index) else {
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
                at = self.end_of_message(node, &event.kind, key, at);
                let numbered = message_of(event)
                    .filter(|message| message.msg != 0 && message.reported == Reported::AtSend);
                if let Some(message) = numbered {
                    self.unscheduled_sends.remove(&(node, message.msg));
                    let travel_ms = self.visible_ms(node, at, earliest);
                    let due_key = self.put(
                        at,
                        Due::Launch(Flight {
                            node,
                            seq: event.seq,
                            from: node,
                            to: message.to,
                            kind: message.kind,
                            start_ms: at,
                            end_ms: at + UNKNOWN_HOLD_MS,
                            detail: message.detail,
                            msg: message.msg,
                            arrival: Arrival::Unknown,
                            travel_ms,
                        }),
                    );
                    if self.open.len() >= MAX_OPEN {
                        let horizon = earliest.saturating_sub(UNKNOWN_HOLD_MS + MAX_LAG_MS);
                        self.open.retain(|_, open| open.start_ms >= horizon);
                    }
                    self.open.insert(
                        (node, message.msg),
                        Open {
                            to: message.to,
                            start_ms: at,
                            earliest_ms: earliest,
                            due_key,
                        },
                    );
                } else if let Some(message) = message_of(event) {
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
                        // Only an ack is reported by its receiver: an unnumbered send's arrival is
                        // not known, and its dot says so.
                        let arrival = match message.reported {
                            Reported::AtArrival => Arrival::Lands,
                            Reported::AtSend => Arrival::Unknown,
                        };
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
                                msg: message.msg,
                                arrival,
                                travel_ms: end - start,
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
