//! What each node holds in a snapshot instead of its log (the compacted prefix), and snapshots
//! travelling from a leader to a follower that needs entries the leader no longer has.

use super::state::{ClusterState, NodeView};
use flotilla_shared::api::Status;
use flotilla_shared::event::{Event, EventKind};
use flotilla_shared::NodeId;

/// A finished transfer stays on screen this long, so its arrival is seen.
const TRANSFER_LINGER_MS: u64 = 1_500;
/// A transfer that stopped sending chunks (a cut, a crash) is dropped after this long.
const TRANSFER_STALL_MS: u64 = 10_000;

/// A node's latest snapshot and where its log now starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotView {
    /// The last entry the snapshot covers (0: none yet).
    pub index: u64,
    pub term: u64,
    pub bytes: u64,
    /// The first index still in the log; entries before it live only in the snapshot.
    pub first_log_index: u64,
}

impl SnapshotView {
    /// The last compacted index: entries `1..=compacted()` are drawn as the snapshot block.
    pub fn compacted(&self) -> u64 {
        self.first_log_index.saturating_sub(1)
    }
}

/// A snapshot on its way from `from` to `to`, as its chunks are reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotTransfer {
    pub from: NodeId,
    pub to: NodeId,
    pub index: u64,
    pub term: u64,
    /// Bytes sent so far (the end of the newest chunk).
    pub sent_bytes: u64,
    pub total_bytes: u64,
    pub chunks: u64,
    pub done: bool,
    /// When the first and newest chunk were sent (view clock).
    pub started_ms: u64,
    pub updated_ms: u64,
}

impl SnapshotTransfer {
    /// 0.0 to 1.0: the share of the snapshot sent.
    pub fn progress(&self) -> f32 {
        if self.done || self.total_bytes == 0 {
            return 1.0;
        }
        (self.sent_bytes as f32 / self.total_bytes as f32).clamp(0.0, 1.0)
    }

    /// Whether it is drawn at `now_ms`.
    pub fn is_shown(&self, now_ms: u64) -> bool {
        now_ms >= self.started_ms
            && if self.done {
                now_ms <= self.updated_ms + TRANSFER_LINGER_MS
            } else {
                now_ms <= self.updated_ms + TRANSFER_STALL_MS
            }
    }
}

/// Takes in what `kind` says about the node's own snapshot and log start.
pub(crate) fn apply_node_event(view: &mut NodeView, kind: &EventKind) {
    match kind {
        EventKind::SnapshotTaken { index, term, bytes } => {
            view.snapshot.index = index.0;
            view.snapshot.term = term.0;
            view.snapshot.bytes = *bytes;
        }
        EventKind::LogCompacted { first_log_index } => {
            view.snapshot.first_log_index = first_log_index.0;
        }
        EventKind::SnapshotInstalled {
            index, term, bytes, ..
        } => {
            view.snapshot = SnapshotView {
                index: index.0,
                term: term.0,
                bytes: *bytes,
                first_log_index: index.0 + 1,
            };
            view.log.extend_unknown(index.0);
            view.commit_index = view.commit_index.max(index.0);
            view.applied_index = view.applied_index.max(index.0);
            view.persisted_index = view.persisted_index.max(index.0);
        }
        _ => {}
    }
}

/// Takes in the snapshot fields of a status (nodes without snapshots report zeros).
pub(crate) fn apply_status(view: &mut NodeView, status: &Status) {
    if status.snapshot_index.0 > 0 {
        view.snapshot.index = status.snapshot_index.0;
        view.snapshot.term = status.snapshot_term.0;
    }
    view.snapshot.first_log_index = status.first_log_index.0;
}

impl ClusterState {
    /// Follows a snapshot transfer chunk by chunk; `lag_ms` moves the node's clock to the view's.
    pub(crate) fn note_transfer(&mut self, event: &Event, lag_ms: u64) {
        let EventKind::SnapshotSent {
            to,
            index,
            term,
            offset,
            bytes,
            total_bytes,
            done,
            ..
        } = &event.kind
        else {
            return;
        };
        let at_ms = event.at_ms + lag_ms;
        self.transfers.retain(|transfer| transfer.is_shown(at_ms));
        let from = event.node;
        let same = |transfer: &SnapshotTransfer| {
            transfer.from == from
                && transfer.to == *to
                && transfer.index == index.0
                && !transfer.done
        };
        let sent_bytes = offset + bytes;
        match self.transfers.iter_mut().find(|transfer| same(transfer)) {
            // A restart from offset 0 (after a cut) shows as progress going back.
            Some(transfer) => {
                transfer.sent_bytes = sent_bytes;
                transfer.total_bytes = *total_bytes;
                transfer.chunks += 1;
                transfer.done = *done;
                transfer.updated_ms = at_ms;
            }
            None => self.transfers.push(SnapshotTransfer {
                from,
                to: *to,
                index: index.0,
                term: term.0,
                sent_bytes,
                total_bytes: *total_bytes,
                chunks: 1,
                done: *done,
                started_ms: at_ms,
                updated_ms: at_ms,
            }),
        }
    }
}

/// Bytes in words: "512 B", "12.3 KiB", "4.0 MiB".
pub fn bytes_words(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let value = bytes as f64;
    if value < KIB {
        format!("{bytes} B")
    } else if value < KIB * KIB {
        format!("{:.1} KiB", value / KIB)
    } else {
        format!("{:.1} MiB", value / KIB / KIB)
    }
}
