//! Leadership transfer (Raft thesis §3.10): the leader stops taking proposals, brings the target up to
//! date and sends it TimeoutNow, so that it campaigns at once; the transfer lapses after an election
//! timeout (see `tick_leader`).

use super::*;

#[derive(Clone, Debug)]
pub(super) struct Transfer {
    pub(super) to: NodeId,
    pub(super) deadline_ms: u64,
    pub(super) timeout_now_sent: bool,
}

impl<S: LogRead> Raft<S> {
    pub fn transfer_leadership(&mut self, to: NodeId) -> Result<(), TransferError> {
        if !self.is_voter(to) && to != self.id {
            return Err(TransferError::UnknownNode(to));
        }
        let deadline_ms = self.now_ms + self.config.election_timeout_ms.0;
        let RoleState::Leader(leader) = &mut self.role else {
            return Err(TransferError::NotLeader {
                leader: self.leader(),
            });
        };
        if to == self.id {
            leader.transfer = None;
            return Ok(());
        }
        leader.transfer = Some(Transfer {
            to,
            deadline_ms,
            timeout_now_sent: false,
        });
        self.maybe_send_timeout_now();
        self.debug_validate();
        Ok(())
    }

    pub(super) fn maybe_send_timeout_now(&mut self) {
        let last = self.log.last_index();
        let term = self.term;
        let RoleState::Leader(leader) = &mut self.role else {
            return;
        };
        let Some(transfer) = &mut leader.transfer else {
            return;
        };
        if transfer.timeout_now_sent {
            return;
        }
        let to = transfer.to;
        // Thesis §3.10: the target must be up to date before it is asked to campaign.
        if leader
            .progress
            .get(&to)
            .is_some_and(|pr| pr.match_index == last)
        {
            transfer.timeout_now_sent = true;
            let msg = self.next_msg();
            self.events
                .push(EventKind::TimeoutNowSent { to, term, msg });
            self.messages.push(Envelope {
                msg,
                from: self.id,
                to,
                term,
                message: Message::TimeoutNow,
            });
        }
    }
}
