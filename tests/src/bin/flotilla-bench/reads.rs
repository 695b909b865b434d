//! `reads`: concurrent linearizable reads (`GET /v1/messages?limit=1`) for a fixed time.

use crate::http1::{authorities, Http1Connection};
use crate::output::{ms, new_histogram, print_table, quantile_ms, Progress};
use crate::target::{targets, LoadTarget};
use crate::throughput::throughput;
use crate::{one_or_list, Cli};
use anyhow::{Context as _, Result};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One read run per `--clients` value, after a few writes so there is something to read; the report
/// and whether those writes were all kept.
pub async fn sweep(target: &Arc<impl LoadTarget>, cli: &Cli) -> Result<(Value, bool)> {
    // Something to read, so the reply is not empty.
    let seeded = throughput(target, cli, 4, Some(200)).await?;
    let ok = seeded.lost == 0;
    let mut rows = Vec::new();
    for &clients in &cli.clients {
        rows.push(reads(target, cli, clients).await?);
    }
    print_table(
        "linearizable reads",
        &[
            "clients", "reads/s", "p50 ms", "p99 ms", "p99.9 ms", "reads", "errors",
        ],
        rows.iter().map(ReadResult::row).collect(),
        cli.json,
    );
    Ok((one_or_list(rows.iter().map(ReadResult::json).collect()), ok))
}

struct ReadResult {
    clients: u32,
    seconds: f64,
    reads: u64,
    errors: u64,
    latency: Histogram<u64>,
}

impl ReadResult {
    fn row(&self) -> Vec<String> {
        vec![
            self.clients.to_string(),
            format!("{:.0}", self.reads as f64 / self.seconds),
            ms(&self.latency, 50.0),
            ms(&self.latency, 99.0),
            ms(&self.latency, 99.9),
            self.reads.to_string(),
            self.errors.to_string(),
        ]
    }

    fn json(&self) -> Value {
        json!({
            "clients": self.clients,
            "seconds": self.seconds,
            "reads_per_sec": self.reads as f64 / self.seconds,
            "p50_ms": quantile_ms(&self.latency, 50.0),
            "p99_ms": quantile_ms(&self.latency, 99.0),
            "p999_ms": quantile_ms(&self.latency, 99.9),
            "reads": self.reads,
            "errors": self.errors,
        })
    }
}

async fn reads(target: &Arc<impl LoadTarget>, cli: &Cli, clients: u32) -> Result<ReadResult> {
    let authorities = authorities(&targets(target.as_ref(), cli.via_followers).await?)?;
    let done_total = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(cli.seconds);
    let bar = Progress::start(
        format!("{clients} readers, {} s", cli.seconds),
        done_total.clone(),
        None,
    );
    let mut tasks = Vec::new();
    for client in 0..clients as usize {
        let authority = authorities[client % authorities.len()].clone();
        let (target, done_total) = (target.clone(), done_total.clone());
        tasks.push(tokio::spawn(async move {
            let mut connection = Http1Connection::new(authority);
            let mut latency = new_histogram();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let sent = Instant::now();
                if target.read(&mut connection).await {
                    latency.saturating_record(sent.elapsed().as_micros() as u64);
                    done_total.fetch_add(1, Ordering::Relaxed);
                } else {
                    errors += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            (latency, errors)
        }));
    }
    let mut latency = new_histogram();
    let mut errors = 0;
    for task in tasks {
        let (h, e) = task.await.context("a reader panicked")?;
        latency.add(&h).ok();
        errors += e;
    }
    let seconds = start.elapsed().as_secs_f64();
    bar.finish().await;
    Ok(ReadResult {
        clients,
        seconds,
        reads: done_total.load(Ordering::Relaxed),
        errors,
        latency,
    })
}
