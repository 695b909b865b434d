//! Prometheus text-format metrics (`GET /metrics`): no exporter crate, just atomics and a renderer.

use flotilla_shared::api::Status;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Histogram bucket upper bounds, in seconds: 50 µs to 5 s.
const BUCKETS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];

/// A fixed-bucket latency histogram that can be updated from any thread without locks.
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn new() -> Self {
        Self {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(bucket) = BUCKETS.iter().position(|&bound| seconds <= bound) {
            self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

/// Everything `/metrics` reports besides the status snapshot.
#[derive(Default)]
pub struct Metrics {
    /// Client submit latency, from receipt to the answer (committed and applied).
    pub append_latency: Histogram,
    /// One storage write: one transaction and one fsync.
    pub fsync_latency: Histogram,
    pub entries_written: AtomicU64,
    pub batches_written: AtomicU64,
    pub messages_sent: AtomicU64,
    pub messages_dropped: AtomicU64,
}

impl Metrics {
    pub fn render(&self, status: &Status) -> String {
        let mut out = String::with_capacity(4096);
        let role = status.role.as_str();
        let gauges = [
            ("flotilla_term", "Current Raft term.", status.term.0),
            (
                "flotilla_commit_index",
                "Highest committed log index.",
                status.commit_index.0,
            ),
            (
                "flotilla_last_applied",
                "Highest applied log index.",
                status.last_applied.0,
            ),
            (
                "flotilla_last_log_index",
                "Index of the last log entry.",
                status.last_log_index.0,
            ),
            (
                "flotilla_persisted_index",
                "Log is durable up to here.",
                status.persisted_index.0,
            ),
        ];
        let _ = writeln!(
            out,
            "# HELP flotilla_role Current role (1 for the labelled role).\n# TYPE flotilla_role gauge"
        );
        for candidate in ["follower", "pre_candidate", "candidate", "leader"] {
            let value = u8::from(candidate == role);
            let _ = writeln!(out, "flotilla_role{{role=\"{candidate}\"}} {value}");
        }
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP flotilla_peer_lag Entries a peer's log is behind the leader's (leader only).\n# TYPE flotilla_peer_lag gauge"
        );
        for peer in &status.peers {
            let lag = status.last_log_index.0.saturating_sub(peer.match_index.0);
            let _ = writeln!(out, "flotilla_peer_lag{{peer=\"{}\"}} {lag}", peer.id);
        }
        let counters = [
            (
                "flotilla_entries_written_total",
                "Log entries written durably.",
                &self.entries_written,
            ),
            (
                "flotilla_batches_written_total",
                "Storage transactions (one fsync each).",
                &self.batches_written,
            ),
            (
                "flotilla_messages_sent_total",
                "Raft messages sent to peers.",
                &self.messages_sent,
            ),
            (
                "flotilla_messages_dropped_total",
                "Raft messages dropped (queue full or partitioned).",
                &self.messages_dropped,
            ),
        ];
        for (name, help, value) in counters {
            let value = value.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        self.append_latency.render(
            &mut out,
            "flotilla_append_latency_seconds",
            "Client submit latency until committed and applied.",
        );
        self.fsync_latency.render(
            &mut out,
            "flotilla_fsync_latency_seconds",
            "Latency of one storage write (transaction + fsync).",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let histogram = Histogram::new();
        histogram.observe(Duration::from_micros(40));
        histogram.observe(Duration::from_millis(3));
        let mut out = String::new();
        histogram.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"0.00005\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.005\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 2\n"), "{out}");
        assert!(out.contains("x_count 2\n"), "{out}");
    }
}
