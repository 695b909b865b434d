//! Elections (Raft §5.2, PreVote and the leader lease of thesis §9.6): the election timer, campaigns,
//! votes given and counted, and the role changes they lead to.

use super::*;

impl<S: LogRead> Raft<S> {
    pub(super) fn reset_election_timer(&mut self) {
        let (min, max) = self.config.election_timeout_ms;
        self.election_timeout_ms = self.rng.range_inclusive(min, max);
        self.election_deadline_ms = self.now_ms + self.election_timeout_ms;
        self.events.push(EventKind::ElectionTimerReset {
            deadline_ms: self.election_deadline_ms,
            timeout_ms: self.election_timeout_ms,
        });
    }

    pub(super) fn tick_election(&mut self) {
        if self.now_ms >= self.election_deadline_ms {
            self.events
                .push(EventKind::ElectionTimeout { term: self.term });
            if self.config.pre_vote {
                self.campaign_pre_vote();
            } else {
                self.campaign(false);
            }
        }
    }

    pub(super) fn set_term(&mut self, term: Term) {
        if term != self.term {
            self.term = term;
            self.voted_for = None;
            self.highest_term = self.highest_term.max(term);
            self.events.push(EventKind::TermChanged { term });
        }
    }

    pub(super) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        let was_leader = matches!(self.role, RoleState::Leader(_));
        let changed_role = !matches!(self.role, RoleState::Follower { .. });
        let old_leader = self.leader();
        if let RoleState::Leader(state) = &mut self.role {
            // Lost leadership: reads can no longer be confirmed here (thesis §6.4).
            self.failed_reads
                .extend(state.reads.drain(..).map(|r| r.ctx));
        }
        self.set_term(term);
        self.role = RoleState::Follower { leader };
        if leader.is_some() {
            self.leader_heard_ms = Some(self.now_ms);
        } else {
            self.leader_heard_ms = None;
        }
        if changed_role || was_leader || old_leader != leader {
            self.events.push(EventKind::RoleChanged {
                role: Role::Follower,
                term: self.term,
                leader_id: leader,
            });
        }
        self.reset_election_timer();
    }

    pub(super) fn campaign_pre_vote(&mut self) {
        if self.cannot_campaign() {
            return;
        }
        self.role = RoleState::PreCandidate {
            votes: BTreeMap::new(),
        };
        self.leader_heard_ms = None;
        self.events.push(EventKind::RoleChanged {
            role: Role::PreCandidate,
            term: self.term,
            leader_id: None,
        });
        self.reset_election_timer();
        self.request_votes(true, false);
    }

    /// Starts an election in the next term (Raft §5.2).
    pub(super) fn campaign(&mut self, leadership_transfer: bool) {
        if self.cannot_campaign() {
            return;
        }
        let term = self.term.next();
        self.set_term(term);
        self.voted_for = Some(self.id);
        self.role = RoleState::Candidate {
            votes: BTreeMap::new(),
        };
        self.leader_heard_ms = None;
        self.events.push(EventKind::RoleChanged {
            role: Role::Candidate,
            term,
            leader_id: None,
        });
        self.reset_election_timer();
        self.request_votes(false, leadership_transfer);
    }

    /// A node at the highest storable term cannot campaign: its next term could not be made durable.
    /// Peers cannot bring it there (they may send at most `MAX_PEER_TERM`); it would take 2^62
    /// elections.
    pub(super) fn out_of_terms(&mut self) -> bool {
        if self.term < MAX_TERM {
            return false;
        }
        self.reset_election_timer();
        true
    }

    pub(super) fn request_votes(&mut self, pre_vote: bool, leadership_transfer: bool) {
        let term = if pre_vote {
            self.term.next()
        } else {
            self.term
        };
        let last = self.log.last();
        // The candidate votes for itself (for a real vote the vote is the durable `voted_for`).
        self.record_vote(self.id, true, pre_vote);
        if !self.role_is_campaigning() {
            return;
        }
        for peer in self.voter_peers() {
            let msg = self.next_msg();
            self.events.push(EventKind::VoteRequested {
                msg,
                to: peer,
                term,
                pre_vote,
                last_log_index: last.index,
                last_log_term: last.term,
            });
            // Raft §5.2 (Figure 2: persistent state is durable before it is acted on): a real
            // campaign's requests go out only once the new term and the self-vote are on disk. Were
            // they lost in a crash after winning, the node would come back in the old term, could win
            // the same term again (its voters already chose it) and append different entries at
            // indexes its first reign had already sent out: one index and term, two commands.
            // A PreVote changes nothing durable and goes out at once.
            let queue = if pre_vote {
                &mut self.messages
            } else {
                &mut self.persisted_messages
            };
            queue.push(Envelope {
                msg,
                from: self.id,
                to: peer,
                term,
                message: Message::RequestVote(RequestVote {
                    pre_vote,
                    last_log_index: last.index,
                    last_log_term: last.term,
                    leadership_transfer,
                }),
            });
        }
    }

    pub(super) fn role_is_campaigning(&self) -> bool {
        matches!(
            self.role,
            RoleState::PreCandidate { .. } | RoleState::Candidate { .. }
        )
    }

    pub(super) fn record_vote(&mut self, from: NodeId, granted: bool, pre_vote: bool) {
        if !self.is_voter(from) {
            return;
        }
        let voters = self.voter_count();
        let result = match (&mut self.role, pre_vote) {
            (RoleState::PreCandidate { votes }, true) | (RoleState::Candidate { votes }, false) => {
                votes.entry(from).or_insert(granted);
                quorum::vote_result(voters, votes)
            }
            _ => return,
        };
        match result {
            VoteResult::Won if pre_vote => self.campaign(false),
            VoteResult::Won => self.become_leader(),
            VoteResult::Lost => self.become_follower(self.term, None),
            VoteResult::Pending => {}
        }
    }

    pub(super) fn become_leader(&mut self) {
        let last = self.log.last_index();
        let now = self.now_ms;
        self.role = RoleState::Leader(Box::new(LeaderState::new(
            &self.peers,
            last,
            now,
            self.config.heartbeat_ms,
        )));
        self.leader_heard_ms = None;
        self.events.push(EventKind::RoleChanged {
            role: Role::Leader,
            term: self.term,
            leader_id: Some(self.id),
        });
        // Retries of commands still uncommitted in the inherited log find them instead of appending again.
        let inherited = self
            .log
            .entries(self.log.commit.next(), last, usize::MAX, usize::MAX);
        if let RoleState::Leader(leader) = &mut self.role {
            leader.remember_pending(inherited);
        }
        if self.commits_by_count() {
            // The planted bug's premise: entries of earlier terms commit by count, so no no-op.
            return;
        }
        // Raft §5.4.2, §8: a no-op of the new term lets earlier entries commit.
        let noop = Entry {
            index: last.next(),
            term: self.term,
            payload: Payload::Noop,
        };
        self.append_local(noop);
    }

    /// The leader this node heard from within the minimum election timeout, if CheckQuorum is on.
    pub(super) fn in_lease(&self) -> Option<NodeId> {
        if !self.config.check_quorum {
            return None;
        }
        match self.role {
            RoleState::Leader(_) => Some(self.id),
            RoleState::Follower {
                leader: Some(leader),
            } => {
                let heard = self.leader_heard_ms?;
                (self.now_ms.saturating_sub(heard) < self.config.election_timeout_ms.0)
                    .then_some(leader)
            }
            _ => None,
        }
    }

    pub(super) fn handle_request_vote(&mut self, from: NodeId, msg_term: Term, rv: RequestVote) {
        // For a PreVote, `msg_term` is the term the candidate would campaign in (> ours when granted).
        let can_vote = self.voted_for == Some(from)
            || (self.voted_for.is_none() && self.leader().is_none())
            || (rv.pre_vote && msg_term > self.term);
        let denial = if !can_vote {
            Some(match (self.voted_for, self.leader()) {
                (Some(voted), _) => format!("already voted for {voted} in term {}", self.term),
                (None, Some(leader)) => format!("leader {leader} is known in term {}", self.term),
                (None, None) => "cannot vote".to_string(),
            })
        } else if !self.log.is_up_to_date(rv.last_log_index, rv.last_log_term)
            && !self.votes_ignoring_log()
        {
            // Raft §5.4.1: vote only for a candidate whose log is at least as up to date as ours.
            let last = self.log.last();
            Some(format!(
                "candidate log older: candidate last ({}, term {}) < ours ({}, term {})",
                rv.last_log_index, rv.last_log_term, last.index, last.term
            ))
        } else {
            None
        };
        match denial {
            Some(reason) => self.respond_vote(from, self.term, rv.pre_vote, false, reason),
            None => {
                if !rv.pre_vote {
                    // Raft §5.2: the vote is durable (hard state of this round) before the reply goes out.
                    self.voted_for = Some(from);
                    self.reset_election_timer();
                }
                self.respond_vote(from, msg_term, rv.pre_vote, true, String::new());
            }
        }
    }

    pub(super) fn respond_vote(
        &mut self,
        to: NodeId,
        term: Term,
        pre_vote: bool,
        granted: bool,
        reason: String,
    ) {
        let vote_term = if pre_vote {
            term.max(self.term)
        } else {
            self.term
        };
        let msg = self.next_msg();
        if granted {
            self.events.push(EventKind::VoteGranted {
                msg,
                to,
                term: vote_term,
                pre_vote,
            });
        } else {
            self.events.push(EventKind::VoteDenied {
                msg,
                to,
                term: vote_term,
                pre_vote,
                reason: reason.clone(),
            });
        }
        self.persisted_messages.push(Envelope {
            msg,
            from: self.id,
            to,
            term,
            message: Message::RequestVoteResponse(RequestVoteResponse {
                pre_vote,
                granted,
                reason: (!granted).then_some(reason),
            }),
        });
    }
}
