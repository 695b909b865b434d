//! The Raft state machine: roles, elections, replication and commitment; reads (`read_index`) and
//! leadership transfer (`transfer`) live in their own files.

use super::log::RaftLog;
use super::progress::{Progress, ProgressState};
use super::quorum::{self, VoteResult};
use super::rng::SplitMix64;
use super::*;
use crate::validation::{self, Reason, Rejected, MAX_TERM};
use flotilla_shared::rpc::{
    AppendEntries, AppendEntriesResponse, RequestVote, RequestVoteResponse,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

mod read_index;
mod transfer;

use read_index::PendingRead;
use transfer::Transfer;

/// Role-specific state (Raft §5.1).
enum RoleState {
    Follower {
        leader: Option<NodeId>,
    },
    /// PreVote (thesis §9.6): votes gathered for a campaign in the next term; the term is unchanged.
    PreCandidate {
        votes: BTreeMap<NodeId, bool>,
    },
    Candidate {
        votes: BTreeMap<NodeId, bool>,
    },
    Leader(Box<LeaderState>),
}

struct LeaderState {
    progress: BTreeMap<NodeId, Progress>,
    heartbeat_due_ms: u64,
    transfer: Option<Transfer>,
    /// Uncommitted entries by `request_id`, so that a retry does not append the same command twice.
    pending_requests: BTreeMap<String, LogId>,
    reads: VecDeque<PendingRead>,
    /// The last ReadIndex heartbeat round started; rounds are numbered from 1.
    read_round: u64,
    /// A heartbeat round for reads should go out with the next `ready()`.
    read_round_due: bool,
    /// Whether an entry of this term has committed (required before serving reads, thesis §6.4).
    committed_in_term: bool,
}

/// A bug that can be switched on in tests and the simulator only, to show that the checks catch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    /// Commit an entry of an earlier term by counting replicas (what Raft §5.4.2, Figure 8, forbids),
    /// and so skip the new leader's no-op.
    CommitPreviousTermByCount,
    /// Grant votes without comparing logs (what Raft §5.4.1 forbids).
    VoteIgnoringLog,
    /// Step every message without the checks of [`crate::validation`]: trust whatever a peer sends.
    TrustEnvelopes,
}

pub struct Raft<S: LogRead> {
    config: Config,
    id: NodeId,
    peers: Vec<NodeId>,
    term: Term,
    voted_for: Option<NodeId>,
    role: RoleState,
    log: RaftLog<S>,
    rng: SplitMix64,
    now_ms: u64,
    election_timeout_ms: u64,
    election_deadline_ms: u64,
    /// When this node last heard from a live leader of its term (the lease of thesis §6.2 / §9.6).
    leader_heard_ms: Option<u64>,
    emitted_hard_state: HardState,
    messages: Vec<Envelope>,
    persisted_messages: Vec<Envelope>,
    reads: Vec<ReadState>,
    failed_reads: Vec<u64>,
    events: Vec<EventKind>,
    /// Highest term ever seen (for `validate`).
    highest_term: Term,
    planted_bug: Option<PlantedBug>,
}

impl<S: LogRead> Raft<S> {
    /// Starts a core from what the node found on disk. `now_ms` starts the election timer.
    pub fn new(
        config: Config,
        storage: S,
        restored: Restored,
        now_ms: u64,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let id = config.id;
        let mut voters = config.voters.clone();
        voters.sort();
        voters.dedup();
        let peers = voters.iter().copied().filter(|p| *p != id).collect();
        let last = restored.last;
        // The durable commit can only cover durable entries; the applied index never passes commit.
        let commit = restored.hard_state.commit.min(last.index);
        let applied = restored.applied.min(last.index);
        let commit = commit.max(applied);
        let hard_state = HardState {
            commit,
            ..restored.hard_state
        };
        let mut raft = Self {
            rng: SplitMix64::new(config.seed ^ id.0),
            id,
            peers,
            term: hard_state.term,
            voted_for: hard_state.voted_for,
            role: RoleState::Follower { leader: None },
            log: RaftLog::new(storage, last, commit, applied, config.max_cached_entries),
            now_ms,
            election_timeout_ms: config.election_timeout_ms.0,
            election_deadline_ms: now_ms,
            leader_heard_ms: None,
            emitted_hard_state: hard_state,
            messages: Vec::new(),
            persisted_messages: Vec::new(),
            reads: Vec::new(),
            failed_reads: Vec::new(),
            events: Vec::new(),
            highest_term: hard_state.term,
            planted_bug: None,
            config,
        };
        raft.reset_election_timer();
        Ok(raft)
    }

    /// Switches on a planted bug. Only for tests and the simulator: it breaks Raft on purpose.
    #[doc(hidden)]
    pub fn plant_bug(&mut self, bug: PlantedBug) {
        self.planted_bug = Some(bug);
    }

