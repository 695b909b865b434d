//! A cluster of cores over the simulated network and disks, driven by one seeded PRNG.

use super::invariants::{self, History};
use super::network::{Network, NetworkFaults};
use super::{FaultProfile, SimFailure, SimOptions, SimStats};
use crate::raft::rng::SplitMix64;
use crate::raft::{
    Config, Entry, Envelope, EventKind, HardState, LogId, LogIndex, NodeId, Payload, Raft,
    Restored, Role,
};
use crate::storage::memory::MemoryStore;
use crate::storage::{ApplyOutcome, LogStore, WriteBatch};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::rc::Rc;

mod checks;
mod clients;
mod faults;
mod membership;
mod snapshots;

/// A node's disk: the store holds exactly what completed writes put there.
pub type Disk = Rc<RefCell<MemoryStore>>;

/// Cores tick this often (milliseconds).
const TICK_MS: u64 = 5;

/// One `Ready`'s write, completing after a simulated disk delay; a crash before then loses it.
struct PendingWrite {
    done_at_ms: u64,
    hard_state: Option<HardState>,
    entries: Vec<Entry>,
    apply: Vec<Entry>,
    /// Sent once the write is durable (Raft thesis §3.8).
    after: Vec<Envelope>,
    /// Snapshot chunks to stage and images to install, after the rest of the write.
    snapshot_ops: Vec<crate::raft::SnapshotOp>,
}

pub struct SimNode {
    pub id: NodeId,
    pub disk: Disk,
    /// `None` while crashed.
    pub core: Option<Raft<Disk>>,
    writes: VecDeque<PendingWrite>,
    restart_at_ms: Option<u64>,
    /// A crash scheduled by the Figure 8 profile, and when the node comes back.
    crash_at_ms: Option<(u64, u64)>,
    /// Reads in progress here: ctx → the commit index every released answer must reach.
    reads: BTreeMap<u64, LogIndex>,
}

/// A client command and its retries.
struct Request {
    id: String,
    first_sent_ms: u64,
    next_try_ms: u64,
}

pub struct Cluster {
    opts: SimOptions,
    rng: SplitMix64,
    now_ms: u64,
    ids: Vec<NodeId>,
    nodes: Vec<SimNode>,
    net: Network,
    history: History,
    requests: Vec<Request>,
    next_request: u64,
    next_read: u64,
    stats: SimStats,
    chaos_faults: NetworkFaults,
    stable_leader_since: Option<u64>,
    /// Mean milliseconds between faults while chaotic, and between new commands.
    fault_every_ms: u64,
    command_every_ms: u64,
    /// Clients pause now and then while chaotic, so that elections also happen on an idle cluster.
    clients_paused: bool,
    /// Something touched a core during this millisecond: its output must be processed and checked.
    active: bool,
    /// The first mangled message a receiver accepted; reported at the end of the run, so that the
    /// safety checks get the chance to show what accepting it broke.
    mangled_accepted: Option<(u64, String)>,
    /// `(from, msg)` of every envelope put on the wire (by a node, or forged by the mangling
    /// network): each `message_received` must name one of them.
    on_the_wire: HashSet<(NodeId, u64)>,
    snapshot_plan: snapshots::SnapshotPlan,
}

