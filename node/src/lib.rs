//! Flotilla's Raft node: a deterministic, I/O-free Raft core (`raft`), durable storage (`storage`), and
//! the server around them.

pub mod cli;
pub mod clock;
pub mod events;
pub mod health;
pub mod http;
pub mod keepalive;
pub mod metrics;
pub mod raft;
pub mod runtime;
pub mod server;
pub mod shutdown;
pub mod sim;
pub mod storage;
pub mod transport;
