//! `lossy`: the `e2e` latency (a till's HTTP 201 to the agent holding the
//! cloud's ack) on a link that drops 5% of its packets both ways, against
//! the same link clean, in the same run (issue 21).
//!
//! Setup ([`super::sync_world`] with `netns`): the agent runs in a network
//! namespace of its own and reaches the private Mosquitto through a veth
//! pair and a relay on the veth's host end; the loss is an nftables
//! `numgen random mod 100 < 5 drop` rule inside the namespace, on the
//! broker's port, both ways (this kernel has no netem). Everything else is
//! the `e2e` world: private Tansu (memory storage), real ingest and agent.
//!
//! Load: 200 warm-up orders, then `--n` orders (default 4,000) at `--batch`
//! orders per second (default 200) on the clean link (`clean_*`, the
//! baseline), then `--n` more at the same rate with 5% loss (`loss5_*`).
//! Each phase drains before the next; every outbox row must be acked and
//! Kafka must hold exactly the outbox's event ids, or the run fails.

use std::time::Duration;

use super::e2e::{Latencies, offer};
use super::sync_world::{SyncWorld, WorldOptions, push_latencies};
use super::{BenchArgs, BenchError, Measurement, Scenario};
use crate::bench::harness;

/// The registry entry.
pub const SCENARIO: Scenario = Scenario {
    name: "lossy",
    about: "e2e latency at 5% packet loss (agent in a network namespace) vs the same link clean",
    run,
};

const DEFAULT_N: u64 = 4_000;
const DEFAULT_RATE: u64 = 200;
const WARMUP: u64 = 200;
const LOSS_PERCENT: u8 = 5;
const POLL: Duration = Duration::from_millis(5);
const TIMEOUT: Duration = Duration::from_secs(300);

fn run(args: &BenchArgs) -> Result<Measurement, BenchError> {
    let n = args.n.unwrap_or(DEFAULT_N);
    let rate = args.batch.unwrap_or(DEFAULT_RATE);
    if n == 0 || rate == 0 {
        return Err(BenchError::Invalid(
            "--n and --batch (rate) must be positive".into(),
        ));
    }
    super::block_on(measure(n, rate))
}

async fn measure(n: u64, rate: u64) -> Result<Measurement, BenchError> {
    let opts = WorldOptions {
        offline: false,
        netns: true,
        // The agent's defaults, as in the field.
        agent_mqtt: String::new(),
    };
    let w = SyncWorld::start(&opts).await?;
    let (net, port) = match (&w.net, &w.proxy) {
        (Some(net), Some(proxy)) => (net, proxy.addr().port()),
        _ => return Err(BenchError::Invalid("the world has no namespace".into())),
    };
    let mut m = Measurement::default();
    m.param("n_per_phase", n);
    m.param("offered_rate_per_s", rate);
    m.param("warmup_orders", WARMUP);
    m.param("loss_percent_each_way", u64::from(LOSS_PERCENT));
    m.param("loss", "nftables numgen drop in the agent's namespace");
    m.param("tansu_storage", "memory");

    w.wait_connected(POLL, TIMEOUT).await?;
    offer(&w, "warm", WARMUP, rate).await?;
    w.wait_drained(POLL, TIMEOUT).await?;

    let clean = offer(&w, "clean", n, rate).await?;
    w.wait_drained(POLL, TIMEOUT).await?;
    net.set_loss(port, LOSS_PERCENT)
        .map_err(|e| harness("setting the loss", e))?;
    let lossy = offer(&w, "loss", n, rate).await;
    let drained = w.wait_drained(POLL, TIMEOUT).await;
    net.set_loss(port, 0)
        .map_err(|e| harness("removing the loss", e))?;
    let lossy = lossy?;
    drained?;

    let clean = Latencies::of(&w, &clean)?;
    let lossy = Latencies::of(&w, &lossy)?;
    push_latencies(&mut m, "clean_e2e", &clean.e2e, Measurement::baseline);
    push_latencies(&mut m, "loss5_e2e", &lossy.e2e, Measurement::metric);
    m.metric(
        "loss5_over_clean_p99",
        lossy.e2e.value_at_quantile(0.99) as f64 / clean.e2e.value_at_quantile(0.99).max(1) as f64,
    );
    push_latencies(&mut m, "loss5_http_201", &lossy.http, Measurement::metric);

    let check = w.verify_kafka().await?;
    let want = 2 * n + WARMUP;
    if check.events as u64 != want {
        return Err(BenchError::Invalid(format!(
            "Kafka holds {} distinct events, {want} were captured",
            check.events
        )));
    }
    m.metric("kafka_events", check.events as f64);
    m.metric("kafka_raw_duplicates", check.raw_duplicates as f64);
    Ok(m)
}
