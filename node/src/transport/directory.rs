//! Where each member answers (`id → HOST:PORT`), as the configuration in force says. The runtime
//! replaces it whenever the configuration changes; the HTTP layer reads it to check senders and to
//! forward to the leader.

use crate::raft::NodeId;
use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

#[derive(Clone, Default)]
pub struct PeerDirectory(Arc<RwLock<BTreeMap<NodeId, String>>>);

impl PeerDirectory {
    pub fn new(peers: BTreeMap<NodeId, String>) -> Self {
        Self(Arc::new(RwLock::new(peers)))
    }

    pub fn replace(&self, peers: BTreeMap<NodeId, String>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = peers;
    }

    /// Every other member; hold the guard briefly.
    pub fn read(&self) -> RwLockReadGuard<'_, BTreeMap<NodeId, String>> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn get(&self, id: NodeId) -> Option<String> {
        self.read().get(&id).cloned()
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.read().contains_key(&id)
    }

    /// No other member known: a node waiting to be added.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }
}
