//! The guided scenarios, each a script of actions and waits with a caption per step.

use super::*;

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
