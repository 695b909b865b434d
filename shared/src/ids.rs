//! Identifiers: newtypes so a term can never be passed where an index is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A node's id within its cluster, 1..=255.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct NodeId(pub u64);

/// A Raft term. Terms only ever grow.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Term(pub u64);

/// A Raft log index. The first entry has index 1; index 0 means "before the log".
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct LogIndex(pub u64);

impl NodeId {
    /// The highest id a node may have (ids are 1..=255).
    pub const MAX: u64 = 255;

    /// Checks the 1..=255 range the contract gives node ids.
    pub fn new(id: u64) -> Result<Self, String> {
        if (1..=Self::MAX).contains(&id) {
            Ok(Self(id))
        } else {
            Err(format!(
                "node id must be between 1 and {}, got {id}",
                Self::MAX
            ))
        }
    }
}

impl Term {
    pub fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

impl LogIndex {
    pub const ZERO: Self = Self(0);

    pub fn next(self) -> Self {
        Self(self.0 + 1)
    }

    /// The previous index, saturating at 0.
    pub fn prev(self) -> Self {
        Self(self.0.saturating_sub(1))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for LogIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_range_is_checked() {
        assert!(NodeId::new(0).is_err());
        assert_eq!(NodeId::new(1), Ok(NodeId(1)));
        assert_eq!(NodeId::new(255), Ok(NodeId(255)));
        assert!(NodeId::new(256).is_err());
    }

    #[test]
    fn ids_serialize_as_plain_numbers() {
        assert_eq!(serde_json::to_string(&LogIndex(42)).unwrap(), "42");
        assert_eq!(serde_json::from_str::<Term>("7").unwrap(), Term(7));
    }
}
