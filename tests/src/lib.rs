//! o2c-tests: the shared harness for o2c's end-to-end suites, and the
//! `o2c-bench` benchmark runner.
//!
//! # Layout
//! - [`env`]: [`TestEnv`], one test's temp dir, unique name prefix and the
//!   shared services (`require_mqtt`, `require_kafka`, `require_postgres`,
//!   `create_database`). Start here.
//! - [`mosquitto`]: [`PrivateMosquitto`], a broker of the test's own that it may
//!   stop, kill and restart.
//! - [`tansu`]: [`PrivateTansu`], the same for Kafka (Tansu, SQLite storage).
//! - [`kafka`]: [`create_topics`], [`consume_all`] and friends for assertions.
//! - [`mqtt`]: a tiny MQTT CONNECT/CONNACK health probe.
//! - [`pipeline`]: `o2c-cloud ingest` and `o2c-agent` as real processes, and
//!   the Kafka-side view (dedup by `event_id`; `agent_records`: what the
//!   agents wrote) the end-to-end suites, the chaos checker and `o2c-demo`
//!   assert on.
//! - [`proxy`]: [`proxy::LinkProxy`], a TCP relay that cuts, silences, delays
//!   or reorders one link.
//! - [`catalog`]: `o2c-cloud catalog` as a real process, and an HTTPS
//!   client holding one fleet certificate.
//! - [`fleet_view`]: the fleet view (issue 18): `o2c-cloud fleet serve` as
//!   a real process, the `/fleet` page's screenshot and a PNG reader.
//! - [`tls`]: [`tls::Pki`] (runs `deploy/pki/o2c-certs.sh`) and [`tls::TlsMosquitto`],
//!   a private broker started from `deploy/mosquitto/o2c.conf`.
//! - [`psp_sim`]: the payment processor simulator, a test double, served by
//!   `src/bin/o2c-psp-sim.rs`.
//! - [`carrier_sim`]: the carrier simulator, psp_sim's sibling, served by
//!   `src/bin/o2c-carrier-sim.rs`.
//! - [`saga`]: `o2c-cloud saga` and `o2c-psp-sim` as real processes, and
//!   [`saga::SagaWorld`], the whole pipeline for one saga test.
//! - [`process`]: [`ChildGuard`] (kill on drop) and [`free_port`].
//! - [`wait`]: [`wait_until`] and [`wait_for_file`], polling with a deadline.
//! - [`bins`]: [`bin_path`], the path of a workspace binary such as `o2c-agent`.
//! - [`bench`]: the benchmark scenarios behind `src/bin/o2c-bench.rs`.
//! - [`chaos`]: the chaos runner behind `src/bin/o2c-chaos.rs`: a seeded
//!   fault schedule over the whole pipeline, then a checker (issue 21).
//! - [`pg`]: [`pg::PrivatePostgres`], a PostgreSQL cluster of one test's own.
//! - [`netns`]: [`netns::AgentNet`], a network namespace per agent with
//!   nftables loss, partitions and `tc` tbf rate limits.
//! - [`raw_agent`]: [`raw_agent::RawAgent`], an MQTT client on one agent's
//!   topics that sends any bytes and hands back acks and status undecoded.
//! - [`traces`]: Arize Phoenix, the OTLP receiver of the trace tests, and
//!   its span queries.
//! - [`api`]: `o2c-cloud api` (the web and mobile order API, issue 19) as a
//!   real process, its customers' JWTs and request helpers.
//! - [`schemathesis`]: a Schemathesis run against an OpenAPI document, its
//!   failures and per-operation acceptance (issue 19).
//! - [`smtp`]: [`smtp::SmtpServer`], a real SMTP server (aiosmtpd) of one
//!   test's own that rejects, defers or holds by recipient, and the mail it
//!   accepted.
//! - [`notify`]: `o2c-cloud notify` (customer notifications, issue 20) as a
//!   real process.
//! - [`demo`]: what `src/bin/o2c-demo.rs` shares, and its web shop ([`demo::web`]).
//! - `broker` (private): the process plumbing both private brokers share.
//!
//! # Rules the harness keeps
//! Tests never skip: a missing service panics with the command that starts it
//! (`deploy/dev/services.sh up`). Every name on a shared service carries the
//! env's unique prefix, every port is picked free, and nothing waits by sleeping:
//! the wait helpers poll a condition until a deadline.

pub mod analytics;
pub mod api;
pub mod bench;
pub mod bins;
mod broker;
pub mod carrier_sim;
pub mod catalog;
pub mod chaos;
pub mod demo;
pub mod env;
mod error;
pub mod fleet;
pub mod fleet_view;
pub mod kafka;
pub mod mosquitto;
pub mod mqtt;
pub mod netns;
pub mod notify;
pub mod pg;
pub mod pipeline;
pub mod process;
pub mod proxy;
pub mod psp_sim;
pub mod raw_agent;
pub mod saga;
pub mod schemathesis;
mod sim_http;
pub mod smtp;
pub mod tansu;
pub mod tls;
pub mod traces;
pub mod wait;

pub use bins::bin_path;
pub use env::TestEnv;
pub use error::HarnessError;
pub use kafka::{
    ConsumedRecord, consume_all, create_topics, create_topics_with_partitions, topic_partitions,
    topic_record_count,
};
pub use mosquitto::PrivateMosquitto;
pub use process::{ChildGuard, free_port};
pub use tansu::{PrivateTansu, TansuStorage};
pub use wait::{wait_for_file, wait_until, wait_until_named};
