//! Live safety checks over what the desktop recorded: the nodes' events and the desktop's own client
//! history (its submits). Each check holds until a record breaks it; the first violation is kept with
//! the records that show it, so the window can jump to that moment.
//!
//! What is checked, and from what:
//! - **one leader per term** (Raft §5.2): `role_changed` to leader, per term.
//! - **committed prefixes agree** (log matching over committed indexes): each node's log terms from
//!   `entry_appended`/`log_truncated`/`snapshot_installed`, compared index by index as its
//!   `commit_advanced` passes them; and no node drops or overwrites an entry it had committed.
//! - **commit never moves back** on a node that did not restart (a kill, a `shutting_down`, or its
//!   event numbers starting over count as a restart).
//! - **acknowledged messages stay**: every submit the desktop saw acknowledged at `(index, term)` has
//!   that term at that index on every node that applied past it.
//! - **the desktop's submits are linearizable**: a Wing & Gong search ([`linearizable`]) over its
//!   history, appends returning the index they were put at.
//!
//! Only what the records say is compared: a log entry whose term no event told is skipped, not guessed.

use super::state::SubmitRecord;
use super::timeline::{Record, Timeline};
use flotilla_shared::event::{Event, EventKind, Role};
use flotilla_shared::NodeId;
use std::collections::{BTreeMap, VecDeque};

mod linearizability;
pub use linearizability::{linearizable, AppendLog, Model, Operation, Verdict, SEARCH_BUDGET};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CheckId {
    SingleLeader,
    CommittedPrefixes,
    CommitMonotonic,
    AckedKept,
    Linearizable,
}

impl CheckId {
    pub const ALL: [CheckId; 5] = [
        CheckId::SingleLeader,
        CheckId::CommittedPrefixes,
        CheckId::CommitMonotonic,
        CheckId::AckedKept,
        CheckId::Linearizable,
    ];

    pub fn title(self) -> &'static str {
        match self {
            CheckId::SingleLeader => "at most one leader per term",
            CheckId::CommittedPrefixes => "committed prefixes agree",
            CheckId::CommitMonotonic => "commit index never moves back",
            CheckId::AckedKept => "acknowledged messages kept",
            CheckId::Linearizable => "the desktop's submits linearizable",
        }
    }
}

/// A check broken: what broke it, and the records that show it (positions in the recording).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub check: CheckId,
    pub text: String,
    pub positions: Vec<u64>,
}

/// One check as the panel shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckStatus {
    pub check: CheckId,
    /// What was looked at so far, e.g. "4 terms".
    pub covered: String,
    pub violation: Option<Violation>,
    /// The check could not decide (the search ran out of budget).
    pub undecided: bool,
}

/// Values per log index from `base + 1` on: earlier ones, settled on every node, were let go.
struct Indexed<T> {
    base: u64,
    values: VecDeque<T>,
}

impl<T> Default for Indexed<T> {
    fn default() -> Self {
        Self {
            base: 0,
            values: VecDeque::new(),
        }
    }
}

impl<T: Copy> Indexed<T> {
    fn get(&self, index: u64) -> Option<T> {
        let at = index.checked_sub(self.base + 1)?;
        self.values.get(usize::try_from(at).ok()?).copied()
    }

    /// The last index held.
    fn last(&self) -> u64 {
        self.base + self.values.len() as u64
    }

    /// Keeps indexes up to `last` only.
    fn truncate(&mut self, last: u64) {
        let keep = last.saturating_sub(self.base);
        self.values
            .truncate(usize::try_from(keep).unwrap_or(usize::MAX));
    }

    /// `first..=last` now hold `value`, a gap before them `fill`; anything after `last` is gone.
    fn put(&mut self, first: u64, last: u64, value: T, fill: T) {
        self.truncate(first.saturating_sub(1));
        while self.last() + 1 < first {
            self.values.push_back(fill);
        }
        while self.last() < last {
            self.values.push_back(value);
        }
    }

    /// Sets one index, leaving the others as they are.
    fn set(&mut self, index: u64, value: T, fill: T) {
        if index <= self.base {
            return;
        }
        while self.last() < index {
            self.values.push_back(fill);
        }
        self.values[(index - self.base - 1) as usize] = value;
    }

