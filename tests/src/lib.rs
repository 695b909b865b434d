//! A harness for end-to-end tests and benchmarks: real `flotilla-node` processes on 127.0.0.1.
//!
//! [`Cluster::start`] spawns `n` nodes on free loopback ports, each with its own data directory in a
//! temporary folder and its output in `node-<id>.log` there. Nodes can be killed (`SIGKILL`), stopped
//! (`SIGTERM`), paused (`SIGSTOP`/`SIGCONT`) and restarted on the same port and data. Every child is
//! killed when the [`Cluster`] is dropped; if the thread is panicking (a failed test), the tail of each
//! node's log is printed and the folder is kept.
//!
//! The node binary: `FLOTILLA_NODE_BIN` if set (used as is), else `flotilla-node` in the cargo target
//! directory this test binary lives in (found from `std::env::current_exe()`). In that case the harness
//! runs `cargo build -p flotilla-node` once per process first (a no-op when it is up to date), so the
//! tests never run a stale node; if that build fails and no binary exists, the error says so.
//!
//! Waiting is always on a condition with a deadline ([`wait_until`]), never a bare sleep.

mod api;
mod cluster;
mod events;
mod process;
#[cfg(test)]
mod tests;
mod wait;
mod writers;

pub use api::*;
pub use cluster::*;
pub use events::EventTap;
pub(crate) use process::*;
pub use process::{free_ports, node_binary, run_to_exit};
pub use wait::wait_until;
pub use writers::*;
