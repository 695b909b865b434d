//! Flotilla's Raft node: a deterministic, I/O-free Raft core (`raft`), durable storage (`storage`), and
//! the server around them.

pub mod cli;
pub mod clock;
pub mod events;
pub mod faults;
pub mod guard;
pub mod health;
pub mod http;
pub mod metrics;
pub mod raft;
pub mod runtime;
pub mod serve;
pub mod server;
pub mod shutdown;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod storage;
pub mod transport;
pub mod validation;
