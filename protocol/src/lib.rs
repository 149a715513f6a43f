//! o2c wire protocol.
