//! The clock: the one module that reads the system clocks
//! (`clippy.toml` forbids `Instant::now` and `SystemTime::now` elsewhere).
//! Pure cores never call it: they take `now` as an argument, and their
//! shells read it here (or from `tokio::time::Instant::now`, which tests
//! can pause).
#![allow(clippy::disallowed_methods)]

use std::time::{Instant, SystemTime};

/// Monotonic now.
pub fn now() -> Instant {
    Instant::now()
}

/// Wall-clock now.
pub fn wall() -> SystemTime {
    SystemTime::now()
}
