//! The safety properties of Raft (Figure 3 of the paper), checked after every simulator step, each in
//! its own function. They only read the cores and what the simulated disks applied.

use super::cluster::{Disk, SimNode};
use crate::raft::{Entry, LogId, LogIndex, LogRead, NodeId, Payload, Raft, Role, Term};
use std::collections::{BTreeMap, HashMap};

/// What the checks remember between steps.
#[derive(Default)]
pub struct History {
    /// Raft §5.2: the leader seen for each term.
    leaders: BTreeMap<Term, NodeId>,
    /// Per (leader, term): the last entry its log had when last checked.
    leader_last: BTreeMap<(NodeId, Term), LogId>,
    /// Per (leader, term): committed entries already found in its log.
    leader_has_committed: BTreeMap<(NodeId, Term), usize>,
    /// Every entry known committed, by index (`committed[i]` has index `i + 1`), and the term of the
    /// node that first reported its commitment.
    pub committed: Vec<(Entry, Term)>,
    /// Per node: entries up to here were compared with `committed`.
    verified_commit: BTreeMap<NodeId, LogIndex>,
    /// Every `(index, term)` ever written, with its payload (one entry per index and term).
    written: HashMap<(LogIndex, Term), Payload>,
    /// Per index: the entry some state machine applied there first.
    applied: BTreeMap<LogIndex, Entry>,
    /// Per request id: where it was applied (the same place on every node).
    pub applied_requests: HashMap<String, LogId>,
}

pub type Check = Result<(), String>;

impl History {
    /// A node restarted from its disk: what it commits from now on is compared from there.
    pub fn restarted(&mut self, node: NodeId, commit: LogIndex) {
        self.verified_commit.insert(node, commit);
    }

    pub fn max_commit(&self) -> LogIndex {
        LogIndex(self.committed.len() as u64)
    }
}

fn live(nodes: &[SimNode]) -> impl Iterator<Item = (&SimNode, &Raft<Disk>)> {
    nodes.iter().filter_map(|n| n.core.as_ref().map(|c| (n, c)))
}

/// Raft §5.2, Election Safety: at most one leader can be elected in a given term.
pub fn check_election_safety_5_2(nodes: &[SimNode], history: &mut History) -> Check {
    for (node, core) in live(nodes) {
        if core.role() == Role::Leader {
            let leader = *history.leaders.entry(core.term()).or_insert(node.id);
            if leader != node.id {
                return Err(format!(
                    "two leaders in term {}: {leader} and {}",
                    core.term(),
                    node.id
                ));
            }
        }
    }
    Ok(())
}

/// Raft §5.3, Leader Append-Only: a leader never overwrites or deletes entries in its log.
pub fn check_leader_append_only_5_3(nodes: &[SimNode], history: &mut History) -> Check {
    for (node, core) in live(nodes) {
        if core.role() != Role::Leader {
            continue;
        }
        let key = (node.id, core.term());
        let last = core.last_log();
        if let Some(before) = history.leader_last.get(&key) {
            if last.index < before.index || core.log_term(before.index) != Some(before.term) {
                return Err(format!(
                    "leader {} of term {} lost entry {} (term {}): its log now ends at {:?}",
                    node.id,
                    core.term(),
                    before.index,
                    before.term,
                    last
                ));
            }
        }
        history.leader_last.insert(key, last);
    }
    Ok(())
}

/// Raft §5.3, Log Matching: entries with the same index and term hold the same command, and the logs
/// are identical in all entries up through that index.
pub fn check_log_matching_5_3(nodes: &[SimNode], changed: NodeId, history: &History) -> Check {
    let Some(a) = nodes
        .iter()
        .find(|n| n.id == changed)
        .and_then(|n| n.core.as_ref())
    else {
        return Ok(());
    };
    for (other, b) in live(nodes).filter(|(n, _)| n.id != changed) {
        // Below both commit indexes each log was compared with the committed log already.
        // Entries compacted away are compared through the snapshots' last entries (§7).
        let floor = a
            .commit()
            .min(b.commit())
            .min(history.verified(changed))
            .min(history.verified(other.id))
            .max(a.first_log_index().prev())
            .max(b.first_log_index().prev());
        let top = a.last_log().index.min(b.last_log().index);
        let mut matched_at = None;
        let mut index = top;
        while index > floor {
            let (ta, tb) = (a.log_term(index), b.log_term(index));
            if ta == tb {
                matched_at.get_or_insert(index);
            } else if let Some(at) = matched_at {
                return Err(format!(
                    "nodes {changed} and {} agree on entry {at} but differ at {index} ({ta:?} vs {tb:?})",
                    other.id
                ));
            }
            index = index.prev();
        }
    }
    Ok(())
}

impl History {
    fn verified(&self, node: NodeId) -> LogIndex {
        self.verified_commit.get(&node).copied().unwrap_or_default()
    }

