//! The failover stopwatch: after the leader is killed, paused or cut off, the time to the first new
//! leader and to the first commit after it, with a short table of past failovers.

use super::state::{ClusterState, ProcessState};
use super::timeline::Record;
use flotilla_shared::event::{EventKind, Role};
use flotilla_shared::{NodeId, Term};
use std::collections::VecDeque;

/// Past failovers kept for the table.
const MAX_PAST: usize = 8;

/// One failover, running or over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failover {
    /// What happened to the leader, in words.
    pub cause: String,
    pub old_leader: NodeId,
    pub old_term: Term,
    /// When it happened (the record's time) and when the view drew it (for the running clock).
    pub started_ms: u64,
    pub shown_started_ms: u64,
    /// The first leader of a later term, and when it was reported.
    pub new_leader: Option<(NodeId, Term, u64)>,
    /// The new leader's first commit.
    pub first_commit_ms: Option<u64>,
    /// Ended without a new leader: why (the old leader was healed or came back).
    pub abandoned: Option<String>,
}

impl Failover {
    pub fn to_leader_ms(&self) -> Option<u64> {
        self.new_leader
            .map(|(_, _, at)| at.saturating_sub(self.started_ms))
    }

    pub fn to_commit_ms(&self) -> Option<u64> {
        self.first_commit_ms
            .map(|at| at.saturating_sub(self.started_ms))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Failovers {
    pub running: Option<Failover>,
    /// Newest last.
    pub past: VecDeque<Failover>,
}

impl Failovers {
    fn finish(&mut self) {
        if let Some(done) = self.running.take() {
            self.past.push_back(done);
            while self.past.len() > MAX_PAST {
                self.past.pop_front();
            }
        }
    }
}

/// How many of the leader's outgoing links must be cut before it cannot reach a majority.
fn cuts_that_depose(cluster_size: usize) -> usize {
    let majority = cluster_size / 2 + 1;
    cluster_size + 1 - majority
}

impl ClusterState {
    /// What `record`, about to be applied, does to the leader: the cause of a failover, if any,
    /// with the leader and its term.
    pub(super) fn failover_cause(&self, record: &Record) -> Option<(String, NodeId, Term)> {
        let leader = self
            .leader()
            .filter(|leader| leader.process == ProcessState::Running)?;
        let cause = match record {
            Record::Process { node, state, .. } if *node == leader.id => match state {
                ProcessState::Dead => Some(format!("leader {node} killed")),
                ProcessState::Paused => Some(format!("leader {node} paused")),
                ProcessState::Running => None,
            },
            // Ended or cut off by something other than this window (a crash, `docker kill`).
            Record::Reachable {
                node,
                reachable: false,
                ..
            } if *node == leader.id && leader.reachable => {
                Some(format!("leader {node} stopped answering"))
            }
            Record::Event(event) if event.node == leader.id => match &event.kind {
                // Isolating a follower also lists it on the leader; only losing its majority deposes it.
                EventKind::PartitionChanged { isolated_from }
                    if isolated_from.len() >= cuts_that_depose(self.nodes.len()) =>
                {
                    Some(format!("leader {} cut off by a partition", leader.id))
                }
                EventKind::LinkFaultChanged { to, fault } => {
                    let cut_after = leader
                        .link_faults
                        .iter()
                        .filter(|link| link.to != *to && link.fault.cut)
                        .count()
                        + usize::from(fault.is_some_and(|fault| fault.cut));
                    let depose = cuts_that_depose(self.nodes.len());
                    (cut_after >= depose)
                        .then(|| format!("leader {}'s links cut to {cut_after} nodes", leader.id))
                }
                _ => None,
            },
            _ => None,
        }?;
        Some((cause, leader.id, leader.term))
    }

    /// Moves the stopwatch on after `record` was applied; `cause` is what it did to the leader.
    pub(super) fn time_failover(
        &mut self,
        record: &Record,
        cause: Option<(String, NodeId, Term)>,
        shown_ms: u64,
    ) {
        let at_ms = record.at_ms();
        if let Some((cause, old_leader, old_term)) = cause {
            if self.failovers.running.is_none() {
                self.failovers.running = Some(Failover {
                    cause,
                    old_leader,
                    old_term,
                    started_ms: at_ms,
                    shown_started_ms: shown_ms,
                    new_leader: None,
                    first_commit_ms: None,
                    abandoned: None,
                });
                return;
            }
        }
        let Some(running) = &mut self.failovers.running else {
            return;
        };
        let new_leader = match record {
            Record::Event(event) => match &event.kind {
                EventKind::RoleChanged {
                    role: Role::Leader,
                    term,
                    ..
                } if *term > running.old_term => Some((event.node, *term)),
                _ => None,
            },
            Record::Status { status, .. }
                if status.role == Role::Leader && status.term > running.old_term =>
            {
                Some((status.id, status.term))
            }
            _ => None,
        };
        match running.new_leader {
            None => {
                if let Some((node, term)) = new_leader {
                    running.new_leader = Some((node, term, at_ms));
                    return;
                }
                // The old leader back in charge before anyone else took over.
                let healed = match record {
                    Record::Process {
                        node,
                        state: ProcessState::Running,
                        ..
                    } if *node == running.old_leader => Some("the leader was resumed"),
                    Record::Reachable {
                        node,
                        reachable: true,
                        ..
                    } if *node == running.old_leader
                        && running.cause.ends_with("stopped answering") =>
                    {
                        Some("the leader answered again")
                    }
                    Record::Event(event) if event.node == running.old_leader => match &event.kind {
                        EventKind::PartitionChanged { isolated_from }
                            if isolated_from.is_empty() =>
                        {
                            Some("the partition was healed")
                        }
                        EventKind::LinkFaultChanged { .. }
                            if self.nodes.get(&running.old_leader).is_some_and(|node| {
                                !node.link_faults.iter().any(|link| link.fault.cut)
                            }) =>
                        {
                            Some("the links were healed")
                        }
                        _ => None,
                    },
                    _ => None,
                };
                if let Some(why) = healed {
                    running.abandoned = Some(format!("{why} before a new leader"));
                    self.failovers.finish();
                }
            }
            Some((leader, _, _)) => {
                let committed = matches!(
                    record,
                    Record::Event(event)
                        if event.node == leader
                            && matches!(event.kind, EventKind::CommitAdvanced { .. })
                );
                if committed {
                    running.first_commit_ms = Some(at_ms);
                    self.failovers.finish();
                }
            }
        }
    }
}
