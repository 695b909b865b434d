//! Guided scenarios: a short script of the window's own actions and of moments to wait for, each step
//! with a one-line caption. The runner is pure: given the live cluster state and the time, it says
//! which actions to take now; the app sends them exactly as a click would.

use super::state::{ClusterState, NodeView, ProcessState, SubmitRecord};
use flotilla_shared::api::MemberRole;
use flotilla_shared::event::Role;
use flotilla_shared::{NodeId, Term};

/// The nodes an action is aimed at, named by their part in the scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    /// The leader when the scenario started.
    OldLeader,
    /// Every other node.
    Followers,
    /// The first of the other nodes.
    OneFollower,
    /// The node the scenario added.
    Added,
}

/// An action, as a click would ask it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Act {
    Kill(Who),
    Restart(Who),
    Pause(Who),
    Resume(Who),
    Isolate(Who),
    Heal(Who),
    Submit(&'static str),
    /// This many submits, numbered after the text.
    SubmitMany(&'static str, usize),
    /// Cut every link out of these nodes to the others, one way: they still hear the others.
    CutOutgoing(Who),
    HealOutgoing(Who),
    /// Every storage write waits one heartbeat before its fsync.
    SlowDisk(Who),
    HealDisk(Who),
    TakeSnapshot(Who),
    Wipe(Who),
    AddNode,
    Remove(Who),
}

/// A moment to wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    /// A leader every other running node follows (the scenario's "old leader" from then on).
    LeaderElected,
    /// A leader other than the old one, in a later term.
    NewLeader,
    /// The old leader's cut is in force on every node.
    OldLeaderIsolated,
    /// The old leader holds entries no other node has.
    OldLeaderAhead,
    /// The new leader committed past the old leader's last entry.
    NewLeaderCommittedPastOld,
    /// The old leader follows the new one and has caught up with its commit.
    OldLeaderFollows,
    /// Longer than any election timeout.
    ElectionTimeoutsPassed,
    /// Every link out of the old leader is cut, as the old leader reports it.
    OldLeaderCutOutgoing,
    /// A new leader leads and the old leader no longer thinks it leads.
    OldLeaderSteppedDown,
    /// The submit with this text was committed.
    Committed(&'static str),
    /// This many submits numbered after the text were committed.
    CommittedMany(&'static str, usize),
    /// The old leader reports a slow disk.
    OldLeaderDiskSlow,
    /// The submit with this text was committed, no faster than the old leader's disk delay.
    CommittedNoFasterThanDisk(&'static str),
    /// The old leader's disk is healthy again.
    OldLeaderDiskHealed,
    /// The old leader took a snapshot and compacted its log: it no longer holds entry 1.
    OldLeaderCompacted,
    /// The wiped follower installed a snapshot at least as recent as the old leader's.
    FollowerInstalledSnapshot,
    /// The wiped follower is running and holds and committed everything the leader has, and every
    /// committed submit.
    FollowerCaughtUp,
    /// A node that was not there at the start is a voter in a committed configuration.
    MemberAdded,
    /// The added node is gone from the cluster and from a committed configuration.
    AddedRemoved,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepKind {
    Act(Act),
    Wait(Until),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub caption: &'static str,
    pub kind: StepKind,
}

const fn act(caption: &'static str, act: Act) -> Step {
    Step {
        caption,
        kind: StepKind::Act(act),
    }
}

const fn wait(caption: &'static str, until: Until) -> Step {
    Step {
        caption,
        kind: StepKind::Wait(until),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    pub name: &'static str,
    pub steps: Vec<Step>,
}

pub fn all() -> Vec<Scenario> {
    vec![
        split_vote(),
        rolled_back(),
        one_way_cut(),
        slow_disk(),
        rebuilt_from_snapshot(),
        add_and_remove(),
    ]
}

/// Every follower times out at the same moment, so they campaign in the same term and split the vote.
pub fn split_vote() -> Scenario {
    use Act::*;
    Scenario {
        name: "split vote",
        steps: vec![
            wait("Waiting for a leader", Until::LeaderElected),
            act(
                "Pause every follower: their election timers stop counting with them",
                Pause(Who::Followers),
            ),
            act("Kill the leader: nobody sends heartbeats any more", Kill(Who::OldLeader)),
            wait(
                "Wait longer than any election timeout: every follower's timer has run out",
                Until::ElectionTimeoutsPassed,
            ),
            act(
                "Resume the followers together: they time out at once and campaign in the same term",
                Resume(Who::Followers),
            ),
            wait(
                "Each votes for itself, so no one wins that term; a randomized timeout breaks the tie",
                Until::NewLeader,
            ),
            act("Restart the old leader", Restart(Who::OldLeader)),
            wait(
                "It rejoins as a follower of the new leader and catches up",
                Until::OldLeaderFollows,
            ),
        ],
    }
}

/// An entry taken by a leader cut off from the rest is never committed, and is replaced once the cut
/// heals.
pub fn rolled_back() -> Scenario {
    use Act::*;
    Scenario {
        name: "uncommitted entry rolled back",
        steps: vec![
            wait("Waiting for a leader", Until::LeaderElected),
            act(
                "Cut the leader off from every other node",
                Isolate(Who::OldLeader),
            ),
            wait(
                "Waiting for the cut to be in place",
                Until::OldLeaderIsolated,
            ),
            act(
                "Submit through the cut-off leader: it appends the entry but can never commit it",
                Submit("written to a leader cut off"),
            ),
            wait(
                "The old leader now holds an entry no one else has",
                Until::OldLeaderAhead,
            ),
            wait(
                "The others stop hearing heartbeats and elect a new leader in a later term",
                Until::NewLeader,
            ),
            act(
                "Submit through the new leader: this one commits",
                Submit("written to the new leader"),
            ),
            wait(
                "The new leader commits past the old leader's extra entry",
                Until::NewLeaderCommittedPastOld,
            ),
            act(
                "Heal the cut: the old leader hears the later term and steps down",
                Heal(Who::OldLeader),
            ),
            wait(
                "Its uncommitted entry is cut from its log and replaced by the new leader's",
                Until::OldLeaderFollows,
            ),
        ],
    }
}

/// The leader can still hear the others but they cannot hear it: they elect a new leader, whose
/// higher term reaches the old one and makes it step down.
pub fn one_way_cut() -> Scenario {
    use Act::*;
    Scenario {
        name: "leader isolated by a one-way cut",
        steps: vec![
            wait("Waiting for a leader", Until::LeaderElected),
            act(
                "Cut every link out of the leader: it still hears the others, they no longer hear it",
                CutOutgoing(Who::OldLeader),
            ),
            wait(
                "Waiting for the cut to be in place",
                Until::OldLeaderCutOutgoing,
            ),
            wait(
                "The others hear no heartbeats and elect a new leader in a later term",
                Until::NewLeader,
            ),
            wait(
                "The old leader hears the later term and steps down, though no one hears its answers",
                Until::OldLeaderSteppedDown,
            ),
            act(
                "Submit through the new leader: it commits with the other follower alone",
                Submit("written while the old leader is unheard"),
            ),
            wait(
                "The entry commits without the old leader",
                Until::Committed("written while the old leader is unheard"),
            ),
            act("Heal the cut", HealOutgoing(Who::OldLeader)),
            wait(
                "The old leader follows the new one and catches up",
                Until::OldLeaderFollows,
            ),
        ],
    }
}

/// Every write on the leader waits before its fsync: commits slow down while elections do not.
pub fn slow_disk() -> Scenario {
    use Act::*;
    Scenario {
        name: "slow disk on the leader",
        steps: vec![
            wait("Waiting for a leader", Until::LeaderElected),
            act(
                "Submit with a healthy disk",
                Submit("written with a healthy disk"),
            ),
            wait(
                "It commits at the usual speed",
                Until::Committed("written with a healthy disk"),
            ),
            act(
                "Slow the leader's disk: every write waits one heartbeat before its fsync",
                SlowDisk(Who::OldLeader),
            ),
            wait(
                "Waiting for the leader to report its slow disk",
                Until::OldLeaderDiskSlow,
            ),
            act(
                "Submit through the slow disk",
                Submit("written through a slow disk"),
            ),
            wait(
                "It commits, but no sooner than the leader's disk delay: see the commit latency",
                Until::CommittedNoFasterThanDisk("written through a slow disk"),
            ),
            act("Heal the leader's disk", HealDisk(Who::OldLeader)),
            wait(
                "Waiting for the leader to report a healthy disk",
                Until::OldLeaderDiskHealed,
            ),
            act(
                "Submit again: commits are fast again",
                Submit("written after the disk healed"),
            ),
            wait(
                "It commits",
                Until::Committed("written after the disk healed"),
            ),
        ],
    }
}

/// More than the tail of 10 entries a compaction keeps behind a snapshot of the window's own nodes.
const SNAPSHOTTED_ENTRIES: usize = 12;

/// A follower whose disk is wiped needs entries the leader compacted away: the leader sends its
/// snapshot instead, then the entries after it.
pub fn rebuilt_from_snapshot() -> Scenario {
    use Act::*;
    Scenario {
        name: "wiped follower rebuilt from a snapshot",
        steps: vec![
            wait("Waiting for a leader", Until::LeaderElected),
            act(
                "Submit a dozen entries, more than a compaction keeps behind a snapshot",
                SubmitMany("kept in the snapshot", SNAPSHOTTED_ENTRIES),
            ),
            wait(
                "They commit",
                Until::CommittedMany("kept in the snapshot", SNAPSHOTTED_ENTRIES),
            ),
            act(
                "Snapshot the leader now: its log before the snapshot is compacted away",
                TakeSnapshot(Who::OldLeader),
            ),
            wait(
                "The leader no longer holds its first entries, only the snapshot",
                Until::OldLeaderCompacted,
            ),
            act(
                "Wipe a follower's disk: it restarts blank and needs entry 1, which the leader no longer has",
                Wipe(Who::OneFollower),
            ),
            wait(
                "The leader sends its snapshot and the follower installs it",
                Until::FollowerInstalledSnapshot,
            ),
            act(
                "Submit after the snapshot",
                Submit("written after the rebuild"),
            ),
            wait(
                "It commits",
                Until::Committed("written after the rebuild"),
            ),
            wait(
                "The follower takes the entries after the snapshot and catches up",
                Until::FollowerCaughtUp,
            ),
        ],
    }
}

/// A new node joins as a learner, is promoted to voter once caught up, then is removed again.
pub fn add_and_remove() -> Scenario {
    use Act::*;
    Scenario {
        name: "add and remove a member",
        steps: vec![
            wait("Waiting for a leader", Until::LeaderElected),
            act(
                "Add a node: it starts blank and joins as a learner, without a vote",
                AddNode,
            ),
            wait(
                "Once it has caught up it is promoted to voter, and that configuration commits",
                Until::MemberAdded,
            ),
            act(
                "Submit with the new member: a majority is now 3 of 4",
                Submit("written with four members"),
            ),
            wait("It commits", Until::Committed("written with four members")),
            act(
                "Remove the new node: the configuration without it is committed, then it stops",
                Remove(Who::Added),
            ),
            wait(
                "It is gone from the configuration and the cluster",
                Until::AddedRemoved,
            ),
        ],
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Record;
    use flotilla_shared::event::{Event, EventKind};

    fn elected(state: &mut ClusterState, leader: u64, term: u64) {
        for node in 1..=3 {
            state.apply(&Record::Event(Event {
                node: NodeId(node),
                seq: term * 10 + node,
                at_ms: 1_000,
                kind: EventKind::RoleChanged {
                    role: if node == leader {
                        Role::Leader
                    } else {
                        Role::Follower
                    },
                    term: Term(term),
                    leader_id: Some(NodeId(leader)),
                },
            }));
        }
    }

    #[test]
    fn split_vote_waits_for_a_leader_then_acts_on_the_nodes_it_found() {
        let mut state = ClusterState::new(&[NodeId(1), NodeId(2), NodeId(3)]);
        let mut run = Run::start(split_vote(), 0);
        assert!(run.tick(&state, 10).is_empty(), "no leader yet");
        assert_eq!(run.step, 0);
        elected(&mut state, 2, 3);
        assert!(
            run.tick(&state, 20).is_empty(),
            "a leader counts once it lasted"
        );
        let actions = run.tick(&state, 20 + STEADY_MS);
        assert_eq!(
            actions,
            [
                Action::Pause(NodeId(1)),
                Action::Pause(NodeId(3)),
                Action::Kill(NodeId(2))
            ]
        );
        assert!(run.caption().contains("4/8"), "{}", run.caption());
        // The timers' wait, then the resume together.
        assert!(run.tick(&state, 700).is_empty());
        let actions = run.tick(&state, 10_000);
        assert_eq!(
            actions,
            [Action::Resume(NodeId(1)), Action::Resume(NodeId(3))]
        );
        // The old leader in its old term is no new leader.
        assert!(run.tick(&state, 10_100).is_empty());
        let process = |at_ms, state| Record::Process {
            at_ms,
            node: NodeId(2),
            state,
        };
        state.apply(&process(2_000, ProcessState::Dead));
        // Node 2's own report from before it was killed does not bring it back.
        elected(&mut state, 3, 5);
        assert_eq!(run.tick(&state, 10_200), [Action::Restart(NodeId(2))]);
        assert!(!run.is_over(), "the old leader is still down");
        state.apply(&process(3_000, ProcessState::Running));
        assert!(run.tick(&state, 10_300).is_empty());
        assert_eq!(run.state, RunState::Finished);
    }

    #[test]
    fn a_paused_run_does_nothing_until_stepped_and_a_step_runs_one_step() {
        let mut state = ClusterState::new(&[NodeId(1), NodeId(2), NodeId(3)]);
        elected(&mut state, 1, 2);
        let mut run = Run::start(rolled_back(), 0);
        run.pause();
        assert!(run.tick(&state, 10).is_empty());
        run.step_once(20);
        assert!(run.tick(&state, 30).is_empty(), "step 1 waits for a leader");
        assert_eq!(run.step, 0);
        assert!(run.tick(&state, 30 + STEADY_MS).is_empty());
        assert_eq!(run.step, 1);
        assert_eq!(run.state, RunState::Paused);
        run.step_once(40);
        assert_eq!(run.tick(&state, 50), [Action::Isolate(NodeId(1))]);
        assert_eq!(run.state, RunState::Paused);
        run.resume(60);
        assert!(
            run.tick(&state, 70).is_empty(),
            "the cut is not in place yet"
        );
        assert_eq!(run.state, RunState::Running);
    }

    #[test]
    fn a_one_way_cut_aims_at_every_link_out_of_the_leader_and_waits_for_it() {
        let mut state = ClusterState::new(&[NodeId(1), NodeId(2), NodeId(3)]);
        elected(&mut state, 2, 3);
        let mut run = Run::start(one_way_cut(), 0);
        run.tick(&state, 10);
        let cut = |to| Action::CutLink {
            from: NodeId(2),
            to: NodeId(to),
            cut: true,
        };
        assert_eq!(run.tick(&state, 10 + STEADY_MS), [cut(1), cut(3)]);
        assert!(
            run.tick(&state, 20 + STEADY_MS).is_empty(),
            "the cut is not reported yet"
        );
        assert!(run.caption().contains("3/9"), "{}", run.caption());
    }

    #[test]
    fn an_added_node_counts_once_a_committed_configuration_makes_it_a_voter_and_is_the_one_removed()
    {
        use flotilla_shared::api::Member;
        let mut state = ClusterState::new(&[NodeId(1), NodeId(2), NodeId(3)]);
        elected(&mut state, 1, 2);
        let mut run = Run::start(add_and_remove(), 0);
        run.tick(&state, 10);
        assert_eq!(run.tick(&state, 10 + STEADY_MS), [Action::AddNode]);
        let mut added = state.nodes[&NodeId(3)].clone();
        added.id = NodeId(4);
        added.reachable = true;
        state.nodes.insert(NodeId(4), added);
        let configure = |state: &mut ClusterState, role| {
            let leader = state.nodes.get_mut(&NodeId(1)).expect("node 1");
            leader.config.members = (1..=4)
                .map(|id| Member {
                    id: NodeId(id),
                    addr: format!("127.0.0.1:{}", 6_500 + id),
                    role: if id == 4 { role } else { MemberRole::Voter },
                })
                .collect();
            leader.config.config_index = 5;
            leader.config.committed = true;
        };
        configure(&mut state, MemberRole::Learner);
        assert!(
            run.tick(&state, 1_000).is_empty(),
            "a learner is no member yet"
        );
        configure(&mut state, MemberRole::Voter);
        assert_eq!(
            run.tick(&state, 1_100),
            [Action::Submit("written with four members".into())]
        );
        assert_eq!(run.added(), Some(NodeId(4)));
        state.submits.push_back(SubmitRecord {
            at_ms: 1_200,
            text: "written with four members".into(),
            outcome: Ok((flotilla_shared::LogIndex(6), Term(2))),
            latency_ms: 5.0,
        });
        assert_eq!(run.tick(&state, 1_300), [Action::RemoveNode(NodeId(4))]);
        assert!(!run.is_over(), "node 4 is still there");
    }

    #[test]
    fn a_wait_that_never_comes_stops_the_run_and_says_which_step() {
        let state = ClusterState::new(&[NodeId(1), NodeId(2), NodeId(3)]);
        let mut run = Run::start(split_vote(), 0);
        run.tick(&state, 1_000);
        run.tick(&state, STEP_TIMEOUT_MS + 1_000);
        assert!(run.is_over());
        assert!(
            run.caption()
                .contains("\"Waiting for a leader\" did not happen"),
            "{}",
            run.caption()
        );
    }
}
