//! `members`: add a node to a cluster holding `--preload` messages while clients write; how long the
//! learner takes to catch up and to be promoted, and the writers' latency before, during and after.

use crate::flotilla::Flotilla;
use crate::output::{print_table, progress};
use crate::throughput::{throughput, WriteResult};
use crate::Cli;
use anyhow::{anyhow, Result};
use flotilla_shared::api::MemberRole;
use flotilla_shared::NodeId;
use flotilla_tests::{wait_until, Cluster};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The node added: the one after the local cluster's three.
const NEW_NODE: NodeId = NodeId(4);

pub async fn measure(
    cluster: &mut Cluster,
    target: &Arc<Flotilla>,
    cli: &Cli,
) -> Result<(Value, bool)> {
    let clients = cli.clients[0];
    progress(format_args!("preloading {} messages", cli.preload));
    let preload = throughput(target, cli, cli.memory_clients, Some(cli.preload)).await?;
    let before = throughput(target, cli, clients, None).await?;

    let voters = cluster.ids();
    let leader = cluster
        .wait_for_leader_among(&voters, Duration::from_secs(20))
        .await?;
    cluster.start_joining(NEW_NODE).await?;
    let cluster = &*cluster;
    let goal = cluster.client(leader).status().await?.commit_index;
    let addr = cluster.node(NEW_NODE).addr();
    progress(format_args!(
        "adding node {NEW_NODE} as a voter; the leader's commit index is {goal}"
    ));
    let started = Instant::now();
    let watch = async {
        // Caught up: the learner applied what the leader had committed when it was added.
        wait_until(
            Duration::from_secs(600),
            "the new node caught up",
            async || {
                let status = cluster.client(NEW_NODE).status().await.ok()?;
                (status.last_applied >= goal).then_some(())
            },
        )
        .await?;
        let caught_up = started.elapsed();
        // Promoted: the leader's configuration lists it as a voter, committed.
        wait_until(
            Duration::from_secs(600),
            "the new node promoted",
            async || {
                let status = cluster.client(leader).status().await.ok()?;
                let voter = status
                    .members
                    .iter()
                    .any(|m| m.id == NEW_NODE && m.role == MemberRole::Voter);
                (voter && status.commit_index >= status.config_index).then_some(())
            },
        )
        .await?;
        anyhow::Ok((caught_up, started.elapsed()))
    };
    let add = async {
        // Answered once promoted, or 504 while still catching up: `watch` times both.
        let _ = cluster
            .client(leader)
            .add_member(NEW_NODE, &addr, MemberRole::Voter)
            .await;
        anyhow::Ok(())
    };
    let (during, timings, _) = tokio::join!(throughput(target, cli, clients, None), watch, add);
    let (during, (caught_up, promoted)) = (during?, timings?);
    let after = throughput(target, cli, clients, None).await?;
    let ms = |d: Duration| format!("{:.0}", d.as_secs_f64() * 1000.0);
    print_table(
        &format!(
            "add node {NEW_NODE} to a cluster holding {} messages",
            cli.preload
        ),
        &[
            "caught up ms",
            "promoted ms",
            "p99 before",
            "p99 during",
            "p99 after",
        ],
        vec![vec![
            ms(caught_up),
            ms(promoted),
            p99(&before),
            p99(&during),
            p99(&after),
        ]],
        cli.json,
    );
    let ok = [&preload, &before, &during, &after]
        .iter()
        .all(|run| run.lost == 0);
    if !ok {
        return Err(anyhow!(
            "acknowledged writes were lost: this run is not a result"
        ));
    }
    Ok((
        json!({
            "preload": cli.preload,
            "caught_up_ms": caught_up.as_secs_f64() * 1000.0,
            "promoted_ms": promoted.as_secs_f64() * 1000.0,
            "before": before.json(),
            "during": during.json(),
            "after": after.json(),
        }),
        ok,
    ))
}

fn p99(run: &WriteResult) -> String {
    run.row()[3].clone()
}
