//! Cluster configurations (Raft §6): who the members are, which of them vote, and where they answer.
//!
//! A configuration lives in the log as a [`Payload::Configuration`] entry and takes effect on a node as
//! soon as that entry is in its log, committed or not (thesis §4.1); an entry truncated away takes its
//! configuration with it. Before any such entry the configuration is a seed: the `--peers` list of a
//! fresh data dir (all voters, index 0), or nothing at all for a node started to join.

use super::{Entry, Envelope, LogIndex, Message, NodeId, Payload, Term};
use flotilla_shared::api::{Member, MemberRole};

/// One configuration and where it came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Configuration {
    /// One per node, sorted by id.
    pub members: Vec<Member>,
    /// Learners to promote once they have caught up (an add with role `voter` not yet finished).
    pub promoting: Vec<NodeId>,
    /// The log index of the entry holding it; 0 for a seed.
    pub index: LogIndex,
}

impl Configuration {
    pub fn new(mut members: Vec<Member>, mut promoting: Vec<NodeId>, index: LogIndex) -> Self {
        members.sort_by_key(|m| m.id);
        members.dedup_by_key(|m| m.id);
        promoting.sort();
        promoting.dedup();
        Self {
            members,
            promoting,
            index,
        }
    }

    /// The configuration a node starts from before its log holds one: every seed member votes.
    pub fn seed(members: impl IntoIterator<Item = (NodeId, String)>) -> Self {
        let members = members
            .into_iter()
            .map(|(id, addr)| Member {
                id,
                addr,
                role: MemberRole::Voter,
            })
            .collect();
        Self::new(members, Vec::new(), LogIndex::ZERO)
    }

    /// The configuration an entry holds, if it holds one.
    pub fn from_entry(entry: &Entry) -> Option<Self> {
        match &entry.payload {
            Payload::Configuration { members, promoting } => {
                Some(Self::new(members.clone(), promoting.clone(), entry.index))
            }
            _ => None,
        }
    }

    pub fn payload(&self) -> Payload {
        Payload::Configuration {
            members: self.members.clone(),
            promoting: self.promoting.clone(),
        }
    }

    /// No configuration at all: a node waiting to be added.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn member(&self, id: NodeId) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.member(id).is_some()
    }

    pub fn is_voter(&self, id: NodeId) -> bool {
        self.member(id).is_some_and(|m| m.role == MemberRole::Voter)
    }

    pub fn voters(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members
            .iter()
            .filter(|m| m.role == MemberRole::Voter)
            .map(|m| m.id)
    }

    pub fn voter_count(&self) -> usize {
        self.voters().count()
    }

    /// Every member but `me`: whom `me` replicates to when it leads.
    pub fn peers_of(&self, me: NodeId) -> Vec<NodeId> {
        self.members
            .iter()
            .map(|m| m.id)
            .filter(|id| *id != me)
            .collect()
    }

    /// Whether an add with role `voter` is still waiting for its learner to catch up.
    pub fn is_promoting(&self) -> bool {
        !self.promoting.is_empty()
    }

    /// This configuration with `member` added (as a learner to promote when it asks for `voter`).
    pub fn adding(&self, member: Member) -> Self {
        let mut members = self.members.clone();
        let mut promoting = self.promoting.clone();
        members.retain(|m| m.id != member.id);
        if member.role == MemberRole::Voter {
            promoting.push(member.id);
        }
        members.push(Member {
            role: MemberRole::Learner,
            ..member
        });
        Self::new(members, promoting, LogIndex::ZERO)
    }

    /// This configuration with `id` a voter and no longer waiting for promotion.
    pub fn promoting_done(&self, id: NodeId) -> Self {
        let mut next = self.clone();
        for member in next.members.iter_mut().filter(|m| m.id == id) {
            member.role = MemberRole::Voter;
        }
        next.promoting.retain(|p| *p != id);
        next.index = LogIndex::ZERO;
        next
    }

    /// This configuration without `id`.
    pub fn removing(&self, id: NodeId) -> Self {
        let mut next = self.clone();
        next.members.retain(|m| m.id != id);
        next.promoting.retain(|p| *p != id);
        next.index = LogIndex::ZERO;
        next
    }
}

