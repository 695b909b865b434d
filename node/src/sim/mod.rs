//! A deterministic cluster simulator for the Raft core.
//!
//! Three or five cores talk over a simulated network (random delay and so reordering, loss,
//! duplication, one-way and two-way partitions) and write to simulated disks whose writes complete
//! after a delay, so a crash can land between `ready()` and durability and lose everything not yet
//! written. Crashed nodes restart from their disk. Clients propose commands with request ids and retry
//! them; reads go through ReadIndex. Everything comes from one seed: a run is a pure function of
//! `(seed, nodes)`, so any failure replays exactly.
//!
//! After every simulated millisecond the Raft safety properties are checked (see [`invariants`]); after
//! the faults heal, liveness is checked: a leader is agreed on, and commands made while calm apply
//! within a bound.

mod cluster;
pub mod invariants;
pub mod network;

use crate::raft::PlantedBug;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimOptions {
    pub seed: u64,
    pub nodes: usize,
    /// Faults are injected during the first `chaos_ms` of simulated time.
    pub chaos_ms: u64,
    /// Then the network heals, crashed nodes restart, and liveness is checked for `calm_ms`.
    pub calm_ms: u64,
    pub planted_bug: Option<PlantedBug>,
    /// Print every message delivered, every event and every fault.
    pub verbose: bool,
}

impl SimOptions {
    pub fn new(seed: u64, nodes: usize) -> Self {
        Self {
            seed,
            nodes,
            chaos_ms: 2_500,
            calm_ms: 5_000,
            planted_bug: None,
            verbose: false,
        }
    }

    /// Shorter runs for the CI seed range (the long sweeps use [`SimOptions::new`]): still long enough
    /// for the liveness bounds after the faults heal.
    pub fn ci(seed: u64, nodes: usize) -> Self {
        Self {
            chaos_ms: 1_500,
            calm_ms: 4_500,
            ..Self::new(seed, nodes)
        }
    }
}

/// What one run did (also a fingerprint of the run: the same seed gives the same figures).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    pub proposals: u64,
    pub deduplicated: u64,
    pub applied: u64,
    pub reads: u64,
    pub crashes: u64,
    pub messages: u64,
    pub final_commit: u64,
}

/// A broken property, with what is needed to replay it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimFailure {
    pub seed: u64,
    pub nodes: usize,
    pub at_ms: u64,
    pub invariant: String,
    pub detail: String,
    pub planted_bug: Option<PlantedBug>,
}

impl SimFailure {
    /// The command that replays this run with a full trace.
    pub fn replay_command(&self) -> String {
        let bug = match self.planted_bug {
            None => "",
            Some(PlantedBug::CommitPreviousTermByCount) => " --planted-bug commit-by-count",
            Some(PlantedBug::VoteIgnoringLog) => " --planted-bug vote-ignoring-log",
        };
        format!(
            "cargo run -p flotilla-node --bin flotilla-sim -- --seed {} --nodes {}{bug} --verbose",
            self.seed, self.nodes
        )
    }
}

impl fmt::Display for SimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {} ({} nodes) broke {} at {} ms: {}\n  replay: {}",
            self.seed,
            self.nodes,
            self.invariant,
            self.at_ms,
            self.detail,
            self.replay_command()
        )
    }
}

/// Runs one simulation. A panic inside a core (one of its assertions) is a failure of the run too.
pub fn run(opts: SimOptions) -> Result<SimStats, SimFailure> {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cluster::Cluster::new(opts).run()
    }));
    outcome.unwrap_or_else(|panic| {
        let detail = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".to_string());
        Err(SimFailure {
            seed: opts.seed,
            nodes: opts.nodes,
            at_ms: 0,
            invariant: "a core assertion".to_string(),
            detail,
            planted_bug: opts.planted_bug,
        })
    })
}

#[cfg(test)]
mod tests;