    // ----- inputs -----

    /// Advances time; fires election timeouts, heartbeats and CheckQuorum.
    pub fn tick(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        if matches!(self.role, RoleState::Leader(_)) {
            self.tick_leader();
        } else {
            self.tick_election();
        }
        self.debug_validate();
    }

    /// Handles one message from a peer, or refuses it (see [`Raft::try_step`]; the refusal shows only as
    /// a `message_rejected` event).
    pub fn step(&mut self, envelope: Envelope) {
        self.try_step(envelope).ok();
    }

    /// Handles one message from a peer. Every `RequestVote` and `AppendEntries` accepted yields exactly
    /// one response to its sender, emitted in `persisted_messages` in the order the requests were
    /// stepped.
    ///
    /// Refused, before any of it is acted on (no term adopted, no timer reset, no response): a message a
    /// correct peer cannot have sent ([`validation::check_envelope`], run here as well as at the HTTP
    /// boundary), a TimeoutNow from a node that does not lead this node's term, and a reply to something
    /// this node never sent. Each refusal is also a `message_rejected` event.
    pub fn try_step(&mut self, envelope: Envelope) -> Result<(), Rejected> {
        let (from, name) = (envelope.from, envelope.message.name());
        let result = self.check_and_step(envelope);
        if let Err(rejected) = &result {
            self.events.push(EventKind::MessageRejected {
                from,
                message: name.to_string(),
                reason: rejected.reason.code().to_string(),
                detail: rejected.detail.clone(),
            });
        }
        self.debug_validate();
        result
    }

    fn check_and_step(&mut self, envelope: Envelope) -> Result<(), Rejected> {
        if self.planted_bug != Some(PlantedBug::TrustEnvelopes) {
            let peers = &self.peers;
            validation::check_envelope(&envelope, self.id, |id| peers.contains(&id))?;
        }
        self.step_inner(envelope)
    }

    /// Appends a client command (leader only).
    pub fn propose(&mut self, payload: Payload) -> Result<Proposal, ProposeError> {
        let term = self.term;
        let last = self.log.last_index();
        let RoleState::Leader(leader) = &mut self.role else {
            return Err(ProposeError::NotLeader {
                leader: self.leader(),
            });
        };
        if let Some(transfer) = &leader.transfer {
            return Err(ProposeError::TransferInProgress { to: transfer.to });
        }
        let request_id = match &payload {
            Payload::Message {
                request_id: Some(id),
                ..
            } => Some(id.clone()),
            _ => None,
        };
        if let Some(id) = &request_id {
            if let Some(existing) = leader.pending_requests.get(id) {
                return Ok(Proposal {
                    index: existing.index,
                    term: existing.term,
                    already_pending: true,
                });
            }
        }
        let entry = Entry {
            index: last.next(),
            term,
            payload,
        };
        if let Some(id) = request_id {
            leader.pending_requests.insert(
                id,
                LogId {
                    index: entry.index,
                    term,
                },
            );
        }
        let index = entry.index;
        self.append_local(entry);
        self.debug_validate();
        Ok(Proposal {
            index,
            term,
            already_pending: false,
        })
    }

    /// Entries up to `last` (index and term) are durable.
    pub fn persisted(&mut self, last: LogId) {
        if self.log.persisted(last) {
            self.events.push(EventKind::EntryPersisted {
                index: self.log.durable,
            });
            if matches!(self.role, RoleState::Leader(_)) {
                // The leader's own entries count once durable on its disk (thesis §10.2.1).
                self.maybe_commit();
            }
        }
        self.debug_validate();
    }

    /// Live tempo change; takes effect from the next timer reset.
    pub fn set_timing(
        &mut self,
        heartbeat_ms: u64,
        election_timeout_ms: (u64, u64),
    ) -> Result<(), ConfigError> {
        let mut config = self.config.clone();
        config.heartbeat_ms = heartbeat_ms;
        config.election_timeout_ms = election_timeout_ms;
        config.validate()?;
        self.config = config;
        Ok(())
    }

    /// The transport could not reach `peer`: a leader falls back to probing it.
    pub fn report_unreachable(&mut self, peer: NodeId) {
        if let RoleState::Leader(leader) = &mut self.role {
            if let Some(pr) = leader.progress.get_mut(&peer) {
                if pr.state == ProgressState::Replicate {
                    pr.become_probe();
                }
            }
        }
    }

    pub fn has_ready(&self) -> bool {
        self.log.has_unstable()
            || self.hard_state() != self.emitted_hard_state
            || !self.messages.is_empty()
            || !self.persisted_messages.is_empty()
            || !self.events.is_empty()
            || !self.reads.is_empty()
            || !self.failed_reads.is_empty()
            || self.log.has_next_committed()
            || self.leader_has_appends_to_send()
            || self.has_releasable_reads()
    }

