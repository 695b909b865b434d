//! What the bench prints: tables, progress lines, latency quantiles.

use hdrhistogram::Histogram;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn new_histogram() -> Histogram<u64> {
    // Microseconds, 1 µs to 10 min, 3 significant digits; longer values are clamped on record.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant histogram bounds are valid")
}

pub fn quantile_ms(histogram: &Histogram<u64>, percentile: f64) -> f64 {
    if histogram.is_empty() {
        return 0.0;
    }
    histogram.value_at_percentile(percentile) as f64 / 1000.0
}

pub fn ms(histogram: &Histogram<u64>, percentile: f64) -> String {
    format!("{:.2}", quantile_ms(histogram, percentile))
}

/// A status line on stderr.
pub fn progress(message: std::fmt::Arguments<'_>) {
    eprintln!("flotilla-bench: {message}");
}

/// Prints an aligned table: on stdout, or on stderr with `--json` (stdout then holds only JSON).
pub fn print_table(title: &str, header: &[&str], rows: Vec<Vec<String>>, json: bool) {
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
    if json {
        eprint!("{text}");
    } else {
        print!("{text}");
        std::io::stdout().flush().ok();
    }
}

/// A progress line on stderr, redrawn twice a second (a new line every 5 s when stderr is not a
/// terminal, so logs stay short).
pub struct Progress {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    pub fn start(label: String, done: Arc<AtomicU64>, goal: Option<u64>) -> Self {
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

    pub async fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.ok();
    }
}
