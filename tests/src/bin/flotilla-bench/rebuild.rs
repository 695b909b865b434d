//! `rebuild`: commit `--messages` messages, then wipe a follower's disk and restart it; time until it
//! applied everything the leader had committed, and the snapshot bytes the leader sent it.

use crate::output::{print_table, progress};
use crate::target::LoadTarget;
use crate::throughput::throughput;
use crate::Cli;
use anyhow::{anyhow, Result};
use flotilla_shared::event::EventKind;
use flotilla_shared::LogIndex;
use flotilla_tests::{wait_until, Cluster, EventTap};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest a rebuild may take before the run gives up.
const REBUILD_TIMEOUT: Duration = Duration::from_secs(600);

pub async fn measure(
    target: &Arc<impl LoadTarget>,
    cli: &Cli,
    cluster: &mut Cluster,
) -> Result<(Value, bool)> {
    let written = throughput(target, cli, cli.memory_clients, Some(cli.messages)).await?;
    let ok = written.lost == 0;
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await?;
    let follower = *cluster
        .ids()
        .iter()
        .find(|&&id| id != leader)
        .ok_or_else(|| anyhow!("the cluster has no follower"))?;
    let commit = cluster.client(leader).status().await?.commit_index;
    cluster
        .wait_converged(commit, Duration::from_secs(120))
        .await?;
    progress(format_args!(
        "wiping node {follower}'s data dir and restarting it (leader {leader} committed {commit})"
    ));
    let sent = EventTap::start(&cluster.url(leader), 0).await?;
    cluster.kill(follower)?;
    std::fs::remove_dir_all(&cluster.node(follower).data_dir)?;
    let started = Instant::now();
    cluster.restart(follower).await?;
    let client = cluster.client(follower);
    wait_until(
        REBUILD_TIMEOUT,
        "the wiped follower applied the leader's commit",
        async || {
            let status = client.status().await.ok()?;
            (status.last_applied >= commit).then_some(())
        },
    )
    .await?;
    let took = started.elapsed();
    let (mut bytes, mut chunks, mut snapshot) = (0u64, 0u64, LogIndex(0));
    for event in sent.events() {
        if let EventKind::SnapshotSent {
            to,
            bytes: b,
            index,
            ..
        } = event.kind
        {
            if to == follower {
                bytes += b;
                chunks += 1;
                snapshot = snapshot.max(index);
            }
        }
    }
    print_table(
        "rebuild of a wiped follower",
        &[
            "commit",
            "seconds",
            "snapshot index",
            "snapshot bytes sent",
            "chunks",
        ],
        vec![vec![
            commit.to_string(),
            format!("{:.2}", took.as_secs_f64()),
            snapshot.to_string(),
            bytes.to_string(),
            chunks.to_string(),
        ]],
        cli.json,
    );
    let mut value = written.json();
    value["rebuild"] = json!({
        "commit_index": commit,
        "seconds": took.as_secs_f64(),
        "snapshot_index": snapshot,
        "snapshot_bytes_sent": bytes,
        "chunks": chunks,
    });
    Ok((value, ok))
}
