//! The runner: given the live cluster state and the time, which actions to take now.

use super::*;

/// What the runner asks the app to do: the same actions a click sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Kill(NodeId),
    Restart(NodeId),
    Pause(NodeId),
    Resume(NodeId),
    Isolate(NodeId),
    Heal(NodeId),
    Submit(String),
    /// Cut (`true`) or heal the one-way link `from` → `to`.
    CutLink {
        from: NodeId,
        to: NodeId,
        cut: bool,
    },
    DiskDelay {
        node: NodeId,
        write_delay_ms: u64,
    },
    TakeSnapshot(NodeId),
    Wipe(NodeId),
    AddNode,
    RemoveNode(NodeId),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunState {
    Running,
    /// Waits for the user: Resume or Step.
    Paused,
    Finished,
    Failed(String),
}

/// A scenario under way.
#[derive(Clone, Debug)]
pub struct Run {
    pub scenario: Scenario,
    /// The step under way (== steps.len() once finished).
    pub step: usize,
    pub state: RunState,
    /// Run one step, then pause.
    stepping: bool,
    step_started_ms: u64,
    old_leader: Option<(NodeId, Term)>,
    followers: Vec<NodeId>,
    /// The leader every node follows, and since when: a leader counts once it has lasted.
    steady_since: Option<(NodeId, Term, u64)>,
    /// The old leader's heartbeat when it was found (the slow disk's delay).
    heartbeat_ms: u64,
    /// The node the scenario added, once it is a member.
    added: Option<NodeId>,
}

/// How long a leader must last at least before a scenario acts on it.
pub const STEADY_MS: u64 = 600;

/// How long a wait may take before the scenario gives up and says which step did not happen.
pub const STEP_TIMEOUT_MS: u64 = 60_000;

impl Run {
    pub fn start(scenario: Scenario, now_ms: u64) -> Self {
        Self {
            scenario,
            step: 0,
            state: RunState::Running,
            stepping: false,
            step_started_ms: now_ms,
            old_leader: None,
            followers: Vec::new(),
            steady_since: None,
            heartbeat_ms: 0,
            added: None,
        }
    }

    /// The caption of the step under way, or how it ended.
    pub fn caption(&self) -> String {
        match &self.state {
            RunState::Finished => format!("{}: done", self.scenario.name),
            RunState::Failed(why) => format!("{}: stopped: {why}", self.scenario.name),
            _ => {
                let step = &self.scenario.steps[self.step];
                format!(
                    "{} {}/{}: {}",
                    self.scenario.name,
                    self.step + 1,
                    self.scenario.steps.len(),
                    step.caption
                )
            }
        }
    }

    /// The leader found at the start, once found.
    pub fn old_leader(&self) -> Option<NodeId> {
        self.old_leader.map(|(id, _)| id)
    }

    /// The other nodes at the start.
    pub fn followers(&self) -> &[NodeId] {
        &self.followers
    }

    /// The node the scenario added, once it is a member.
    pub fn added(&self) -> Option<NodeId> {
        self.added
    }

    pub fn is_over(&self) -> bool {
        matches!(self.state, RunState::Finished | RunState::Failed(_))
    }

    pub fn pause(&mut self) {
        if self.state == RunState::Running {
            self.state = RunState::Paused;
        }
    }

    pub fn resume(&mut self, now_ms: u64) {
        if self.state == RunState::Paused {
            self.state = RunState::Running;
            self.stepping = false;
            self.step_started_ms = now_ms;
        }
    }

    /// Runs the step under way (an action at once, a wait until it holds), then pauses.
    pub fn step_once(&mut self, now_ms: u64) {
        if self.state == RunState::Paused {
            self.state = RunState::Running;
            self.stepping = true;
            self.step_started_ms = now_ms;
        }
    }

    /// Advances as far as `state` allows at `now_ms`; returns the actions to take now.
    pub fn tick(&mut self, state: &ClusterState, now_ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        while self.state == RunState::Running {
            let Some(step) = self.scenario.steps.get(self.step).cloned() else {
                self.state = RunState::Finished;
                break;
            };
            match &step.kind {
                StepKind::Act(act) => actions.extend(self.resolve(act)),
                StepKind::Wait(until) => {
                    if !self.holds(*until, state, now_ms) {
                        if now_ms.saturating_sub(self.step_started_ms) > STEP_TIMEOUT_MS {
                            self.state = RunState::Failed(format!(
                                "\"{}\" did not happen within {} s",
                                step.caption,
                                STEP_TIMEOUT_MS / 1_000
                            ));
                        }
                        break;
                    }
                }
            }
            self.step += 1;
            self.step_started_ms = now_ms;
            if self.step == self.scenario.steps.len() {
                self.state = RunState::Finished;
            } else if self.stepping {
                self.stepping = false;
                self.state = RunState::Paused;
            }
        }
        actions
    }

