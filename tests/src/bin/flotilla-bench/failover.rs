//! `failover`: kill -9 the leader, time until a submit succeeds again; repeated `--rounds` times.

use crate::memory::{sample_cluster_memory, Peaks};
use crate::output::{print_table, progress};
use crate::target::RunIds;
use crate::Cli;
use anyhow::{anyhow, Result};
use flotilla_shared::api::SubmitRequest;
use flotilla_shared::LogIndex;
use flotilla_tests::{Api, Cluster};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The failover rounds and their report.
pub async fn measure(cluster: &mut Cluster, api: &Api, cli: &Cli, memory: &Peaks) -> Result<Value> {
    let result = failover(cluster, api, cli, memory).await?;
    let ms: Vec<String> = result.times_ms.iter().map(|t| format!("{t:.0}")).collect();
    print_table(
        "failover (kill -9 the leader)",
        &["rounds", "median ms", "max ms", "each ms"],
        vec![vec![
            result.times_ms.len().to_string(),
            format!("{:.0}", result.median_ms),
            format!("{:.0}", result.max_ms),
            ms.join(" "),
        ]],
        cli.json,
    );
    Ok(json!({
        "rounds": result.times_ms.len(),
        "median_ms": result.median_ms,
        "max_ms": result.max_ms,
        "times_ms": result.times_ms,
    }))
}

struct FailoverResult {
    times_ms: Vec<f64>,
    median_ms: f64,
    max_ms: f64,
}

async fn failover(
    cluster: &mut Cluster,
    api: &Api,
    cli: &Cli,
    memory: &Peaks,
) -> Result<FailoverResult> {
    let run = RunIds::new("f");
    let mut times_ms = Vec::new();
    let mut written = 0usize;
    for round in 0..cli.rounds {
        let leader = cluster.wait_for_leader(Duration::from_secs(20)).await?;
        let survivors: Vec<String> = cluster
            .running()
            .into_iter()
            .filter(|&id| id != leader)
            .map(|id| cluster.url(id))
            .collect();
        cluster.kill(leader)?;
        let killed = Instant::now();
        // Submit to the survivors in turn until one write is committed.
        let mut recovered = None;
        let mut turn = 0usize;
        while killed.elapsed() < Duration::from_secs(30) {
            let url = &survivors[turn % survivors.len()];
            turn += 1;
            let request_id = run.request_id(0, written);
            written += 1;
            let body = serde_json::to_vec(&SubmitRequest {
                text: run.text(&request_id),
                request_id: Some(request_id),
            })?;
            let reply = api
                .request(
                    Method::POST,
                    &format!("{url}/v1/messages"),
                    Some(("application/json", body)),
                    &[],
                    Some(Duration::from_secs(1)),
                )
                .await;
            if reply.is_ok_and(|r| r.status.is_success()) {
                recovered = Some(killed.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let elapsed = recovered.ok_or_else(|| {
            anyhow!(
                "round {}: no write succeeded within 30 s of the kill",
                round + 1
            )
        })?;
        let ms = elapsed.as_secs_f64() * 1000.0;
        progress(format_args!(
            "failover round {}/{}: killed node {leader}, a write committed after {ms:.0} ms",
            round + 1,
            cli.rounds
        ));
        times_ms.push(ms);
        cluster.restart(leader).await?;
        sample_cluster_memory(cluster, memory);
        // The restarted node catches up before the next round, so every round starts from 3 healthy nodes.
        cluster
            .wait_converged(LogIndex(0), Duration::from_secs(30))
            .await?;
    }
    let mut sorted = times_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let median_ms = if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2]
    } else {
        (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2.0
    };
    Ok(FailoverResult {
        median_ms,
        max_ms: sorted.last().copied().unwrap_or(0.0),
        times_ms,
    })
}
