//! Membership changes (Raft §6, thesis ch. 4): configurations in the log, learners, promotion and
//! removal.
//!
//! Changes are single-server changes (thesis §4.1), not joint consensus: each adds or removes one
//! voter, so any majority of the old voters and any majority of the new ones overlap, and no
//! intermediate joint configuration is needed. One change at a time is also all the API offers
//! (`409 change_in_progress`), so joint consensus would buy nothing here but a second code path for
//! every quorum. Its known trap (the bug reported in 2015, thesis errata) is closed the usual way: a
//! leader proposes a change only once an entry of its own term has committed (its no-op), so a change
//! proposed by a deposed leader's successor can never commit alongside one it does not know of.
//!
//! A configuration is in force as soon as its entry is in the log (thesis §4.1). A learner receives the
//! log but never votes, campaigns or counts towards a quorum; one added with role `voter` is promoted
//! by the leader once its match is within [`PROMOTION_LAG`] of the leader's log. A node outside its
//! configuration, or a learner, never campaigns (unless its removal is not committed yet, see
//! `cannot_campaign`); a removed node cannot disrupt the cluster (see `knows_sender`). A leader that
//! removed itself leads until the change commits (counting only the new voters), then steps down.

use super::*;
use crate::raft::membership::{Configuration, MembershipChange, MembershipError, Stranger};
use crate::raft::progress::Progress;
use flotilla_shared::api::MemberRole;

/// How many entries behind the leader's last entry a learner may be and still be promoted: close
/// enough that, as a voter, it will not hold back commitment.
pub const PROMOTION_LAG: u64 = 64;

/// The configurations a node holds (oldest first): the newest one known committed, then every newer one
/// in its log. The last is in force; the ones before it are what a truncation falls back to.
pub(super) struct Membership {
    history: Vec<Configuration>,
    /// The configuration last reported committed in a `membership_changed` event.
    reported_committed: Option<LogIndex>,
}

impl Membership {
    pub(super) fn new(base: Configuration) -> Self {
        // The configuration a node starts from is no news until it is restored or changes.
        Self {
            reported_committed: Some(base.index),
            history: vec![base],
        }
    }

    pub(super) fn current(&self) -> &Configuration {
        self.history
            .last()
            .expect("a membership always holds a configuration")
    }
}

/// The configurations held by `entries`, in order.
pub(super) fn configurations_in(entries: &[Entry]) -> Vec<Configuration> {
    entries
        .iter()
        .filter_map(Configuration::from_entry)
        .collect()
}

impl<S: LogRead> Raft<S> {
    /// The configuration in force on this node (the newest in its log, committed or not).
    pub fn membership(&self) -> &Configuration {
        self.membership.current()
    }

    /// The configuration in force at `index`: the newest this node holds at or below it. It holds the
    /// newest committed one and every newer one, so this is `None` only for an index before the
    /// newest committed configuration (a snapshot there waits until the applied index passes it).
    pub fn configuration_at(&self, index: LogIndex) -> Option<&Configuration> {
        self.membership
            .history
            .iter()
            .rev()
            .find(|config| config.index <= index)
    }

    /// The configuration a snapshot at `index` records: the one in force there, once this node holds
    /// it and is in a configuration at all (a node waiting to be added snapshots only once it is).
    pub fn snapshot_configuration(&self, index: LogIndex) -> Option<&Configuration> {
        self.configuration_at(index)
            .filter(|config| !config.members.is_empty())
    }

    /// Whether the configuration in force is committed.
    pub fn membership_committed(&self) -> bool {
        self.membership().index <= self.log.commit
    }

    /// Restores the configuration from `base` (the `--peers` seed, the newest configuration entry at or
    /// below the durable commit index, or a snapshot's members and `config_index`), then takes in the
    /// configuration entries of the log past both `base` and the commit index. `base` must be the newest
    /// configuration at or below the commit index: entries there are not scanned. Announces nothing (a
    /// node starting up has nothing to announce yet); a running node that restores (a snapshot
    /// installed) follows with [`Raft::announce_membership`].
    pub fn restore_membership(&mut self, base: Configuration) {
        let last = self.log.last_index();
        let mut next = base.index.max(self.log.commit).next();
        self.membership = Membership::new(base);
        while next <= last {
            let batch = self.log.entries(
                next,
                last,
                self.config.max_append_entries,
                self.config.max_append_bytes,
            );
            let Some(end) = batch.last().map(|e| e.index) else {
                break;
            };
            self.membership.history.extend(configurations_in(&batch));
            next = end.next();
        }
        self.follow_configuration();
        let config = self.membership();
        self.membership.reported_committed =
            (config.index <= self.log.commit).then_some(config.index);
        self.debug_validate();
    }

    /// Emits `membership_changed` for the configuration in force.
    pub fn announce_membership(&mut self) {
        let config = self.membership().clone();
        let committed = config.index <= self.log.commit;
        self.membership.reported_committed = committed.then_some(config.index);
        self.events.push(EventKind::MembershipChanged {
            members: config.members,
            config_index: config.index,
            committed,
        });
    }