    /// Lets go of every index up to `floor`.
    fn forget_through(&mut self, floor: u64) {
        while self.base < floor && self.values.pop_front().is_some() {
            self.base += 1;
        }
    }
}

/// Entries this far behind the slowest node's commit and applied indexes are still kept, so a node
/// that later rewrote one would still be caught; older ones are let go, bounding memory.
pub const SETTLED_KEPT: u64 = 10_000;

/// Indexes kept behind the furthest commit whatever the slowest node does: a node killed and never
/// restarted (its commit reads 0 from then on) or a removed one would otherwise hold every index the
/// others commit for as long as the window stays open. Its old entries go unchecked instead.
pub const MOST_KEPT: u64 = 100_000;

/// A node's log as the checks know it: `(term, position of the record that told it)` per index,
/// term 0 when only the entry's existence is known.
#[derive(Default)]
struct NodeLog {
    entries: Indexed<(u64, u64)>,
    commit: u64,
    commit_position: u64,
    applied: u64,
    last_seq: u64,
}

impl NodeLog {
    fn term_at(&self, index: u64) -> Option<(u64, u64)> {
        self.entries.get(index).filter(|(term, _)| *term != 0)
    }
}

/// An acknowledged submit.
#[derive(Clone)]
struct Ack {
    index: u64,
    term: u64,
    text: String,
    position: u64,
}

/// The checks, fed record by record.
#[derive(Default)]
pub struct Checks {
    /// The next recording position to take in.
    next: u64,
    leaders: BTreeMap<u64, (NodeId, u64)>,
    logs: BTreeMap<NodeId, NodeLog>,
    /// The term committed at each index, with the node and record that first committed it.
    committed: Indexed<(u64, NodeId, u64)>,
    /// Acknowledged submits by index.
    acks: BTreeMap<u64, Vec<Ack>>,
    ack_count: usize,
    /// The desktop's history: (submit, position).
    history: Vec<(SubmitRecord, u64)>,
    history_checked: usize,
    linearizable_undecided: bool,
    violations: BTreeMap<CheckId, Violation>,
}

