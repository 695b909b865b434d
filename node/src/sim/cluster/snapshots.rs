//! Snapshots in the simulator (Raft §7): each node snapshots its durable state machine and compacts
//! its disk's log every few dozen applied entries (the run's own threshold and tail), leaders read the
//! chunks their cores ask for from their disks, and followers stage and install them with their
//! simulated writes (lost with them in a crash). An installed image must agree with every message
//! any node applied at the same indexes (State Machine Safety across the snapshot boundary).

use super::*;
use crate::raft::{SnapshotOp, SnapshotSend};
use crate::storage::read_image_chunk;

/// Snapshot settings of one run, drawn from a generator of their own (the other draws stay as they
/// were).
#[derive(Clone, Copy, Debug)]
pub(super) struct SnapshotPlan {
    pub(super) threshold: u64,
    pub(super) tail: u64,
    pub(super) chunk_bytes: u64,
}

impl SnapshotPlan {
    pub(super) fn draw(seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed.wrapping_mul(0x5851_f42d_4c95_7f2d) ^ 0x736e_6170);
        Self {
            threshold: rng.range_inclusive(8, 60),
            tail: rng.range_inclusive(0, 8),
            chunk_bytes: rng.range_inclusive(40, 400),
        }
    }
}

impl Cluster {
    /// Every live node whose disk applied `threshold` entries since its last snapshot takes one and
    /// compacts its log.
    pub(super) fn maybe_compact(&mut self) -> Result<(), SimFailure> {
        let plan = self.snapshot_plan;
        for index in 0..self.nodes.len() {
            let node = &mut self.nodes[index];
            let Some(core) = node.core.as_mut() else {
                continue;
            };
            let mut disk = node.disk.borrow_mut();
            let applied = disk.applied();
            let latest = disk.snapshot().unwrap_or_default().last;
            if applied.0 < latest.index.0 + plan.threshold {
                continue;
            }
            let Ok(Some(term)) = LogStore::term(&*disk, applied) else {
                continue;
            };
            let at = LogId {
                index: applied,
                term,
            };
            // As the runtime: the configuration in force at the snapshot, once the core holds it.
            let Some(config) = core.snapshot_configuration(applied).cloned() else {
                continue;
            };
            let taken = disk
                .take_snapshot(at, &config.members, config.index)
                .and_then(|meta| {
                    let first = disk.compact(LogIndex(applied.0.saturating_sub(plan.tail)))?;
                    Ok((meta, first))
                });
            drop(disk);
            let id = node.id;
            match taken {
                Ok((meta, first)) => {
                    self.stats.snapshots += 1;
                    core.snapshot_taken(meta);
                    core.log_compacted(first);
                    self.active = true;
                }
                Err(error) => {
                    return Err(self.fail("snapshot accepted", format!("node {id}: {error}")))
                }
            }
        }
        Ok(())
    }

    /// The chunks a leader's core asks for, read from its disk (its core learns where each ends).
    pub(super) fn read_chunks(
        &mut self,
        index: usize,
        sends: Vec<SnapshotSend>,
    ) -> Result<Vec<Envelope>, SimFailure> {
        let chunk_bytes = self.snapshot_plan.chunk_bytes;
        let node = &mut self.nodes[index];
        let mut out = Vec::with_capacity(sends.len());
        for send in sends {
            let disk = node.disk.borrow();
            let read = read_image_chunk(
                |lo, hi, limit| disk.messages(lo, hi, limit),
                send.after,
                send.meta.last.index,
                chunk_bytes,
            );
            drop(disk);
            match read {
                Ok((records, bytes)) => {
                    let chunk = send.into_envelope(node.id, records, bytes).0;
                    if let Some(core) = node.core.as_mut() {
                        core.snapshot_chunk_read(&chunk);
                    }
                    out.push(chunk);
                }
                Err(error) => {
                    let detail = format!("node {}: {error}", node.id);
                    return Err(self.fail("snapshot chunk read", detail));
                }
            }
        }
        Ok(out)
    }

    /// Stages and installs what a follower's core asked for, once its write completes.
    pub(super) fn write_snapshot_ops(
        &mut self,
        index: usize,
        ops: Vec<SnapshotOp>,
    ) -> Result<(), SimFailure> {
        let id = self.nodes[index].id;
        for op in ops {
            let disk = self.nodes[index].disk.clone();
            let result = match op {
                SnapshotOp::Stage { offset, records } => {
                    disk.borrow_mut().stage_snapshot(offset, &records)
                }
                SnapshotOp::Install(meta) => {
                    self.stats.installs += 1;
                    let result = disk.borrow_mut().install_snapshot(&meta);
                    if result.is_ok() {
                        self.check_installed_image(id, &disk)?;
                    }
                    result
                }
            };
            if let Err(error) = result {
                return Err(self.fail("snapshot write accepted", format!("node {id}: {error}")));
            }
        }
        Ok(())
    }

    /// Raft §5.4.3 across the snapshot boundary: every message of an installed image is the one every
    /// other node applied at its index, and each request id sits where it was applied elsewhere.
    fn check_installed_image(&mut self, id: NodeId, disk: &Disk) -> Result<(), SimFailure> {
        let image: Vec<Entry> = disk
            .borrow()
            .applied_messages()
            .iter()
            .map(|m| Entry {
                index: m.index,
                term: m.term,
                payload: Payload::Message {
                    text: m.text.clone(),
                    request_id: m.request_id.clone(),
                },
            })
            .collect();
        for entry in &image {
            let request_id = match &entry.payload {
                Payload::Message { request_id, .. } => request_id.as_deref(),
                Payload::Noop | Payload::Configuration { .. } => None,
            };
            if let Err(detail) = invariants::check_state_machine_safety_5_4_3(
                id,
                entry,
                request_id,
                &mut self.history,
            ) {
                return Err(self.fail(
                    "State Machine Safety (§5.4.3) of an installed snapshot",
                    detail,
                ));
            }
        }
        Ok(())
    }
}
