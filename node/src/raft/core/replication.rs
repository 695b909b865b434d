//! Replication and commitment (Raft §5.3, §5.4.2): proposals, appends and heartbeats out, appends and
//! their responses in, and the commit index they move.

use super::*;

impl<S: LogRead> Raft<S> {
    /// Appends a client command (leader only).
    pub fn propose(&mut self, payload: Payload) -> Result<Proposal, ProposeError> {
        let term = self.term;
        let last = self.log.last_index();
        let RoleState::Leader(leader) = &mut self.role else {
            return Err(ProposeError::NotLeader {
                leader: self.leader(),
            });
        };
        if let Some(transfer) = &leader.transfer {
            return Err(ProposeError::TransferInProgress { to: transfer.to });
        }
        let request_id = match &payload {
            Payload::Message {
                request_id: Some(id),
                ..
            } => Some(id.clone()),
            _ => None,
        };
        if let Some(id) = &request_id {
            if let Some(existing) = leader.pending_requests.get(id) {
                return Ok(Proposal {
                    index: existing.index,
                    term: existing.term,
                    already_pending: true,
                });
            }
        }
        let entry = Entry {
            index: last.next(),
            term,
            payload,
        };
        if let Some(id) = request_id {
            leader.pending_requests.insert(
                id,
                LogId {
                    index: entry.index,
                    term,
                },
            );
        }
        let index = entry.index;
        self.append_local(entry);
        self.debug_validate();
        Ok(Proposal {
            index,
            term,
            already_pending: false,
        })
    }

    pub(super) fn tick_leader(&mut self) {
        let now = self.now_ms;
        let quorum = self.quorum();
        let lease_ms = self.config.election_timeout_ms.0;
        let check_quorum = self.config.check_quorum;
        let RoleState::Leader(leader) = &mut self.role else {
            return;
        };
        // CheckQuorum (thesis §6.2): step down when a majority has not been heard from lately.
        if check_quorum
            && leader.active_voters(now, lease_ms, self.membership.current(), self.id) < quorum
        {
            self.events
                .push(EventKind::CheckQuorumFailed { term: self.term });
            self.become_follower(self.term, None);
            return;
        }
        if leader
            .transfer
            .as_ref()
            .is_some_and(|t| now >= t.deadline_ms)
        {
            // The target did not take over within an election timeout: accept proposals again.
            leader.transfer = None;
        }
        if now >= leader.heartbeat_due_ms {
            leader.heartbeat_due_ms = now + self.config.heartbeat_ms;
            let read_ctx = leader.unconfirmed_read_round();
            self.bcast_heartbeat(read_ctx, true);
        }
    }

    pub(super) fn append_local(&mut self, entry: Entry) {
        let (index, term) = (entry.index, entry.term);
        self.log.append(entry);
        // One event per run of proposals between two rounds, not one per entry: a batch of thousands
        // of commands reads as one append, as it does on the followers.
        match self.events.last_mut() {
            Some(EventKind::EntryAppended {
                last, term: run, ..
            }) if *run == term && last.next() == index => *last = index,
            _ => self.events.push(EventKind::EntryAppended {
                first: index,
                last: index,
                term,
            }),
        }
        if self.peers.is_empty() {
            // Single node: the entry commits once durable; nothing to replicate.
            self.maybe_commit();
        }
    }

    pub(super) fn reject_append(
        &mut self,
        to: NodeId,
        ae: &AppendEntries,
        reason: String,
        conflict_index: Option<LogIndex>,
        conflict_term: Option<Term>,
    ) {
        let msg = self.next_msg();
        self.events.push(EventKind::AppendRejected {
            msg,
            to,
            term: self.term,
            reason: reason.clone(),
            hint_index: conflict_index,
        });
        self.persisted_messages.push(Envelope {
            msg,
            from: self.id,
            to,
            term: self.term,
            message: Message::AppendEntriesResponse(AppendEntriesResponse {
                success: false,
                index: ae.prev_log_index,
                conflict_index,
                conflict_term,
                reason: Some(reason),
                read_ctx: ae.read_ctx,
            }),
        });
    }

