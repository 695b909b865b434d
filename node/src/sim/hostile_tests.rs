//! Property tests: one node fed an honest leader's appends mixed with arbitrary messages (random,
//! extreme, plausible forgeries, mangled; see [`hostile::arbitrary`]), its output written to a store,
//! (a) in memory and (b) in a real SQLite file that is reopened now and then.
//!
//! Whatever arrives, after every message: no panic; the core's invariants hold (`Raft::validate`); the
//! store accepts every write the core asks for (it refuses holes, terms going back, a second vote in a
//! term, rewritten committed entries); this node's committed entries never change and apply once, in
//! order (the simulator's checks, §5.4, §5.4.3); a refused message changes nothing. After a reopen the
//! store holds exactly what was written and a node starts from it.
//!
//! Forgeries are Byzantine, so agreement with other nodes is not claimed here: that is the simulator's
//! (`FaultProfile::Mangled`). Each case is a seed; a failure names it.

use super::hostile::{self, Target};
use super::invariants::{self, History};
use crate::raft::rng::SplitMix64;
use crate::raft::{
    Config, Entry, Envelope, HardState, LogId, LogIndex, LogRead, Message, NodeId, Payload, Raft,
    Restored, Term,
};
use crate::runtime::CoreLog;
use crate::storage::memory::MemoryStore;
use crate::storage::sqlite::SqliteStore;
use crate::storage::{ApplyOutcome, InitialState, LogStore, StorageError, WriteBatch};
use flotilla_shared::rpc::AppendEntries;
use std::cell::RefCell;
use std::rc::Rc;

const SUBJECT: NodeId = NodeId(2);
const MEMBERS: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];

/// The cluster the subject really belongs to, as its leaders would speak to it.
struct Honest {
    leader: NodeId,
    term: Term,
    log: Vec<Entry>,
    commit: LogIndex,
    next_request: u64,
}

impl Honest {
    fn new() -> Self {
        Self {
            leader: NodeId(1),
            term: Term(1),
            log: Vec::new(),
            commit: LogIndex::ZERO,
            next_request: 1,
        }
    }

    fn term_at(&self, index: LogIndex) -> Term {
        match index.0 {
            0 => Term(0),
            i => self.log[i as usize - 1].term,
        }
    }

    /// The leader's next append to the subject, its log grown and its commit moved on first.
    fn next_append(&mut self, rng: &mut SplitMix64, subject_last: LogIndex) -> Envelope {
        for _ in 0..rng.range_inclusive(0, 3) {
            let request = self.next_request;
            self.next_request += 1;
            self.log.push(Entry {
                index: LogIndex(self.log.len() as u64 + 1),
                term: self.term,
                payload: Payload::Message {
                    text: format!("honest {request}"),
                    request_id: Some(format!("honest-{request}")),
                },
            });
        }
        // The third node holds everything the leader sent, so the leader may commit any of it once an
        // entry of its own term is there (§5.4.2).
        let last = LogIndex(self.log.len() as u64);
        if self.term_at(last) == self.term && rng.chance(1, 2) {
            self.commit = LogIndex(rng.range_inclusive(self.commit.0, last.0));
        }
        let top = subject_last.min(last).0;
        let prev = LogIndex(rng.range_inclusive(top.saturating_sub(3), top));
        let count = rng.range_inclusive(0, 4).min(last.0 - prev.0) as usize;
        let entries = self.log[prev.0 as usize..prev.0 as usize + count].to_vec();
        Envelope {
            msg: 0,
            from: self.leader,
            to: SUBJECT,
            term: self.term,
            message: Message::AppendEntries(AppendEntries {
                prev_log_index: prev,
                prev_log_term: self.term_at(prev),
                entries,
                leader_commit: self.commit,
                read_ctx: 0,
            }),
        }
    }

    /// A new leader in a term above every term the subject has seen; it keeps the committed log and
    /// may lose the uncommitted tail (Raft §5.4: only committed entries are certain to survive).
    fn change_leader(&mut self, rng: &mut SplitMix64, subject_term: Term) {
        self.leader = if self.leader == NodeId(1) {
            NodeId(3)
        } else {
            NodeId(1)
        };
        self.term = Term(self.term.max(subject_term).0 + 1);
        if rng.chance(1, 2) {
            self.log.truncate(self.commit.0 as usize);
        }
        self.log.push(Entry {
            index: LogIndex(self.log.len() as u64 + 1),
            term: self.term,
            payload: Payload::Noop,
        });
    }
}

/// What a refused message must leave as it was.
fn observe<S: LogRead>(core: &Raft<S>) -> impl PartialEq + std::fmt::Debug {
    let status = core.status();
    let tail = core.log_entries(status.commit.next(), status.last.index);
    (status, tail)
}

fn new_core<S: LogRead>(log: S, state: InitialState, seed: u64, now_ms: u64) -> Raft<S> {
    let mut config = Config::new(SUBJECT, MEMBERS.to_vec());
    config.seed = seed;
    config.max_append_entries = 16;
    config.max_cached_entries = 16;
    let restored = Restored {
        hard_state: state.hard_state,
        last: state.last,
        applied: state.applied,
        snapshot: Default::default(),
        first_index: state.first_index,
    };
    Raft::new(config, log, restored, now_ms).expect("valid config")
}

/// What the store was last asked to hold, to compare with what a reopened store holds.
#[derive(Default)]
struct Written {
    hard_state: HardState,
    last: LogId,
    applied: LogIndex,
}