    /// Starts a membership change (leader only): appends the next configuration and returns its index.
    /// Nothing is appended when the change is already in force (a retried request): the current index
    /// comes back.
    pub fn propose_membership(
        &mut self,
        change: MembershipChange,
    ) -> Result<LogIndex, MembershipError> {
        let RoleState::Leader(leader) = &self.role else {
            return Err(MembershipError::NotLeader {
                leader: self.leader(),
            });
        };
        if let Some(transfer) = &leader.transfer {
            return Err(MembershipError::TransferInProgress { to: transfer.to });
        }
        if !leader.committed_in_term {
            // The no-op-in-term fix for single-server changes (see the module docs).
            return Err(MembershipError::LeaderNotReady(self.term));
        }
        let current = self.membership().clone();
        if !self.membership_committed() {
            return Err(MembershipError::ChangeInProgress(format!(
                "the configuration at index {} is not committed yet",
                current.index
            )));
        }
        let next = match change {
            MembershipChange::Add(member) => {
                if let Some(existing) = current.member(member.id) {
                    if existing.addr != member.addr
                        || (existing.role == MemberRole::Voter
                            && member.role == MemberRole::Learner)
                    {
                        return Err(MembershipError::AlreadyMember {
                            id: member.id,
                            addr: existing.addr.clone(),
                        });
                    }
                    let done =
                        existing.role == member.role || current.promoting.contains(&member.id);
                    if done {
                        return Ok(current.index);
                    }
                }
                if current.is_promoting() {
                    return Err(MembershipError::ChangeInProgress(format!(
                        "learner {:?} is still catching up to be promoted",
                        current.promoting
                    )));
                }
                current.adding(member)
            }
            MembershipChange::Remove(id) => {
                if !current.contains(id) {
                    return Err(MembershipError::UnknownMember(id));
                }
                if current.is_promoting() && !current.promoting.contains(&id) {
                    return Err(MembershipError::ChangeInProgress(format!(
                        "learner {:?} is still catching up to be promoted",
                        current.promoting
                    )));
                }
                if current.is_voter(id) && current.voter_count() == 1 {
                    return Err(MembershipError::LastVoter(id));
                }
                current.removing(id)
            }
        };
        let index = self.append_configuration(next);
        self.debug_validate();
        Ok(index)
    }

    /// The leader appends `next` to its log, where it takes effect at once.
    fn append_configuration(&mut self, next: Configuration) -> LogIndex {
        let index = self.log.last_index().next();
        self.append_local(Entry {
            index,
            term: self.term,
            payload: next.payload(),
        });
        self.membership
            .history
            .push(Configuration { index, ..next });
        self.configuration_changed();
        index
    }

    /// Entries from `first` on were just written to the log (replacing any there): configurations
    /// from `first` on are gone, and `appended` (those among the new entries) are in force.
    pub(super) fn on_log_rewritten(&mut self, first: LogIndex, appended: Vec<Configuration>) {
        let history = &mut self.membership.history;
        let before = history.last().map(|c| c.index);
        // The oldest one is at or below the commit index, which is never truncated.
        let keep = history
            .iter()
            .skip(1)
            .take_while(|c| c.index < first)
            .count()
            + 1;
        history.truncate(keep);
        history.extend(appended);
        if history.last().map(|c| c.index) != before {
            self.configuration_changed();
        }
    }

    /// The configuration in force changed: replication targets follow it and it is announced.
    fn configuration_changed(&mut self) {
        self.follow_configuration();
        self.announce_membership();
    }

    /// Replication targets follow the configuration in force.
    fn follow_configuration(&mut self) {
        self.peers = self.membership().peers_of(self.id);
        let (last, now) = (self.log.last_index(), self.now_ms);
        if let RoleState::Leader(leader) = &mut self.role {
            for peer in &self.peers {
                leader
                    .progress
                    .entry(*peer)
                    .or_insert_with(|| Progress::new(last, now));
            }
        }
    }

    /// Once per round: forget configurations superseded by a committed one, announce a commit, and on a
    /// leader drop the progress of removed members, step down if removed, and promote a caught-up learner.
    pub(super) fn membership_ready(&mut self) {
        let commit = self.log.commit;
        let history = &mut self.membership.history;
        let newest_committed = history.iter().rposition(|c| c.index <= commit).unwrap_or(0);
        history.drain(..newest_committed);
        // Called every round: nothing is copied unless there is something to do.
        let Some(config) = self.membership.history.last() else {
            return;
        };
        if config.index > commit {
            return;
        }
        if self.membership.reported_committed != Some(config.index) {
            self.membership.reported_committed = Some(config.index);
            self.events.push(EventKind::MembershipChanged {
                members: config.members.clone(),
                config_index: config.index,
                committed: true,
            });
        }
        let RoleState::Leader(leader) = &mut self.role else {
            return;
        };
        // Removed members got appends until their removal committed, so they usually learn of it.
        if leader.progress.len() + 1 > config.members.len() {
            leader.progress.retain(|id, _| config.contains(*id));
        }
        if !config.is_voter(self.id) {
            // Thesis §4.2.2: a leader not in the new configuration steps down once it is committed,
            // handing over (§3.10) to a voter that holds its whole log, so that the others need not
            // wait out their leases and an election timeout.
            let last = self.log.last_index();
            let successor = leader
                .progress
                .iter()
                .find(|(id, pr)| config.is_voter(**id) && pr.match_index == last)
                .map(|(id, _)| *id);
            if let Some(to) = successor {
                self.transfer_leadership(to).ok();
            }
            self.become_follower(self.term, None);
            return;
        }
        if config.is_promoting() {
            let config = config.clone();
            self.maybe_promote(&config);
        }
    }

