//! End to end on real local node processes: numbered messages land where their receiver took them
//! in; a preset clicked in the window reaches the nodes as admin requests, the nodes report the
//! faults in `/v1/status` (`link_faults`, `disk_write_delay_ms`), the leader's messages die at the
//! one-way cut and none lands on the follower; healing clears it all.

use egui_kittest::kittest::Queryable as _;
use flotilla::backend::{self, ClusterControl as _, NodeEndpoint};
use flotilla::model::Arrival;
use flotilla::ui::Tempo;
use flotilla_shared::api::Status;
use flotilla_shared::event::{DropReason, EventKind};
use flotilla_shared::NodeId;
use flotilla_tests::Api;
use std::sync::Arc;

mod local_cluster;
mod window;
use window::{wait_for, window, App};

/// As a user does: the pointer moves onto the widget (leaving the tooltip of the last one), then
/// clicks.
fn click(app: &mut App, label: &str) {
    app.get_by_label(label).hover();
    app.run_steps(1);
    app.get_by_label(label).click();
    app.run_steps(2);
}

/// Node `id`'s `/v1/status`, read directly (what the test checks, never what it does).
fn status(runtime: &tokio::runtime::Runtime, endpoints: &[NodeEndpoint], id: NodeId) -> Status {
    let base = &endpoints
        .iter()
        .find(|endpoint| endpoint.id == id)
        .expect("endpoint")
        .base_url;
    let api = Api::new(None).expect("an HTTP client");
    runtime
        .block_on(api.node(id, base.as_str()).status())
        .expect("status answers")
}

fn wait_for_status(
    app: &mut App,
    runtime: &tokio::runtime::Runtime,
    endpoints: &[NodeEndpoint],
    id: NodeId,
    what: &str,
    done: impl Fn(&Status) -> bool,
) -> Status {
    wait_for(app, what, |_| {
        let status = status(runtime, endpoints, id);
        done(&status).then_some(status)
    })
}

#[test]
fn a_preset_click_puts_the_fault_on_the_real_nodes_and_heal_all_removes_it() {
    let data = tempfile::tempdir().expect("tempdir");
    let tempo = Tempo { factor: 2 };
    let control = local_cluster::start(
        data.path(),
        3,
        local_cluster::node_binary(false),
        tempo,
        17_950,
    );
    let endpoints = control.nodes();
    let handle =
        backend::start(Box::new(control), tempo.timing(), Arc::new(|| {})).expect("backend starts");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut app = window(handle, tempo);

    // The window draws a leader every node agrees on.
    let leader = wait_for(&mut app, "a leader in the window", |app| {
        let shown = app.state().model.shown();
        let leader = shown.leader()?;
        shown
            .nodes
            .values()
            .all(|node| node.is_up() && node.leader_id == Some(leader.id))
            .then_some(leader.id)
    });
    let follower = [NodeId(1), NodeId(2), NodeId(3)]
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    // The leader's messages to the follower land: their receives are reported.
    wait_for(&mut app, "a numbered dot landing on the follower", |app| {
        app.state()
            .model
            .shown()
            .flights
            .iter()
            .any(|f| {
                f.from == leader && f.to == follower && f.msg != 0 && f.arrival == Arrival::Lands
            })
            .then_some(())
    });
    click(&mut app, &format!("node {follower} on the ring"));
    assert_eq!(app.state().selected, Some(follower));

    click(&mut app, "One-way cut leader->follower");
    let cut = wait_for_status(
        &mut app,
        &runtime,
        &endpoints,
        leader,
        "the leader to report its cut link",
        |status| !status.link_faults.is_empty(),
    );
    assert_eq!(cut.link_faults.len(), 1, "{:?}", cut.link_faults);
    assert_eq!(cut.link_faults[0].to, follower);
    assert!(cut.link_faults[0].fault.cut);
    // One way only: the follower's own link to the leader is untouched.
    assert!(status(&runtime, &endpoints, follower)
        .link_faults
        .is_empty());
    // The window draws the leader's messages dying at the cut.
    wait_for(&mut app, "a dot dying at the cut", |app| {
        app.state()
            .model
            .shown()
            .flights
            .iter()
            .any(|f| {
                f.from == leader
                    && f.to == follower
                    && f.arrival == Arrival::Dropped(DropReason::LinkCut)
            })
            .then_some(())
    });
    // And the follower took in nothing the leader sent after the first message the cut killed.
    let events: Vec<_> = app
        .state()
        .model
        .timeline
        .iter()
        .filter_map(|(_, record)| record.event().cloned())
        .collect();
    let first_cut = events
        .iter()
        .filter(|event| event.node == leader)
        .find_map(|event| match &event.kind {
            EventKind::MessageDropped {
                to,
                msg,
                reason: DropReason::LinkCut,
            } if *to == follower => Some(*msg),
            _ => None,
        })
        .expect("a drop at the cut");
    assert!(
        !events.iter().any(|event| event.node == follower
            && matches!(event.kind, EventKind::MessageReceived { from, msg, .. }
                if from == leader && msg >= first_cut)),
        "the follower took in a message sent into the cut"
    );

    click(&mut app, "Slow disk on the leader");
    let heartbeat = tempo.timing().heartbeat_ms;
    wait_for_status(
        &mut app,
        &runtime,
        &endpoints,
        leader,
        "the leader to report its slow disk",
        |status| status.disk_write_delay_ms == heartbeat,
    );

    // The window learns the faults from the nodes, then heals what they report.
    wait_for(&mut app, "the window to show the faults", |app| {
        let node = &app.state().model.shown().nodes[&leader];
        (!node.link_faults.is_empty() && node.disk_write_delay_ms > 0).then_some(())
    });
    click(&mut app, "Heal all links and disks");
    wait_for_status(
        &mut app,
        &runtime,
        &endpoints,
        leader,
        "the leader healed",
        |status| status.link_faults.is_empty() && status.disk_write_delay_ms == 0,
    );

    // A kill of the leader: the stopwatch times the failover, and nothing lands on the dead node.
    let leader = wait_for(&mut app, "a leader again", |app| {
        let shown = app.state().model.shown();
        let leader = shown.leader()?;
        shown
            .nodes
            .values()
            .all(|node| node.is_up() && node.leader_id == Some(leader.id))
            .then_some(leader.id)
    });
    click(&mut app, &format!("node {leader} on the ring"));
    click(&mut app, &format!("Kill node {leader}"));
    let failover = wait_for(&mut app, "the failover timed to a commit", |app| {
        app.state().model.shown().failovers.past.back().cloned()
    });
    assert_eq!(failover.cause, format!("leader {leader} killed"));
    assert!(failover
        .new_leader
        .is_some_and(|(node, _, _)| node != leader));
    assert!(failover.to_leader_ms() <= failover.to_commit_ms());
    let landed_on_the_dead: Vec<_> = app
        .state()
        .model
        .shown()
        .flights
        .iter()
        .filter(|f| {
            f.to == leader && f.start_ms > failover.shown_started_ms && f.arrival == Arrival::Lands
        })
        .cloned()
        .collect();
    assert!(landed_on_the_dead.is_empty(), "{landed_on_the_dead:?}");
    assert!(app
        .state()
        .model
        .shown()
        .flights
        .iter()
        .any(|f| f.to == leader
            && f.start_ms > failover.shown_started_ms
            && f.arrival != Arrival::Lands));
}
