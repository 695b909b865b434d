//! Core-only throughput: three cores on an in-memory network without delay, persistence instant.
//!
//! Proposals go to the leader in batches; each round runs the caller's loop (ready, persist, send, step)
//! until the whole batch is committed on the leader. Prints committed entries per second for each
//! batch size and the mean time of one round (proposal to leader commit, no network or disk delay).
//!
//! Run: `cargo bench -p flotilla-node --bench core_throughput` (release build).

use flotilla_node::raft::{
    Config, Entry, Envelope, LogId, LogIndex, LogRead, Message, NodeId, Payload, Raft, Restored,
    Role, Term,
};
use flotilla_node::validation::check_envelope;
use flotilla_shared::rpc::AppendEntries;
use std::cell::RefCell;

// The allocator `flotilla-node` runs with: entry payloads are cloned into messages, writes and applies,
// so the allocator is part of what the core costs in the node.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// CPU time this process has used. The machine is shared, so wall-clock figures swing with other
/// load; entries per CPU-second is what the core itself costs.
fn cpu_time() -> Duration {
    // The first field of /proc/self/schedstat is the time spent on a CPU, in nanoseconds (this program
    // is single-threaded, so the main thread's is the process's).
    std::fs::read_to_string("/proc/self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

/// How long each batch size is measured.
const MEASURE: Duration = Duration::from_secs(3);
const BATCH_SIZES: [usize; 4] = [64, 256, 1024, 4096];

/// "Disk" that keeps only the term of each index, as runs: enough for the core's `term` lookups, and
/// flat in memory however many millions of entries go through. Entry bodies are never read back here
/// because followers keep up (the core serves appends from its in-memory window); a read that does reach
/// the disk is counted and reported, since its answer would be wrong.
#[derive(Default)]
struct TermRuns {
    /// `(first index, term)`, ascending; a run lasts until the next one starts.
    runs: Vec<(u64, u64)>,
    last: u64,
    body_reads: u64,
}

impl TermRuns {
    fn write(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        // Overwrite from `first.index` on (a conflicting suffix is dropped, as on a real disk).
        while self.runs.last().is_some_and(|r| r.0 >= first.index.0) {
            self.runs.pop();
        }
        for e in entries {
            if self.runs.last().is_none_or(|r| r.1 != e.term.0) {
                self.runs.push((e.index.0, e.term.0));
            }
        }
        self.last = entries[entries.len() - 1].index.0;
    }
}

#[derive(Clone, Default)]
struct Disk(Rc<RefCell<TermRuns>>);

impl LogRead for Disk {
    fn term(&self, index: LogIndex) -> Option<Term> {
        let disk = self.0.borrow();
        if index.0 == 0 {
            return Some(Term(0));
        }
        if index.0 > disk.last {
            return None;
        }
        let at = disk.runs.partition_point(|r| r.0 <= index.0);
        at.checked_sub(1).map(|i| Term(disk.runs[i].1))
    }

    fn entries(&self, _lo: LogIndex, _hi: LogIndex, _max_bytes: usize) -> Vec<Entry> {
        self.0.borrow_mut().body_reads += 1;
        Vec::new()
    }
}

struct Cluster {
    cores: Vec<Raft<Disk>>,
    disks: Vec<Disk>,
    queue: Vec<Envelope>,
    committed_on_leader: u64,
}

impl Cluster {
    fn new() -> Self {
        let voters: Vec<NodeId> = (1..=3).map(NodeId).collect();
        let mut cores = Vec::new();
        let mut disks = Vec::new();
        for id in &voters {
            let disk = Disk::default();
            let config = Config::new(*id, voters.clone());
            let core = Raft::new(config, disk.clone(), Restored::default(), 0)
                .unwrap_or_else(|e| panic!("config: {e}"));
            cores.push(core);
            disks.push(disk);
        }
        Self {
            cores,
            disks,
            queue: Vec::new(),
            committed_on_leader: 0,
        }
    }

    /// One pass of the caller's loop over every core; returns whether anything happened.
    fn pump(&mut self) -> bool {
        let mut busy = false;
        for i in 0..self.cores.len() {
            if !self.cores[i].has_ready() {
                continue;
            }
            busy = true;
            let ready = self.cores[i].ready();
            self.queue.extend(ready.messages);
            self.disks[i].0.borrow_mut().write(&ready.entries);
            if let Some(last) = ready.entries.last() {
                self.cores[i].persisted(LogId {
                    index: last.index,
                    term: last.term,
                });
            }
            self.queue.extend(ready.persisted_messages);
            if i == 0 {
                self.committed_on_leader += ready.committed.len() as u64;
            }
        }
        for envelope in std::mem::take(&mut self.queue) {
            busy = true;
            let to = (envelope.to.0 - 1) as usize;
            self.cores[to].step(envelope);
        }
        busy
    }

    fn settle(&mut self) {
        while self.pump() {}
    }
}

fn main() {
    let mut cluster = Cluster::new();
    let deadline = cluster.cores[0].status().election_deadline_ms;
    cluster.cores[0].tick(deadline);
    cluster.settle();
    assert_eq!(cluster.cores[0].role(), Role::Leader, "node 1 must lead");

    println!("core_throughput: 3 cores, in-memory network without delay, instant persistence");
    println!(
        "{:>8} {:>14} {:>18} {:>16} {:>10}",
        "batch", "entries/s", "entries/cpu-s", "round (us)", "rounds"
    );
    let text = "0123456789abcdef".to_string();
    for batch in BATCH_SIZES {
        let start = Instant::now();
        let cpu_start = cpu_time();
        let committed_before = cluster.committed_on_leader;
        let mut rounds = 0u64;
        while start.elapsed() < MEASURE {
            let mut last = LogIndex(0);
            for _ in 0..batch {
                let proposal = cluster.cores[0]
                    .propose(Payload::Message {
                        text: text.clone(),
                        request_id: None,
                    })
                    .unwrap_or_else(|e| panic!("propose: {e}"));
                last = proposal.index;
            }
            while cluster.cores[0].commit() < last {
                if !cluster.pump() {
                    panic!("stalled before committing {last}");
                }
            }
            cluster.settle();
            rounds += 1;
        }
        let elapsed = start.elapsed().as_secs_f64();
        let cpu = (cpu_time() - cpu_start).as_secs_f64().max(1e-9);
        let committed = cluster.committed_on_leader - committed_before;
        println!(
            "{batch:>8} {:>14.0} {:>18.0} {:>16.1} {rounds:>10}",
            committed as f64 / elapsed,
            committed as f64 / cpu,
            elapsed * 1e6 / rounds as f64
        );
    }
    let body_reads: u64 = cluster.disks.iter().map(|d| d.0.borrow().body_reads).sum();
    println!(
        "entry bodies read back from the disk: {body_reads} (must be 0 for the figures to hold)"
    );
    validation_cost();
}

/// What checking one append of 4,096 entries costs (the figures above include it: every stepped message
/// is checked), next to decoding the same append from JSON, which the Raft route does first anyway.
fn validation_cost() {
    let entries: Vec<Entry> = (1..=4096)
        .map(|i| Entry {
            index: LogIndex(1000 + i),
            term: Term(7),
            payload: Payload::Message {
                text: "x".repeat(100),
                request_id: Some(format!("client-{i}")),
            },
        })
        .collect();
    let count = entries.len() as f64;
    let envelope = Envelope {
        msg: 0,
        from: NodeId(1),
        to: NodeId(2),
        term: Term(7),
        message: Message::AppendEntries(AppendEntries {
            prev_log_index: LogIndex(1000),
            prev_log_term: Term(6),
            entries,
            leader_commit: LogIndex(1000),
            read_ctx: 0,
        }),
    };
    let is_peer = |id: NodeId| (1..=3).contains(&id.0);
    let start = Instant::now();
    let mut checks = 0u64;
    while start.elapsed() < MEASURE {
        let checked = check_envelope(std::hint::black_box(&envelope), NodeId(2), is_peer);
        assert!(checked.is_ok(), "{checked:?}");
        checks += 1;
    }
    let check_ns = start.elapsed().as_nanos() as f64 / checks as f64;
    let json = serde_json::to_vec(&envelope).unwrap_or_else(|e| panic!("encode: {e}"));
    let start = Instant::now();
    let mut decodes = 0u64;
    while start.elapsed() < MEASURE {
        let decoded: Envelope =
            serde_json::from_slice(std::hint::black_box(&json)).unwrap_or_else(|e| panic!("{e}"));
        std::hint::black_box(decoded);
        decodes += 1;
    }
    let decode_ns = start.elapsed().as_nanos() as f64 / decodes as f64;
    println!(
        "validation of a 4,096-entry append: {:.1} us ({:.2} ns per entry); decoding it from JSON: \
         {:.1} us ({:.0} ns per entry)",
        check_ns / 1e3,
        check_ns / count,
        decode_ns / 1e3,
        decode_ns / count
    );
}
