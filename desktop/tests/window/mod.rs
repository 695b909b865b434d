//! The window driven by clicks (kittest, no GPU), on a real backend or on scripted events with none:
//! opening it, frames, waiting, clicking, submitting, and reading a node's messages.

#![allow(dead_code)] // each test file uses its own share of these

use egui_kittest::kittest::{NodeT as _, Queryable as _};
use egui_kittest::Harness;
use flotilla::app::{Clock, FlotillaApp};
use flotilla::backend::{self, Command};
use flotilla::ui::Tempo;
use flotilla_shared::event::{Event, EventKind};
use flotilla_shared::NodeId;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// The window's size unless a test needs more room.
pub const SIZE: egui::Vec2 = egui::vec2(1280.0, 800.0);

/// `app` in a window of `size`, drawn as the desktop draws it.
pub fn open(app: FlotillaApp, size: egui::Vec2) -> App {
    Harness::builder()
        .with_size(size)
        .build_ui_state(|ui, app: &mut FlotillaApp| app.frame_ui(ui), app)
}

/// A window on `handle`'s cluster.
pub fn window(handle: backend::BackendHandle, tempo: Tempo) -> App {
    open(FlotillaApp::new(handle, tempo), egui::vec2(1280.0, 900.0))
}

/// An app on nodes 1 to `count` with no backend: its commands arrive on the receiver, its clock
/// stands at 1.5 s, and it offers process actions (kill, wipe) only if `controls_processes`.
pub fn detached(count: u64, controls_processes: bool) -> (FlotillaApp, UnboundedReceiver<Command>) {
    let (sender, receiver) = unbounded_channel();
    let nodes: Vec<NodeId> = (1..=count).map(NodeId).collect();
    let mut app = FlotillaApp::detached(&nodes, sender, controls_processes);
    app.clock = Clock::Fixed(1_500);
    (app, receiver)
}

/// Node `node`'s event number `seq`, as a scripted stream reports it.
pub fn event(node: u64, seq: u64, at_ms: u64, kind: EventKind) -> Event {
    Event {
        node: NodeId(node),
        seq,
        at_ms,
        kind,
    }
}

/// Clicks `label` in a window with no backend, where its effect shows in the next frames.
pub fn press(app: &mut App, label: &str) {
    app.get_by_label(label).click();
    app.run_steps(2);
}

pub const DEADLINE: Duration = Duration::from_secs(60);

pub type App = Harness<'static, FlotillaApp>;

/// One frame, as the window draws it; every new notice is printed (shown when a test fails).
pub fn frame(app: &mut App) {
    let before = app.state().bar.notice.clone();
    app.state_mut().drain_updates(Duration::from_millis(50));
    app.run_steps(1);
    let after = &app.state().bar.notice;
    if *after != before {
        eprintln!("notice: {after:?}");
    }
}

pub fn wait_for<T>(app: &mut App, what: &str, mut done: impl FnMut(&mut App) -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        frame(app);
        if let Some(value) = done(app) {
            return value;
        }
        if started.elapsed() < DEADLINE {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        let reported = nodes_words(&app.state().model.live);
        let shown = nodes_words(app.state_mut().model.view());
        panic!(
            "timed out after {DEADLINE:?} waiting for {what}; notice: {:?}; nodes reported: {}; \
             nodes shown: {}",
            app.state().bar.notice,
            reported,
            shown,
        );
    }
}

/// Clicks `label` on a window with a live backend. egui drops a click on a button that was
/// disabled, or drawn as another widget, in the very frame the click landed in (a live cluster can
/// lose its leader between two frames): such a click is made again, as a person would, once the
/// button is enabled.
pub fn click(app: &mut App, label: &str) {
    for _ in 0..3 {
        // A widget that follows a click (a selected node's buttons) appears a frame or two later.
        wait_for(app, &format!("'{label}' on screen"), |app| {
            app.query_by_label(label).is_some().then_some(())
        });
        let button = app.get_by_label(label);
        // A click on a disabled button does nothing: say so rather than wait for its effect.
        assert!(
            !button.accesskit_node().is_disabled(),
            "'{label}' is disabled; notice: {:?}",
            app.state().bar.notice
        );
        let widget = button.accesskit_node().id();
        button.click();
        app.run_steps(1);
        // The frame that took the click. A button gone from it cannot be judged (a click may
        // close what holds it): that click counts as taken.
        let dropped = app.query_by_label(label).is_some_and(|button| {
            let node = button.accesskit_node();
            node.is_disabled() || node.id() != widget
        });
        app.run_steps(1);
        if !dropped {
            return;
        }
        eprintln!("the click on '{label}' landed as the button changed: clicking again");
    }
    panic!("three clicks on '{label}' each landed as the button changed");
}

/// Each node's role, term, leader and whether it answers, for a failure message.
fn nodes_words(state: &flotilla::model::ClusterState) -> String {
    let words: Vec<String> = state
        .nodes
        .values()
        .map(|node| {
            format!(
                "{} {:?} term {} leader {:?}{}",
                node.id,
                node.role,
                node.term.0,
                node.leader_id.map(|id| id.0),
                if node.is_up() { "" } else { " (down)" }
            )
        })
        .collect();
    words.join(", ")
}

/// The leader all nodes up agree on.
pub fn agreed_leader(app: &App) -> Option<NodeId> {
    let live = &app.state().model.live;
    let leader = live.leader()?;
    let agree = live
        .nodes
        .values()
        .filter(|node| node.is_up())
        .all(|node| node.term == leader.term && node.leader_id == Some(leader.id));
    agree.then_some(leader.id)
}

/// Submits `text` through the top bar and waits for its acknowledgement.
pub fn submit(app: &mut App, text: &str) {
    let before = app.state().model.live.submits.len();
    app.get_by_role(egui::accesskit::Role::TextInput).focus();
    app.run_steps(1);
    app.get_by_role(egui::accesskit::Role::TextInput)
        .type_text(text);
    app.run_steps(1);
    click(app, "Submit");
    let outcome = wait_for(app, "the submit's answer", |app| {
        let submits = &app.state().model.live.submits;
        (submits.len() > before).then(|| submits.back().map(|s| s.outcome.clone()))
    });
    assert!(
        matches!(outcome, Some(Ok(_))),
        "'{text}' was not acknowledged: {outcome:?}"
    );
}

/// Every message text node `id` at `base_url` serves from its own applied state.
pub fn texts(id: NodeId, base_url: &str) -> Option<Vec<String>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let api = flotilla_tests::Api::new(None).ok()?;
    let entries = runtime
        .block_on(api.node(id, base_url).all_messages(true))
        .ok()?;
    Some(entries.into_iter().map(|entry| entry.text).collect())
}

/// Selects `node` by clicking its name in the side panel.
pub fn select(app: &mut App, node: NodeId) {
    click(app, &format!("node {node}"));
}

/// Waits until the window (not only the model) shows a leader: the buttons that need one are
/// enabled from then on.
pub fn wait_for_shown_leader(app: &mut App) {
    wait_for(app, "the window showing a leader", |app| {
        app.state_mut().model.view().leader().map(|_| ())
    });
}
