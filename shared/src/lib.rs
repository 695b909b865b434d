//! Wire types shared by the Flotilla node, the desktop app and the tests.
//!
//! Serde types and small pure helpers only: no tokio, no HTTP, no UI. The HTTP contract these types
//! encode is described in the repository README ("HTTP API").

pub mod api;
pub mod event;
pub mod ids;
pub mod recording;
pub mod rpc;

pub use ids::{LogIndex, NodeId, Term};
