//! # o2c-topology: the Kafka topology as code
//!
//! `deploy/cloud/topics.toml` lists every topic with its partitions,
//! replication, `min.insync.replicas`, cleanup policy and retention.
//!
//! - [`spec`]: the file, parsed and checked, resolved per cluster (prefix;
//!   dev overrides). Pure.
//! - [`plan`]: the difference with a live cluster: changes and problems.
//!   Pure.
//! - [`admin`]: reading the cluster and applying a plan (rdkafka admin
//!   API); [`admin::ensure`] is the check every service runs at start.
//! - [`registry`]: a Confluent-compatible schema registry: the topics'
//!   subjects, registering and checking schemas, and the ids producers
//!   stamp in a header ([`registry::schema_ids_for`], run at start too).

pub mod admin;
pub mod plan;
pub mod registry;
pub mod spec;

pub use admin::{AdminError, apply, desired_for, ensure, ensure_for, live, plan_live};
pub use plan::{Change, LiveTopic, Plan, Problem, plan};
pub use spec::{BUILT_IN, Overrides, Spec, SpecError, TopicSpec, desired};
