//! The Raft state machine: its state, inputs, `ready()` output and invariants, and the dispatch of
//! incoming messages. Elections (`election`), replication and commitment (`replication`), reads
//! (`read_index`) and leadership transfer (`transfer`) live in their own files; what only a leader holds
//! is in `leader`.

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

mod election;
mod leader;
mod membership;
mod planted;
mod read_index;
mod replication;
mod snapshot;
mod transfer;

use leader::LeaderState;
use membership::Membership;
use read_index::PendingRead;
pub use snapshot::MAX_SNAPSHOT_CHUNK_BYTES;
use snapshot::{forgot_acknowledged_entries, Snapshots};
use transfer::Transfer;

#[cfg(any(test, feature = "sim"))]
pub use planted::PlantedBug;

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

pub struct Raft<S: LogRead> {
    config: Config,
    id: NodeId,
    /// Every other member of the configuration in force (see `membership`).
    peers: Vec<NodeId>,
    membership: Membership,
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
    /// The `msg` of the last envelope this core sent (per-sender numbering, from 1 at each start).
    last_msg: u64,
    snapshots: Snapshots,
    #[cfg(any(test, feature = "sim"))]
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
        let seed = crate::raft::Configuration::seed(voters.iter().map(|v| (*v, String::new())));
        let last = restored.last;
        // The durable commit can only cover durable entries; the applied index never passes commit.
        let commit = restored.hard_state.commit.min(last.index);
        let applied = restored.applied.min(last.index);
        let commit = commit.max(applied);
        let hard_state = HardState {
            commit,
            ..restored.hard_state
        };
        let mut log = RaftLog::new(storage, last, commit, applied, config.max_cached_entries);
        log.restore_snapshot(restored.snapshot.last, restored.first_index);
        let mut raft = Self {
            rng: SplitMix64::new(config.seed ^ id.0),
            id,
            peers,
            membership: Membership::new(seed),
            term: hard_state.term,
            voted_for: hard_state.voted_for,
            role: RoleState::Follower { leader: None },
            log,
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
            last_msg: 0,
            snapshots: Snapshots::restored(restored.snapshot),
            #[cfg(any(test, feature = "sim"))]
            planted_bug: None,
            config,
        };
        raft.reset_election_timer();
        Ok(raft)
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

    /// Handles one message from a peer. Every `RequestVote`, `AppendEntries` and `InstallSnapshot`
    /// accepted yields exactly
    /// one response to its sender, emitted in `persisted_messages` in the order the requests were
    /// stepped.
    ///
    /// Refused, before any of it is acted on (no term adopted, no timer reset, no response): a message a
    /// correct peer cannot have sent ([`validation::check_envelope`], run here as well as at the HTTP
    /// boundary), a TimeoutNow from a node that does not lead this node's term, and a reply to something
    /// this node never sent. Each refusal is also a `message_rejected` event.
    pub fn try_step(&mut self, envelope: Envelope) -> Result<(), Rejected> {
        let (from, name) = (envelope.from, envelope.message.name());
        // Taken in, whatever becomes of it: the sender's message landed here.
        self.events.push(EventKind::MessageReceived {
            from,
            msg: envelope.msg,
            message: name.to_string(),
        });
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
        if !self.trusts_envelopes() {
            let known = self.knows_sender(&envelope);
            validation::check_envelope(&envelope, self.id, |_| known)?;
        }
        self.step_inner(envelope)
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
            || self.snapshots.has_ready()
    }

    pub fn ready(&mut self) -> Ready {
        self.membership_ready();
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
        self.snapshots.take_ready(&mut ready);
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
            snapshot: self.log.snapshot(),
            first_index: self.log.first_index(),
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
        self.validate_snapshot()
    }

    /// Numbers the next envelope this core sends; its send event carries the same number.
    fn next_msg(&mut self) -> u64 {
        self.last_msg += 1;
        self.last_msg
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
        quorum::majority(self.voter_count())
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
                Message::AppendEntries(_) | Message::InstallSnapshot(_) => {
                    self.become_follower(env.term, Some(from))
                }
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
                Message::InstallSnapshot(is) => {
                    let reason = format!("stale term {} < current term {}", env.term, self.term);
                    self.refuse_install(from, is, reason);
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
            Message::AppendEntriesResponse(resp) => {
                return self.handle_append_response(from, env.msg, resp)
            }
            Message::InstallSnapshot(is) => return self.handle_install_snapshot(from, is),
            Message::InstallSnapshotResponse(resp) => {
                return self.handle_install_snapshot_response(from, resp)
            }
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
}
