//! The node's clock: milliseconds since the Unix epoch, but never going backwards.
//!
//! The core only sees numbers; the desktop compares event times and election deadlines across nodes on
//! one machine, so the numbers are Unix milliseconds measured through a monotonic clock.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    started: Instant,
    started_unix_ms: u64,
}

impl Clock {
    pub fn new() -> Self {
        let started_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as u64);
        Self {
            started: Instant::now(),
            started_unix_ms,
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.started_unix_ms + self.started.elapsed().as_millis() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}
