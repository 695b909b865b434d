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
fn an_added_node_counts_once_a_committed_configuration_makes_it_a_voter_and_is_the_one_removed() {
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