impl Cluster {
    pub fn new(opts: SimOptions) -> Self {
        let mut rng =
            SplitMix64::new(opts.seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ opts.nodes as u64);
        let mut fault_every_ms = rng.range_inclusive(40, 300);
        let mut command_every_ms = rng.range_inclusive(5, 100);
        if opts.profile == FaultProfile::Figure8 {
            // Fewer commands, so that a leader often has nothing of its own term to replicate (the
            // Figure 8 case), and faults often enough that terms keep moving.
            fault_every_ms = rng.range_inclusive(60, 200);
            command_every_ms = rng.range_inclusive(50, 250);
        }
        let mut chaos_faults = NetworkFaults {
            loss_per_mille: rng.range_inclusive(0, 150),
            duplicate_per_mille: rng.range_inclusive(0, 50),
            delay_ms: (1, rng.range_inclusive(2, 60)),
            mangle_per_mille: 0,
            replay_per_mille: 0,
        };
        let spares = if opts.profile == FaultProfile::Membership {
            membership::SPARES
        } else {
            0
        };
        let ids: Vec<NodeId> = (1..=(opts.nodes + spares) as u64).map(NodeId).collect();
        // The mangled profile draws from its own generator: the other profiles' runs stay as they were.
        let mangling_seed = opts.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x6d61_6e67_6c65;
        if opts.profile == FaultProfile::Mangled {
            let mut own = SplitMix64::new(mangling_seed);
            chaos_faults.mangle_per_mille = own.range_inclusive(20, 120);
            chaos_faults.replay_per_mille = own.range_inclusive(10, 60);
        }
        let mut cluster = Self {
            rng,
            now_ms: 0,
            nodes: Vec::new(),
            net: Network::new(chaos_faults),
            history: History::default(),
            requests: Vec::new(),
            next_request: 1,
            next_read: 1,
            stats: SimStats::default(),
            chaos_faults,
            stable_leader_since: None,
            fault_every_ms,
            command_every_ms,
            clients_paused: false,
            active: true,
            ids: ids.clone(),
            mangled_accepted: None,
            on_the_wire: HashSet::new(),
            snapshot_plan: snapshots::SnapshotPlan::draw(opts.seed),
            opts,
        };
        if opts.profile == FaultProfile::Mangled {
            cluster.net.mangling(mangling_seed ^ 1, ids.clone());
        }
        for id in ids {
            let disk: Disk = Rc::new(RefCell::new(MemoryStore::new()));
            cluster.nodes.push(SimNode {
                id,
                disk,
                core: None,
                writes: VecDeque::new(),
                restart_at_ms: None,
                crash_at_ms: None,
                reads: BTreeMap::new(),
            });
            cluster.start(id);
        }
        cluster
    }

    fn fail(&self, invariant: &str, detail: String) -> SimFailure {
        SimFailure {
            options: self.opts,
            at_ms: self.now_ms,
            invariant: invariant.to_string(),
            detail,
        }
    }

    fn node(&mut self, id: NodeId) -> &mut SimNode {
        &mut self.nodes[(id.0 - 1) as usize]
    }

    /// Starts (or restarts) a node from what its disk holds.
    fn start(&mut self, id: NodeId) {
        let now = self.now_ms;
        let seed = self.opts.seed;
        let bug = self.opts.planted_bug;
        let ids = self.ids.clone();
        let node = self.node(id);
        let stored = match node.disk.borrow().initial_state() {
            Ok(state) => state,
            Err(never) => panic!("memory store cannot fail: {never}"),
        };
        let restored = Restored {
            hard_state: stored.hard_state,
            last: stored.last,
            applied: stored.applied,
            snapshot: node.disk.borrow().snapshot().unwrap_or_default(),
            first_index: stored.first_index,
        };
        let mut config = Config::new(id, ids);
        config.seed = seed;
        config.max_inflight_appends = 4;
        config.max_append_entries = 16;
        config.max_cached_entries = 32;
        let mut core = match Raft::new(config, node.disk.clone(), restored, now) {
            Ok(core) => core,
            Err(error) => panic!("simulator config is valid: {error}"),
        };
        let commit = stored
            .hard_state
            .commit
            .min(stored.last.index)
            .max(stored.applied);
        if self.opts.profile == FaultProfile::Membership {
            let disk = self.node(id).disk.clone();
            core.restore_membership(self.restored_membership(id, &disk, commit));
        }
        let node = self.node(id);
        if let Some(bug) = bug {
            core.plant_bug(bug);
        }
        node.core = Some(core);
        node.restart_at_ms = None;
        if self.opts.profile == FaultProfile::Figure8 {
            // The cut that isolated it before its crash ends with the restart.
            self.net.reconnect(id);
        }
        self.history.restarted(id, commit);
    }

    fn crash(&mut self, id: NodeId, restart_at_ms: u64) {
        let node = self.node(id);
        if node.core.is_none() {
            return;
        }
        node.core = None;
        node.crash_at_ms = None;
        node.writes.clear();
        node.reads.clear();
        node.restart_at_ms = Some(restart_at_ms);
        self.stats.crashes += 1;
        self.trace(id, format!("crashed (restart at {restart_at_ms} ms)"));
    }

    fn trace(&self, id: NodeId, what: String) {
        if self.opts.verbose {
            println!("{:>7} ms  n{id}  {what}", self.now_ms);
        }
    }

