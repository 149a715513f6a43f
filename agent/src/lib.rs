//! o2c in-store agent (work in progress).
