//! The Raft state machine. Placeholder signatures: the implementation replaces these bodies.

use super::*;

pub struct Raft<S: LogRead> {
    storage: S,
    config: Config,
}

#[allow(unused_variables)]
impl<S: LogRead> Raft<S> {
    /// Starts a core from what the node found on disk. `now_ms` starts the election timer.
    pub fn new(config: Config, storage: S, restored: Restored, now_ms: u64) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self { storage, config })
    }
    /// Advances time; fires election timeouts, heartbeats and CheckQuorum.
    pub fn tick(&mut self, now_ms: u64) {}
    /// Handles one message from a peer. Messages not addressed to this node are ignored.
    /// Every `RequestVote` and `AppendEntries` stepped yields exactly one response to its sender,
    /// emitted in `persisted_messages` in the order the requests were stepped.
    pub fn step(&mut self, envelope: Envelope) {}
    /// Appends a client command (leader only).
    pub fn propose(&mut self, payload: Payload) -> Result<Proposal, ProposeError> {
        Err(ProposeError::NotLeader { leader: None })
    }
    /// Starts a ReadIndex read (thesis §6.4); `ctx` comes back in `Ready::reads` or `failed_reads`.
    pub fn read_index(&mut self, ctx: u64) -> Result<(), ReadError> {
        Err(ReadError::NotLeader { leader: None })
    }
    pub fn transfer_leadership(&mut self, to: NodeId) -> Result<(), TransferError> {
        Err(TransferError::NotLeader { leader: None })
    }
    /// Entries up to `last` (index and term) are durable.
    pub fn persisted(&mut self, last: LogId) {}
    /// Live tempo change; takes effect from the next timer reset.
    pub fn set_timing(&mut self, heartbeat_ms: u64, election_timeout_ms: (u64, u64)) -> Result<(), ConfigError> {
        Ok(())
    }
    /// The transport could not reach `peer`: a leader falls back to probing it.
    pub fn report_unreachable(&mut self, peer: NodeId) {}
    pub fn has_ready(&self) -> bool {
        false
    }
    pub fn ready(&mut self) -> Ready {
        Ready::default()
    }
    pub fn status(&self) -> CoreStatus {
        unimplemented!()
    }
}
