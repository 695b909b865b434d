//! Prometheus text-format metrics (`GET /metrics`): no exporter crate, just atomics and a renderer.

use crate::validation::{Reason, Rejected};
use flotilla_shared::api::Status;
use flotilla_shared::NodeId;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// At most one log line per refusal reason in this time; the lines in between are counted, not written.
const REJECTION_LOG_EVERY: Duration = Duration::from_secs(10);

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
    pub rejections: Rejections,
}

/// Refused inputs (Raft messages and client bodies), counted by reason and logged at most once per
/// reason every [`REJECTION_LOG_EVERY`]: a flood of bad packets costs a counter increment each, not a
/// log line each.
pub struct Rejections {
    started: Instant,
    counts: [AtomicU64; Reason::ALL.len()],
    /// Per reason: the count when a line was last written, and when the next may be (ms since `started`).
    reported: [AtomicU64; Reason::ALL.len()],
    next_log_ms: [AtomicU64; Reason::ALL.len()],
}

impl Default for Rejections {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            reported: std::array::from_fn(|_| AtomicU64::new(0)),
            next_log_ms: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Rejections {
    /// Counts one refusal of `what` (e.g. "raft message") from `from`, and logs it unless this reason
    /// was logged recently.
    pub fn record(&self, what: &str, from: Option<NodeId>, rejected: &Rejected) {
        let slot = rejected.reason.slot();
        let total = self.counts[slot].fetch_add(1, Ordering::Relaxed) + 1;
        let now_ms = self.started.elapsed().as_millis() as u64;
        let due_ms = self.next_log_ms[slot].load(Ordering::Relaxed);
        let log_every_ms = REJECTION_LOG_EVERY.as_millis() as u64;
        let mine = now_ms >= due_ms
            && self.next_log_ms[slot]
                .compare_exchange(
                    due_ms,
                    now_ms + log_every_ms,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok();
        if !mine {
            return;
        }
        let unlogged = total - self.reported[slot].swap(total, Ordering::Relaxed) - 1;
        let from = from.map_or_else(|| "unknown".to_string(), |id| id.to_string());
        tracing::warn!(
            reason = rejected.reason.code(),
            %from,
            unlogged,
            "refused a {what}: {} ({unlogged} more refused for this reason since the last such line)",
            rejected.detail
        );
    }

    /// How many inputs were refused for `reason`.
    pub fn count(&self, reason: Reason) -> u64 {
        self.counts[reason.slot()].load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String) {
        let name = "flotilla_rejected_total";
        let _ = writeln!(
            out,
            "# HELP {name} Raft messages and client requests refused as invalid, by reason.\n# TYPE {name} counter"
        );
        for reason in Reason::ALL {
            let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {}", self.count(reason));
        }
    }
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
        self.rejections.render(&mut out);
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

    #[test]
    fn rejections_are_counted_by_reason_and_rendered() {
        let rejections = Rejections::default();
        let gap = Rejected::new(Reason::EntriesNotContiguous, "a gap");
        for _ in 0..1000 {
            rejections.record("raft message", Some(NodeId(2)), &gap);
        }
        rejections.record("request", None, &Rejected::new(Reason::EmptyText, "empty"));
        assert_eq!(rejections.count(Reason::EntriesNotContiguous), 1000);
        assert_eq!(rejections.count(Reason::EmptyText), 1);
        assert_eq!(rejections.count(Reason::TermOutOfRange), 0);
        // One line for the first refusal; the next 999 of the same reason fall in its window.
        assert_eq!(
            rejections.reported[Reason::EntriesNotContiguous.slot()].load(Ordering::Relaxed),
            1
        );
        let mut out = String::new();
        rejections.render(&mut out);
        assert!(
            out.contains("flotilla_rejected_total{reason=\"entries_not_contiguous\"} 1000\n"),
            "{out}"
        );
        assert!(
            out.contains("flotilla_rejected_total{reason=\"term_out_of_range\"} 0\n"),
            "{out}"
        );
    }
}
