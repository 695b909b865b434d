//! Linearizable reads without writing to the log: ReadIndex (Raft thesis §6.4).
//!
//! A read takes the leader's commit index once an entry of the leader's term has committed, waits for a
//! heartbeat round in which a majority still acknowledges the leader, then for the state machine to
//! reach that index. Reads still pending when leadership is lost fail (see `become_follower`).

use super::*;

/// A ReadIndex read waiting for its leadership confirmation or for the state machine (thesis §6.4).
#[derive(Clone, Debug)]
pub(super) struct PendingRead {
    pub(super) ctx: u64,
    /// The commit index when the read arrived; `None` until an entry of this term has committed.
    pub(super) index: Option<LogIndex>,
    /// The heartbeat round that confirms leadership for this read; 0 before it is sent.
    pub(super) round: u64,
    pub(super) acks: BTreeSet<NodeId>,
    pub(super) confirmed: bool,
}

impl<S: LogRead> Raft<S> {
    /// Starts a ReadIndex read (thesis §6.4); `ctx` comes back in `Ready::reads` or `failed_reads`.
    pub fn read_index(&mut self, ctx: u64) -> Result<(), ReadError> {
        let commit = self.log.commit;
        let single = self.leads_alone();
        let RoleState::Leader(leader) = &mut self.role else {
            return Err(ReadError::NotLeader {
                leader: self.leader(),
            });
        };
        // Thesis §6.4: the leader's commit index is only known to be current once an entry of its
        // own term has committed.
        let index = leader.committed_in_term.then_some(commit);
        let mut read = PendingRead {
            ctx,
            index,
            round: 0,
            acks: BTreeSet::new(),
            confirmed: single,
        };
        if index.is_some() && !single {
            read.round = leader.read_round + 1;
            leader.read_round_due = true;
        }
        leader.reads.push_back(read);
        Ok(())
    }

    pub(super) fn maybe_bcast_read_round(&mut self) {
        let RoleState::Leader(leader) = &mut self.role else {
            return;
        };
        if !leader.read_round_due {
            return;
        }
        leader.read_round_due = false;
        leader.read_round += 1;
        let round = leader.read_round;
        for read in leader
            .reads
            .iter_mut()
            .filter(|r| r.index.is_some() && r.round == 0)
        {
            read.round = round;
        }
        self.bcast_heartbeat(round, false);
    }

    pub(super) fn handle_read_ack(&mut self, from: NodeId, round: u64) {
        if !self.is_voter(from) {
            return;
        }
        let quorum = self.quorum();
        let RoleState::Leader(leader) = &mut self.role else {
            return;
        };
        // An echo of round r confirms leadership for every read of round r or earlier.
        for read in leader
            .reads
            .iter_mut()
            .filter(|r| r.index.is_some() && r.round != 0 && r.round <= round)
        {
            read.acks.insert(from);
            if read.acks.len() + 1 >= quorum {
                read.confirmed = true;
            }
        }
    }

    pub(super) fn has_releasable_reads(&self) -> bool {
        let RoleState::Leader(leader) = &self.role else {
            return false;
        };
        let applied_after = self.log.commit.min(self.log.durable);
        leader
            .reads
            .front()
            .is_some_and(|r| r.confirmed && r.index.is_some_and(|i| i <= applied_after))
    }

    pub(super) fn release_reads(&mut self) {
        let applied = self.log.applied;
        let RoleState::Leader(leader) = &mut self.role else {
            return;
        };
        // Thesis §6.4: release once leadership is confirmed and the state machine reached the read index.
        while let Some(read) = leader.reads.front() {
            match read.index {
                Some(index) if read.confirmed && index <= applied => {
                    self.reads.push(ReadState {
                        ctx: read.ctx,
                        index,
                    });
                    self.events
                        .push(EventKind::ReadReleased { read_index: index });
                    leader.reads.pop_front();
                }
                _ => break,
            }
        }
    }
}