    /// Records an entry handed out for writing: one payload per index and term (§5.3).
    pub fn record_written(&mut self, node: NodeId, entry: &Entry) -> Check {
        match self.written.get(&(entry.index, entry.term)) {
            Some(payload) if *payload != entry.payload => Err(format!(
                "node {node} wrote entry {} of term {} with {:?}, another node has {:?}",
                entry.index, entry.term, entry.payload, payload
            )),
            Some(_) => Ok(()),
            None => {
                self.written
                    .insert((entry.index, entry.term), entry.payload.clone());
                Ok(())
            }
        }
    }
}

/// Every node's committed prefix is the one committed log (what Leader Completeness and State Machine
/// Safety rest on): a committed entry never changes anywhere.
pub fn check_committed_prefix_5_4(nodes: &[SimNode], history: &mut History) -> Check {
    for (node, core) in live(nodes) {
        check_node_committed_prefix_5_4(node.id, core, history)?;
    }
    Ok(())
}

/// [`check_committed_prefix_5_4`] for one node, whatever its storage.
pub fn check_node_committed_prefix_5_4<S: LogRead>(
    node: NodeId,
    core: &Raft<S>,
    history: &mut History,
) -> Check {
    let commit = core.commit();
    let from = history.verified(node);
    if commit <= from {
        return Ok(());
    }
    // Entries before the log's first index live only in the snapshot (Raft §7): its last entry must
    // be the one committed there.
    let snapshot = core.latest_snapshot().last;
    if snapshot.index > from {
        match history.committed.get((snapshot.index.0 - 1) as usize) {
            Some((known, _)) if known.term == snapshot.term => {}
            known => {
                return Err(format!(
                "node {node} holds a snapshot up to {}/{} but the committed entry there is {:?}",
                snapshot.index, snapshot.term, known
            ))
            }
        }
    }
    for entry in core.log_entries(from.next().max(core.first_log_index()), commit) {
        let position = (entry.index.0 - 1) as usize;
        match history.committed.get(position) {
            Some((known, _)) if *known != entry => {
                return Err(format!(
                    "node {node} committed entry {} as {:?} but it was committed as {:?}",
                    entry.index, entry, known
                ));
            }
            Some(_) => {}
            None if position == history.committed.len() => {
                history.committed.push((entry, core.term()))
            }
            None => return Err(format!("hole in the committed log at {}", entry.index)),
        }
    }
    history.verified_commit.insert(node, commit);
    Ok(())
}

/// Raft §5.4.1, Leader Completeness: if an entry is committed in a term, it is present in the logs of
/// the leaders of all later terms.
pub fn check_leader_completeness_5_4(nodes: &[SimNode], history: &mut History) -> Check {
    for (node, core) in live(nodes) {
        if core.role() != Role::Leader {
            continue;
        }
        let key = (node.id, core.term());
        let mut checked = history.leader_has_committed.get(&key).copied().unwrap_or(0);
        while let Some((entry, commit_term)) = history.committed.get(checked) {
            if *commit_term > core.term() {
                break;
            }
            // Compacted away: the snapshot holds it (its last entry is checked against the
            // committed log in `check_node_committed_prefix_5_4`).
            let in_snapshot = entry.index <= core.latest_snapshot().last.index;
            if !in_snapshot && core.log_term(entry.index) != Some(entry.term) {
                return Err(format!(
                    "leader {} of term {} lacks committed entry {} (term {}, committed by term {commit_term})",
                    node.id,
                    core.term(),
                    entry.index,
                    entry.term
                ));
            }
            checked += 1;
        }
        history.leader_has_committed.insert(key, checked);
    }
    Ok(())
}

/// Raft §5.4.3, State Machine Safety: if a server has applied a log entry at a given index, no other
/// server will ever apply a different log entry for the same index. Also: no request applies twice.
pub fn check_state_machine_safety_5_4_3(
    node: NodeId,
    applied: &Entry,
    newly_applied_request: Option<&str>,
    history: &mut History,
) -> Check {
    if let Some(first) = history.applied.get(&applied.index) {
        if first != applied {
            return Err(format!(
                "node {node} applied {:?} at {} where another node applied {:?}",
                applied, applied.index, first
            ));
        }
    } else {
        history.applied.insert(applied.index, applied.clone());
    }
    if let Some(request_id) = newly_applied_request {
        let here = LogId {
            index: applied.index,
            term: applied.term,
        };
        if let Some(earlier) = history.applied_requests.get(request_id) {
            if *earlier != here {
                return Err(format!(
                    "request {request_id} applied at {} on node {node} but at {} elsewhere: applied twice",
                    applied.index, earlier.index
                ));
            }
        } else {
            history
                .applied_requests
                .insert(request_id.to_string(), here);
        }
    }
    Ok(())
}