    fn maybe_promote(&mut self, config: &Configuration) {
        let last = self.log.last_index();
        let RoleState::Leader(leader) = &self.role else {
            return;
        };
        if !leader.committed_in_term || leader.transfer.is_some() {
            return;
        }
        // Caught up: it holds the configuration that made it a member, and is close to the end.
        let caught_up = config.promoting.iter().copied().find(|id| {
            leader.progress.get(id).is_some_and(|pr| {
                pr.match_index >= config.index
                    && pr.match_index.0.saturating_add(PROMOTION_LAG) >= last.0
            })
        });
        if let Some(id) = caught_up {
            self.append_configuration(config.promoting_done(id));
        }
    }

    pub(super) fn is_voter(&self, id: NodeId) -> bool {
        self.membership().is_voter(id)
    }

    pub(super) fn voter_count(&self) -> usize {
        self.membership().voter_count()
    }

    /// The other voters: whom a campaign asks.
    pub(super) fn voter_peers(&self) -> Vec<NodeId> {
        self.membership()
            .voters()
            .filter(|id| *id != self.id)
            .collect()
    }

    /// Whether this node is the only voter (its own acknowledgement is a quorum).
    pub(super) fn leads_alone(&self) -> bool {
        self.is_voter(self.id) && self.voter_count() == 1
    }

    /// Only voters campaign: a learner, a removed node or one waiting to be added never does. A node
    /// whose removal is in its log but not committed still may (thesis §4.2.2): the change may need it
    /// to commit, and with its longer log it may be the only node the others can elect. Its votes are
    /// counted in the configuration in force, without its own.
    pub(super) fn cannot_campaign(&mut self) -> bool {
        if self.out_of_terms() {
            return true;
        }
        let still_needed =
            !self.membership_committed() && self.membership.history[0].is_voter(self.id);
        if !self.is_voter(self.id) && !still_needed {
            self.reset_election_timer();
            return true;
        }
        false
    }

    /// Every node of the configurations this node holds (the newest committed one and any newer), with
    /// the address the newest gives it: whom the node takes appends from and can forward to.
    pub fn known_members(&self) -> BTreeMap<NodeId, String> {
        let mut known = BTreeMap::new();
        for config in &self.membership.history {
            for member in &config.members {
                known.insert(member.id, member.addr.clone());
            }
        }
        known
    }

    /// Whom this node takes a message from: members of its configuration (and, on a leader, members
    /// whose removal is not committed yet); appends and snapshots from a member of any configuration it
    /// holds (thesis §4.1: the leader may be one its newest, uncommitted configuration left out, and
    /// only its appends can truncate that entry), and from a node it does not know when
    /// [`Stranger::may_send_log`] says so (the HTTP boundary asks the same);
    /// TimeoutNow from a member of any configuration it holds; vote requests from anyone (thesis §4.1: a candidate may be a voter of a configuration this node
    /// has not received yet, and the election may need this node's vote). A removed node cannot disrupt
    /// all the same: members that hear from a leader ignore its campaigns (the lease of thesis §4.2.3),
    /// PreVote keeps it from raising terms, and a log without its removal never wins a vote of those
    /// that committed the removal (§5.4.1).
    pub(super) fn knows_sender(&self, envelope: &Envelope) -> bool {
        let from = envelope.from;
        let history = &self.membership.history;
        match &envelope.message {
            // A leader's log, by appends or by snapshot: a joining node takes it from whoever may lead.
            Message::AppendEntries(_) | Message::InstallSnapshot(_) => {
                history.iter().any(|c| c.contains(from))
                    || Stranger {
                        joining: self.membership().is_empty(),
                        term: self.term,
                        leader: self.leader(),
                    }
                    .may_send_log(envelope)
            }
            Message::RequestVote(_) => true,
            // Only this term's leader may send one (checked apart): a leader that removed itself hands
            // over with one once its removal commits.
            Message::TimeoutNow => history.iter().any(|c| c.contains(from)),
            _ => {
                self.membership().contains(from)
                    || matches!(&self.role, RoleState::Leader(leader) if leader.progress.contains_key(&from))
            }
        }
    }
}
