//! What a run checks as it goes: the safety invariants after every step, and liveness once the
//! faults heal.

use super::*;

/// After the faults heal, a leader must be agreed on within this time.
const LEADER_WITHIN_MS: u64 = 3_000;
/// A proposal made while calm must be applied within this time of being made (retries included).
const COMMIT_WITHIN_MS: u64 = 4_000;

impl Cluster {
    pub(super) fn check_all(&mut self) -> Result<(), SimFailure> {
        for node in &self.nodes {
            if let Some(core) = &node.core {
                if let Err(detail) = core.validate() {
                    return Err(self.fail(
                        "core invariants (validate)",
                        format!("node {}: {detail}", node.id),
                    ));
                }
            }
        }
        invariants::check_election_safety_5_2(&self.nodes, &mut self.history)
            .map_err(|d| self.fail("Election Safety (§5.2)", d))?;
        invariants::check_leader_append_only_5_3(&self.nodes, &mut self.history)
            .map_err(|d| self.fail("Leader Append-Only (§5.3)", d))?;
        invariants::check_committed_prefix_5_4(&self.nodes, &mut self.history)
            .map_err(|d| self.fail("committed entries never change (§5.4)", d))?;
        invariants::check_leader_completeness_5_4(&self.nodes, &mut self.history)
            .map_err(|d| self.fail("Leader Completeness (§5.4.1)", d))?;
        Ok(())
    }

    /// Once the faults heal: a leader everyone follows within a bound, and every command made while
    /// calm applied within a bound.
    pub(super) fn check_liveness(&mut self, chaos_end: u64) -> Result<(), SimFailure> {
        if self.now_ms < chaos_end {
            return Ok(());
        }
        let leader = self.current_leader();
        let agreed = leader.is_some()
            && self.nodes.iter().all(|n| {
                !self.must_follow(n.id, leader)
                    || n.core.as_ref().is_some_and(|c| c.leader() == leader)
            });
        if agreed {
            self.stable_leader_since.get_or_insert(self.now_ms);
        }
        if self.stable_leader_since.is_none() && self.now_ms >= chaos_end + LEADER_WITHIN_MS {
            let roles: Vec<String> = self
                .nodes
                .iter()
                .map(|n| match &n.core {
                    Some(c) => format!(
                        "n{}: {:?} term {} leader {:?}",
                        n.id,
                        c.role(),
                        c.term(),
                        c.leader()
                    ),
                    None => format!("n{}: down", n.id),
                })
                .collect();
            return Err(self.fail(
                "liveness: leader after healing",
                format!(
                    "no agreed leader {LEADER_WITHIN_MS} ms after the faults healed: {}",
                    roles.join(", ")
                ),
            ));
        }
        let now = self.now_ms;
        let late = self.requests.iter().find(|r| {
            r.first_sent_ms >= chaos_end
                && r.first_sent_ms + COMMIT_WITHIN_MS <= now
                && !self.history.applied_requests.contains_key(&r.id)
        });
        if let Some(request) = late {
            let detail = format!(
                "request {} made at {} ms (calm) is not applied after {COMMIT_WITHIN_MS} ms",
                request.id, request.first_sent_ms
            );
            return Err(self.fail("liveness: commit while calm", detail));
        }
        Ok(())
    }
}
