//! The recording: a bounded ring of records with periodic state checkpoints, so any recorded moment
//! can be rebuilt quickly for scrubbing and replay.

use super::pairs::MessagePairs;
use super::state::{ClusterState, ProcessState, SubmitRecord};
use flotilla_shared::api::Status;
use flotilla_shared::event::Event;
use flotilla_shared::NodeId;
use std::collections::VecDeque;

/// Records kept by default: about 100 s of a busy 5-node cluster.
pub const DEFAULT_CAPACITY: usize = 100_000;
/// A state checkpoint every this many records bounds the cost of rebuilding a moment.
const CHECKPOINT_EVERY: u64 = 2_000;

/// Something the desktop learned, in the order it learned it.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    Event(Event),
    /// A `/v1/status` snapshot, stamped with the desktop's clock.
    Status {
        at_ms: u64,
        status: Box<Status>,
    },
    /// Whether a node answered its status poll.
    Reachable {
        at_ms: u64,
        node: NodeId,
        reachable: bool,
    },
    /// The desktop killed, paused, resumed or restarted a node's process.
    Process {
        at_ms: u64,
        node: NodeId,
        state: ProcessState,
    },
    Submitted(SubmitRecord),
}

impl Record {
    pub fn at_ms(&self) -> u64 {
        match self {
            Record::Event(event) => event.at_ms,
            Record::Status { at_ms, .. }
            | Record::Reachable { at_ms, .. }
            | Record::Process { at_ms, .. } => *at_ms,
            Record::Submitted(submit) => submit.at_ms,
        }
    }

    /// The node the record is about, if it is about one.
    pub fn node(&self) -> Option<NodeId> {
        match self {
            Record::Event(event) => Some(event.node),
            Record::Status { status, .. } => Some(status.id),
            Record::Reachable { node, .. } | Record::Process { node, .. } => Some(*node),
            Record::Submitted(_) => None,
        }
    }

    pub fn event(&self) -> Option<&Event> {
        match self {
            Record::Event(event) => Some(event),
            _ => None,
        }
    }
}

pub struct Timeline {
    records: VecDeque<Record>,
    /// Absolute position of `records[0]`; positions never repeat.
    start: u64,
    capacity: usize,
    /// The state before `records[0]`.
    base: ClusterState,
    /// `(position, state before the record at position)`, ascending.
    checkpoints: VecDeque<(u64, ClusterState)>,
    /// The state after the newest record, for the next checkpoint.
    head: ClusterState,
    /// Each numbered message's send and receive (or drop).
    pairs: MessagePairs,
}

impl Timeline {
    pub fn new(initial: ClusterState, capacity: usize) -> Self {
        Self {
            records: VecDeque::new(),
            start: 0,
            capacity: capacity.max(1),
            base: initial.clone(),
            checkpoints: VecDeque::new(),
            head: initial,
            pairs: MessagePairs::default(),
        }
    }

    /// Each numbered message's two ends, as recorded.
    pub fn pairs(&self) -> &MessagePairs {
        &self.pairs
    }

    /// The position of the oldest record kept.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// One past the newest record's position.
    pub fn end(&self) -> u64 {
        self.start + self.records.len() as u64
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn get(&self, position: u64) -> Option<&Record> {
        let offset = position.checked_sub(self.start)?;
        self.records.get(usize::try_from(offset).ok()?)
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (u64, &Record)> {
        let start = self.start;
        self.records
            .iter()
            .enumerate()
            .map(move |(offset, record)| (start + offset as u64, record))
    }

    pub fn push(&mut self, record: Record) {
        let position = self.end();
        if position.is_multiple_of(CHECKPOINT_EVERY) && position > 0 {
            self.checkpoints.push_back((position, self.head.clone()));
        }
        self.head.apply(&record);
        if let Record::Event(event) = &record {
            self.pairs.observe(event, position);
        }
        self.records.push_back(record);
        while self.records.len() > self.capacity {
            if let Some(oldest) = self.records.pop_front() {
                self.base.apply(&oldest);
                self.start += 1;
            }
            while self
                .checkpoints
                .front()
                .is_some_and(|(at, _)| *at <= self.start)
            {
                self.checkpoints.pop_front();
            }
        }
    }

    /// The state right after the record at `position` was applied.
    pub fn state_at(&self, position: u64) -> ClusterState {
        let position = position.clamp(self.start, self.end().saturating_sub(1).max(self.start));
        let checkpoint = self
            .checkpoints
            .iter()
            .rev()
            .find(|(at, _)| *at <= position);
        let (mut state, from) = match checkpoint {
            Some((at, state)) => (state.clone(), *at),
            None => (self.base.clone(), self.start),
        };
        for at in from..=position {
            if let Some(record) = self.get(at) {
                state.apply(record);
            }
        }
        state
    }

    pub fn time_of(&self, position: u64) -> Option<u64> {
        self.get(position).map(Record::at_ms)
    }

    pub fn last_time(&self) -> Option<u64> {
        self.records.back().map(Record::at_ms)
    }

    pub fn first_time(&self) -> Option<u64> {
        self.records.front().map(Record::at_ms)
    }

    /// The newest record at or before `at_ms` (records arrive in nearly time order).
    pub fn position_at_time(&self, at_ms: u64) -> u64 {
        let after = self
            .records
            .partition_point(|record| record.at_ms() <= at_ms);
        self.start + after.saturating_sub(1) as u64
    }
}
