//! Runs the deterministic Raft simulator.
//!
//! ```text
//! flotilla-sim --seed 1234 --nodes 5 [--verbose] [OPTIONS]           replay one run
//! flotilla-sim sweep --seeds 0..100000 --nodes 3,5 [OPTIONS]          many runs, with progress
//!
//! OPTIONS: --planted-bug commit-by-count|vote-ignoring-log|trust-envelopes
//!          --profile mixed|figure8|mangled
//!          --chaos-ms N   --calm-ms N   (phase lengths; a failure's replay command names them)
//! ```

use flotilla_node::sim::{parse_planted_bug, run, FaultProfile, SimOptions};
use std::process::ExitCode;
use std::time::Instant;

const USAGE: &str = "usage:\n  flotilla-sim --seed N --nodes N [--verbose] [OPTIONS]\n  \
                     flotilla-sim sweep --seeds A..B --nodes 3,5 [OPTIONS]\n\
                     options: --planted-bug commit-by-count|vote-ignoring-log|trust-envelopes  --profile mixed|figure8|mangled  \
                     --chaos-ms N  --calm-ms N";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse_and_run(&args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn value<'a>(args: &'a [String], flag: &str) -> Result<Option<&'a str>, String> {
    match args.iter().position(|a| a == flag) {
        None => Ok(None),
        Some(at) => args
            .get(at + 1)
            .map(|v| Some(v.as_str()))
            .ok_or_else(|| format!("{flag} needs a value")),
    }
}

fn parse_u64(text: &str, what: &str) -> Result<u64, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{what} must be a number, got {text:?}"))
}

fn parse_nodes(text: &str) -> Result<Vec<usize>, String> {
    text.split(',')
        .map(|n| {
            let n = parse_u64(n, "--nodes")? as usize;
            if (1..=9).contains(&n) {
                Ok(n)
            } else {
                Err(format!("--nodes must be between 1 and 9, got {n}"))
            }
        })
        .collect()
}

fn parse_and_run(args: &[String]) -> Result<ExitCode, String> {
    let known = [
        "sweep",
        "--seed",
        "--seeds",
        "--nodes",
        "--verbose",
        "--planted-bug",
        "--profile",
        "--chaos-ms",
        "--calm-ms",
    ];
    for (i, arg) in args.iter().enumerate() {
        let is_value = i > 0
            && matches!(
                args[i - 1].as_str(),
                "--seed"
                    | "--seeds"
                    | "--nodes"
                    | "--planted-bug"
                    | "--profile"
                    | "--chaos-ms"
                    | "--calm-ms"
            );
        if !is_value && !known.contains(&arg.as_str()) {
            return Err(format!("unknown argument {arg:?}"));
        }
    }
    let planted_bug = match value(args, "--planted-bug")? {
        None => None,
        Some(name) => Some(parse_planted_bug(name).ok_or_else(|| {
            format!("unknown planted bug {name:?} (commit-by-count, vote-ignoring-log, trust-envelopes)")
        })?),
    };
    let profile = match value(args, "--profile")? {
        None => FaultProfile::default(),
        Some(name) => FaultProfile::parse(name)
            .ok_or_else(|| format!("unknown profile {name:?} (mixed, figure8, mangled)"))?,
    };
    let chaos_ms = value(args, "--chaos-ms")?
        .map(|v| parse_u64(v, "--chaos-ms"))
        .transpose()?;
    let calm_ms = value(args, "--calm-ms")?
        .map(|v| parse_u64(v, "--calm-ms"))
        .transpose()?;
    // Everything but the seed and the cluster size, applied to every run.
    let options = move |seed: u64, nodes: usize| {
        let defaults = SimOptions::new(seed, nodes);
        SimOptions {
            planted_bug,
            profile,
            chaos_ms: chaos_ms.unwrap_or(defaults.chaos_ms),
            calm_ms: calm_ms.unwrap_or(defaults.calm_ms),
            ..defaults
        }
    };
    if args.first().map(String::as_str) == Some("sweep") {
        let seeds = value(args, "--seeds")?.unwrap_or("0..1000");
        let (lo, hi) = seeds
            .split_once("..")
            .ok_or_else(|| format!("--seeds must look like 0..1000, got {seeds:?}"))?;
        let (lo, hi) = (
            parse_u64(lo, "--seeds start")?,
            parse_u64(hi, "--seeds end")?,
        );
        if hi <= lo {
            return Err(format!("empty seed range {lo}..{hi}"));
        }
        let sizes = parse_nodes(value(args, "--nodes")?.unwrap_or("3,5"))?;
        return Ok(sweep(lo, hi, &sizes, options));
    }
    let seed = parse_u64(
        value(args, "--seed")?.ok_or("--seed is required")?,
        "--seed",
    )?;
    let nodes = parse_nodes(value(args, "--nodes")?.unwrap_or("3"))?;
    let [nodes] = nodes[..] else {
        return Err("one run takes one --nodes value".into());
    };
    let opts = SimOptions {
        verbose: args.iter().any(|a| a == "--verbose"),
        ..options(seed, nodes)
    };
    match run(opts) {
        Ok(stats) => {
            println!("seed {seed} ({nodes} nodes) passed: {stats:?}");
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            println!("FAILED {failure}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn sweep(
    lo: u64,
    hi: u64,
    sizes: &[usize],
    options: impl Fn(u64, usize) -> SimOptions,
) -> ExitCode {
    // A core assertion is reported as the run's failure, with its seed; the default hook's backtrace
    // would bury the progress lines.
    std::panic::set_hook(Box::new(|_| {}));
    let started = Instant::now();
    let (mut runs, mut failures) = (0u64, 0u64);
    let (mut applied, mut mangled) = (0u64, 0u64);
    for seed in lo..hi {
        for &nodes in sizes {
            runs += 1;
            match run(options(seed, nodes)) {
                Ok(stats) => {
                    applied += stats.applied;
                    mangled += stats.mangled_delivered;
                }
                Err(failure) => {
                    failures += 1;
                    println!("FAILED {failure}");
                }
            }
        }
        if (seed - lo + 1).is_multiple_of(500) || seed + 1 == hi {
            // A run that accepts a mangled message fails, so every one counted here was refused.
            let refused = if mangled > 0 {
                format!(", {mangled} mangled messages refused")
            } else {
                String::new()
            };
            println!(
                "seeds {lo}..{}: {runs} runs, {failures} failed, {applied} entries applied{refused}, {:.1} s",
                seed + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