    pub(super) fn handle_append_entries(
        &mut self,
        from: NodeId,
        mut ae: AppendEntries,
    ) -> Result<(), Rejected> {
        if matches!(self.role, RoleState::Leader(_)) {
            // Raft §5.2 (Election Safety) makes this impossible; answer rather than trust the sender.
            self.reject_append(
                from,
                &ae,
                format!("node {} leads term {}", self.id, self.term),
                None,
                None,
            );
            return Ok(());
        }
        if !matches!(self.role, RoleState::Follower { leader: Some(l) } if l == from) {
            self.become_follower(self.term, Some(from));
        } else {
            self.leader_heard_ms = Some(self.now_ms);
            self.reset_election_timer();
        }
        let commit = self.log.commit;
        let last = self.log.last_index();
        // Entries at or below our commit index match the leader's (Raft §5.4, Leader Completeness):
        // skip them rather than compare.
        let mut prev = LogId {
            index: ae.prev_log_index,
            term: ae.prev_log_term,
        };
        // Moved out, not cloned: copying every entry's payload here was a large share of a follower's
        // cost in the core throughput bench. `ae` keeps the fields a rejection echoes.
        let mut entries = std::mem::take(&mut ae.entries);
        let sent = entries.len() as u64;
        if prev.index < commit {
            let skip = (commit.0 - prev.index.0).min(entries.len() as u64) as usize;
            if skip > 0 {
                prev = LogId {
                    index: entries[skip - 1].index,
                    term: entries[skip - 1].term,
                };
                entries.drain(..skip);
            }
            if prev.index < commit {
                // Everything sent is already committed here.
                let matched = LogIndex(ae.prev_log_index.0.saturating_add(sent));
                self.ack_append(from, matched, ae.read_ctx);
                return Ok(());
            }
        }
        // Raft §5.3: reject unless our log has an entry at prev_log_index with prev_log_term.
        if !self.log.matches(prev.index, prev.term) {
            if prev.index > last {
                let reason = format!(
                    "log mismatch at {}: log too short (last {last})",
                    prev.index
                );
                self.reject_append(from, &ae, reason, Some(last.next()), None);
            } else {
                let ours = self.log.term(prev.index).unwrap_or_default();
                // Thesis §5.3 fast backtracking: the conflicting term and the first index we hold of it.
                let first = self.log.first_index_of_term_at(prev.index, commit);
                let reason = format!(
                    "log mismatch at {}: term {ours} here, leader has {}",
                    prev.index, prev.term
                );
                self.reject_append(from, &ae, reason, Some(first), Some(ours));
            }
            return Ok(());
        }
        let matched = LogIndex(prev.index.0.saturating_add(entries.len() as u64));
        // Raft §5.3: delete a conflicting entry and all that follow; never touch matching ones.
        let conflict = entries
            .iter()
            .position(|e| !self.log.matches(e.index, e.term));
        if let Some(at) = conflict {
            let new: Vec<Entry> = entries.split_off(at);
            let configurations = membership::configurations_in(&new);
            let first_new = new[0].index;
            // One event per run of entries of the same term, worked out before the entries move.
            let mut appended = Vec::new();
            let mut run_start = 0;
            for i in 0..new.len() {
                if i + 1 == new.len() || new[i + 1].term != new[i].term {
                    appended.push(EventKind::EntryAppended {
                        first: new[run_start].index,
                        last: new[i].index,
                        term: new[i].term,
                    });
                    run_start = i + 1;
                }
            }
            // Unreachable for a message that passed validation (contiguous entries after a matching
            // prev_log_index, so at or above commit + 1); refused rather than trusted all the same.
            let truncated = self
                .log
                .truncate_and_append(new)
                .map_err(|why| Rejected::new(Reason::LogRefused, why))?;
            if let Some(kept) = truncated {
                self.events.push(EventKind::LogTruncated { index: kept });
            }
            self.events.extend(appended);
            self.on_log_rewritten(first_new, configurations);
        }
        // Raft §5.3: commit up to min(leader_commit, index of last new entry).
        let new_commit = ae.leader_commit.min(matched);
        if new_commit > self.log.commit {
            self.log.commit = new_commit;
            self.events.push(EventKind::CommitAdvanced {
                commit_index: new_commit,
            });
        }
        self.ack_append(from, matched, ae.read_ctx);
        Ok(())
    }

    pub(super) fn ack_append(&mut self, to: NodeId, matched: LogIndex, read_ctx: u64) {
        // No send event for a success (one per append would double the stream); the leader's
        // `append_acked` names this `msg`.
        let msg = self.next_msg();
        self.persisted_messages.push(Envelope {
            msg,
            from: self.id,
            to,
            term: self.term,
            message: Message::AppendEntriesResponse(AppendEntriesResponse {
                success: true,
                index: matched,
                conflict_index: None,
                conflict_term: None,
                reason: None,
                read_ctx,
            }),
        });
    }

