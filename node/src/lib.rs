//! Flotilla's Raft node: a deterministic, I/O-free Raft core (`raft`), durable storage (`storage`), and
//! the server around them.

pub mod raft;
pub mod storage;
