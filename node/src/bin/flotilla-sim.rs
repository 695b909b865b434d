//! Runs the deterministic Raft simulator.
//!
//! ```text
//! flotilla-sim --seed 1234 --nodes 5 [--verbose] [OPTIONS]           replay one run
//! flotilla-sim sweep --seeds 0..100000 --nodes 3,5 [OPTIONS]          many runs, with progress
//!
//! OPTIONS: --planted-bug commit-by-count|vote-ignoring-log|trust-envelopes
//!          --profile mixed|figure8|mangled|membership
//!          --chaos-ms N   --calm-ms N   (phase lengths; a failure's replay command names them)
//! ```

use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand};
use flotilla_node::raft::PlantedBug;
use flotilla_node::sim::{run, FaultProfile, SimOptions};
use std::ops::Range;
use std::process::ExitCode;
use std::time::Instant;

/// The deterministic Raft simulator: one seed replays one run exactly.
#[derive(Parser)]
#[command(
    name = "flotilla-sim",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    sweep: Option<Sweep>,
    #[command(flatten)]
    one: OneRun,
}

/// Replays one run (the default).
#[derive(Args)]
struct OneRun {
    #[arg(long, required = true)]
    seed: Option<u64>,
    #[arg(long, default_value = "3", value_parser = cluster_size)]
    nodes: usize,
    /// Print every message delivered, every event and every fault.
    #[arg(long)]
    verbose: bool,
    #[command(flatten)]
    options: RunOptions,
}

#[derive(Subcommand)]
enum Sweep {
    /// Many runs, with progress.
    Sweep {
        #[arg(long, default_value = "0..1000", value_parser = seed_range)]
        seeds: Range<u64>,
        #[arg(long, default_value = "3,5", value_delimiter = ',', value_parser = cluster_size)]
        nodes: Vec<usize>,
        #[command(flatten)]
        options: RunOptions,
    },
}

/// Everything but the seed and the cluster size, applied to every run.
#[derive(Args, Clone, Copy)]
struct RunOptions {
    #[arg(long)]
    planted_bug: Option<PlantedBug>,
    #[arg(long, default_value = "mixed")]
    profile: FaultProfile,
    /// Length of the chaotic phase, in simulated milliseconds.
    #[arg(long)]
    chaos_ms: Option<u64>,
    /// Length of the calm phase that checks liveness, in simulated milliseconds.
    #[arg(long)]
    calm_ms: Option<u64>,
}

impl RunOptions {
    fn for_run(self, seed: u64, nodes: usize) -> SimOptions {
        let defaults = SimOptions::new(seed, nodes);
        SimOptions {
            planted_bug: self.planted_bug,
            profile: self.profile,
            chaos_ms: self.chaos_ms.unwrap_or(defaults.chaos_ms),
            calm_ms: self.calm_ms.unwrap_or(defaults.calm_ms),
            ..defaults
        }
    }
}

fn cluster_size(text: &str) -> Result<usize, String> {
    let n: usize = text
        .trim()
        .parse()
        .map_err(|_| format!("must be a number, got {text:?}"))?;
    if (1..=9).contains(&n) {
        Ok(n)
    } else {
        Err(format!("must be between 1 and 9, got {n}"))
    }
}

fn seed_range(text: &str) -> Result<Range<u64>, String> {
    let shape = || format!("must look like 0..1000, got {text:?}");
    let (lo, hi) = text.split_once("..").ok_or_else(shape)?;
    let lo: u64 = lo.trim().parse().map_err(|_| shape())?;
    let hi: u64 = hi.trim().parse().map_err(|_| shape())?;
    if hi <= lo {
        return Err(format!("empty seed range {lo}..{hi}"));
    }
    Ok(lo..hi)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Sweep::Sweep {
        seeds,
        nodes,
        options,
    }) = cli.sweep
    {
        return sweep(seeds.start, seeds.end, &nodes, |seed, nodes| {
            options.for_run(seed, nodes)
        });
    }
    let one = cli.one;
    let nodes = one.nodes;
    let Some(seed) = one.seed else {
        // Required by the parser already; kept an error rather than a panic all the same.
        Cli::command()
            .error(ErrorKind::MissingRequiredArgument, "--seed is required")
            .exit()
    };
    let opts = SimOptions {
        verbose: one.verbose,
        ..one.options.for_run(seed, nodes)
    };
    match run(opts) {
        Ok(stats) => {
            println!("seed {seed} ({nodes} nodes) passed: {stats:?}");
            ExitCode::SUCCESS
        }
        Err(failure) => {
            println!("FAILED {failure}");
            ExitCode::FAILURE
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
