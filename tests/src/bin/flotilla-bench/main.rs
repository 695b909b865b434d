//! `flotilla-bench`: throughput, latency, failover and memory of a Flotilla cluster, measured.
//!
//! By default it starts a local 3-node cluster (release `flotilla-node` next to this binary, via the
//! test harness) in a temp dir; `--endpoints URL,...` targets a running cluster instead, and
//! `--target etcd --endpoints ...` runs the same load against etcd's JSON HTTP gateway so both can be
//! compared with one tool. Every acknowledged write is checked afterwards: a run that lost one prints
//! `lost` and exits non-zero.
//!
//! One file per mode (`throughput`, `reads`, `failover`, `memory`); what a write, a read and the final
//! check are on each system is a [`target::LoadTarget`] (`flotilla`, `etcd`); `http1` is the load
//! clients' own HTTP/1.1 connection.

mod etcd;
mod failover;
mod flotilla;
mod http1;
mod members;
mod memory;
mod output;
mod reads;
mod rebuild;
mod target;
mod throughput;

use anyhow::{anyhow, bail, Result};
use clap::{Parser, ValueEnum};
use etcd::Etcd;
use flotilla::Flotilla;
use flotilla_tests::{Api, Cluster, Options};
use memory::{spawn_memory_sampler, Peaks};
use output::progress;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use target::LoadTarget;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Concurrent writers for a fixed time; committed/s and latency, then a check that nothing is lost.
    Throughput,
    /// Concurrent linearizable reads (`GET /v1/messages?limit=1`) for a fixed time.
    Reads,
    /// kill -9 the leader, time until a submit succeeds again; repeated `--rounds` times.
    Failover,
    /// Commit `--messages` messages, then report every node's RSS, log rows and disk use.
    Memory,
    /// Preload `--preload` messages, then add a 4th node (started with `--join`) while the first
    /// `--clients` count writes: time until it caught up and was promoted, p99 before/during/after.
    Members,
    /// Commit `--messages` messages, wipe a follower's disk and restart it: time until it applied the
    /// leader's commit, and the snapshot bytes sent to it.
    Rebuild,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Target {
    Flotilla,
    /// etcd v3's JSON gateway (`POST /v3/kv/put`, `/v3/kv/range`); needs `--endpoints`.
    Etcd,
}

#[derive(Parser, Debug)]
#[command(
    name = "flotilla-bench",
    about = "Measure a Flotilla cluster: throughput, reads, failover, memory"
)]
pub struct Cli {
    mode: Mode,
    /// Concurrent clients, a comma-separated sweep.
    #[arg(long, value_delimiter = ',', default_values_t = [1u32, 16, 64, 256])]
    pub clients: Vec<u32>,
    /// Length of each throughput or reads run.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Failover rounds.
    #[arg(long, default_value_t = 5)]
    pub rounds: u32,
    /// Snapshot threshold of the local cluster's nodes (`--snapshot-threshold`); their default if
    /// unset.
    #[arg(long)]
    pub snapshot_threshold: Option<u64>,
    /// Messages to commit in `memory` and `rebuild` modes.
    #[arg(long, default_value_t = 1_000_000)]
    pub messages: u64,
    /// Messages committed before the node is added in `members` mode.
    #[arg(long, default_value_t = 100_000)]
    pub preload: u64,
    /// Clients in `memory` and `rebuild` modes (and the preload of `members` mode).
    #[arg(long, default_value_t = 256)]
    pub memory_clients: u32,
    /// Spread clients over the followers instead of sending to the leader.
    #[arg(long)]
    pub via_followers: bool,
    /// Use a running cluster at these URLs instead of starting one.
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<String>,
    #[arg(long, value_enum, default_value_t = Target::Flotilla)]
    target: Target,
    /// Election timeout range of the local cluster, MIN-MAX ms.
    #[arg(long, default_value = "150-300")]
    election_timeout_ms: String,
    #[arg(long, default_value_t = 50)]
    heartbeat_ms: u64,
    /// Print one JSON document on stdout (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => match error.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                error.exit()
            }
            _ => {
                let text = error.to_string();
                let line = text.lines().next().unwrap_or("invalid arguments");
                eprintln!("flotilla-bench: {}", line.trim_start_matches("error: "));
                std::process::exit(2);
            }
        },
    };
    let election = match validate(&cli) {
        Ok(election) => election,
        Err(error) => {
            eprintln!("flotilla-bench: {error:#}");
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("flotilla-bench: cannot start the runtime: {error}");
            std::process::exit(1);
        }
    };
    match runtime.block_on(run(cli, election)) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(error) => {
            eprintln!("flotilla-bench: {error:#}");
            std::process::exit(1);
        }
    }
}

