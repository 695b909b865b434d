//! The membership profile: besides the mixed faults, the leader is asked at random to add a node (as
//! a voter, so a learner promoted once caught up, or as a learner), to promote a learner, or to
//! remove a member, itself included. Two spare nodes start with no configuration (`--join`), and removed
//! nodes keep running (and restarting), so they may be added back with the log they kept.

use super::*;
use crate::raft::{Configuration, MembershipChange};
use flotilla_shared::api::{Member, MemberRole};

/// Nodes beyond the initial voters that start waiting to be added.
pub(super) const SPARES: usize = 2;

/// The address a simulated node is listed at (never dialled).
fn sim_addr(id: NodeId) -> String {
    format!("sim{id}:1")
}

impl Cluster {
    /// What a (re)started node's configuration is restored from, as the node binary does: the newest
    /// configuration entry on its disk at or below `commit`, else its seed (the initial voters, or
    /// nothing for a spare).
    pub(super) fn restored_membership(
        &self,
        id: NodeId,
        disk: &Disk,
        commit: LogIndex,
    ) -> Configuration {
        use crate::raft::LogRead as _;
        let stored = disk
            .entries(LogIndex(1), commit, usize::MAX)
            .iter()
            .rev()
            .find_map(Configuration::from_entry);
        if let Some(stored) = stored {
            return stored;
        }
        if id.0 as usize <= self.opts.nodes {
            let initial = (1..=self.opts.nodes as u64).map(NodeId);
            Configuration::seed(initial.map(|id| (id, sim_addr(id))))
        } else {
            Configuration::default()
        }
    }

    /// One random membership change asked of the current leader; a refusal (one change at a time,
    /// the leader's no-op not committed yet) is part of what is exercised.
    pub(super) fn change_membership(&mut self) {
        let Some(leader) = self.current_leader() else {
            return;
        };
        let pick = NodeId(self.rng.range_inclusive(1, self.ids.len() as u64));
        let kind = self.rng.range_inclusive(0, 3);
        let as_learner = self.rng.chance(1, 3);
        let remove_leader = self.rng.chance(1, 4);
        let Some(core) = self.node(leader).core.as_mut() else {
            return;
        };
        let config = core.membership().clone();
        let change = match (kind, config.member(pick)) {
            (0 | 1, None) => MembershipChange::Add(Member {
                id: pick,
                addr: sim_addr(pick),
                role: if as_learner {
                    MemberRole::Learner
                } else {
                    MemberRole::Voter
                },
            }),
            // Promote a learner.
            (0 | 1, Some(member)) if member.role == MemberRole::Learner => {
                MembershipChange::Add(Member {
                    role: MemberRole::Voter,
                    ..member.clone()
                })
            }
            (2, _) if config.contains(leader) && remove_leader => MembershipChange::Remove(leader),
            (2 | 3, Some(_)) => MembershipChange::Remove(pick),
            _ => return,
        };
        let result = core.propose_membership(change.clone());
        if result.is_ok() {
            self.stats.membership_changes += 1;
        }
        self.trace(leader, format!("membership {change:?}: {result:?}"));
    }

    /// Whether `id` must follow the agreed leader once calm: every member of the leader's
    /// configuration (nodes outside it have no leader to follow).
    pub(super) fn must_follow(&self, id: NodeId, leader: Option<NodeId>) -> bool {
        if self.opts.profile != FaultProfile::Membership {
            return true;
        }
        let config = leader.and_then(|l| self.nodes[(l.0 - 1) as usize].core.as_ref());
        config.is_some_and(|core| core.membership().contains(id))
    }
}