    pub(super) fn handle_append_response(
        &mut self,
        from: NodeId,
        msg: u64,
        resp: AppendEntriesResponse,
    ) -> Result<(), Rejected> {
        let now = self.now_ms;
        let term = self.term;
        let last = self.log.last_index();
        let RoleState::Leader(leader) = &mut self.role else {
            return Ok(());
        };
        // A response of this term answers an append this leader sent, and its log only grows within
        // its term (Raft §5.3, Leader Append-Only): it cannot name an index past the log or a read round
        // not yet started. Trusting one would count a follower for entries or reads it never confirmed.
        if resp.index > last {
            return Err(Rejected::new(
                Reason::UnknownReply,
                format!(
                    "append response from node {from} names index {}, past this leader's last entry {last}",
                    resp.index
                ),
            ));
        }
        if resp.read_ctx > leader.read_round {
            return Err(Rejected::new(
                Reason::UnknownReply,
                format!(
                    "append response from node {from} echoes read round {}; the last one started is {}",
                    resp.read_ctx, leader.read_round
                ),
            ));
        }
        let Some(pr) = leader.progress.get_mut(&from) else {
            return Ok(());
        };
        pr.last_heard_ms = now;
        if self.snapshots.sending_to(from, term) {
            // Raft §7: the follower is being sent a snapshot; its appends wait for it.
            if resp.read_ctx != 0 {
                self.handle_read_ack(from, resp.read_ctx);
            }
            return Ok(());
        }
        if pr.state == ProgressState::Probe {
            pr.probe_sent = false;
        }
        let read_ctx = resp.read_ctx;
        if resp.success {
            let moved = pr.maybe_update(resp.index);
            // A probe was answered (not just a heartbeat at the old match point): pipeline from here.
            if pr.state == ProgressState::Probe && (moved || resp.index.next() >= pr.next_index) {
                pr.become_replicate();
            }
            self.events.push(EventKind::AppendAcked {
                msg,
                from,
                term,
                match_index: pr.match_index,
            });
            if moved {
                self.maybe_commit();
                self.maybe_send_timeout_now();
            }
        } else {
            if forgot_acknowledged_entries(pr, &resp) {
                return Ok(());
            }
            let stale = match pr.state {
                ProgressState::Replicate => resp.index <= pr.match_index,
                ProgressState::Probe => {
                    resp.index != pr.next_index.prev() || resp.index <= pr.match_index
                }
            };
            if !stale {
                // Thesis §5.3: jump over the follower's conflicting term instead of one entry at a time.
                let hint = resp.conflict_index.unwrap_or(resp.index);
                let next = match resp.conflict_term {
                    Some(conflict_term) => {
                        let (at, t) = self
                            .log
                            .last_index_with_term_at_most(resp.index, conflict_term);
                        if t == conflict_term && at.0 > 0 {
                            at.next()
                        } else {
                            hint
                        }
                    }
                    None => hint,
                };
                let RoleState::Leader(leader) = &mut self.role else {
                    return Ok(());
                };
                let Some(pr) = leader.progress.get_mut(&from) else {
                    return Ok(());
                };
                pr.become_probe();
                // Never below what is known to match, never past the rejected point.
                pr.next_index = next
                    .max(pr.match_index.next())
                    .min(resp.index.max(pr.match_index.next()));
            }
        }
        if read_ctx != 0 {
            self.handle_read_ack(from, read_ctx);
        }
        Ok(())
    }

    // ----- leader: replication and commitment -----

    /// Raft §5.3/§5.4.2: advance commit to the highest index a majority holds, but only through an
    /// entry of the current term. Returns whether commit moved.
    pub(super) fn maybe_commit(&mut self) -> bool {
        let RoleState::Leader(leader) = &self.role else {
            return false;
        };
        // Only voters count (learners, and members whose removal is not committed yet, do not).
        let config = self.membership.current();
        let mut matches: Vec<LogIndex> = leader
            .progress
            .iter()
            .filter(|(id, _)| config.is_voter(**id))
            .map(|(_, pr)| pr.match_index)
            .collect();
        if config.is_voter(self.id) {
            matches.push(self.log.durable.min(self.log.last_index()));
        }
        let candidate = quorum::committed_index(matches);
        if candidate <= self.log.commit {
            return false;
        }
        let term_ok = self.log.term(candidate) == Some(self.term);
        // Raft §5.4.2 (Figure 8): an entry of an earlier term is never committed by counting replicas.
        if !term_ok && !self.commits_by_count() {
            return false;
        }
        self.log.commit = candidate;
        self.events.push(EventKind::CommitAdvanced {
            commit_index: candidate,
        });
        let has_peers = !self.peers.is_empty();
        if let RoleState::Leader(leader) = &mut self.role {
            leader.committed(candidate, term_ok, has_peers);
        }
        true
    }

