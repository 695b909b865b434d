use super::NodeId;

/// How a core behaves. All times are milliseconds in the caller's clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub id: NodeId,
    /// Every voting member, this node included.
    pub voters: Vec<NodeId>,
    pub heartbeat_ms: u64,
    /// Election timeouts are drawn uniformly from `[min, max]` (Raft §5.2).
    pub election_timeout_ms: (u64, u64),
    /// PreVote (thesis §9.6): a node that was cut off cannot disrupt a healthy leader on rejoining.
    pub pre_vote: bool,
    /// CheckQuorum (thesis §6.2): a leader that has not heard from a majority within an election
    /// timeout steps down; followers that heard from a leader within the minimum timeout ignore votes.
    pub check_quorum: bool,
    /// Appends in flight per follower before the leader waits for acknowledgements.
    pub max_inflight_appends: usize,
    /// Most entries in one append.
    pub max_append_entries: usize,
    /// Most bytes (by `Entry::approx_size`) in one append; at least one entry is always sent.
    pub max_append_bytes: usize,
    /// Durable entries kept in memory besides the log on disk.
    pub max_cached_entries: usize,
    /// Seeds the election-timeout randomness.
    pub seed: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid raft config: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// A config with the defaults used by `flotilla-node`.
    pub fn new(id: NodeId, voters: Vec<NodeId>) -> Self {
        Self {
            id,
            voters,
            heartbeat_ms: 50,
            election_timeout_ms: (150, 300),
            pre_vote: true,
            check_quorum: true,
            max_inflight_appends: 8,
            max_append_entries: 4096,
            max_append_bytes: 1 << 20,
            max_cached_entries: 16_384,
            seed: 0,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let (min, max) = self.election_timeout_ms;
        if !self.voters.contains(&self.id) {
            return Err(ConfigError(format!(
                "node {} is not among the voters {:?}",
                self.id, self.voters
            )));
        }
        if self.heartbeat_ms == 0 || min <= self.heartbeat_ms || max < min {
            return Err(ConfigError(format!(
                "need 0 < heartbeat ({}) < election timeout min ({min}) <= max ({max})",
                self.heartbeat_ms
            )));
        }
        if self.max_inflight_appends == 0 || self.max_append_entries == 0 {
            return Err(ConfigError(
                "max_inflight_appends and max_append_entries must be at least 1".into(),
            ));
        }
        Ok(())
    }
}
