//! o2c cloud side (work in progress).
