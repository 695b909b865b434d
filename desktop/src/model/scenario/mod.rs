//! Guided scenarios: a short script of the window's own actions and of moments to wait for, each step
//! with a one-line caption. The runner is pure: given the live cluster state and the time, it says
//! which actions to take now; the app sends them exactly as a click would.
//!
//! `catalog` holds the scenarios, `run` the runner that drives one.

use super::state::{ClusterState, NodeView, ProcessState, SubmitRecord};
use flotilla_shared::api::MemberRole;
use flotilla_shared::event::Role;
use flotilla_shared::{NodeId, Term};

mod catalog;
mod run;
#[cfg(test)]
mod tests;

pub use catalog::*;
pub use run::*;

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