impl Checks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes in every record the timeline holds past the last one taken.
    pub fn catch_up(&mut self, timeline: &Timeline) {
        let from = self.next.max(timeline.start());
        for position in from..timeline.end() {
            if let Some(record) = timeline.get(position) {
                self.take(position, record);
            }
        }
        self.next = timeline.end();
        self.check_history();
        self.forget_settled();
    }

    /// Lets go of what every node committed and applied long ago.
    fn forget_settled(&mut self) {
        let Some(settled) = self
            .logs
            .values()
            .map(|log| log.commit.min(log.applied))
            .min()
        else {
            return;
        };
        let furthest = self.logs.values().map(|log| log.commit).max().unwrap_or(0);
        let floor = settled
            .saturating_sub(SETTLED_KEPT)
            .max(furthest.saturating_sub(MOST_KEPT));
        if floor <= self.committed.base {
            return;
        }
        for log in self.logs.values_mut() {
            log.entries.forget_through(floor);
        }
        self.committed.forget_through(floor);
        // Acknowledged submits every node applied past were checked on each.
        self.acks = self.acks.split_off(&(floor + 1));
    }

    /// Takes in one record; positions must increase.
    pub fn take(&mut self, position: u64, record: &Record) {
        self.next = self.next.max(position + 1);
        match record {
            Record::Event(event) => self.take_event(position, event),
            Record::Process { node, state, .. } => {
                if *state == super::ProcessState::Dead {
                    self.restarted(*node);
                }
            }
            Record::Submitted(submit) => {
                if let Ok((index, term)) = &submit.outcome {
                    let ack = Ack {
                        index: index.0,
                        term: term.0,
                        text: submit.text.clone(),
                        position,
                    };
                    let nodes: Vec<NodeId> = self.logs.keys().copied().collect();
                    for node in nodes {
                        self.check_ack_on(&ack, node, position);
                    }
                    self.ack_count += 1;
                    self.acks.entry(ack.index).or_default().push(ack);
                }
                self.history.push((submit.clone(), position));
            }
            Record::Status { .. } | Record::Reachable { .. } => {}
        }
    }

    /// Where each check stands.
    pub fn statuses(&self) -> Vec<CheckStatus> {
        CheckId::ALL
            .iter()
            .map(|check| CheckStatus {
                check: *check,
                covered: self.covered(*check),
                violation: self.violations.get(check).cloned(),
                undecided: *check == CheckId::Linearizable && self.linearizable_undecided,
            })
            .collect()
    }

    pub fn violation(&self, check: CheckId) -> Option<&Violation> {
        self.violations.get(&check)
    }

    /// Every record position some violation names, for the diagram to draw in red.
    pub fn flagged_positions(&self) -> Vec<u64> {
        self.violations
            .values()
            .flat_map(|violation| violation.positions.iter().copied())
            .collect()
    }

    fn covered(&self, check: CheckId) -> String {
        match check {
            CheckId::SingleLeader => format!("terms with a leader: {}", self.leaders.len()),
            CheckId::CommittedPrefixes => format!("committed entries: {}", self.committed.last()),
            CheckId::CommitMonotonic => format!("nodes: {}", self.logs.len()),
            CheckId::AckedKept => format!("acknowledged submits: {}", self.ack_count),
            CheckId::Linearizable => format!("submits: {}", self.history.len()),
        }
    }

    fn fail(&mut self, check: CheckId, text: String, positions: Vec<u64>) {
        self.violations.entry(check).or_insert(Violation {
            check,
            text,
            positions,
        });
    }

    /// The node's process started over: its commit index is learned again from zero.
    fn restarted(&mut self, node: NodeId) {
        if let Some(log) = self.logs.get_mut(&node) {
            log.commit = 0;
            log.applied = 0;
            log.last_seq = 0;
        }
    }

    fn take_event(&mut self, position: u64, event: &Event) {
        let node = event.node;
        let fresh_process = self
            .logs
            .get(&node)
            .is_some_and(|log| log.last_seq != 0 && event.seq <= log.last_seq);
        if fresh_process {
            self.restarted(node);
        }
        let log = self.logs.entry(node).or_default();
        log.last_seq = event.seq;
        match &event.kind {
            EventKind::RoleChanged {
                role: Role::Leader,
                term,
                ..
            } => match self.leaders.get(&term.0).copied() {
                Some((other, first)) if other != node => self.fail(
                    CheckId::SingleLeader,
                    format!(
                        "term {}: node {other} and node {node} both became leader",
                        term.0
                    ),
                    vec![first, position],
                ),
                Some(_) => {}
                None => {
                    self.leaders.insert(term.0, (node, position));
                }
            },
            EventKind::EntryAppended { first, last, term } => {
                let (first, last, term) = (first.0, last.0, term.0);
                if first == 0 || last < first {
                    return;
                }
                let commit = log.commit;
                let mut overwritten = None;
                if first <= commit {
                    for index in first..=last.min(commit) {
                        if let Some((old, told)) = log.term_at(index) {
                            if old != term {
                                overwritten = Some((index, old, told));
                                break;
                            }
                        }
                    }
                }
                log.entries
                    .put(first, last, (term, position), (0, position));
                if let Some((index, old, told)) = overwritten {
                    self.fail(
                        CheckId::CommittedPrefixes,
                        format!(
                            "node {node} overwrote its committed entry {index} (term {old}) with term {term}"
                        ),
                        vec![told, position],
                    );
                }
            }
            EventKind::LogTruncated { index } => {
                let (kept, commit, commit_position) = (index.0, log.commit, log.commit_position);
                log.entries.truncate(kept);
                if kept < commit {
                    self.fail(
                        CheckId::CommittedPrefixes,
                        format!(
                            "node {node} removed entries after {kept} though it had committed up to {commit}"
                        ),
                        vec![commit_position, position],
                    );
                }
            }
            // The log now ends at the snapshot's last entry; earlier entries keep the terms told.
            EventKind::SnapshotInstalled { index, term, .. } if index.0 > 0 => {
                log.entries
                    .put(index.0, index.0, (term.0, position), (0, position));
            }
            EventKind::CommitAdvanced { commit_index } => {
                let commit = commit_index.0;
                if commit < log.commit {
                    let (was, was_at) = (log.commit, log.commit_position);
                    self.fail(
                        CheckId::CommitMonotonic,
                        format!("node {node}'s commit index moved back from {was} to {commit} without a restart"),
                        vec![was_at, position],
                    );
                    return;
                }
                let from = log.commit + 1;
                log.commit = commit;
                log.commit_position = position;
                self.compare_committed(node, from, commit, position);
            }
            EventKind::Applied { index } => {
                let from = log.applied;
                log.applied = log.applied.max(index.0);
                let to = log.applied;
                if to <= from {
                    return;
                }
                let due: Vec<Ack> = self
                    .acks
                    .range(from + 1..=to)
                    .flat_map(|(_, acks)| acks.iter().cloned())
                    .collect();
                for ack in due {
                    self.check_ack_on(&ack, node, position);
                }
            }
            EventKind::ShuttingDown => self.restarted(node),
            _ => {}
        }
    }

    /// Node `node` now commits `from..=to`: each index's term must match what others committed.
    fn compare_committed(&mut self, node: NodeId, from: u64, to: u64, position: u64) {
        for index in from..=to {
            let Some((term, told)) = self.logs.get(&node).and_then(|log| log.term_at(index)) else {
                continue;
            };
            let (first_term, first_node, first_told) =
                self.committed.get(index).unwrap_or((0, node, 0));
            if first_term == 0 {
                self.committed.set(index, (term, node, told), (0, node, 0));
            } else if first_term != term {
                self.fail(
                    CheckId::CommittedPrefixes,
                    format!(
                        "entry {index}: node {first_node} committed term {first_term}, node {node} committed term {term}"
                    ),
                    vec![first_told, told, position],
                );
                return;
            }
        }
    }

    /// An acknowledged submit must be on `node` if it applied past it.
    fn check_ack_on(&mut self, ack: &Ack, node: NodeId, position: u64) {
        let Some(log) = self.logs.get(&node) else {
            return;
        };
        if log.applied < ack.index {
            return;
        }
        if let Some((term, told)) = log.term_at(ack.index) {
            if term != ack.term {
                self.fail(
                    CheckId::AckedKept,
                    format!(
                        "\"{}\" was acknowledged at index {} (term {}), but node {node} applied past it with term {term} there",
                        ack.text, ack.index, ack.term
                    ),
                    vec![ack.position, told, position],
                );
            }
        }
    }

    /// Runs the linearizability search again when the history grew.
    fn check_history(&mut self) {
        if self.history.len() == self.history_checked
            || self.violations.contains_key(&CheckId::Linearizable)
        {
            return;
        }
        self.history_checked = self.history.len();
        // A submit that failed may or may not have taken effect: it returned nothing to check, so it
        // constrains nothing.
        let acked: Vec<(&SubmitRecord, u64, u64)> = self
            .history
            .iter()
            .filter_map(|(submit, position)| {
                let (index, _) = submit.outcome.as_ref().ok()?;
                Some((submit, index.0, *position))
            })
            .collect();
        let operations: Vec<Operation<u64>> = acked
            .iter()
            .map(|(submit, index, _)| Operation {
                invoked_ms: invoked_ms(submit),
                completed_ms: submit.at_ms,
                input: *index,
            })
            .collect();
        match linearizable::<AppendLog>(&operations, SEARCH_BUDGET) {
            Verdict::Linearizable => self.linearizable_undecided = false,
            Verdict::Undecided => self.linearizable_undecided = true,
            Verdict::NotLinearizable { stuck } => {
                let names: Vec<String> = stuck
                    .iter()
                    .map(|at| format!("\"{}\" at index {}", acked[*at].0.text, acked[*at].1))
                    .collect();
                let positions = stuck.iter().map(|at| acked[*at].2).collect();
                self.fail(
                    CheckId::Linearizable,
                    format!(
                        "no order of the submits fits their times and indexes: none of {} can go next",
                        names.join(", ")
                    ),
                    positions,
                );
            }
        }
    }
}

/// When a submit was sent: its answer's time less its latency.
pub fn invoked_ms(submit: &SubmitRecord) -> u64 {
    submit
        .at_ms
        .saturating_sub(submit.latency_ms.max(0.0).ceil() as u64)
}

#[cfg(test)]
mod tests;
