//! `flotilla-bench`: throughput, latency, failover and memory of a Flotilla cluster, measured.
//!
//! By default it starts a local 3-node cluster (release `flotilla-node` next to this binary, via the
//! test harness) in a temp dir; `--endpoints URL,...` targets a running cluster instead, and
//! `--target etcd --endpoints ...` runs the same load against etcd's JSON HTTP gateway so both can be
//! compared with one tool. Every acknowledged write is checked afterwards: a run that lost one prints
//! `lost` and exits non-zero.

use anyhow::{anyhow, bail, Context as _, Result};
use clap::{Parser, ValueEnum};
use flotilla_node::keepalive::authority_of;
use flotilla_shared::api::{MessagesPage, Status, SubmitRequest, SubmitResponse};
use flotilla_shared::event::Role;
use flotilla_shared::{LogIndex, NodeId};
use flotilla_tests::http1::Http1Connection;
use flotilla_tests::{Api, Cluster, Options, MAX_PAGE};
use hdrhistogram::Histogram;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Size of every benchmark message's text, in bytes.
const MESSAGE_BYTES: usize = 100;
/// Longer than a node's own request timeout: a node answers 504 itself before this fires.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Concurrent writers for a fixed time; committed/s and latency, then a check that nothing is lost.
    Throughput,
    /// Concurrent linearizable reads (`GET /v1/messages?limit=1`) for a fixed time.
    Reads,
    /// kill -9 the leader, time until a submit succeeds again; repeated `--rounds` times.
    Failover,
    /// Commit `--messages` messages, then report every node's RSS.
    Memory,
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
struct Cli {
    mode: Mode,
    /// Concurrent clients, a comma-separated sweep.
    #[arg(long, value_delimiter = ',', default_values_t = [1u32, 16, 64, 256])]
    clients: Vec<u32>,
    /// Length of each throughput or reads run.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Failover rounds.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Messages to commit in `memory` mode.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Clients in `memory` mode.
    #[arg(long, default_value_t = 256)]
    memory_clients: u32,
    /// Spread clients over the followers instead of sending to the leader.
    #[arg(long)]
    via_followers: bool,
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
    json: bool,
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
    if cli.target == Target::Etcd && matches!(cli.mode, Mode::Failover | Mode::Memory) {
        bail!("--target etcd supports throughput and reads only");
    }
    if !cli.endpoints.is_empty() && matches!(cli.mode, Mode::Failover) {
        bail!("failover kills nodes, so it needs the local cluster (no --endpoints)");
    }
    Ok((min, max))
}