    pub fn ready(&mut self) -> Ready {
        if matches!(self.role, RoleState::Leader(_)) {
            self.bcast_append();
            self.maybe_bcast_read_round();
        }
        let mut ready = Ready::default();
        let hard_state = self.hard_state();
        if hard_state != self.emitted_hard_state {
            ready.hard_state = Some(hard_state);
            self.emitted_hard_state = hard_state;
        }
        ready.entries = self.log.take_unstable();
        let committed = self
            .log
            .next_committed(self.config.max_append_bytes.max(1) * 4);
        if let Some(last) = committed.last() {
            self.log.applied = last.index;
            self.events.push(EventKind::Applied { index: last.index });
        }
        ready.committed = committed;
        self.release_reads();
        ready.messages = std::mem::take(&mut self.messages);
        ready.persisted_messages = std::mem::take(&mut self.persisted_messages);
        ready.reads = std::mem::take(&mut self.reads);
        ready.failed_reads = std::mem::take(&mut self.failed_reads);
        ready.events = std::mem::take(&mut self.events);
        self.debug_validate();
        ready
    }

    pub fn status(&self) -> CoreStatus {
        let progress = match &self.role {
            RoleState::Leader(leader) => leader
                .progress
                .iter()
                .map(|(id, pr)| (*id, (pr.match_index, pr.next_index)))
                .collect(),
            _ => BTreeMap::new(),
        };
        CoreStatus {
            id: self.id,
            role: self.role(),
            term: self.term,
            voted_for: self.voted_for,
            leader: self.leader(),
            commit: self.log.commit,
            applied: self.log.applied,
            last: self.log.last(),
            persisted: self.log.durable,
            progress,
            heartbeat_ms: self.config.heartbeat_ms,
            election_timeout_ms: self.config.election_timeout_ms,
            election_deadline_ms: self.election_deadline_ms,
        }
    }

    pub fn role(&self) -> Role {
        match self.role {
            RoleState::Follower { .. } => Role::Follower,
            RoleState::PreCandidate { .. } => Role::PreCandidate,
            RoleState::Candidate { .. } => Role::Candidate,
            RoleState::Leader(_) => Role::Leader,
        }
    }

    pub fn leader(&self) -> Option<NodeId> {
        match self.role {
            RoleState::Follower { leader } => leader,
            RoleState::Leader(_) => Some(self.id),
            _ => None,
        }
    }

    pub fn term(&self) -> Term {
        self.term
    }

    pub fn commit(&self) -> LogIndex {
        self.log.commit
    }

    pub fn applied(&self) -> LogIndex {
        self.log.applied
    }

    /// Durable on this node's disk up to here.
    pub fn durable(&self) -> LogIndex {
        self.log.durable
    }