/// Feeds `steps` messages to `core`, writing its output through `write`. `Err` describes the first
/// broken property.
#[allow(clippy::too_many_arguments)]
fn feed<S: LogRead>(
    core: &mut Raft<S>,
    write: &mut dyn FnMut(WriteBatch<'_>) -> Result<Vec<ApplyOutcome>, StorageError>,
    honest: &mut Honest,
    history: &mut History,
    written: &mut Written,
    rng: &mut SplitMix64,
    now_ms: &mut u64,
    steps: u64,
) -> Result<u64, String> {
    let mut refused = 0;
    for step in 0..steps {
        *now_ms += rng.range_inclusive(0, 40);
        core.tick(*now_ms);
        if rng.chance(1, 40) {
            honest.change_leader(rng, core.term());
        }
        let envelope = if rng.chance(2, 5) {
            honest.next_append(rng, core.last_log().index)
        } else {
            let target = Target {
                id: SUBJECT,
                term: core.term(),
                last: core.last_log().index,
                commit: core.commit(),
            };
            hostile::arbitrary(rng, &MEMBERS, target)
        };
        let shown = format!("{envelope:?}");
        let before = observe(core);
        if let Err(rejected) = core.try_step(envelope) {
            refused += 1;
            if observe(core) != before {
                return Err(format!(
                    "step {step}: refused {shown} ({rejected}) but the node changed"
                ));
            }
        }
        core.validate()
            .map_err(|broken| format!("step {step} after {shown}: {broken}"))?;
        let ready = core.ready();
        let outcomes = write(WriteBatch {
            hard_state: ready.hard_state,
            entries: &ready.entries,
            apply: &ready.committed,
        })
        .map_err(|error| {
            format!("step {step} after {shown}: the store refused a write: {error}")
        })?;
        if let Some(hard_state) = ready.hard_state {
            written.hard_state = hard_state;
        }
        if let Some(last) = ready.entries.last() {
            written.last = LogId {
                index: last.index,
                term: last.term,
            };
            core.persisted(written.last);
        }
        for (entry, outcome) in ready.committed.iter().zip(&outcomes) {
            written.applied = entry.index;
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
            invariants::check_state_machine_safety_5_4_3(SUBJECT, entry, newly, history)
                .map_err(|broken| format!("step {step}: {broken}"))?;
        }
        invariants::check_node_committed_prefix_5_4(SUBJECT, core, history)
            .map_err(|broken| format!("step {step} after {shown}: {broken}"))?;
    }
    Ok(refused)
}

/// (a) The core over an in-memory store.
#[test]
fn arbitrary_messages_never_break_a_node_over_a_memory_store() {
    let mut refused = 0;
    let mut committed = 0;
    for seed in 0..600 {
        let mut rng = SplitMix64::new(seed);
        let disk = Rc::new(RefCell::new(MemoryStore::new()));
        let mut core = new_core(disk.clone(), InitialState::default(), seed, 0);
        let mut write = |batch: WriteBatch<'_>| disk.borrow_mut().write(batch);
        let (mut honest, mut history) = (Honest::new(), History::default());
        let (mut written, mut now_ms) = (Written::default(), 0);
        let outcome = feed(
            &mut core,
            &mut write,
            &mut honest,
            &mut history,
            &mut written,
            &mut rng,
            &mut now_ms,
            400,
        );
        match outcome {
            Ok(count) => refused += count,
            Err(broken) => panic!("seed {seed}: {broken}"),
        }
        committed += core.commit().0;
    }
    assert!(refused > 50_000, "only {refused} messages refused");
    assert!(committed > 10_000, "only {committed} entries committed");
    println!("{refused} messages refused, {committed} entries committed over 600 seeds");
}

/// (b) The storage-backed path: a real SQLite file (on tmpfs when there is one, to spare the disk),
/// reopened every 100 messages as after a crash; what it holds must be what was written, and a node
/// must start from it.
#[test]
fn arbitrary_messages_never_poison_a_sqlite_store() {
    let shm = std::path::Path::new("/dev/shm");
    let mut builder = tempfile::Builder::new();
    builder.prefix("flotilla-hostile-");
    let dir = if shm.is_dir() {
        builder.tempdir_in(shm)
    } else {
        builder.tempdir()
    }
    .expect("temp dir");
    let mut refused = 0;
    for seed in 0..40 {
        let path = dir.path().join(format!("seed-{seed}.db"));
        let mut rng = SplitMix64::new(seed ^ 0x5eed);
        let (mut honest, mut history) = (Honest::new(), History::default());
        let (mut written, mut now_ms) = (Written::default(), 0);
        for restart in 0..3 {
            let mut store = SqliteStore::open(&path, SUBJECT, "hostile").expect("open");
            let state = store.initial_state().expect("initial state");
            assert_eq!(
                (state.hard_state, state.last, state.applied),
                (written.hard_state, written.last, written.applied),
                "seed {seed}, restart {restart}: the store holds something else than was written"
            );
            let reader = CoreLog(store.reader().expect("reader"));
            let mut core = new_core(reader, state, seed, now_ms);
            history.restarted(SUBJECT, core.commit());
            let mut write = |batch: WriteBatch<'_>| store.write(batch);
            match feed(
                &mut core,
                &mut write,
                &mut honest,
                &mut history,
                &mut written,
                &mut rng,
                &mut now_ms,
                100,
            ) {
                Ok(count) => refused += count,
                Err(broken) => panic!("seed {seed}, restart {restart}: {broken}"),
            }
        }
    }
    assert!(refused > 5_000, "only {refused} messages refused");
}
