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
//!
//! Owns the simulated network, disks, clients and the safety and liveness checks. It drives the Raft
//! core and a storage implementation through their public API, and may not touch sockets, the wall
//! clock or the HTTP server. It is built only for tests and with the `sim` feature (which
//! `flotilla-sim` requires), so the node binary carries none of it.

mod cluster;
pub mod hostile;
pub mod invariants;
pub mod network;

use crate::raft::PlantedBug;
use std::fmt;

/// Which faults a run injects while chaotic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum FaultProfile {
    /// Every kind of fault: crashes, isolation, one-way cuts, splits, transfers, unreachable reports.
    #[default]
    #[value(name = "mixed")]
    Mixed,
    /// The schedule of Raft's Figure 8 (§5.4.2): a leader is often cut off right after accepting a
    /// command, so the entry reaches at most a minority; cut-off leaders lose their term, crash and come
    /// back, so terms advance over logs that end in different uncommitted entries at the same index.
    #[value(name = "figure8")]
    Figure8,
    /// Mixed faults, and a message stream that is damaged but not Byzantine: messages corrupted in
    /// transit so that their receiver can tell (see [`hostile::mangle`]), replayed long after they were
    /// sent, duplicated and reordered. Every mangled message must be refused and change nothing.
    #[value(name = "mangled")]
    Mangled,
    /// Mixed faults, and membership changes (Raft §6) at random: nodes added (two spares start with no
    /// configuration), learners promoted, members removed (the leader too) and added back.
    #[value(name = "membership")]
    Membership,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimOptions {
    pub seed: u64,
    pub nodes: usize,
    /// Faults are injected during the first `chaos_ms` of simulated time.
    pub chaos_ms: u64,
    /// Then the network heals, crashed nodes restart, and liveness is checked for `calm_ms`.
    pub calm_ms: u64,
    pub planted_bug: Option<PlantedBug>,
    pub profile: FaultProfile,
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
            profile: FaultProfile::Mixed,
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

impl SimOptions {
    /// The mangled message stream ([`FaultProfile::Mangled`]) with the CI range's phase lengths.
    pub fn mangled(seed: u64, nodes: usize) -> Self {
        Self {
            profile: FaultProfile::Mangled,
            ..Self::ci(seed, nodes)
        }
    }

    /// Membership changes mixed with the faults ([`FaultProfile::Membership`]), CI phase lengths.
    pub fn membership(seed: u64, nodes: usize) -> Self {
        Self {
            profile: FaultProfile::Membership,
            ..Self::ci(seed, nodes)
        }
    }

    /// The Figure 8 schedule ([`FaultProfile::Figure8`]) with a longer chaotic phase: the sequence
    /// it hunts for takes several terms.
    pub fn figure8(seed: u64, nodes: usize) -> Self {
        Self {
            chaos_ms: 6_000,
            calm_ms: 4_500,
            profile: FaultProfile::Figure8,
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
    /// Messages a core refused (mangled or not).
    pub refused: u64,
    /// Mangled messages that reached a live node; each must be refused.
    pub mangled_delivered: u64,
    /// Old messages sent again.
    pub replayed: u64,
    /// Membership changes a leader took (the membership profile).
    pub membership_changes: u64,
    /// Snapshots taken (and logs compacted), and snapshots installed from a leader.
    pub snapshots: u64,
    pub installs: u64,
}

/// A broken property, with what is needed to replay it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimFailure {
    /// The run's options: with them the run replays exactly.
    pub options: SimOptions,
    pub at_ms: u64,
    pub invariant: String,
    pub detail: String,
}

impl SimFailure {
    /// The command that replays this run with a full trace. Every option that differs from the
    /// replay's defaults is spelled out: the CI range runs shorter phases, and a different heal time
    /// would make a different run.
    pub fn replay_command(&self) -> String {
        let o = &self.options;
        let defaults = SimOptions::new(o.seed, o.nodes);
        let mut command = format!(
            "cargo run -p flotilla-node --features sim --bin flotilla-sim -- --seed {} --nodes {}",
            o.seed, o.nodes
        );
        if o.chaos_ms != defaults.chaos_ms {
            command += &format!(" --chaos-ms {}", o.chaos_ms);
        }
        if o.calm_ms != defaults.calm_ms {
            command += &format!(" --calm-ms {}", o.calm_ms);
        }
        if o.profile != defaults.profile {
            command += &format!(" --profile {}", cli_name(o.profile));
        }
        if let Some(bug) = o.planted_bug {
            command += &format!(" --planted-bug {}", cli_name(bug));
        }
        command + " --verbose"
    }
}

/// How `value` is spelled on the `flotilla-sim` command line.
pub fn cli_name(value: impl clap::ValueEnum) -> String {
    value
        .to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_string())
}

impl fmt::Display for SimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {} ({} nodes) broke {} at {} ms: {}\n  replay: {}",
            self.options.seed,
            self.options.nodes,
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
            options: opts,
            at_ms: 0,
            invariant: "a core assertion".to_string(),
            detail,
        })
    })
}

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod tests;