    pub fn last_log(&self) -> LogId {
        self.log.last()
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Entries `lo..=hi` of this node's log as the core sees it (durable or not).
    pub fn log_entries(&self, lo: LogIndex, hi: LogIndex) -> Vec<Entry> {
        self.log.entries(lo, hi, usize::MAX, usize::MAX)
    }

    /// The term of this node's entry at `index` (durable or not); `None` past the end.
    pub fn log_term(&self, index: LogIndex) -> Option<Term> {
        self.log.term(index)
    }

    /// Checks the core's invariants; `Err` names the first one broken.
    pub fn validate(&self) -> Result<(), String> {
        let last = self.log.last_index();
        let (applied, commit, durable) = (self.log.applied, self.log.commit, self.log.durable);
        if applied > commit {
            return Err(format!("applied {applied} > commit {commit}"));
        }
        if commit > last {
            return Err(format!("commit {commit} > last index {last}"));
        }
        if applied > durable {
            return Err(format!("applied {applied} > durable {durable}"));
        }
        if durable > last {
            return Err(format!("durable {durable} > last index {last}"));
        }
        if self.term > MAX_TERM {
            return Err(format!(
                "term {} is above the highest storable term {MAX_TERM}",
                self.term
            ));
        }
        if self.term < self.highest_term {
            return Err(format!(
                "term went back from {} to {}",
                self.highest_term, self.term
            ));
        }
        if self.log.last().term > self.term {
            return Err(format!(
                "last entry term {} > current term {}",
                self.log.last().term,
                self.term
            ));
        }
        match &self.role {
            RoleState::Leader(leader) => {
                if self.voted_for != Some(self.id) {
                    return Err(format!(
                        "leader of term {} voted for {:?}",
                        self.term, self.voted_for
                    ));
                }
                for (peer, pr) in &leader.progress {
                    if pr.match_index > last
                        || pr.next_index <= pr.match_index
                        || pr.next_index > last.next()
                    {
                        return Err(format!(
                            "progress of {peer}: match {} next {} last {last}",
                            pr.match_index, pr.next_index
                        ));
                    }
                }
            }
            RoleState::Candidate { .. } if self.voted_for != Some(self.id) => {
                return Err(format!(
                    "candidate of term {} voted for {:?}",
                    self.term, self.voted_for
                ));
            }
            _ => {}
        }
        Ok(())
    }

    fn debug_validate(&self) {
        #[cfg(debug_assertions)]
        if let Err(broken) = self.validate() {
            panic!("raft invariant broken on node {}: {broken}", self.id);
        }
    }

    fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            voted_for: self.voted_for,
            commit: self.log.commit,
        }
    }

    fn quorum(&self) -> usize {
        quorum::majority(self.peers.len() + 1)
    }

    // ----- timers -----

    fn reset_election_timer(&mut self) {
        let (min, max) = self.config.election_timeout_ms;
        self.election_timeout_ms = self.rng.range_inclusive(min, max);
        self.election_deadline_ms = self.now_ms + self.election_timeout_ms;
        self.events.push(EventKind::ElectionTimerReset {
            deadline_ms: self.election_deadline_ms,
            timeout_ms: self.election_timeout_ms,
        });
    }

    fn tick_election(&mut self) {
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

    fn tick_leader(&mut self) {
        let now = self.now_ms;
        let quorum = self.quorum();
        let lease_ms = self.config.election_timeout_ms.0;
        let check_quorum = self.config.check_quorum;
        let RoleState::Leader(leader) = &mut self.role else {
            return;
        };
        // CheckQuorum (thesis §6.2): step down when a majority has not been heard from lately.
        if check_quorum {
            let active = 1 + leader
                .progress
                .values()
                .filter(|pr| now.saturating_sub(pr.last_heard_ms) < lease_ms)
                .count();
            if active < quorum {
                self.events
                    .push(EventKind::CheckQuorumFailed { term: self.term });
                self.become_follower(self.term, None);
                return;
            }
        }
        if leader
            .transfer
            .as_ref()
            .is_some_and(|t| now >= t.deadline_ms)
        {
            // The target did not take over within an election timeout: accept proposals again.
            leader.transfer = None;
        }
        if now >= leader.heartbeat_due_ms {
            leader.heartbeat_due_ms = now + self.config.heartbeat_ms;
            // Reads still unconfirmed ride on the periodic heartbeat again: their round's messages
            // may have been lost.
            let unconfirmed = leader
                .reads
                .iter()
                .any(|r| !r.confirmed && r.round != 0 && r.round <= leader.read_round);
            let read_ctx = if unconfirmed { leader.read_round } else { 0 };
            self.bcast_heartbeat(read_ctx, true);
        }
    }

    // ----- role changes -----

    fn set_term(&mut self, term: Term) {
        if term != self.term {
            self.term = term;
            self.voted_for = None;
            self.highest_term = self.highest_term.max(term);
            self.events.push(EventKind::TermChanged { term });
        }
    }

    fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
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

    fn campaign_pre_vote(&mut self) {
        if self.out_of_terms() {
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
    fn campaign(&mut self, leadership_transfer: bool) {
        if self.out_of_terms() {
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
    fn out_of_terms(&mut self) -> bool {
        if self.term < MAX_TERM {
            return false;
        }
        self.reset_election_timer();
        true
    }

    fn request_votes(&mut self, pre_vote: bool, leadership_transfer: bool) {
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
        for peer in self.peers.clone() {
            self.events.push(EventKind::VoteRequested {
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

    fn role_is_campaigning(&self) -> bool {
        matches!(
            self.role,
            RoleState::PreCandidate { .. } | RoleState::Candidate { .. }
        )
    }

    fn record_vote(&mut self, from: NodeId, granted: bool, pre_vote: bool) {
        let voters = self.peers.len() + 1;
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

    fn become_leader(&mut self) {
        let last = self.log.last_index();
        let now = self.now_ms;
        let progress = self
            .peers
            .iter()
            .map(|p| (*p, Progress::new(last, now)))
            .collect();
        self.role = RoleState::Leader(Box::new(LeaderState {
            progress,
            heartbeat_due_ms: now + self.config.heartbeat_ms,
            transfer: None,
            pending_requests: BTreeMap::new(),
            reads: VecDeque::new(),
            read_round: 0,
            read_round_due: false,
            committed_in_term: false,
        }));
        self.leader_heard_ms = None;
        self.events.push(EventKind::RoleChanged {
            role: Role::Leader,
            term: self.term,
            leader_id: Some(self.id),
        });
        // Retries of commands still uncommitted in the inherited log find them instead of appending again.
        let commit = self.log.commit;
        let pending: Vec<(String, LogId)> = self
            .log
            .entries(commit.next(), last, usize::MAX, usize::MAX)
            .into_iter()
            .filter_map(|e| match e.payload {
                Payload::Message {
                    request_id: Some(id),
                    ..
                } => Some((
                    id,
                    LogId {
                        index: e.index,
                        term: e.term,
                    },
                )),
                _ => None,
            })
            .collect();
        if let RoleState::Leader(leader) = &mut self.role {
            leader.pending_requests.extend(pending);
        }
        if self.planted_bug == Some(PlantedBug::CommitPreviousTermByCount) {
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

    fn append_local(&mut self, entry: Entry) {
        let (index, term) = (entry.index, entry.term);
        self.log.append(entry);
        // One event per run of proposals between two rounds, not one per entry: a batch of thousands
        // of commands reads as one append, as it does on the followers.
        match self.events.last_mut() {
            Some(EventKind::EntryAppended {
                last, term: run, ..
            }) if *run == term && last.next() == index => *last = index,
            _ => self.events.push(EventKind::EntryAppended {
                first: index,
                last: index,
                term,
            }),
        }
        if self.peers.is_empty() {
            // Single node: the entry commits once durable; nothing to replicate.
            self.maybe_commit();
        }
    }

    // ----- messages in -----

    fn step_inner(&mut self, env: Envelope) -> Result<(), Rejected> {
        let from = env.from;
        if matches!(env.message, Message::TimeoutNow) {
            self.check_timeout_now(from, env.term)?;
        }
        if env.term > self.term {
            match &env.message {
                Message::RequestVote(rv) => {
                    if let Some(leader) = self.in_lease() {
                        if !rv.leadership_transfer {
                            // Thesis §6.2/§9.6: a node that heard from a live leader recently ignores
                            // campaigns, so a rejoining node cannot disrupt a healthy cluster.
                            let reason =
                                format!("leader lease: heard from leader {leader} recently");
                            self.respond_vote(from, self.term, rv.pre_vote, false, reason);
                            return Ok(());
                        }
                    }
                    if !rv.pre_vote {
                        self.become_follower(env.term, None);
                    }
                }
                Message::RequestVoteResponse(resp) if resp.pre_vote && resp.granted => {}
                Message::AppendEntries(_) => self.become_follower(env.term, Some(from)),
                _ => self.become_follower(env.term, None),
            }
        } else if env.term < self.term {
            // Raft §5.1: a request with a stale term is rejected; the reply carries our term so the
            // sender steps down. Stale responses are ignored.
            match &env.message {
                Message::RequestVote(rv) => {
                    let reason = format!("stale term {} < current term {}", env.term, self.term);
                    self.respond_vote(from, self.term, rv.pre_vote, false, reason);
                }
                Message::AppendEntries(ae) => {
                    let reason = format!("stale term {} < current term {}", env.term, self.term);
                    self.reject_append(from, ae, reason, None, None);
                }
                _ => {}
            }
            return Ok(());
        }
        match env.message {
            Message::RequestVote(rv) => self.handle_request_vote(from, env.term, rv),
            Message::RequestVoteResponse(resp) => {
                if resp.pre_vote && !matches!(self.role, RoleState::PreCandidate { .. }) {
                    return Ok(());
                }
                // A grant for PreVote carries the proposed term; one for an older round is stale.
                if resp.pre_vote && resp.granted && env.term != self.term.next() {
                    return Ok(());
                }
                self.record_vote(from, resp.granted, resp.pre_vote);
            }
            Message::AppendEntries(ae) => return self.handle_append_entries(from, ae),
            Message::AppendEntriesResponse(resp) => return self.handle_append_response(from, resp),
            Message::TimeoutNow => {
                // Leadership transfer (thesis §3.10): campaign at once, skipping PreVote.
                self.campaign(true);
            }
        }
        Ok(())
    }

    /// Thesis §3.10: the leader sends TimeoutNow in its term, once this node's log matches its own, so
    /// only after this node answered it in that term. One from anyone else, or with a higher term than
    /// this node's, is refused (its term is not adopted); a stale one is ignored like any other.
    fn check_timeout_now(&self, from: NodeId, term: Term) -> Result<(), Rejected> {
        if term < self.term || (term == self.term && self.leader() == Some(from)) {
            return Ok(());
        }
        let detail = if term > self.term {
            format!(
                "timeout_now of term {term} from node {from}, but node {} is in term {}: no leader \
                 asks a node it has not replicated to in its term",
                self.id, self.term
            )
        } else {
            format!(
                "timeout_now from node {from}, which does not lead term {term} for node {} (leader: {})",
                self.id,
                self.leader()
                    .map_or_else(|| "none".to_string(), |l| l.to_string())
            )
        };
        Err(Rejected::new(Reason::NotFromLeader, detail))
    }

    /// The leader this node heard from within the minimum election timeout, if CheckQuorum is on.
    fn in_lease(&self) -> Option<NodeId> {
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

    fn handle_request_vote(&mut self, from: NodeId, msg_term: Term, rv: RequestVote) {
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
            && self.planted_bug != Some(PlantedBug::VoteIgnoringLog)
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

    fn respond_vote(
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
        if granted {
            self.events.push(EventKind::VoteGranted {
                to,
                term: vote_term,
                pre_vote,
            });
        } else {
            self.events.push(EventKind::VoteDenied {
                to,
                term: vote_term,
                pre_vote,
                reason: reason.clone(),
            });
        }
        self.persisted_messages.push(Envelope {
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

    fn reject_append(
        &mut self,
        to: NodeId,
        ae: &AppendEntries,
        reason: String,
        conflict_index: Option<LogIndex>,
        conflict_term: Option<Term>,
    ) {
        self.events.push(EventKind::AppendRejected {
            to,
            term: self.term,
            reason: reason.clone(),
            hint_index: conflict_index,
        });
        self.persisted_messages.push(Envelope {
            from: self.id,
            to,
            term: self.term,
            message: Message::AppendEntriesResponse(AppendEntriesResponse {
                success: false,
                index: ae.prev_log_index,
                conflict_index,
                conflict_term,
                reason: Some(reason),
                read_ctx: ae.read_ctx,
            }),
        });
    }

    fn handle_append_entries(
        &mut self,
        from: NodeId,
        mut ae: AppendEntries,
    ) -> Result<(), Rejected> {
        if matches!(self.role, RoleState::Leader(_)) {
            // Raft §5.2 (Election Safety) makes this impossible; answer rather than trust the sender.
            self.reject_append(
                from,
                &ae,
                format!("node {} leads term {}", self.id, self.term),
                None,
                None,
            );
            return Ok(());
        }
        if !matches!(self.role, RoleState::Follower { leader: Some(l) } if l == from) {
            self.become_follower(self.term, Some(from));
        } else {
            self.leader_heard_ms = Some(self.now_ms);
            self.reset_election_timer();
        }
        let commit = self.log.commit;
        let last = self.log.last_index();
        // Entries at or below our commit index match the leader's (Raft §5.4, Leader Completeness):
        // skip them rather than compare.
        let mut prev = LogId {
            index: ae.prev_log_index,
            term: ae.prev_log_term,
        };
        // Moved out, not cloned: copying every entry's payload here was a large share of a follower's
        // cost in the core throughput bench. `ae` keeps the fields a rejection echoes.
        let mut entries = std::mem::take(&mut ae.entries);
        let sent = entries.len() as u64;
        if prev.index < commit {
            let skip = (commit.0 - prev.index.0).min(entries.len() as u64) as usize;
            if skip > 0 {
                prev = LogId {
                    index: entries[skip - 1].index,
                    term: entries[skip - 1].term,
                };
                entries.drain(..skip);
            }
            if prev.index < commit {
                // Everything sent is already committed here.
                let matched = LogIndex(ae.prev_log_index.0.saturating_add(sent));
                self.ack_append(from, matched, ae.read_ctx);
                return Ok(());
            }
        }
        // Raft §5.3: reject unless our log has an entry at prev_log_index with prev_log_term.
        if !self.log.matches(prev.index, prev.term) {
            if prev.index > last {
                let reason = format!(
                    "log mismatch at {}: log too short (last {last})",
                    prev.index
                );
                self.reject_append(from, &ae, reason, Some(last.next()), None);
            } else {
                let ours = self.log.term(prev.index).unwrap_or_default();
                // Thesis §5.3 fast backtracking: the conflicting term and the first index we hold of it.
                let first = self.log.first_index_of_term_at(prev.index, commit);
                let reason = format!(
                    "log mismatch at {}: term {ours} here, leader has {}",
                    prev.index, prev.term
                );
                self.reject_append(from, &ae, reason, Some(first), Some(ours));
            }
            return Ok(());
        }
        let matched = LogIndex(prev.index.0.saturating_add(entries.len() as u64));
        // Raft §5.3: delete a conflicting entry and all that follow; never touch matching ones.
        let conflict = entries
            .iter()
            .position(|e| !self.log.matches(e.index, e.term));
        if let Some(at) = conflict {
            let new: Vec<Entry> = entries.split_off(at);
            // One event per run of entries of the same term, worked out before the entries move.
            let mut appended = Vec::new();
            let mut run_start = 0;
            for i in 0..new.len() {
                if i + 1 == new.len() || new[i + 1].term != new[i].term {
                    appended.push(EventKind::EntryAppended {
                        first: new[run_start].index,
                        last: new[i].index,
                        term: new[i].term,
                    });
                    run_start = i + 1;
                }
            }
            // Unreachable for a message that passed validation (contiguous entries after a matching
            // prev_log_index, so at or above commit + 1); refused rather than trusted all the same.
            let truncated = self
                .log
                .truncate_and_append(new)
                .map_err(|why| Rejected::new(Reason::LogRefused, why))?;
            if let Some(kept) = truncated {
                self.events.push(EventKind::LogTruncated { index: kept });
            }
            self.events.extend(appended);
        }
        // Raft §5.3: commit up to min(leader_commit, index of last new entry).
        let new_commit = ae.leader_commit.min(matched);
        if new_commit > self.log.commit {
            self.log.commit = new_commit;
            self.events.push(EventKind::CommitAdvanced {
                commit_index: new_commit,
            });
        }
        self.ack_append(from, matched, ae.read_ctx);
        Ok(())
    }

    fn ack_append(&mut self, to: NodeId, matched: LogIndex, read_ctx: u64) {
        self.persisted_messages.push(Envelope {
            from: self.id,
            to,
            term: self.term,
            message: Message::AppendEntriesResponse(AppendEntriesResponse {
                success: true,
                index: matched,
                conflict_index: None,
                conflict_term: None,
                reason: None,
                read_ctx,
            }),
        });
    }

    fn handle_append_response(
        &mut self,
        from: NodeId,
        resp: AppendEntriesResponse,
    ) -> Result<(), Rejected> {
        let now = self.now_ms;
        let term = self.term;
        let last = self.log.last_index();
        let RoleState::Leader(leader) = &mut self.role else {
            return Ok(());
        };
        // A response of this term answers an append this leader sent, and its log only grows within
        // its term (Raft §5.3, Leader Append-Only): it cannot name an index past the log or a read round
        // not yet started. Trusting one would count a follower for entries or reads it never confirmed.
        if resp.index > last {
            return Err(Rejected::new(
                Reason::UnknownReply,
                format!(
                    "append response from node {from} names index {}, past this leader's last entry {last}",
                    resp.index
                ),
            ));
        }
        if resp.read_ctx > leader.read_round {
            return Err(Rejected::new(
                Reason::UnknownReply,
                format!(
                    "append response from node {from} echoes read round {}; the last one started is {}",
                    resp.read_ctx, leader.read_round
                ),
            ));
        }
        let Some(pr) = leader.progress.get_mut(&from) else {
            return Ok(());
        };
        pr.last_heard_ms = now;
        if pr.state == ProgressState::Probe {
            pr.probe_sent = false;
        }
        let read_ctx = resp.read_ctx;
        if resp.success {
            let moved = pr.maybe_update(resp.index);
            // A probe was answered (not just a heartbeat at the old match point): pipeline from here.
            if pr.state == ProgressState::Probe && (moved || resp.index.next() >= pr.next_index) {
                pr.become_replicate();
            }
            self.events.push(EventKind::AppendAcked {
                from,
                term,
                match_index: pr.match_index,
            });
            if moved {
                self.maybe_commit();
                self.maybe_send_timeout_now();
            }
        } else {
            let stale = match pr.state {
                ProgressState::Replicate => resp.index <= pr.match_index,
                ProgressState::Probe => {
                    resp.index != pr.next_index.prev() || resp.index <= pr.match_index
                }
            };
            if !stale {
                // Thesis §5.3: jump over the follower's conflicting term instead of one entry at a time.
                let hint = resp.conflict_index.unwrap_or(resp.index);
                let next = match resp.conflict_term {
                    Some(conflict_term) => {
                        let (at, t) = self
                            .log
                            .last_index_with_term_at_most(resp.index, conflict_term);
                        if t == conflict_term && at.0 > 0 {
                            at.next()
                        } else {
                            hint
                        }
                    }
                    None => hint,
                };
                let RoleState::Leader(leader) = &mut self.role else {
                    return Ok(());
                };
                let Some(pr) = leader.progress.get_mut(&from) else {
                    return Ok(());
                };
                pr.become_probe();
                // Never below what is known to match, never past the rejected point.
                pr.next_index = next
                    .max(pr.match_index.next())
                    .min(resp.index.max(pr.match_index.next()));
            }
        }
        if read_ctx != 0 {
            self.handle_read_ack(from, read_ctx);
        }
        Ok(())
    }

    // ----- leader: replication and commitment -----

    /// Raft §5.3/§5.4.2: advance commit to the highest index a majority holds, but only through an
    /// entry of the current term. Returns whether commit moved.
    fn maybe_commit(&mut self) -> bool {
        let RoleState::Leader(leader) = &self.role else {
            return false;
        };
        let mut matches: Vec<LogIndex> =
            leader.progress.values().map(|pr| pr.match_index).collect();
        matches.push(self.log.durable.min(self.log.last_index()));
        let candidate = quorum::committed_index(matches);
        if candidate <= self.log.commit {
            return false;
        }
        let term_ok = self.log.term(candidate) == Some(self.term);
        // Raft §5.4.2 (Figure 8): an entry of an earlier term is never committed by counting replicas.
        if !term_ok && self.planted_bug != Some(PlantedBug::CommitPreviousTermByCount) {
            return false;
        }
        self.log.commit = candidate;
        self.events.push(EventKind::CommitAdvanced {
            commit_index: candidate,
        });
        let read_round = if let RoleState::Leader(leader) = &mut self.role {
            leader.pending_requests.retain(|_, id| id.index > candidate);
            if term_ok && !leader.committed_in_term {
                leader.committed_in_term = true;
                // Reads that waited for this term's first commit take the commit index now.
                let mut any = false;
                for read in leader.reads.iter_mut().filter(|r| r.index.is_none()) {
                    read.index = Some(candidate);
                    read.round = leader.read_round + 1;
                    any = true;
                }
                any
            } else {
                false
            }
        } else {
            false
        };
        if read_round && !self.peers.is_empty() {
            if let RoleState::Leader(leader) = &mut self.role {
                leader.read_round_due = true;
            }
        }
        true
    }

    fn leader_has_appends_to_send(&self) -> bool {
        let RoleState::Leader(leader) = &self.role else {
            return false;
        };
        if leader.read_round_due {
            return true;
        }
        let last = self.log.last_index();
        leader.progress.values().any(|pr| match pr.state {
            ProgressState::Probe => !pr.probe_sent && pr.match_index < last,
            ProgressState::Replicate => {
                pr.next_index <= last && !pr.inflight_full(self.config.max_inflight_appends)
            }
        })
    }

    fn bcast_append(&mut self) {
        for peer in self.peers.clone() {
            while self.maybe_send_append(peer) {}
        }
    }

    /// Sends `peer` the entries it lacks, if its progress state allows; returns whether it sent.
    fn maybe_send_append(&mut self, peer: NodeId) -> bool {
        let last = self.log.last_index();
        let commit = self.log.commit;
        let max_inflight = self.config.max_inflight_appends;
        let RoleState::Leader(leader) = &self.role else {
            return false;
        };
        let Some(pr) = leader.progress.get(&peer) else {
            return false;
        };
        let send = match pr.state {
            ProgressState::Probe => !pr.probe_sent && pr.match_index < last,
            ProgressState::Replicate => pr.next_index <= last && !pr.inflight_full(max_inflight),
        };
        if !send {
            return false;
        }
        let next = pr.next_index;
        let prev_index = next.prev();
        let Some(prev_term) = self.log.term(prev_index) else {
            return false;
        };
        let entries = self.log.entries(
            next,
            last,
            self.config.max_append_entries,
            self.config.max_append_bytes,
        );
        let sent_last = entries.last().map_or(prev_index, |e| e.index);
        let RoleState::Leader(leader) = &mut self.role else {
            return false;
        };
        let Some(pr) = leader.progress.get_mut(&peer) else {
            return false;
        };
        match pr.state {
            ProgressState::Probe => pr.probe_sent = true,
            ProgressState::Replicate => {
                pr.next_index = sent_last.next();
                pr.inflight.push_back(sent_last);
            }
        }
        self.send_append(peer, prev_index, prev_term, entries, commit, 0);
        true
    }

    fn send_append(
        &mut self,
        to: NodeId,
        prev_log_index: LogIndex,
        prev_log_term: Term,
        entries: Vec<Entry>,
        leader_commit: LogIndex,
        read_ctx: u64,
    ) {
        self.events.push(EventKind::AppendSent {
            to,
            term: self.term,
            prev_log_index,
            entries: entries.len() as u64,
            commit: leader_commit,
        });
        self.messages.push(Envelope {
            from: self.id,
            to,
            term: self.term,
            message: Message::AppendEntries(AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
                read_ctx,
            }),
        });
    }

    /// Heartbeats (empty appends at the follower's match point, commit capped at that match as etcd
    /// does); `read_ctx` non-zero asks followers to confirm leadership for reads.
    fn bcast_heartbeat(&mut self, read_ctx: u64, periodic: bool) {
        let commit = self.log.commit;
        let mut beats = Vec::new();
        if let RoleState::Leader(leader) = &mut self.role {
            for (peer, pr) in leader.progress.iter_mut() {
                if periodic {
                    // A probe that got no answer may be retried once per heartbeat; appends in flight
                    // for two rounds without an answer were probably lost.
                    pr.probe_sent = false;
                    if pr.state == ProgressState::Replicate && !pr.inflight.is_empty() {
                        pr.stalled_heartbeats += 1;
                        if pr.stalled_heartbeats >= 2 {
                            pr.become_probe();
                        }
                    }
                }
                beats.push((*peer, pr.match_index));
            }
        }
        for (peer, matched) in beats {
            let term = self.log.term(matched).unwrap_or_default();
            self.send_append(
                peer,
                matched,
                term,
                Vec::new(),
                commit.min(matched),
                read_ctx,
            );
        }
    }
}
