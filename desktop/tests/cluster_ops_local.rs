//! Reshaping a cluster of real local node processes through the window's click path (kittest clicks
//! → intents → backend → processes and admin API):
//! - "Wipe disk and restart" on a follower, and on the leader, deletes its data dir and starts it
//!   again blank: it comes back with an empty log (its first append after the wipe starts at index 1)
//!   and catches up with every message.
//! - "Add node" twice, then "Remove node" on the leader and on another member (3 → 5 → 3 nodes):
//!   every acknowledged message is present exactly once on every remaining member. This needs nodes
//!   with `--join` and `/v1/admin/members` (Raft §6).

mod local_cluster;
mod window;

use flotilla::backend;
use flotilla::ui::{Tempo, ADD_NODE};
use flotilla_shared::api::MemberRole;
use flotilla_shared::event::EventKind;
use flotilla_shared::NodeId;
use std::path::Path;
use std::sync::Arc;
use window::*;

fn start(data: &Path, first_port: u16) -> (App, Vec<backend::NodeEndpoint>) {
    let tempo = Tempo { factor: 2 };
    let control = local_cluster::start(data, 3, local_cluster::app_nodes(), tempo, first_port);
    let endpoints = backend::ClusterControl::nodes(&control);
    let handle =
        backend::start(Box::new(control), tempo.timing(), Arc::new(|| {})).expect("backend");
    (window(handle, tempo), endpoints)
}

/// Which node the wipe tests pick.
#[derive(Clone, Copy, PartialEq)]
enum Wiped {
    /// The leader keeps its match index for the follower, which no longer has those entries: the
    /// leader must notice the follower's log is now shorter than what it acknowledged.
    Follower,
    /// A new leader is elected and starts from nothing known of the wiped node.
    Leader,
}

#[test]
fn a_wiped_follower_comes_back_blank_and_catches_up() {
    wipe_and_watch_it_rebuilt(Wiped::Follower, 17_800);
}

#[test]
fn a_wiped_leader_comes_back_blank_and_catches_up() {
    wipe_and_watch_it_rebuilt(Wiped::Leader, 17_810);
}

/// Clicks "Wipe disk and restart" on the node `which` picks: its data dir goes, it comes back blank
/// (its first append starts at index 1) and catches up with every message.
fn wipe_and_watch_it_rebuilt(which: Wiped, first_port: u16) {
    let data = tempfile::tempdir().expect("tempdir");
    let (mut app, endpoints) = start(data.path(), first_port);
    let leader = wait_for(&mut app, "a leader", |app| agreed_leader(app));
    let sent: Vec<String> = (0..5).map(|n| format!("before wipe {n}")).collect();
    for text in &sent {
        submit(&mut app, text);
    }
    let wiped = endpoints
        .iter()
        .find(|endpoint| (endpoint.id == leader) == (which == Wiped::Leader))
        .cloned()
        .expect("the node to wipe");
    let data_dir = data
        .path()
        .join("cluster-3")
        .join(format!("node-{}", wiped.id.0));
    assert!(data_dir.exists(), "the node keeps its data in {data_dir:?}");
    // Anything in the data dir goes with the wipe.
    let marker = data_dir.join("left-before-the-wipe");
    std::fs::write(&marker, b"x").expect("marker");
    let recorded_before = app.state().model.timeline.end();

    select(&mut app, wiped.id);
    click(
        &mut app,
        &format!("Wipe disk and restart node {}", wiped.id),
    );
    // The node starts over: its first append after the wipe starts at index 1.
    wait_for(
        &mut app,
        "the wiped node taking entries from index 1",
        |app| {
            app.state()
                .model
                .timeline
                .iter()
                .filter(|(position, _)| *position >= recorded_before)
                .any(|(_, record)| {
                    record.event().is_some_and(|event| {
                        event.node == wiped.id
                            && matches!(
                                event.kind,
                                EventKind::EntryAppended { first, .. } if first.0 == 1
                            )
                    })
                })
                .then_some(())
        },
    );
    assert!(!marker.exists(), "the data dir was not wiped");

    wait_for(&mut app, "the wiped node listing every message", |_| {
        (texts(wiped.id, &wiped.base_url)? == sent).then_some(())
    });
    let notice = app.state().bar.notice.clone();
    assert!(
        matches!(&notice, Some((text, false)) if text.contains("wipe")),
        "the window says what it did: {notice:?}"
    );
}

#[test]
fn grow_to_five_then_remove_the_leader_and_another_by_click() {
    let data = tempfile::tempdir().expect("tempdir");
    let (mut app, _endpoints) = start(data.path(), 17_830);
    wait_for(&mut app, "a leader", |app| agreed_leader(app));
    let mut sent = Vec::new();
    for round in 0..3 {
        let text = format!("three nodes {round}");
        submit(&mut app, &text);
        sent.push(text);
    }
    for added in [NodeId(4), NodeId(5)] {
        wait_for_shown_leader(&mut app);
        click(&mut app, ADD_NODE);
        wait_for(&mut app, "the new node a voter", |app| {
            let live = &app.state().model.live;
            let config = live.configuration()?;
            let voter = config
                .members
                .iter()
                .any(|member| member.id == added && member.role == MemberRole::Voter);
            (voter && config.committed && live.nodes.get(&added)?.is_up()).then_some(())
        });
        let text = format!("after adding {added}");
        submit(&mut app, &text);
        sent.push(text);
    }
    assert_eq!(app.state().model.live.nodes.len(), 5);

    let leader = wait_for(&mut app, "a leader of five", |app| agreed_leader(app));
    select(&mut app, leader);
    wait_for_shown_leader(&mut app);
    click(&mut app, &format!("Remove node {leader}"));
    wait_for(&mut app, "the old leader gone and a new one", |app| {
        let live = &app.state().model.live;
        let gone = !live.nodes.contains_key(&leader);
        let new_leader = agreed_leader(app).filter(|id| *id != leader);
        (gone && live.nodes.len() == 4)
            .then_some(new_leader)
            .flatten()
    });
    submit(&mut app, "after removing the leader");
    sent.push("after removing the leader".into());

    let other = *app
        .state()
        .model
        .live
        .nodes
        .keys()
        .find(|id| agreed_leader(&app) != Some(**id))
        .expect("a follower");
    select(&mut app, other);
    wait_for_shown_leader(&mut app);
    click(&mut app, &format!("Remove node {other}"));
    wait_for(&mut app, "the follower gone", |app| {
        (!app.state().model.live.nodes.contains_key(&other)).then_some(())
    });
    submit(&mut app, "three again");
    sent.push("three again".into());

    let remaining: Vec<(NodeId, String)> = {
        let statuses = app
            .state()
            .model
            .live
            .nodes
            .keys()
            .copied()
            .collect::<Vec<_>>();
        assert_eq!(statuses.len(), 3, "three members remain");
        let config = app
            .state()
            .model
            .live
            .configuration()
            .cloned()
            .expect("a configuration");
        config
            .members
            .iter()
            .map(|member| (member.id, format!("http://{}", member.addr)))
            .collect()
    };
    for (id, url) in &remaining {
        wait_for(
            &mut app,
            "every message exactly once on every member",
            |_| (texts(*id, url)? == sent).then_some(()),
        );
        eprintln!("node {id} lists all {} messages once", sent.len());
    }
}