/// Checks the flags that clap cannot; returns the election timeout range.
fn validate(cli: &Cli) -> Result<(u64, u64)> {
    if cli.clients.is_empty() || cli.clients.contains(&0) {
        bail!("--clients must be positive numbers");
    }
    if cli.clients.iter().any(|&c| c > 4096) || cli.memory_clients == 0 || cli.memory_clients > 4096
    {
        bail!("at most 4096 clients, at least 1");
    }
    if !(cli.seconds > 0.0 && cli.seconds <= 3600.0) {
        bail!("--seconds must be in (0, 3600]");
    }
    if cli.rounds == 0 || cli.rounds > 1000 {
        bail!("--rounds must be 1..=1000");
    }
    if cli.messages == 0 || cli.messages > 100_000_000 {
        bail!("--messages must be 1..=100000000");
    }
    if cli.heartbeat_ms == 0 {
        bail!("--heartbeat-ms must be positive");
    }
    let (min, max) = cli
        .election_timeout_ms
        .split_once('-')
        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
        .ok_or_else(|| anyhow!("--election-timeout-ms must be MIN-MAX, e.g. 150-300"))?;
    if min == 0 || min > max {
        bail!("--election-timeout-ms needs 0 < MIN <= MAX");
    }
    for url in &cli.endpoints {
        if !url.starts_with("http://") {
            bail!("endpoint {url:?} must start with http:// (the load clients speak plain HTTP)");
        }
    }
    if cli.target == Target::Etcd && cli.endpoints.is_empty() {
        bail!("--target etcd needs --endpoints (the bench starts only Flotilla clusters)");
    }
    if cli.target == Target::Etcd
        && matches!(cli.mode, Mode::Failover | Mode::Memory | Mode::Rebuild)
    {
        bail!("--target etcd supports throughput and reads only");
    }
    if !cli.endpoints.is_empty()
        && matches!(cli.mode, Mode::Failover | Mode::Members | Mode::Rebuild)
    {
        bail!("failover, members and rebuild start or kill nodes, so they need the local cluster (no --endpoints)");
    }
    if cli.target == Target::Etcd && cli.mode == Mode::Members {
        bail!("--target etcd supports throughput and reads only");
    }
    if cli.preload == 0 || cli.preload > 100_000_000 {
        bail!("--preload must be 1..=100000000");
    }
    Ok((min, max))
}

async fn run(cli: Cli, election: (u64, u64)) -> Result<bool> {
    let api = Api::new((cli.mode == Mode::Members).then(|| "bench-admin".into()))?;
    let mut local = None;
    let endpoints: Vec<String> = if cli.endpoints.is_empty() {
        let options = Options {
            heartbeat_ms: cli.heartbeat_ms,
            election_timeout_ms: election,
            // Only `members` uses the admin API.
            admin_token: (cli.mode == Mode::Members).then(|| "bench-admin".into()),
            cluster_id: "bench".into(),
            log_filter: "warn".into(),
            extra_args: cli
                .snapshot_threshold
                .map(|n| vec!["--snapshot-threshold".to_string(), n.to_string()])
                .unwrap_or_default(),
            ..Options::default()
        };
        progress(format_args!("starting a local 3-node cluster"));
        let cluster = Cluster::start(3, options).await?;
        cluster.wait_for_leader(Duration::from_secs(20)).await?;
        let urls = cluster.ids().iter().map(|&id| cluster.url(id)).collect();
        local = Some(cluster);
        urls
    } else {
        cli.endpoints
            .iter()
            .map(|u| u.trim_end_matches('/').to_string())
            .collect()
    };
    // Peak memory of the local nodes, sampled all along.
    let memory: Peaks = Arc::new(Mutex::new(BTreeMap::new()));
    let sampler_stop = Arc::new(AtomicBool::new(false));
    let sampler = local.as_ref().map(|cluster| {
        spawn_memory_sampler(
            cluster
                .ids()
                .iter()
                .filter_map(|&id| Some((id.0, cluster.node(id).pid()?)))
                .collect(),
            memory.clone(),
            sampler_stop.clone(),
        )
    });

    let (mut report, ok) = match cli.target {
        Target::Flotilla => {
            let target = Arc::new(Flotilla {
                api: api.clone(),
                endpoints,
            });
            if cli.mode == Mode::Members {
                let cluster = local
                    .as_mut()
                    .ok_or_else(|| anyhow!("members needs the local cluster"))?;
                members::measure(cluster, &target, &cli).await?
            } else {
                run_mode(&target, &cli, &mut local, &api, &memory).await?
            }
        }
        Target::Etcd => {
            let target = Arc::new(Etcd { endpoints });
            run_mode(&target, &cli, &mut local, &api, &memory).await?
        }
    };

    sampler_stop.store(true, Ordering::Relaxed);
    if let Some(sampler) = sampler {
        sampler.await.ok();
    }
    memory::report_peaks(&memory, &mut report, cli.json);
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    if !ok {
        eprintln!("flotilla-bench: lost acknowledged writes: this run is not a result");
    }
    if let Some(cluster) = local {
        cluster.finish(Ok(()));
    }
    Ok(ok)
}

/// Runs the chosen mode against `target`: its report, and whether every acknowledged write was kept.
async fn run_mode(
    target: &Arc<impl LoadTarget>,
    cli: &Cli,
    local: &mut Option<Cluster>,
    api: &Api,
    memory: &Peaks,
) -> Result<(Value, bool)> {
    match cli.mode {
        Mode::Throughput => throughput::sweep(target, cli).await,
        Mode::Reads => reads::sweep(target, cli).await,
        Mode::Failover => {
            let cluster = local
                .as_mut()
                .ok_or_else(|| anyhow!("failover needs the local cluster"))?;
            Ok((failover::measure(cluster, api, cli, memory).await?, true))
        }
        Mode::Memory => memory::measure(target, cli, local.as_ref()).await,
        Mode::Members => Err(anyhow!("members runs against Flotilla only")),
        Mode::Rebuild => {
            let cluster = local
                .as_mut()
                .ok_or_else(|| anyhow!("rebuild needs the local cluster"))?;
            rebuild::measure(target, cli, cluster).await
        }
    }
}

fn one_or_list(mut list: Vec<Value>) -> Value {
    if list.len() == 1 {
        list.remove(0)
    } else {
        Value::Array(list)
    }
}