/// What a node knows when a message comes from a node none of its configurations lists.
pub struct Stranger {
    /// The node holds no configuration at all: it waits to be added.
    pub joining: bool,
    pub term: Term,
    pub leader: Option<NodeId>,
}

impl Stranger {
    /// Whether this node takes `envelope` (from a node it does not list) as a leader's log, by appends
    /// or by snapshot: a joining node takes it from whoever may lead; others only from a node that may
    /// lead, in a higher term or in this term while no other leader is known (a node added and elected
    /// while this one missed the entries adding it could reach it no other way; a stranger claiming a
    /// term that has a leader is refused).
    pub fn may_send_log(&self, envelope: &Envelope) -> bool {
        matches!(
            envelope.message,
            Message::AppendEntries(_) | Message::InstallSnapshot(_)
        ) && (self.joining
            || envelope.term > self.term
            || (envelope.term == self.term && self.leader.is_none_or(|l| l == envelope.from)))
    }
}

/// A membership change a client asks the leader for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipChange {
    /// Add a member; with role `voter` it joins as a learner and is promoted once caught up.
    Add(Member),
    Remove(NodeId),
}

/// A membership change that was not started; nothing was appended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("leadership is being transferred to node {to}")]
    TransferInProgress { to: NodeId },
    /// The leader has not committed an entry of its term yet (the no-op fix of single-server changes);
    /// it will have within a round trip.
    #[error("the leader has not committed an entry of its term {0} yet")]
    LeaderNotReady(Term),
    /// One change at a time (single-server changes, thesis §4.1): the last is not committed, or a
    /// learner is still catching up to be promoted.
    #[error("a membership change is under way: {0}")]
    ChangeInProgress(String),
    #[error("node {0} is not a member")]
    UnknownMember(NodeId),
    #[error("node {id} is already a member at {addr}")]
    AlreadyMember { id: NodeId, addr: String },
    #[error("node {0} is the last voter: a cluster needs one")]
    LastVoter(NodeId),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, role: MemberRole) -> Member {
        Member {
            id: NodeId(id),
            addr: format!("n{id}:1"),
            role,
        }
    }

    #[test]
    fn adding_a_voter_starts_as_a_learner_to_promote() {
        let seed = Configuration::seed([(NodeId(2), "b:1".into()), (NodeId(1), "a:1".into())]);
        assert_eq!(seed.voter_count(), 2);
        assert_eq!(seed.members[0].id, NodeId(1), "sorted by id");
        let added = seed.adding(member(3, MemberRole::Voter));
        assert!(added.contains(NodeId(3)) && !added.is_voter(NodeId(3)));
        assert_eq!(added.promoting, vec![NodeId(3)]);
        assert_eq!(added.voter_count(), 2);
        let promoted = added.promoting_done(NodeId(3));
        assert!(promoted.is_voter(NodeId(3)) && !promoted.is_promoting());
        let removed = promoted.removing(NodeId(1));
        assert_eq!(removed.peers_of(NodeId(2)), vec![NodeId(3)]);
        let learner = seed.adding(member(4, MemberRole::Learner));
        assert!(!learner.is_promoting() && !learner.is_voter(NodeId(4)));
    }

    #[test]
    fn a_configuration_round_trips_through_its_entry() {
        let config =
            Configuration::seed([(NodeId(1), "a:1".into())]).adding(member(2, MemberRole::Voter));
        let entry = Entry {
            index: LogIndex(7),
            term: Term(2),
            payload: config.payload(),
        };
        let back = Configuration::from_entry(&entry).unwrap();
        assert_eq!(back.members, config.members);
        assert_eq!(back.promoting, config.promoting);
        assert_eq!(back.index, LogIndex(7));
    }
}
