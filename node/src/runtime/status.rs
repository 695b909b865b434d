//! `/v1/status` as the runtime publishes it: the core's view, with the members, peers' reachability,
//! partition and faults filled in by the parts that own them.

use super::{NodeInfo, Runtime};
use crate::raft::{CoreStatus, LogIndex, LogRead};
use crate::transport::{Partition, Transport};
use flotilla_shared::api::{PeerStatus, Status};
use std::sync::Arc;

impl<S: LogRead> Runtime<S> {
    pub(super) fn publish_status(&self) {
        let core = self.raft.status();
        let mut status = status_from_core(&core, &self.info, &self.transport, &self.partition);
        status.link_faults = self.faults.links();
        status.disk_write_delay_ms = self.faults.disk_write_delay_ms();
        // The core counts entries as applied once handed out; readers see them once stored.
        status.last_applied = self.stored_applied;
        let config = self.raft.membership();
        status.members = config.members.clone();
        status.config_index = config.index;
        self.status.send_replace(Arc::new(status));
    }
}

fn status_from_core(
    core: &CoreStatus,
    info: &NodeInfo,
    transport: &Transport,
    partition: &Partition,
) -> Status {
    let peers = info
        .peers
        .read()
        .iter()
        .map(|(&id, addr)| {
            let (match_index, next_index) = core.progress.get(&id).copied().unwrap_or_default();
            PeerStatus {
                id,
                addr: addr.clone(),
                match_index,
                next_index,
                reachable: transport.is_reachable(id) && !partition.contains(id),
            }
        })
        .collect();
    Status {
        id: core.id,
        role: core.role,
        term: core.term,
        voted_for: core.voted_for,
        leader_id: core.leader,
        commit_index: core.commit,
        last_applied: core.applied,
        last_log_index: core.last.index,
        last_log_term: core.last.term,
        persisted_index: core.persisted,
        peers,
        isolated_from: partition.list(),
        heartbeat_ms: core.heartbeat_ms,
        election_timeout_ms: [core.election_timeout_ms.0, core.election_timeout_ms.1],
        // Membership and fault fields are filled in by the parts that own them.
        snapshot_index: core.snapshot.index,
        snapshot_term: core.snapshot.term,
        first_log_index: core.first_index,
        members: Vec::new(),
        config_index: LogIndex(0),
        link_faults: Vec::new(),
        disk_write_delay_ms: 0,
    }
}