    pub(super) fn leader_has_appends_to_send(&self) -> bool {
        let RoleState::Leader(leader) = &self.role else {
            return false;
        };
        leader.has_appends_to_send(self.log.last_index(), self.config.max_inflight_appends)
    }

    pub(super) fn bcast_append(&mut self) {
        // Every follower with progress: members, and removed ones until their removal commits.
        let RoleState::Leader(leader) = &self.role else {
            return;
        };
        let followers: Vec<NodeId> = leader.progress.keys().copied().collect();
        for peer in followers {
            while self.maybe_send_append(peer) {}
        }
    }

    /// Sends `peer` the entries it lacks, if its progress state allows; returns whether it sent.
    pub(super) fn maybe_send_append(&mut self, peer: NodeId) -> bool {
        let last = self.log.last_index();
        let commit = self.log.commit;
        let max_inflight = self.config.max_inflight_appends;
        let RoleState::Leader(leader) = &self.role else {
            return false;
        };
        let Some(pr) = leader.progress.get(&peer) else {
            return false;
        };
        if !pr.may_send_append(last, max_inflight) {
            return false;
        }
        let next = pr.next_index;
        let prev_index = next.prev();
        let in_log = next >= self.log.first_index();
        let Some(prev_term) = self.log.term(prev_index).filter(|_| in_log) else {
            // Raft §7: the entries the follower needs are compacted away.
            return self.maybe_send_snapshot(peer);
        };
        let entries = self.log.entries(
            next,
            last,
            self.config.max_append_entries,
            self.config.max_append_bytes,
        );
        let sent_last = entries.last().map_or(prev_index, |e| e.index);
        let RoleState::Leader(leader) = &mut self.role else {
            return false;
        };
        let Some(pr) = leader.progress.get_mut(&peer) else {
            return false;
        };
        match pr.state {
            ProgressState::Probe => pr.probe_sent = true,
            ProgressState::Replicate => {
                pr.next_index = sent_last.next();
                pr.inflight.push_back(sent_last);
            }
        }
        self.send_append(peer, prev_index, prev_term, entries, commit, 0);
        true
    }

    pub(super) fn send_append(
        &mut self,
        to: NodeId,
        prev_log_index: LogIndex,
        prev_log_term: Term,
        entries: Vec<Entry>,
        leader_commit: LogIndex,
        read_ctx: u64,
    ) {
        let msg = self.next_msg();
        self.events.push(EventKind::AppendSent {
            msg,
            to,
            term: self.term,
            prev_log_index,
            entries: entries.len() as u64,
            commit: leader_commit,
        });
        self.messages.push(Envelope {
            msg,
            from: self.id,
            to,
            term: self.term,
            message: Message::AppendEntries(AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
                read_ctx,
            }),
        });
    }

    /// Heartbeats (empty appends at the follower's match point, commit capped at that match as etcd
    /// does); `read_ctx` non-zero asks followers to confirm leadership for reads.
    pub(super) fn bcast_heartbeat(&mut self, read_ctx: u64, periodic: bool) {
        let commit = self.log.commit;
        let mut beats = Vec::new();
        if let RoleState::Leader(leader) = &mut self.role {
            for (peer, pr) in leader.progress.iter_mut() {
                if periodic {
                    // A probe that got no answer may be retried once per heartbeat; appends in flight
                    // for two rounds without an answer were probably lost.
                    pr.probe_sent = false;
                    if pr.state == ProgressState::Replicate && !pr.inflight.is_empty() {
                        pr.stalled_heartbeats += 1;
                        if pr.stalled_heartbeats >= 2 {
                            pr.become_probe();
                        }
                    }
                }
                beats.push((*peer, pr.match_index));
            }
        }
        let snapshot = self.log.snapshot();
        for (peer, matched) in beats {
            // A match point compacted away is named by the snapshot's last entry (Raft §7).
            let (prev, term) = match self.log.term(matched) {
                Some(term) => (matched, term),
                None => (snapshot.index, snapshot.term),
            };
            self.send_append(peer, prev, term, Vec::new(), commit.min(matched), read_ctx);
        }
    }
}
