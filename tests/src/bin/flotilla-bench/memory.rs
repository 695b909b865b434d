//! `memory`: commit `--messages` messages, then report every node's RSS, Raft log rows and disk use;
//! and the peak RSS sampled during every mode on a local cluster.

use crate::output::print_table;
use crate::target::LoadTarget;
use crate::throughput::{throughput, WRITE_HEADER};
use crate::Cli;
use anyhow::{anyhow, Context as _, Result};
use flotilla_shared::LogIndex;
use flotilla_tests::Cluster;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The highest memory seen per node id.
pub type Peaks = Arc<Mutex<BTreeMap<u64, MemorySample>>>;

/// The memory run: its writes' report with the nodes' memory after it, and whether nothing was lost.
pub async fn measure(
    target: &Arc<impl LoadTarget>,
    cli: &Cli,
    local: Option<&Cluster>,
) -> Result<(Value, bool)> {
    let result = throughput(target, cli, cli.memory_clients, Some(cli.messages)).await?;
    let ok = result.lost == 0;
    print_table(
        "memory run (writes)",
        &WRITE_HEADER,
        vec![result.row()],
        cli.json,
    );
    let mut value = result.json();
    if let Some(cluster) = local {
        // Let the nodes settle (snapshots, caches) before the "after" reading.
        cluster
            .wait_converged(LogIndex(0), Duration::from_secs(60))
            .await?;
        let mut after = BTreeMap::new();
        let mut storage = BTreeMap::new();
        for id in cluster.ids() {
            if let Some(pid) = cluster.node(id).pid() {
                after.insert(id.0, read_memory(pid)?);
            }
            let status = cluster.client(id).status().await?;
            storage.insert(
                id.0,
                NodeStorage {
                    log_rows: (status.last_log_index.0 + 1)
                        .saturating_sub(status.first_log_index.0),
                    first_log_index: status.first_log_index.0,
                    snapshot_index: status.snapshot_index.0,
                    disk_bytes: dir_bytes(&cluster.node(id).data_dir)?,
                },
            );
        }
        print_table(
            "nodes after the run",
            &[
                "node",
                "VmRSS MiB",
                "VmHWM MiB",
                "log rows",
                "first log index",
                "snapshot index",
                "disk MiB",
            ],
            after
                .iter()
                .map(|(id, m)| {
                    let s = storage.get(id).copied().unwrap_or_default();
                    vec![
                        id.to_string(),
                        mib(m.rss_kib),
                        mib(m.hwm_kib),
                        s.log_rows.to_string(),
                        s.first_log_index.to_string(),
                        s.snapshot_index.to_string(),
                        format!("{:.1}", s.disk_bytes as f64 / (1024.0 * 1024.0)),
                    ]
                })
                .collect(),
            cli.json,
        );
        value["rss_after"] = memory_json(&after);
        value["storage_after"] = Value::Array(
            storage
                .iter()
                .map(|(id, s)| {
                    json!({
                        "node": id,
                        "log_rows": s.log_rows,
                        "first_log_index": s.first_log_index,
                        "snapshot_index": s.snapshot_index,
                        "disk_bytes": s.disk_bytes,
                    })
                })
                .collect(),
        );
    }
    Ok((value, ok))
}

/// Prints the peaks and adds them to every run of `report`.
pub fn report_peaks(peaks: &Peaks, report: &mut Value, json: bool) {
    let peaks = peaks.lock().unwrap_or_else(PoisonError::into_inner).clone();
    if peaks.is_empty() {
        return;
    }
    print_table(
        "node memory, peak during the run",
        &["node", "VmRSS max MiB", "VmHWM MiB"],
        peaks
            .iter()
            .map(|(id, m)| vec![id.to_string(), mib(m.rss_kib), mib(m.hwm_kib)])
            .collect(),
        json,
    );
    // The shape: one object per client count, a list of them for a sweep; each carries
    // the peak over the whole invocation.
    let peak = memory_json(&peaks);
    match report {
        Value::Array(runs) => {
            for run in runs {
                run["node_memory_peak"] = peak.clone();
            }
        }
        single => single["node_memory_peak"] = peak,
    }
}

/// What a node keeps on disk: rows in its Raft log (`last_log_index - first_log_index + 1`), where
/// the log starts, its latest snapshot, and the bytes in its data dir.
#[derive(Clone, Copy, Debug, Default)]
struct NodeStorage {
    log_rows: u64,
    first_log_index: u64,
    snapshot_index: u64,
    disk_bytes: u64,
}

/// Bytes of the files in `dir` (the database, its WAL and shared memory file).
pub fn dir_bytes(dir: &std::path::Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let metadata = entry?.metadata()?;
        if metadata.is_file() {
            total += metadata.len();
        }
    }
    Ok(total)
}

#[derive(Clone, Copy, Debug, Default)]
pub struct MemorySample {
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

pub fn sample_cluster_memory(cluster: &Cluster, peaks: &Mutex<BTreeMap<u64, MemorySample>>) {
    for id in cluster.ids() {
        if let Some(sample) = cluster.node(id).pid().and_then(|pid| read_memory(pid).ok()) {
            record_peak(peaks, id.0, sample);
        }
    }
}

/// Samples the nodes' RSS every 200 ms. The pids are those at start: a restarted node (failover)
/// is sampled by the failover loop instead.
pub fn spawn_memory_sampler(
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
