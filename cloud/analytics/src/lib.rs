//! # o2c-analytics: live sales counters and fact tables
//!
//! `o2c-cloud analytics` reads the order topics with manual offset
//! commits under one group id, scaled out by partitions and books every sale in the
//! hour and the business day it was **captured**, whenever it arrives: a
//! store that syncs three days late lands in those days, and today's
//! figures do not move. Each event counts once, even on replay and after
//! kill -9.
//!
//! - [`fold`]: pure: what an event changes (an order's base at capture, a
//!   void, a refund, a payment, a completion, a shipment).
//! - [`counters`]: the Redis live counters and each order's record, applied
//!   by one Lua script per event with its `event_id` as the dedup key; the
//!   key names and TTLs are documented there.
//! - [`facts`]: the ClickHouse fact tables (`ReplacingMergeTree` by order
//!   and version) and the daily views, with the DDL and the queries.
//! - [`live`]: pure: a counters hash read back into figures.
//! - [`assign`]: which partitions an instance reads (by instance number,
//!   from the group's committed offsets; why not the coordinator).
//! - [`service`]: the consumer loop: counters at once, fact rows batched,
//!   offsets committed after both; poison events dead-lettered.
//! - [`http`]: `/v1/analytics/live`, `/v1/analytics/daily`, the `/sales`
//!   page, and the probes.
//! - [`report`]: `o2c-cloud analytics report --date D`.
//! - [`metrics`]: Prometheus metrics and readiness.

pub mod assign;
pub mod counters;
pub mod facts;
pub mod fold;
pub mod http;
pub mod live;
pub mod metrics;
pub mod report;
pub mod service;