async fn run(cli: Cli, election: (u64, u64)) -> Result<bool> {
    let api = Api::new(None)?;
    let mut local = None;
    let endpoints: Vec<String> = if cli.endpoints.is_empty() {
        let options = Options {
            heartbeat_ms: cli.heartbeat_ms,
            election_timeout_ms: election,
            admin_token: None,
            cluster_id: "bench".into(),
            log_filter: "warn".into(),
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
    let target = Arc::new(Backend {
        kind: cli.target,
        api: api.clone(),
        endpoints: endpoints.clone(),
    });
    // Peak memory of the local nodes, sampled all along.
    let memory = Arc::new(Mutex::new(BTreeMap::<u64, MemorySample>::new()));
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

    let mut ok = true;
    let mut report = match cli.mode {
        Mode::Throughput => {
            let mut rows = Vec::new();
            for &clients in &cli.clients {
                let result = throughput(&target, &cli, clients, None).await?;
                ok &= result.lost == 0;
                rows.push(result);
            }
            print_table(
                "throughput (writes)",
                &[
                    "clients",
                    "committed/s",
                    "p50 ms",
                    "p99 ms",
                    "p99.9 ms",
                    "acked",
                    "errors",
                    "lost",
                ],
                rows.iter().map(WriteResult::row).collect(),
                &cli,
            );
            let list: Vec<Value> = rows.iter().map(WriteResult::json).collect();
            one_or_list(list)
        }
        Mode::Reads => {
            // Something to read, so the reply is not empty.
            let seeded = throughput(&target, &cli, 4, Some(200)).await?;
            ok &= seeded.lost == 0;
            let mut rows = Vec::new();
            for &clients in &cli.clients {
                rows.push(reads(&target, &cli, clients).await?);
            }
            print_table(
                "linearizable reads",
                &[
                    "clients", "reads/s", "p50 ms", "p99 ms", "p99.9 ms", "reads", "errors",
                ],
                rows.iter().map(ReadResult::row).collect(),
                &cli,
            );
            one_or_list(rows.iter().map(ReadResult::json).collect())
        }
        Mode::Failover => {
            let cluster = local
                .as_mut()
                .ok_or_else(|| anyhow!("failover needs the local cluster"))?;
            let result = failover(cluster, &api, &cli, memory.clone()).await?;
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
                &cli,
            );
            json!({
                "rounds": result.times_ms.len(),
                "median_ms": result.median_ms,
                "max_ms": result.max_ms,
                "times_ms": result.times_ms,
            })
        }
        Mode::Memory => {
            let result = throughput(&target, &cli, cli.memory_clients, Some(cli.messages)).await?;
            ok &= result.lost == 0;
            print_table(
                "memory run (writes)",
                &[
                    "clients",
                    "committed/s",
                    "p50 ms",
                    "p99 ms",
                    "p99.9 ms",
                    "acked",
                    "errors",
                    "lost",
                ],
                vec![result.row()],
                &cli,
            );
            let mut value = result.json();
            if let Some(cluster) = &local {
                // Let the nodes settle (snapshots, caches) before the "after" reading.
                cluster
                    .wait_converged(LogIndex(0), Duration::from_secs(60))
                    .await?;
                let mut after = BTreeMap::new();
                for id in cluster.ids() {
                    if let Some(pid) = cluster.node(id).pid() {
                        after.insert(id.0, read_memory(pid)?);
                    }
                }
                print_table(
                    "node memory after the run",
                    &["node", "VmRSS MiB", "VmHWM MiB"],
                    after
                        .iter()
                        .map(|(id, m)| vec![id.to_string(), mib(m.rss_kib), mib(m.hwm_kib)])
                        .collect(),
                    &cli,
                );
                value["rss_after"] = memory_json(&after);
            }
            value
        }
    };

    sampler_stop.store(true, Ordering::Relaxed);
    if let Some(sampler) = sampler {
        sampler.await.ok();
    }
    let peaks = memory
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if !peaks.is_empty() {
        print_table(
            "node memory, peak during the run",
            &["node", "VmRSS max MiB", "VmHWM MiB"],
            peaks
                .iter()
                .map(|(id, m)| vec![id.to_string(), mib(m.rss_kib), mib(m.hwm_kib)])
                .collect(),
            &cli,
        );
        // The shape: one object per client count, a list of them for a sweep; each carries
        // the peak over the whole invocation.
        let peak = memory_json(&peaks);
        match &mut report {
            Value::Array(runs) => {
                for run in runs {
                    run["node_memory_peak"] = peak.clone();
                }
            }
            single => single["node_memory_peak"] = peak,
        }
    }
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

fn one_or_list(mut list: Vec<Value>) -> Value {
    if list.len() == 1 {
        list.remove(0)
    } else {
        Value::Array(list)
    }
}

// ---- Backends: what a write, a read and a check are on each system ----

/// The outcome of one write.
enum Written {
    /// Committed at this index (Flotilla's log index, etcd's revision).
    Acked(u64),
    /// Refused or unknown; the run goes on.
    Failed,
}

struct Backend {
    kind: Target,
    api: Api,
    endpoints: Vec<String>,
}

impl Backend {
    /// The URLs clients send to: the leader, or the followers with `via_followers`.
    async fn targets(&self, via_followers: bool) -> Result<Vec<String>> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(leader) = self.leader_url().await {
                if !via_followers {
                    return Ok(vec![leader]);
                }
                let followers: Vec<String> = self
                    .endpoints
                    .iter()
                    .filter(|url| **url != leader)
                    .cloned()
                    .collect();
                if followers.is_empty() {
                    bail!("--via-followers needs more than one endpoint");
                }
                return Ok(followers);
            }
            if Instant::now() > deadline {
                bail!("no leader among {:?} within 20 s", self.endpoints);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn leader_url(&self) -> Option<String> {
        match self.kind {
            Target::Flotilla => {
                let mut by_id = BTreeMap::new();
                let mut leader = None;
                for url in &self.endpoints {
                    let Ok(reply) = self
                        .api
                        .request(
                            Method::GET,
                            &format!("{url}/v1/status"),
                            None,
                            &[],
                            Some(Duration::from_secs(2)),
                        )
                        .await
                    else {
                        continue;
                    };
                    let Ok(status) = reply.json::<Status>() else {
                        continue;
                    };
                    if status.role == Role::Leader {
                        leader = Some(status.id);
                    }
                    by_id.insert(status.id, url.clone());
                }
                leader.and_then(|id: NodeId| by_id.get(&id).cloned())
            }
            Target::Etcd => {
                for url in &self.endpoints {
                    let Ok(value) = self
                        .post_json(&format!("{url}/v3/maintenance/status"), &json!({}))
                        .await
                    else {
                        continue;
                    };
                    let member = value["header"]["member_id"].as_str();
                    if member.is_some() && member == value["leader"].as_str() {
                        return Some(url.clone());
                    }
                }
                None
            }
        }
    }

    /// A JSON POST on a connection of its own (setup and checks; load clients keep theirs).
    async fn post_json(&self, url: &str, body: &Value) -> Result<Value> {
        self.post_json_on(
            &mut Http1Connection::new(authority_of(url)?),
            url_path(url)?,
            body,
        )
        .await
    }

    async fn post_json_on(
        &self,
        connection: &mut Http1Connection,
        path: &str,
        body: &Value,
    ) -> Result<Value> {
        let body = serde_json::to_vec(body)?;
        let (status, reply) = connection
            .call("POST", path, Some(&body), REQUEST_TIMEOUT)
            .await?;
        if status != 200 {
            let reply = String::from_utf8_lossy(reply).into_owned();
            bail!(
                "{}{path} answered {status}: {reply}",
                connection.authority()
            );
        }
        Ok(serde_json::from_slice(reply)?)
    }

    async fn write(
        &self,
        connection: &mut Http1Connection,
        request_id: &str,
        text: &str,
    ) -> Written {
        match self.kind {
            Target::Flotilla => {
                let Ok(body) = serde_json::to_vec(&SubmitRequest {
                    text: text.into(),
                    request_id: Some(request_id.into()),
                }) else {
                    return Written::Failed;
                };
                match connection
                    .call("POST", "/v1/messages", Some(&body), REQUEST_TIMEOUT)
                    .await
                {
                    Ok((status, reply)) if (200..300).contains(&status) => {
                        match serde_json::from_slice::<SubmitResponse>(reply) {
                            Ok(response) => Written::Acked(response.index.0),
                            Err(_) => Written::Failed,
                        }
                    }
                    _ => Written::Failed,
                }
            }
            Target::Etcd => {
                let body = json!({ "key": base64(request_id.as_bytes()), "value": base64(text.as_bytes()) });
                match self.post_json_on(connection, "/v3/kv/put", &body).await {
                    Ok(value) => Written::Acked(
                        value["header"]["revision"]
                            .as_str()
                            .and_then(|r| r.parse().ok())
                            .unwrap_or(0),
                    ),
                    Err(_) => Written::Failed,
                }
            }
        }
    }

    /// One linearizable read; whether it succeeded.
    async fn read(&self, connection: &mut Http1Connection) -> bool {
        match self.kind {
            Target::Flotilla => connection
                .call("GET", "/v1/messages?from=1&limit=1", None, REQUEST_TIMEOUT)
                .await
                .is_ok_and(|(status, _)| status == 200),
            Target::Etcd => self
                .post_json_on(
                    connection,
                    "/v3/kv/range",
                    &json!({ "key": base64(b"bench-read"), "limit": 1 }),
                )
                .await
                .is_ok(),
        }
    }

    /// Reads back everything the run wrote (linearizably, from the leader) and checks it against the
    /// acknowledgements: every acked write present exactly once, with its text, at its index.
    async fn verify(&self, run: &RunIds, acked: &[Vec<u64>]) -> Result<Verdict> {
        let leader = self.targets(false).await?.remove(0);
        let mut seen: Vec<Vec<u32>> = acked.iter().map(|a| vec![0; a.len()]).collect();
        let mut wrong = 0u64;
        let mut mark = |request_id: &str, text: Option<&str>, index: Option<u64>| {
            let Some((client, seq)) = run.parse(request_id) else {
                return;
            };
            let Some(count) = seen.get_mut(client).and_then(|s| s.get_mut(seq)) else {
                return;
            };
            *count += 1;
            let acked_at = acked[client][seq];
            let text_ok = text.is_none_or(|t| t == run.text(request_id));
            let index_ok = index.is_none_or(|i| acked_at == 0 || acked_at == i);
            if !(text_ok && index_ok) {
                wrong += 1;
            }
        };
        match self.kind {
            Target::Flotilla => {
                let mut from = 1u64;
                loop {
                    let url = format!("{leader}/v1/messages?from={from}&limit={MAX_PAGE}");
                    let reply = self
                        .api
                        .request(Method::GET, &url, None, &[], Some(Duration::from_secs(30)))
                        .await?;
                    if reply.status != StatusCode::OK {
                        bail!(
                            "reading the log: {url} answered {}: {}",
                            reply.status,
                            reply.text()
                        );
                    }
                    let page: MessagesPage = reply.json()?;
                    for entry in &page.entries {
                        if let Some(request_id) = &entry.request_id {
                            mark(request_id, Some(&entry.text), Some(entry.index.0));
                        }
                    }
                    from += MAX_PAGE as u64;
                    if from > page.commit_index.0 {
                        break;
                    }
                }
            }
            Target::Etcd => {
                // Keys of this run sort between "<prefix>-" and "<prefix>." ('.' follows '-').
                let mut key = format!("{}-", run.prefix).into_bytes();
                let end = format!("{}.", run.prefix).into_bytes();
                loop {
                    let value = self
                        .post_json(
                            &format!("{leader}/v3/kv/range"),
                            &json!({ "key": base64(&key), "range_end": base64(&end), "limit": 10000 }),
                        )
                        .await?;
                    let kvs = value["kvs"].as_array().cloned().unwrap_or_default();
                    let mut last = None;
                    for kv in &kvs {
                        let k = kv["key"].as_str().and_then(unbase64).unwrap_or_default();
                        let v = kv["value"].as_str().and_then(unbase64).unwrap_or_default();
                        let k = String::from_utf8_lossy(&k).into_owned();
                        mark(&k, Some(&String::from_utf8_lossy(&v)), None);
                        last = Some(k);
                    }
                    match last {
                        Some(last) if value["more"].as_bool() == Some(true) => {
                            key = last.into_bytes();
                            key.push(0);
                        }
                        _ => break,
                    }
                }
            }
        }
        let mut verdict = Verdict {
            lost: 0,
            duplicated: 0,
            wrong,
        };
        for (client, indexes) in acked.iter().enumerate() {
            for (seq, &index) in indexes.iter().enumerate() {
                let count = seen[client][seq];
                if index != 0 && count == 0 {
                    verdict.lost += 1;
                }
                if count > 1 {
                    verdict.duplicated += 1;
                }
            }
        }
        Ok(verdict)
    }
}

struct Verdict {
    lost: u64,
    duplicated: u64,
    wrong: u64,
}

/// Request ids and texts of one run: `<prefix>-<client>-<seq>`, text padded to [`MESSAGE_BYTES`].
struct RunIds {
    prefix: String,
}

impl RunIds {
    fn new(label: &str) -> Self {
        static RUN: AtomicU64 = AtomicU64::new(0);
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Self {
            prefix: format!(
                "bench{millis}r{}{label}",
                RUN.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }

    fn request_id(&self, client: usize, seq: usize) -> String {
        format!("{}-{client}-{seq}", self.prefix)
    }

    fn parse(&self, request_id: &str) -> Option<(usize, usize)> {
        let rest = request_id.strip_prefix(&self.prefix)?.strip_prefix('-')?;
        let (client, seq) = rest.split_once('-')?;
        Some((client.parse().ok()?, seq.parse().ok()?))
    }

    fn text(&self, request_id: &str) -> String {
        let mut text = format!("{request_id} ");
        while text.len() < MESSAGE_BYTES {
            text.push('x');
        }
        text
    }
}

// ---- Write load ----

struct WriteResult {
    clients: u32,
    seconds: f64,
    acked: u64,
    errors: u64,
    lost: u64,
    duplicated: u64,
    wrong: u64,
    latency: Histogram<u64>,
}

impl WriteResult {
    fn per_sec(&self) -> f64 {
        self.acked as f64 / self.seconds.max(1e-9)
    }

    fn row(&self) -> Vec<String> {
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

    fn json(&self) -> Value {
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

fn new_histogram() -> Histogram<u64> {
    // Microseconds, 1 µs to 10 min, 3 significant digits; longer values are clamped on record.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant histogram bounds are valid")
}

/// `clients` writers for `--seconds`, or until `count` writes were acknowledged; then the check.
async fn throughput(
    target: &Arc<Backend>,
    cli: &Cli,
    clients: u32,
    count: Option<u64>,
) -> Result<WriteResult> {
    let authorities = authorities(&target.targets(cli.via_followers).await?)?;
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
    let verdict = target.verify(&run, &acked).await?;
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

/// The `host:port` of each URL: load clients connect to it directly.
fn authorities(urls: &[String]) -> Result<Vec<String>> {
    urls.iter()
        .map(|url| Ok(authority_of(url)?.to_string()))
        .collect()
}

/// The path and query of `http://host:port/path?query`.
fn url_path(url: &str) -> Result<&str> {
    let authority = authority_of(url)?;
    Ok(&url["http://".len() + authority.len()..])
        .map(|path| if path.is_empty() { "/" } else { path })
}

// ---- Read load ----

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

async fn reads(target: &Arc<Backend>, cli: &Cli, clients: u32) -> Result<ReadResult> {
    let authorities = authorities(&target.targets(cli.via_followers).await?)?;
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

// ---- Failover ----

struct FailoverResult {
    times_ms: Vec<f64>,
    median_ms: f64,
    max_ms: f64,
}

async fn failover(
    cluster: &mut Cluster,
    api: &Api,
    cli: &Cli,
    memory: Arc<Mutex<BTreeMap<u64, MemorySample>>>,
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
        sample_cluster_memory(cluster, &memory);
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

// ---- Memory ----

#[derive(Clone, Copy, Debug, Default)]
struct MemorySample {
    rss_kib: u64,
    hwm_kib: u64,
}

fn read_memory(pid: u32) -> Result<MemorySample> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse::<u64>().ok())
    };
    Ok(MemorySample {
        rss_kib: field("VmRSS:").ok_or_else(|| anyhow!("no VmRSS in {path}"))?,
        hwm_kib: field("VmHWM:").ok_or_else(|| anyhow!("no VmHWM in {path}"))?,
    })
}

fn record_peak(peaks: &Mutex<BTreeMap<u64, MemorySample>>, node: u64, sample: MemorySample) {
    let mut peaks = peaks.lock().unwrap_or_else(PoisonError::into_inner);
    let peak = peaks.entry(node).or_default();
    peak.rss_kib = peak.rss_kib.max(sample.rss_kib);
    peak.hwm_kib = peak.hwm_kib.max(sample.hwm_kib);
}

fn sample_cluster_memory(cluster: &Cluster, peaks: &Mutex<BTreeMap<u64, MemorySample>>) {
    for id in cluster.ids() {
        if let Some(sample) = cluster.node(id).pid().and_then(|pid| read_memory(pid).ok()) {
            record_peak(peaks, id.0, sample);
        }
    }
}

/// Samples the nodes' RSS every 200 ms. The pids are those at start: a restarted node (failover)
/// is sampled by the failover loop instead.
fn spawn_memory_sampler(
    pids: Vec<(u64, u32)>,
    peaks: Arc<Mutex<BTreeMap<u64, MemorySample>>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            for &(node, pid) in &pids {
                if let Ok(sample) = read_memory(pid) {
                    record_peak(&peaks, node, sample);
                }
            }
            if stop.load(Ordering::Relaxed) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

fn memory_json(samples: &BTreeMap<u64, MemorySample>) -> Value {
    Value::Array(
        samples
            .iter()
            .map(|(id, m)| {
                json!({
                    "node": id,
                    "vm_rss_mib": m.rss_kib as f64 / 1024.0,
                    "vm_hwm_mib": m.hwm_kib as f64 / 1024.0,
                })
            })
            .collect(),
    )
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

// ---- Output ----

fn quantile_ms(histogram: &Histogram<u64>, percentile: f64) -> f64 {
    if histogram.is_empty() {
        return 0.0;
    }
    histogram.value_at_percentile(percentile) as f64 / 1000.0
}

fn ms(histogram: &Histogram<u64>, percentile: f64) -> String {
    format!("{:.2}", quantile_ms(histogram, percentile))
}

/// A status line on stderr.
fn progress(message: std::fmt::Arguments<'_>) {
    eprintln!("flotilla-bench: {message}");
}

/// Prints an aligned table: on stdout, or on stderr with `--json` (stdout then holds only JSON).
fn print_table(title: &str, header: &[&str], rows: Vec<Vec<String>>, cli: &Cli) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.len());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:>width$}", width = widths.get(i).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut text = format!("\n{title}\n{}\n", line(header.to_vec()));
    for row in &rows {
        text.push_str(&line(row.iter().map(String::as_str).collect()));
        text.push('\n');
    }
    if cli.json {
        eprint!("{text}");
    } else {
        print!("{text}");
        std::io::stdout().flush().ok();
    }
}

/// A progress line on stderr, redrawn twice a second (a new line every 5 s when stderr is not a
/// terminal, so logs stay short).
struct Progress {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    fn start(label: String, done: Arc<AtomicU64>, goal: Option<u64>) -> Self {
        use std::io::IsTerminal as _;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let terminal = std::io::stderr().is_terminal();
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut ticks = 0u64;
            while !stopped.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(500)).await;
                ticks += 1;
                let n = done.load(Ordering::Relaxed);
                let secs = start.elapsed().as_secs_f64();
                let of = goal.map(|g| format!("/{g}")).unwrap_or_default();
                let text = format!(
                    "{label}: {secs:.0} s, {n}{of} done, {:.0}/s",
                    n as f64 / secs.max(1e-9)
                );
                if terminal {
                    eprint!("\r\x1b[2K{text}");
                } else if ticks.is_multiple_of(10) {
                    eprintln!("{text}");
                }
            }
            if terminal {
                eprint!("\r\x1b[2K");
            }
        });
        Self { stop, task }
    }

    async fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.ok();
    }
}

// ---- base64 (etcd's JSON gateway carries keys and values as base64) ----

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unbase64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut bits = 0u32;
    let mut count = 0;
    for c in text.bytes().filter(|&c| c != b'=') {
        let value = BASE64.iter().position(|&b| b == c)? as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    Some(out)
}