    fn nodes(&self, who: Who) -> Vec<NodeId> {
        match who {
            Who::OldLeader => self.old_leader.iter().map(|(id, _)| *id).collect(),
            Who::Followers => self.followers.clone(),
            Who::OneFollower => self.followers.iter().take(1).copied().collect(),
            Who::Added => self.added.iter().copied().collect(),
        }
    }

    /// Every link out of `who` to the other starting nodes.
    fn outgoing(&self, who: Who, cut: bool) -> Vec<Action> {
        let everyone: Vec<NodeId> = self
            .nodes(Who::OldLeader)
            .into_iter()
            .chain(self.followers.iter().copied())
            .collect();
        self.nodes(who)
            .into_iter()
            .flat_map(|from| {
                everyone
                    .iter()
                    .filter(move |to| **to != from)
                    .map(move |to| Action::CutLink { from, to: *to, cut })
            })
            .collect()
    }

    fn resolve(&self, act: &Act) -> Vec<Action> {
        let each = |who: Who, make: fn(NodeId) -> Action| -> Vec<Action> {
            self.nodes(who).into_iter().map(make).collect()
        };
        match act {
            Act::Kill(who) => each(*who, Action::Kill),
            Act::Restart(who) => each(*who, Action::Restart),
            Act::Pause(who) => each(*who, Action::Pause),
            Act::Resume(who) => each(*who, Action::Resume),
            Act::Isolate(who) => each(*who, Action::Isolate),
            Act::Heal(who) => each(*who, Action::Heal),
            Act::Submit(text) => vec![Action::Submit((*text).into())],
            Act::SubmitMany(text, count) => (1..=*count)
                .map(|n| Action::Submit(format!("{text} {n}")))
                .collect(),
            Act::CutOutgoing(who) => self.outgoing(*who, true),
            Act::HealOutgoing(who) => self.outgoing(*who, false),
            Act::SlowDisk(who) => self
                .nodes(*who)
                .into_iter()
                .map(|node| Action::DiskDelay {
                    node,
                    write_delay_ms: self.heartbeat_ms.max(1),
                })
                .collect(),
            Act::HealDisk(who) => self
                .nodes(*who)
                .into_iter()
                .map(|node| Action::DiskDelay {
                    node,
                    write_delay_ms: 0,
                })
                .collect(),
            Act::TakeSnapshot(who) => each(*who, Action::TakeSnapshot),
            Act::Wipe(who) => each(*who, Action::Wipe),
            Act::AddNode => vec![Action::AddNode],
            Act::Remove(who) => each(*who, Action::RemoveNode),
        }
    }

