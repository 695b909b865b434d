//! End to end on real local node processes: a preset clicked in the window reaches the nodes as
//! admin requests, and the nodes report the faults in `/v1/status` (`link_faults`,
//! `disk_write_delay_ms`); healing clears them.

use egui_kittest::kittest::Queryable as _;
use egui_kittest::Harness;
use flotilla::app::FlotillaApp;
use flotilla::backend::{self, local, ClusterControl as _, NodeEndpoint};
use flotilla::ui::Tempo;
use flotilla_shared::api::Status;
use flotilla_shared::NodeId;
use std::sync::Arc;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);

type App = Harness<'static, FlotillaApp>;

/// One frame, as the window draws it: the backend's updates into the model, then the panels.
fn frame(app: &mut App) {
    app.state_mut().drain_updates(Duration::from_millis(50));
    app.run_steps(1);
}

fn wait_for<T>(app: &mut App, what: &str, mut done: impl FnMut(&mut App) -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        frame(app);
        if let Some(value) = done(app) {
            return value;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting for {what}; notice: {:?}",
            app.state().bar.notice
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Node `id`'s `/v1/status`, read directly (what the test checks, never what it does).
fn status(runtime: &tokio::runtime::Runtime, endpoints: &[NodeEndpoint], id: NodeId) -> Status {
    let base = &endpoints
        .iter()
        .find(|endpoint| endpoint.id == id)
        .expect("endpoint")
        .base_url;
    runtime.block_on(async {
        reqwest::Client::new()
            .get(format!("{base}/v1/status"))
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .expect("status answers")
            .json::<Status>()
            .await
            .expect("status reads")
    })
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
    let control = local::LocalControl::start(local::LocalOptions {
        nodes: 3,
        data_root: data.path().to_path_buf(),
        fresh: true,
        program: local::NodeProgram {
            program: flotilla_tests::node_binary().expect("the node binary"),
            leading_args: Vec::new(),
        },
        timing: tempo.timing(),
        first_port: 17_950,
    })
    .expect("cluster starts");
    let endpoints = control.nodes();
    let handle =
        backend::start(Box::new(control), tempo.timing(), Arc::new(|| {})).expect("backend starts");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut app = Harness::builder()
        .with_size(egui::vec2(1280.0, 900.0))
        .build_ui_state(
            |ui, app: &mut FlotillaApp| app.frame_ui(ui),
            FlotillaApp::new(handle, tempo),
        );

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
    app.get_by_label(&format!("node {follower} on the ring"))
        .click();
    app.run_steps(2);
    assert_eq!(app.state().selected, Some(follower));

    app.get_by_label("One-way cut leader->follower").click();
    app.run_steps(2);
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

    app.get_by_label("Slow disk on the leader").click();
    app.run_steps(2);
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
    app.get_by_label("Heal all links and disks").click();
    app.run_steps(2);
    wait_for_status(
        &mut app,
        &runtime,
        &endpoints,
        leader,
        "the leader healed",
        |status| status.link_faults.is_empty() && status.disk_write_delay_ms == 0,
    );
}