    pub fn run(mut self) -> Result<SimStats, SimFailure> {
        let chaos_end = self.opts.chaos_ms;
        let end = chaos_end + self.opts.calm_ms;
        while self.now_ms <= end {
            if self.now_ms == chaos_end {
                self.heal_all();
            }
            self.deliver_messages()?;
            self.complete_writes()?;
            self.maybe_compact()?;
            if self.now_ms.is_multiple_of(TICK_MS) {
                self.active = true;
                let now = self.now_ms;
                for node in self.nodes.iter_mut() {
                    if let Some(core) = node.core.as_mut() {
                        core.tick(now);
                    }
                }
            }
            for id in self.ids.clone() {
                if let Some((at, restart_at)) = self.node(id).crash_at_ms {
                    if at <= self.now_ms {
                        self.crash(id, restart_at);
                        self.active = true;
                    }
                }
                if self
                    .node(id)
                    .restart_at_ms
                    .is_some_and(|at| at <= self.now_ms)
                {
                    self.trace(id, "restarted from disk".into());
                    self.start(id);
                    self.active = true;
                }
            }
            if self.now_ms < chaos_end {
                self.inject_fault();
            }
            self.client_actions();
            // Idle milliseconds change nothing: skip processing and checking them.
            if std::mem::take(&mut self.active) {
                self.process_ready()?;
                self.check_all()?;
                self.check_liveness(chaos_end)?;
            }
            self.now_ms += 1;
        }
        self.stats.final_commit = self.history.max_commit().0;
        self.stats.messages = self.net.sent;
        self.stats.replayed = self.net.replayed;
        if let Some((at_ms, detail)) = self.mangled_accepted.take() {
            self.now_ms = at_ms;
            return Err(self.fail(
                "malformed messages are refused (boundary validation)",
                detail,
            ));
        }
        Ok(self.stats)
    }

    fn deliver_messages(&mut self) -> Result<(), SimFailure> {
        while let Some(delivery) = self.net.next_due(self.now_ms) {
            let to = delivery.route.1;
            let Some(core) = self
                .nodes
                .get_mut((to.0.wrapping_sub(1)) as usize)
                .and_then(|node| node.core.as_mut())
            else {
                continue;
            };
            let envelope = delivery.envelope;
            if delivery.mangled {
                self.on_the_wire.insert((envelope.from, envelope.msg));
            }
            if self.opts.verbose {
                let bent = if delivery.mangled { " (mangled)" } else { "" };
                println!(
                    "{:>7} ms  n{to}  <- n{}{bent} {:?}",
                    self.now_ms, envelope.from, envelope
                );
            }
            self.active = true;
            // What a refusal must leave as it was: everything the node shows, and its uncommitted log.
            let observe = |core: &Raft<Disk>| {
                let status = core.status();
                let tail = core.log_entries(status.commit.next(), status.last.index);
                (status, tail)
            };
            let before = delivery.mangled.then(|| observe(core));
            let shown = if delivery.mangled {
                format!("{envelope:?}")
            } else {
                String::new()
            };
            let refused = core.try_step(envelope).err();
            if refused.is_some() {
                self.stats.refused += 1;
            }
            let Some(before) = before else {
                continue;
            };
            self.stats.mangled_delivered += 1;
            match refused {
                Some(refused) => {
                    let after = observe(core);
                    if after != before {
                        return Err(self.fail(
                            "a refused message changes nothing",
                            format!(
                                "n{to} refused {shown} ({refused}) but its state moved from {before:?} to {after:?}"
                            ),
                        ));
                    }
                }
                None => {
                    let at = self.now_ms;
                    self.mangled_accepted.get_or_insert_with(|| {
                        (at, format!("n{to} accepted the mangled message {shown}"))
                    });
                }
            }
        }
        Ok(())
    }

    fn complete_writes(&mut self) -> Result<(), SimFailure> {
        for index in 0..self.nodes.len() {
            loop {
                let node = &mut self.nodes[index];
                let due = node
                    .writes
                    .front()
                    .is_some_and(|w| w.done_at_ms <= self.now_ms);
                if !due {
                    break;
                }
                self.active = true;
                let node = &mut self.nodes[index];
                let Some(write) = node.writes.pop_front() else {
                    break;
                };
                let id = node.id;
                let outcomes = node.disk.borrow_mut().write(WriteBatch {
                    hard_state: write.hard_state,
                    entries: &write.entries,
                    apply: &write.apply,
                });
                let outcomes = match outcomes {
                    Ok(outcomes) => outcomes,
                    Err(error) => {
                        return Err(
                            self.fail("durable write accepted", format!("node {id}: {error}"))
                        )
                    }
                };
                for (entry, outcome) in write.apply.iter().zip(&outcomes) {
                    let newly = match (outcome, &entry.payload) {
                        (
                            ApplyOutcome::Applied { .. },
                            Payload::Message {
                                request_id: Some(id),
                                ..
                            },
                        ) => Some(id.as_str()),
                        _ => None,
                    };
                    if let Err(detail) = invariants::check_state_machine_safety_5_4_3(
                        id,
                        entry,
                        newly,
                        &mut self.history,
                    ) {
                        return Err(self.fail("State Machine Safety (§5.4.3)", detail));
                    }
                }
                self.stats.applied += write.apply.len() as u64;
                self.write_snapshot_ops(index, write.snapshot_ops)?;
                for message in write.after {
                    self.on_the_wire.insert((message.from, message.msg));
                    self.net.send(&mut self.rng, self.now_ms, message);
                }
                if let (Some(last), Some(core)) =
                    (write.entries.last(), self.nodes[index].core.as_mut())
                {
                    core.persisted(LogId {
                        index: last.index,
                        term: last.term,
                    });
                }
            }
        }
        Ok(())
    }