    fn holds(&mut self, until: Until, state: &ClusterState, now_ms: u64) -> bool {
        let old = self.old_leader.and_then(|(id, _)| state.nodes.get(&id));
        let new_leader = state.leader().filter(|leader| {
            self.old_leader
                .is_some_and(|(id, term)| leader.id != id && leader.term > term)
        });
        match until {
            Until::LeaderElected => {
                let Some(leader) = state.leader() else {
                    return false;
                };
                let followed = state.nodes.values().all(|node| {
                    node.id == leader.id
                        || (node.is_up()
                            && node.term == leader.term
                            && node.leader_id == Some(leader.id))
                });
                if !followed {
                    self.steady_since = None;
                    return false;
                }
                // A fresh cluster may hold two elections in a row; news of the second can trail the
                // first. A leader counts once it has led for a few heartbeats (and status polls).
                let since = match self.steady_since {
                    Some((id, term, since)) if id == leader.id && term == leader.term => since,
                    _ => {
                        self.steady_since = Some((leader.id, leader.term, now_ms));
                        now_ms
                    }
                };
                let steady =
                    now_ms.saturating_sub(since) >= (leader.heartbeat_ms * 3).max(STEADY_MS);
                if steady {
                    self.old_leader = Some((leader.id, leader.term));
                    self.heartbeat_ms = leader.heartbeat_ms;
                    self.followers = state
                        .nodes
                        .keys()
                        .copied()
                        .filter(|id| *id != leader.id)
                        .collect();
                }
                steady
            }
            Until::NewLeader => new_leader.is_some(),
            Until::OldLeaderIsolated => {
                let Some((id, _)) = self.old_leader else {
                    return false;
                };
                state.nodes.values().all(|node| {
                    if node.id == id {
                        node.isolated_from.len() + 1 >= state.nodes.len()
                    } else {
                        node.isolated_from.contains(&id)
                    }
                })
            }
            Until::OldLeaderAhead => old.is_some_and(|old| {
                state
                    .nodes
                    .values()
                    .filter(|node| node.id != old.id)
                    .all(|node| node.log.last_index() < old.log.last_index())
            }),
            Until::NewLeaderCommittedPastOld => match (new_leader, old) {
                (Some(new), Some(old)) => new.commit_index >= old.log.last_index(),
                _ => false,
            },
            Until::OldLeaderFollows => match (state.leader(), old) {
                (Some(leader), Some(old)) => {
                    old.id != leader.id
                        && old.is_up()
                        && old.role == Role::Follower
                        && old.term == leader.term
                        && old.leader_id == Some(leader.id)
                        && old.commit_index >= leader.commit_index
                        && old.process == ProcessState::Running
                }
                _ => false,
            },
            Until::ElectionTimeoutsPassed => {
                let longest = state
                    .nodes
                    .values()
                    .map(|node| node.election_timeout_ms.max(node.heartbeat_ms * 6))
                    .max()
                    .unwrap_or(0)
                    .max(300);
                now_ms.saturating_sub(self.step_started_ms) > longest * 3 / 2
            }
            Until::OldLeaderCutOutgoing => old.is_some_and(|old| {
                self.followers.iter().all(|to| {
                    old.link_faults
                        .iter()
                        .any(|link| link.to == *to && link.fault.cut)
                })
            }),
            Until::OldLeaderSteppedDown => {
                new_leader.is_some() && old.is_some_and(|old| old.role != Role::Leader)
            }
            Until::Committed(text) => committed(state, text).is_some(),
            Until::CommittedMany(text, count) => {
                (1..=count).all(|n| committed(state, &format!("{text} {n}")).is_some())
            }
            Until::OldLeaderDiskSlow => old.is_some_and(|old| old.disk_write_delay_ms > 0),
            Until::CommittedNoFasterThanDisk(text) => {
                committed(state, text).is_some_and(|submit| {
                    old.is_some_and(|old| submit.latency_ms >= old.disk_write_delay_ms as f64)
                })
            }
            Until::OldLeaderDiskHealed => old.is_some_and(|old| old.disk_write_delay_ms == 0),
            Until::OldLeaderCompacted => {
                old.is_some_and(|old| old.snapshot.index > 0 && old.snapshot.first_log_index > 1)
            }
            Until::FollowerInstalledSnapshot => {
                let follower = self.followers.first().and_then(|id| state.nodes.get(id));
                match (follower, old) {
                    (Some(follower), Some(old)) => {
                        old.snapshot.index > 0 && follower.snapshot.index >= old.snapshot.index
                    }
                    _ => false,
                }
            }
            Until::FollowerCaughtUp => {
                let follower = self.followers.first().and_then(|id| state.nodes.get(id));
                match (follower, state.leader()) {
                    (Some(follower), Some(leader)) => {
                        follower.id != leader.id
                            && follower.is_up()
                            && follower.process == ProcessState::Running
                            && follower.log.last_index() >= leader.log.last_index()
                            && follower.commit_index >= leader.commit_index
                            && follower.commit_index >= last_committed_submit(state)
                    }
                    _ => false,
                }
            }
            Until::MemberAdded => {
                let Some(config) = state.configuration().filter(|config| config.committed) else {
                    return false;
                };
                let added = config.members.iter().find(|member| {
                    member.role == MemberRole::Voter
                        && !self.followers.contains(&member.id)
                        && self.old_leader.is_some_and(|(id, _)| id != member.id)
                        && state.nodes.get(&member.id).is_some_and(NodeView::is_up)
                });
                self.added = added.map(|member| member.id);
                self.added.is_some()
            }
            Until::AddedRemoved => {
                let Some(added) = self.added else {
                    return false;
                };
                !state.nodes.contains_key(&added)
                    && state.configuration().is_some_and(|config| {
                        config.committed && config.members.iter().all(|member| member.id != added)
                    })
            }
        }
    }
}

/// The submit with `text`, once committed.
fn committed<'a>(state: &'a ClusterState, text: &str) -> Option<&'a SubmitRecord> {
    state
        .submits
        .iter()
        .find(|submit| submit.text == text && submit.outcome.is_ok())
}

/// The log index of the newest committed submit (0: none).
fn last_committed_submit(state: &ClusterState) -> u64 {
    state
        .submits
        .iter()
        .filter_map(|submit| submit.outcome.as_ref().ok())
        .map(|(index, _)| index.0)
        .max()
        .unwrap_or(0)
}
