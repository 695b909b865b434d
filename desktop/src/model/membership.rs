//! The cluster's configuration (Raft §6) as the nodes report it: who is a voter, who a learner
//! catching up, and which log entries changed it.

use super::state::{ClusterState, NodeView, ProcessState};
use super::timeline::Record;
use flotilla_shared::api::{Member, MemberRole, Status};
use flotilla_shared::event::EventKind;
use flotilla_shared::NodeId;

/// The ring has room for this many nodes; "Add node" stops there.
pub const MAX_NODES: usize = 7;
/// Configuration entries remembered per node (the log rows show the recent ones).
const MAX_CONFIG_ENTRIES: usize = 32;

/// The configuration in force on one node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigView {
    /// Empty: not known (an older node) or not added yet (`--join`).
    pub members: Vec<Member>,
    pub config_index: u64,
    pub committed: bool,
    /// Log indexes of configuration entries this node took in, ascending.
    pub entries: Vec<u64>,
}

impl ConfigView {
    fn take(&mut self, members: &[Member], config_index: u64, committed: bool) {
        if config_index < self.config_index {
            return;
        }
        // A status polled before the commit must not take back a commit already reported.
        let already_committed = self.committed && config_index == self.config_index;
        self.members = members.to_vec();
        self.config_index = config_index;
        self.committed = committed || already_committed;
        if config_index > 0 && !self.entries.contains(&config_index) {
            self.entries.push(config_index);
            self.entries.sort_unstable();
            if self.entries.len() > MAX_CONFIG_ENTRIES {
                self.entries.remove(0);
            }
        }
    }
}

pub(crate) fn apply_node_event(view: &mut NodeView, kind: &EventKind) {
    match kind {
        EventKind::MembershipChanged {
            members,
            config_index,
            committed,
        } => view.config.take(members, config_index.0, *committed),
        // A snapshot or truncation can take configuration entries with it.
        EventKind::LogTruncated { index } => view.config.entries.retain(|entry| *entry <= index.0),
        _ => {}
    }
}

/// Whether `record` can tell that a node left: it stopped, or a configuration arrived (in either
/// order: the removal's commit and the node's stop race).
pub(crate) fn may_change_members(record: &Record) -> bool {
    match record {
        Record::Process { .. } | Record::Status { .. } => true,
        Record::Event(event) => matches!(event.kind, EventKind::MembershipChanged { .. }),
        _ => false,
    }
}

pub(crate) fn apply_status(view: &mut NodeView, status: &Status) {
    if !status.members.is_empty() {
        let committed = status.commit_index >= status.config_index;
        view.config
            .take(&status.members, status.config_index.0, committed);
    }
}

/// How far a learner has come: its match index against the leader's last index.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CatchUp {
    pub match_index: u64,
    pub leader_last: u64,
}

impl CatchUp {
    pub fn fraction(self) -> f32 {
        if self.leader_last == 0 {
            return 1.0;
        }
        (self.match_index as f32 / self.leader_last as f32).clamp(0.0, 1.0)
    }
}

impl ClusterState {
    /// The newest configuration any node reports (the leader's runs ahead of the others').
    pub fn configuration(&self) -> Option<&ConfigView> {
        self.nodes
            .values()
            .map(|node| &node.config)
            .filter(|config| !config.members.is_empty())
            .max_by_key(|config| (config.config_index, config.committed))
    }

    /// The node's place in the configuration: `None` when the configuration is known and does not
    /// name it (joining, or removed); every node counts as a voter while no configuration is known.
    pub fn member_role(&self, node: NodeId) -> Option<MemberRole> {
        match self.configuration() {
            None => Some(MemberRole::Voter),
            Some(config) => config
                .members
                .iter()
                .find(|member| member.id == node)
                .map(|member| member.role),
        }
    }

    /// A learner's (or joining node's) catch-up, from the leader's match index for it.
    pub fn catch_up(&self, node: NodeId) -> Option<CatchUp> {
        let leader = self.leader()?;
        let peer = leader.peers.iter().find(|peer| peer.id == node)?;
        Some(CatchUp {
            match_index: peer.match_index.0,
            leader_last: leader.log.last_index(),
        })
    }

    /// Drops nodes that are down and no longer in the configuration: they left the cluster.
    pub(crate) fn forget_departed(&mut self) {
        let Some(config) = self.configuration() else {
            return;
        };
        let members: Vec<NodeId> = config.members.iter().map(|member| member.id).collect();
        self.nodes
            .retain(|id, node| members.contains(id) || node.process != ProcessState::Dead);
    }
}