    /// The live leader with the highest term, if any.
    fn current_leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter_map(|n| {
                n.core
                    .as_ref()
                    .filter(|c| c.role() == Role::Leader)
                    .map(|c| (c.term(), n.id))
            })
            .max()
            .map(|(_, id)| id)
    }

    fn process_ready(&mut self) -> Result<(), SimFailure> {
        for index in 0..self.nodes.len() {
            let mut rounds = 0;
            while self.nodes[index]
                .core
                .as_ref()
                .is_some_and(|c| c.has_ready())
                && rounds < 8
            {
                rounds += 1;
                let now = self.now_ms;
                let node = &mut self.nodes[index];
                let id = node.id;
                let Some(core) = node.core.as_mut() else {
                    break;
                };
                let ready = core.ready();
                let applied = core.applied();
                if ready.is_empty() {
                    // The runtime would spin: `has_ready` promised output that `ready` did not give.
                    return Err(self.fail(
                        "has_ready agrees with ready",
                        format!("node {id}: has_ready() was true but ready() was empty"),
                    ));
                }
                if self.opts.verbose {
                    for event in &ready.events {
                        println!("{now:>7} ms  n{id}  {event:?}");
                    }
                }
                if let Some(unsent) = ready.events.iter().find_map(|event| match event {
                    EventKind::MessageReceived { from, msg, .. }
                        if !self.on_the_wire.contains(&(*from, *msg)) =>
                    {
                        Some((*from, *msg))
                    }
                    _ => None,
                }) {
                    return Err(self.fail(
                        "every message_received pairs with a send",
                        format!(
                            "node {id} received message {} from node {}, which never sent it",
                            unsent.1, unsent.0
                        ),
                    ));
                }
                for read in &ready.reads {
                    let must_reach = node.reads.remove(&read.ctx).unwrap_or_default();
                    self.stats.reads += 1;
                    if read.index < must_reach || read.index > applied {
                        let detail = format!(
                            "node {id} released read {} at {} but {} was committed before it began (applied {applied})",
                            read.ctx, read.index, must_reach
                        );
                        return Err(self.fail("Linearizable reads (thesis §6.4)", detail));
                    }
                }
                for ctx in &ready.failed_reads {
                    node.reads.remove(ctx);
                }
                let disk_delay = self.rng.range_inclusive(1, 15);
                let done_at_ms = node
                    .writes
                    .back()
                    .map_or(now, |w| w.done_at_ms)
                    .max(now + disk_delay);
                for entry in &ready.entries {
                    if let Err(detail) = self.history.record_written(id, entry) {
                        return Err(self.fail("Log Matching (§5.3)", detail));
                    }
                }
                let changed = !ready.entries.is_empty();
                let node = &mut self.nodes[index];
                node.writes.push_back(PendingWrite {
                    done_at_ms,
                    hard_state: ready.hard_state,
                    entries: ready.entries,
                    apply: ready.committed,
                    after: ready.persisted_messages,
                    snapshot_ops: ready.snapshot_ops,
                });
                let chunks = self.read_chunks(index, ready.snapshot_sends)?;
                for message in ready.messages.into_iter().chain(chunks) {
                    self.on_the_wire.insert((message.from, message.msg));
                    self.net.send(&mut self.rng, now, message);
                }
                if changed {
                    if let Err(detail) =
                        invariants::check_log_matching_5_3(&self.nodes, id, &self.history)
                    {
                        return Err(self.fail("Log Matching (§5.3)", detail));
                    }
                }
            }
        }
        Ok(())
    }
}
