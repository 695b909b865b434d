//! Membership changes on the runtime's side: admin requests waiting for their final configuration to
//! commit, and the transport and peer directory following the configuration in force.

use super::*;
use crate::raft::{Configuration, MembershipChange, MembershipError};
use flotilla_shared::api::MembersResponse;

/// An admin request waiting for its change to be in force and committed.
pub(super) struct MemberWaiter {
    goal: MembershipChange,
    reply: oneshot::Sender<Result<MembersResponse, MembershipError>>,
}

/// Whether `config` is what `goal` asked for (an added voter promoted, not merely a learner).
fn goal_reached(config: &Configuration, goal: &MembershipChange) -> bool {
    match goal {
        MembershipChange::Add(member) => {
            config
                .member(member.id)
                .is_some_and(|m| m.role == member.role && m.addr == member.addr)
                && !config.promoting.contains(&member.id)
        }
        MembershipChange::Remove(id) => !config.contains(*id),
    }
}

impl<S: LogRead> Runtime<S> {
    pub(super) fn change_members(
        &mut self,
        change: MembershipChange,
        reply: oneshot::Sender<Result<MembersResponse, MembershipError>>,
    ) {
        match self.raft.propose_membership(change.clone()) {
            Ok(_) => {
                self.member_waiters.push(MemberWaiter {
                    goal: change,
                    reply,
                });
                // A retried request may find its change done already.
                self.answer_member_waiters();
            }
            Err(error) => {
                let _ = reply.send(Err(error));
            }
        }
    }

    /// Answers the admin requests whose change is in force and committed.
    pub(super) fn answer_member_waiters(&mut self) {
        // Requests whose client gave up are forgotten.
        self.member_waiters.retain(|w| !w.reply.is_closed());
        if self.member_waiters.is_empty() || !self.raft.membership_committed() {
            return;
        }
        let config = self.raft.membership().clone();
        let (done, waiting) = std::mem::take(&mut self.member_waiters)
            .into_iter()
            .partition(|w| goal_reached(&config, &w.goal));
        self.member_waiters = waiting;
        for waiter in done {
            let _ = waiter.reply.send(Ok(MembersResponse {
                config_index: config.index,
                members: config.members.clone(),
            }));
        }
    }

    /// The peer directory and the transport follow the configuration in force. Until it commits, a
    /// removed member keeps its sender: the leader still brings it the entry that removes it.
    pub(super) fn follow_membership(&mut self) {
        let config = self.raft.membership();
        let mut peers: BTreeMap<NodeId, String> = config
            .members
            .iter()
            .filter(|m| m.id != self.info.id)
            .map(|m| (m.id, m.addr.clone()))
            .collect();
        // The directory also names members of an older configuration not yet superseded by a
        // committed one: an append from one of them may be what truncates the newest.
        let mut known = self.raft.known_members();
        known.remove(&self.info.id);
        self.info.peers.replace(known);
        if !self.raft.membership_committed() {
            for (id, addr) in self.sending_to.iter() {
                peers.entry(*id).or_insert_with(|| addr.clone());
            }
        }
        self.transport.set_peers(&peers);
        self.sending_to = peers;
    }
}
