//! The faults a run injects while chaotic, by profile, and their healing.

use super::*;

impl Cluster {
    pub(super) fn heal_all(&mut self) {
        self.net.heal();
        self.net.faults = NetworkFaults {
            delay_ms: (1, self.chaos_faults.delay_ms.1.min(20)),
            ..NetworkFaults::CALM
        };
        let now = self.now_ms;
        for id in self.ids.clone() {
            let node = self.node(id);
            node.crash_at_ms = None;
            if node.core.is_none() {
                node.restart_at_ms = Some(now);
            }
        }
        self.trace(NodeId(0), "faults healed".into());
    }

    pub(super) fn inject_fault(&mut self) {
        // About one fault every `fault_every_ms` (drawn per seed).
        if self.rng.chance(1, 250) {
            self.clients_paused = !self.clients_paused;
        }
        // About one membership change asked for every 100 ms, besides the faults.
        if self.opts.profile == FaultProfile::Membership && self.rng.chance(1, 100) {
            self.active = true;
            self.change_membership();
        }
        if !self.rng.chance(1, self.fault_every_ms) {
            return;
        }
        self.active = true;
        if self.opts.profile == FaultProfile::Figure8 {
            self.inject_figure8_fault();
            return;
        }

        let n = self.ids.len() as u64;
        let mut pick = NodeId(self.rng.range_inclusive(1, n));
        // Half the faults hit the leader: leader changes with unreplicated entries are where logs
        // diverge (Raft §5.3, Figure 7) and where commitment rules matter (§5.4.2, Figure 8).
        if self.rng.chance(1, 2) {
            pick = self.current_leader().unwrap_or(pick);
        }
        let other = NodeId(self.rng.range_inclusive(1, n));
        let ids = self.ids.clone();
        match self.rng.range_inclusive(0, 9) {
            0 | 1 => {
                let restart = self.now_ms + self.rng.range_inclusive(20, 1_000);
                self.crash(pick, restart);
            }
            2 => {
                self.net.isolate(pick, &ids);
                self.trace(pick, "isolated".into());
            }
            3 if pick != other => {
                self.net.cut_one_way(pick, other);
                self.trace(pick, format!("cannot reach n{other}"));
            }
            4 => {
                let size = self.rng.range_inclusive(1, n / 2) as usize;
                let mut group: Vec<NodeId> = Vec::new();
                while group.len() < size {
                    let id = NodeId(self.rng.range_inclusive(1, n));
                    if !group.contains(&id) {
                        group.push(id);
                    }
                }
                self.net.split(&group, &ids);
                self.trace(pick, format!("split {group:?} from the rest"));
            }
            5 | 6 => {
                self.net.heal();
                self.trace(NodeId(0), "network healed".into());
            }
            7 => {
                if let Some(leader) = self.current_leader() {
                    let to = other;
                    if let Some(core) = self.node(leader).core.as_mut() {
                        let result = core.transfer_leadership(to);
                        self.trace(leader, format!("transfer leadership to n{to}: {result:?}"));
                    }
                }
            }
            _ => {
                // Reports of unreachable peers, as a transport would make them.
                if let Some(core) = self.node(pick).core.as_mut() {
                    core.report_unreachable(other);
                }
            }
        }
    }

    /// Figure 8's faults besides the cut and crash after a proposal (see `client_actions`): mostly
    /// heals, so that nodes cut off with divergent logs rejoin and campaign; now and then any node
    /// crashes and restarts soon. Little else, so that the sequences Figure 8 needs are not broken up.
    pub(super) fn inject_figure8_fault(&mut self) {
        let n = self.ids.len() as u64;
        if self.rng.chance(7, 10) {
            self.net.heal();
            self.trace(NodeId(0), "network healed".into());
        } else {
            let pick = NodeId(self.rng.range_inclusive(1, n));
            let restart = self.now_ms + self.rng.range_inclusive(20, 400);
            self.crash(pick, restart);
        }
    }

    /// Figure 8's key step: a leader that just accepted a command is cut off from all but a minority
    /// (possibly none) of its peers, so the new entry reaches a minority at most; it crashes once the
    /// entry is on its disk and comes back later, cut no more, with that entry at the end of its log.
    pub(super) fn cut_off_after_proposal(&mut self, leader: NodeId) {
        let crash_at = self.now_ms + self.rng.range_inclusive(16, 40);
        let restart_at = crash_at + self.rng.range_inclusive(50, 400);
        // A leader already doomed keeps its first crash time: later commands do not postpone it.
        self.node(leader)
            .crash_at_ms
            .get_or_insert((crash_at, restart_at));
        let n = self.ids.len();
        let keep = self
            .rng
            .range_inclusive(0, (n / 2).saturating_sub(1) as u64) as usize;
        let mut peers: Vec<NodeId> = self.ids.iter().copied().filter(|p| *p != leader).collect();
        let mut kept = Vec::new();
        while kept.len() < keep && !peers.is_empty() {
            let at = self.rng.range_inclusive(0, peers.len() as u64 - 1) as usize;
            kept.push(peers.swap_remove(at));
        }
        for peer in &peers {
            self.net.cut_one_way(leader, *peer);
            self.net.cut_one_way(*peer, leader);
        }
        self.trace(
            leader,
            format!("cut off after a proposal; still reaches {kept:?}"),
        );
    }
}
