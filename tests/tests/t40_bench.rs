//! `flotilla-bench` run as a user runs it: its own local cluster of real nodes, `--json` on stdout.

use anyhow::{ensure, Context as _, Result};
use flotilla_tests::run_to_exit;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

/// Runs the bench with `args`; its exit code and stdout parsed as JSON (`Null` if stdout is empty).
async fn bench(args: &[&str]) -> Result<(Option<i32>, Value, String)> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flotilla-bench"));
    command.args(args);
    let output = run_to_exit(command, Duration::from_secs(180)).await?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let json = if output.stdout.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&output.stdout)
            .with_context(|| format!("stdout is not JSON; stderr:\n{stderr}"))?
    };
    Ok((output.status.code(), json, stderr))
}

fn number(value: &Value, field: &str) -> Result<f64> {
    value[field]
        .as_f64()
        .with_context(|| format!("no number {field:?} in {value}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throughput_sweep_reports_each_client_count_and_checks_every_ack() -> Result<()> {
    let (code, json, stderr) =
        bench(&["throughput", "--clients", "1,4", "--seconds", "1", "--json"]).await?;
    ensure!(code == Some(0), "exit {code:?}; stderr:\n{stderr}");
    let runs = json.as_array().context("a sweep prints a list")?;
    ensure!(runs.len() == 2, "{json}");
    for (run, clients) in runs.iter().zip([1.0, 4.0]) {
        ensure!(number(run, "clients")? == clients, "{run}");
        ensure!(number(run, "acked")? > 0.0, "nothing acknowledged: {run}");
        ensure!(number(run, "commits_per_sec")? > 0.0, "{run}");
        ensure!(number(run, "lost")? == 0.0, "{run}");
        let (p50, p99, p999) = (
            number(run, "p50_ms")?,
            number(run, "p99_ms")?,
            number(run, "p999_ms")?,
        );
        ensure!(0.0 < p50 && p50 <= p99 && p99 <= p999, "{run}");
        let peaks = run["node_memory_peak"].as_array().context("peaks")?;
        ensure!(peaks.len() == 3, "{run}");
        for peak in peaks {
            ensure!(number(peak, "vm_rss_mib")? > 0.0, "{peak}");
        }
    }
    // The check reads the whole log back; its progress is on stderr, the tables too with --json.
    ensure!(stderr.contains("exactly once"), "{stderr}");
    ensure!(stderr.contains("committed/s"), "{stderr}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_failover_run_on_a_local_cluster() -> Result<()> {
    let (code, json, stderr) =
        bench(&["reads", "--clients", "2", "--seconds", "1", "--json"]).await?;
    ensure!(code == Some(0), "exit {code:?}; stderr:\n{stderr}");
    ensure!(number(&json, "clients")? == 2.0, "{json}");
    ensure!(number(&json, "reads")? > 0.0, "{json}");
    ensure!(number(&json, "reads_per_sec")? > 0.0, "{json}");

    let (code, json, stderr) = bench(&["failover", "--rounds", "2", "--json"]).await?;
    ensure!(code == Some(0), "exit {code:?}; stderr:\n{stderr}");
    let times = json["times_ms"].as_array().context("times_ms")?;
    ensure!(
        times.len() == 2 && number(&json, "rounds")? == 2.0,
        "{json}"
    );
    let max = number(&json, "max_ms")?;
    ensure!(
        0.0 < number(&json, "median_ms")? && number(&json, "median_ms")? <= max,
        "{json}"
    );
    ensure!(stderr.contains("killed node"), "{stderr}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_flags_fail_with_one_line_and_exit_code_2() -> Result<()> {
    for args in [
        &["throughput", "--clients", "0"][..],
        &["throughput", "--seconds", "-1"],
        &["failover", "--endpoints", "http://127.0.0.1:1"],
        &["reads", "--endpoints", "https://127.0.0.1:1"],
        &["sideways"],
    ] {
        let (code, json, stderr) = bench(args).await?;
        ensure!(
            code == Some(2),
            "{args:?}: exit {code:?}; stderr:\n{stderr}"
        );
        ensure!(json.is_null(), "{args:?}: printed {json}");
        ensure!(
            stderr.lines().count() == 1 && stderr.starts_with("flotilla-bench: "),
            "{args:?}: {stderr}"
        );
    }
    Ok(())
}
