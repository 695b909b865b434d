//! Storage throughput: how many entries per second the SQLite store makes durable, with one
//! transaction (one fsync) per batch, for several batch sizes. Prints figures; asserts nothing.
//!
//! `cargo run --release -p flotilla-node --example storage_bench [-- DIR]` (DIR: where to put the
//! database, default a temp dir; put it on the disk you want to measure).

use flotilla_node::raft::{Entry, HardState, LogIndex, NodeId, Payload, Term};
use flotilla_node::storage::sqlite::SqliteStore;
use flotilla_node::storage::{LogStore, WriteBatch};
use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    let base = std::env::args().nth(1).map(std::path::PathBuf::from);
    let dir = match &base {
        Some(path) => tempfile::tempdir_in(path)?,
        None => tempfile::tempdir()?,
    };
    println!("database in {}", dir.path().display());
    println!("batch  batches  entries/s  batches/s  p50 ms  p99 ms");
    for (round, batch_size) in [1usize, 16, 256].into_iter().enumerate() {
        let path = dir.path().join(format!("bench-{round}.db"));
        let mut store = SqliteStore::open(&path, NodeId(1), "bench")?;
        let batches = (4096 / batch_size).clamp(64, 1024);
        let mut latencies = Vec::with_capacity(batches);
        let mut next = 1u64;
        let started = Instant::now();
        for _ in 0..batches {
            let entries: Vec<Entry> = (next..next + batch_size as u64)
                .map(|index| Entry {
                    index: LogIndex(index),
                    term: Term(1),
                    payload: Payload::Message {
                        text: format!("benchmark message number {index} with some text"),
                        request_id: Some(format!("bench-{index}")),
                    },
                })
                .collect();
            let write_started = Instant::now();
            // Entries are appended and applied in the same batch, like a leader's round.
            store.write(WriteBatch {
                hard_state: Some(HardState {
                    term: Term(1),
                    voted_for: Some(NodeId(1)),
                    commit: LogIndex(next + batch_size as u64 - 1),
                }),
                entries: &entries,
                apply: &entries,
            })?;
            latencies.push(write_started.elapsed());
            next += batch_size as u64;
        }
        let elapsed = started.elapsed().as_secs_f64();
        latencies.sort();
        let at = |q: f64| -> Duration { latencies[((latencies.len() - 1) as f64 * q) as usize] };
        println!(
            "{batch_size:>5}  {batches:>7}  {:>9.0}  {:>9.0}  {:>6.2}  {:>6.2}",
            (batches * batch_size) as f64 / elapsed,
            batches as f64 / elapsed,
            at(0.5).as_secs_f64() * 1e3,
            at(0.99).as_secs_f64() * 1e3,
        );
    }
    Ok(())
}
