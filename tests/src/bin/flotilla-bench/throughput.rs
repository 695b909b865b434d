//! `throughput`: concurrent writers for a fixed time; committed/s and latency, then a check that
//! nothing acknowledged is lost.

use crate::http1::{authorities, Http1Connection};
use crate::output::{ms, new_histogram, print_table, progress, quantile_ms, Progress};
use crate::target::{targets, verify, LoadTarget, RunIds, Written};
use crate::{one_or_list, Cli};
use anyhow::{Context as _, Result};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One write run per `--clients` value; the report and whether nothing was lost.
pub async fn sweep(target: &Arc<impl LoadTarget>, cli: &Cli) -> Result<(Value, bool)> {
    let mut ok = true;
    let mut rows = Vec::new();
    for &clients in &cli.clients {
        let result = throughput(target, cli, clients, None).await?;
        ok &= result.lost == 0;
        rows.push(result);
    }
    print_table(
        "throughput (writes)",
        &WRITE_HEADER,
        rows.iter().map(WriteResult::row).collect(),
        cli.json,
    );
    let list: Vec<Value> = rows.iter().map(WriteResult::json).collect();
    Ok((one_or_list(list), ok))
}

/// The columns of a write run's table.
pub const WRITE_HEADER: [&str; 8] = [
    "clients",
    "committed/s",
    "p50 ms",
    "p99 ms",
    "p99.9 ms",
    "acked",
    "errors",
    "lost",
];

pub struct WriteResult {
    clients: u32,
    seconds: f64,
    acked: u64,
    errors: u64,
    pub lost: u64,
    duplicated: u64,
    wrong: u64,
    latency: Histogram<u64>,
}

impl WriteResult {
    fn per_sec(&self) -> f64 {
        self.acked as f64 / self.seconds.max(1e-9)
    }

    pub fn row(&self) -> Vec<String> {
        vec![
            self.clients.to_string(),
            format!("{:.0}", self.per_sec()),
            ms(&self.latency, 50.0),
            ms(&self.latency, 99.0),
            ms(&self.latency, 99.9),
            self.acked.to_string(),
            self.errors.to_string(),
            if self.lost + self.duplicated + self.wrong == 0 {
                "0".into()
            } else {
                format!(
                    "LOST {} dup {} wrong {}",
                    self.lost, self.duplicated, self.wrong
                )
            },
        ]
    }

    pub fn json(&self) -> Value {
        json!({
            "clients": self.clients,
            "seconds": self.seconds,
            "commits_per_sec": self.per_sec(),
            "p50_ms": quantile_ms(&self.latency, 50.0),
            "p99_ms": quantile_ms(&self.latency, 99.0),
            "p999_ms": quantile_ms(&self.latency, 99.9),
            "max_ms": self.latency.max() as f64 / 1000.0,
            "acked": self.acked,
            "errors": self.errors,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "wrong": self.wrong,
        })
    }
}

/// `clients` writers for `--seconds`, or until `count` writes were acknowledged; then the check.
pub async fn throughput(
    target: &Arc<impl LoadTarget>,
    cli: &Cli,
    clients: u32,
    count: Option<u64>,
) -> Result<WriteResult> {
    let authorities = authorities(&targets(target.as_ref(), cli.via_followers).await?)?;
    let run = Arc::new(RunIds::new("w"));
    let acked_total = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(cli.seconds);
    let label = match count {
        Some(n) => format!("{clients} writers, {n} messages"),
        None => format!("{clients} writers, {} s", cli.seconds),
    };
    let bar = Progress::start(label, acked_total.clone(), count);
    let mut tasks = Vec::new();
    for client in 0..clients as usize {
        let authority = authorities[client % authorities.len()].clone();
        let (target, run, acked_total) = (target.clone(), run.clone(), acked_total.clone());
        tasks.push(tokio::spawn(async move {
            let mut connection = Http1Connection::new(authority);
            let mut latency = new_histogram();
            let mut acked = Vec::new();
            let mut errors = 0u64;
            loop {
                let done = match count {
                    Some(n) => acked_total.load(Ordering::Relaxed) >= n,
                    None => Instant::now() >= deadline,
                };
                if done {
                    break;
                }
                let request_id = run.request_id(client, acked.len());
                let text = run.text(&request_id);
                let sent = Instant::now();
                match target.write(&mut connection, &request_id, &text).await {
                    Written::Acked(index) => {
                        latency.saturating_record(sent.elapsed().as_micros() as u64);
                        // Index 0 would read as "not acked"; etcd revisions and log indexes start at 1.
                        acked.push(index.max(1));
                        acked_total.fetch_add(1, Ordering::Relaxed);
                    }
                    Written::Failed => {
                        acked.push(0);
                        errors += 1;
                        // A refused write returns fast; do not spin on a cluster without a leader.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            (latency, acked, errors)
        }));
    }
    let mut latency = new_histogram();
    let mut acked = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (h, a, e) = task.await.context("a writer panicked")?;
        latency.add(&h).ok();
        acked.push(a);
        errors += e;
    }
    let seconds = start.elapsed().as_secs_f64();
    bar.finish().await;
    progress(format_args!(
        "checking every acknowledged write is in the log exactly once"
    ));
    let verdict = verify(target.as_ref(), &run, &acked).await?;
    let result = WriteResult {
        clients,
        seconds,
        acked: acked_total.load(Ordering::Relaxed),
        errors,
        lost: verdict.lost,
        duplicated: verdict.duplicated,
        wrong: verdict.wrong,
        latency,
    };
    if result.lost + result.duplicated + result.wrong > 0 {
        eprintln!(
            "lost: {} acknowledged writes missing, {} duplicated, {} with the wrong text or index",
            result.lost, result.duplicated, result.wrong
        );
    }
    Ok(result)
}
