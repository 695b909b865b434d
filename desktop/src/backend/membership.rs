//! Growing and shrinking the cluster from the window: a new node is started to join, watched like
//! the others, and added through the leader; a removed node is stopped and no longer watched once
//! its removal has committed. The HTTP calls run on the runtime; what they decide about processes
//! and watching comes back to the run loop, which owns the control and the session.

use super::{http, unix_ms, ClusterControl, JoiningNode, Session, UiSender};
use crate::model::{ProcessState, Record};
use flotilla_shared::NodeId;

/// The screen shows a ring of at most this many nodes.
pub const MAX_NODES: usize = 7;

/// What a membership change left for the run loop to do.
#[derive(Debug)]
pub(super) enum Outcome {
    /// A node started elsewhere (a container) is up, or could not be started.
    Started(anyhow::Result<JoiningNode>),
    /// The node could not be added: stop it again.
    AddFailed(NodeId),
    /// The node's removal committed: stop it.
    Removed(NodeId),
}

pub(super) type OutcomeSender = tokio::sync::mpsc::UnboundedSender<Outcome>;

/// Starts a joining node; once it runs, watches it and asks the leader to add it.
pub(super) fn add(
    control: &mut dyn ClusterControl,
    session: &mut Session,
    ui: &UiSender,
    done: &OutcomeSender,
) {
    if control.nodes().len() >= MAX_NODES {
        ui.notice(
            format!("the window shows at most {MAX_NODES} nodes: remove one first"),
            true,
        );
        return;
    }
    if let Some(pending) = control.start_joining_node_elsewhere() {
        ui.notice("starting a new node…", false);
        let done = done.clone();
        tokio::spawn(async move {
            let started = pending
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the start was abandoned")));
            let _ = done.send(Outcome::Started(started));
        });
        return;
    }
    let started = control.start_joining_node();
    started_node(started, control, session, ui, done);
}

/// Watches a node started to join and asks the leader to add it.
fn started_node(
    started: anyhow::Result<JoiningNode>,
    control: &mut dyn ClusterControl,
    session: &mut Session,
    ui: &UiSender,
    done: &OutcomeSender,
) {
    let joining = match started {
        Ok(joining) => joining,
        Err(error) => {
            ui.notice(format!("could not start a new node: {error:#}"), true);
            return;
        }
    };
    let node = joining.endpoint.id;
    session.client = http::Client::new(control.nodes(), control.admin_token());
    session.watch(joining.endpoint.clone(), ui);
    ui.notice(
        format!(
            "node {node} started at {}; adding it (learner first, then voter once caught up)…",
            joining.peer_addr
        ),
        false,
    );
    let client = session.client.clone();
    let statuses = session.statuses.clone();
    let ui = ui.clone();
    let done = done.clone();
    tokio::spawn(async move {
        match http::add_member(&client, &statuses, node, joining.peer_addr).await {
            Ok(answer) => ui.notice(
                format!("node {node} added: {}", http::members_words(&answer)),
                false,
            ),
            Err(error) => {
                ui.notice(
                    format!(
                        "could not add node {node}: {}; the new node is stopped",
                        http::change_words(&error)
                    ),
                    true,
                );
                let _ = done.send(Outcome::AddFailed(node));
            }
        }
    });
}

/// Asks the leader to remove `node`; the run loop stops it once that committed.
pub(super) fn remove(node: NodeId, session: &Session, ui: &UiSender, done: &OutcomeSender) {
    ui.notice(format!("removing node {node}…"), false);
    let client = session.client.clone();
    let statuses = session.statuses.clone();
    let ui = ui.clone();
    let done = done.clone();
    tokio::spawn(async move {
        match http::remove_member(&client, &statuses, node).await {
            Ok(answer) => {
                ui.notice(
                    format!("node {node} removed: {}", http::members_words(&answer)),
                    false,
                );
                let _ = done.send(Outcome::Removed(node));
            }
            Err(error) => ui.notice(
                format!(
                    "could not remove node {node}: {}",
                    http::change_words(&error)
                ),
                true,
            ),
        }
    });
}

/// Stops a node that left (or never joined) and stops watching it.
pub(super) fn settle(
    outcome: Outcome,
    control: &mut dyn ClusterControl,
    session: &mut Session,
    ui: &UiSender,
    done: &OutcomeSender,
) {
    let node = match outcome {
        Outcome::Started(started) => return started_node(started, control, session, ui, done),
        Outcome::AddFailed(node) | Outcome::Removed(node) => node,
    };
    session.unwatch(node);
    let left_words = move |error: anyhow::Error| format!("node {node} left the cluster: {error:#}");
    if let Some(pending) = control.forget_node_elsewhere(node) {
        let ui = ui.clone();
        tokio::spawn(async move {
            let stopped = pending
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("its stop was abandoned")));
            if let Err(error) = stopped {
                ui.notice(left_words(error), true);
            }
        });
    } else if let Err(error) = control.forget_node(node) {
        ui.notice(left_words(error), true);
    }
    session.client = http::Client::new(control.nodes(), control.admin_token());
    ui.record(Record::Process {
        at_ms: unix_ms(),
        node,
        state: ProcessState::Dead,
    });
}
