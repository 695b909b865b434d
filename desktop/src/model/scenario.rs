//! Guided scenarios: a short script of the window's own actions and of moments to wait for, each step
//! with a one-line caption. The runner is pure: given the live cluster state and the time, it says
//! which actions to take now; the app sends them exactly as a click would.

use super::state::{ClusterState, ProcessState};
use flotilla_shared::event::Role;
use flotilla_shared::{NodeId, Term};

/// The nodes an action is aimed at, named by their part in the scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    /// The leader when the scenario started.
    OldLeader,
    /// Every other node.
    Followers,
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

/// Scenarios listed in the menu but not built yet, with what they wait for.
pub const NOT_YET: [(&str, &str); 4] = [
    (
        "leader isolated by a one-way cut",
        "needs the link fault editor",
    ),
    ("slow disk on the leader", "needs the disk fault action"),
    (
        "wiped follower rebuilt from a snapshot",
        "needs the wipe and snapshot actions",
    ),
    ("add and remove a member", "needs the membership actions"),
];

pub fn all() -> Vec<Scenario> {
    vec![split_vote(), rolled_back()]
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
        }
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
        }
    }
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
