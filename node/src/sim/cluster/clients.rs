//! The simulated clients: commands with request ids, retried until they apply, and ReadIndex reads.

use super::*;

impl Cluster {
    pub(super) fn client_actions(&mut self) {
        // A new command about every `command_every_ms` (drawn per seed), unless paused.
        if self.now_ms >= self.opts.chaos_ms {
            self.clients_paused = false;
        }
        if !self.clients_paused && self.rng.chance(1, self.command_every_ms) {
            let id = format!("r{}", self.next_request);
            self.next_request += 1;
            self.requests.push(Request {
                id,
                first_sent_ms: self.now_ms,
                next_try_ms: self.now_ms,
            });
            self.stats.proposals += 1;
        }
        let now = self.now_ms;
        let mut tries = Vec::new();
        for (position, request) in self.requests.iter().enumerate() {
            if request.next_try_ms <= now
                && !self.history.applied_requests.contains_key(&request.id)
            {
                tries.push(position);
            }
        }
        for position in tries {
            let target = match self.current_leader() {
                Some(leader) if self.rng.chance(4, 5) => leader,
                _ => NodeId(self.rng.range_inclusive(1, self.ids.len() as u64)),
            };
            let request_id = self.requests[position].id.clone();
            let payload = Payload::Message {
                text: format!("message {request_id}"),
                request_id: Some(request_id.clone()),
            };
            let retry_in = self.rng.range_inclusive(150, 400);
            self.requests[position].next_try_ms = now + retry_in;
            self.active = true;
            if let Some(core) = self.node(target).core.as_mut() {
                let result = core.propose(payload);
                if result.as_ref().is_ok_and(|p| p.already_pending) {
                    self.stats.deduplicated += 1;
                }
                self.trace(target, format!("propose {request_id}: {result:?}"));
                // Every leader that appends a command while chaotic is cut off: a leader that gets
                // its entries to a majority commits them legitimately and ends the Figure 8 sequence.
                let appended = result.is_ok_and(|p| !p.already_pending);
                if appended
                    && self.opts.profile == FaultProfile::Figure8
                    && now < self.opts.chaos_ms
                {
                    self.cut_off_after_proposal(target);
                }
            }
        }
        let applied = &self.history.applied_requests;
        self.requests.retain(|r| !applied.contains_key(&r.id));
        // A linearizable read about every 100 ms, at whoever leads.
        if self.rng.chance(1, 100) {
            if let Some(leader) = self.current_leader() {
                self.active = true;
                let ctx = self.next_read;
                self.next_read += 1;
                let must_reach = self.history.max_commit();
                let node = self.node(leader);
                if let Some(core) = node.core.as_mut() {
                    if core.read_index(ctx).is_ok() {
                        node.reads.insert(ctx, must_reach);
                    }
                }
            }
        }
    }
}
