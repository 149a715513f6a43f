//! Per-agent quotas at the ingest (issue 21, "Floods"), end to end: a
//! private Mosquitto, a private Tansu, the real `o2c-cloud ingest` with
//! `[ingest] agent_quota_events_per_sec = 200`, `agent_quota_burst = 200`,
//! and simulated agents (`o2c_tests::bench::ingest::flood`).
//!
//! 20 well-behaved agents send 50 events/s each, first alone, then beside
//! one agent that offers 2,000 events/s (10x its quota). Asserted, in one
//! run:
//! - the well-behaved agents' frame latency p99 beside the flooder stays
//!   within 2x of their p99 alone (plus 25 ms, scheduler noise on a loaded
//!   2-core machine at single-digit-ms latencies);
//! - the flooder is slowed to about its quota (it would need 1/10 of the
//!   time unslowed): this fails without the quota;
//! - only the flooder was held (`o2c_ingest_quota_delayed_total`);
//! - every event of every agent is in Kafka exactly once after dedup, none
//!   dead-lettered: slowed, never dropped.

use o2c_tests::bench::ingest::flood::{self, FloodParams};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flooder_is_slowed_by_withheld_acks_and_others_keep_their_latency() {
    let p = FloodParams::default();
    let r = flood::run(&p).await.expect("flood run");
    eprintln!("{r:#?}");

    // Nothing lost, nothing doubled, nothing refused.
    assert_eq!(r.kafka_missing, 0, "events missing from Kafka");
    assert_eq!(r.kafka_unknown, 0);
    assert_eq!(r.kafka_dead_letters, 0);
    assert_eq!(r.kafka_distinct, r.sent, "every event once after dedup");

    // The flooder was slowed to its quota, not dropped: its backlog is
    // burst + quota x 6 s, which unslowed takes 1/10 of that.
    let quota = f64::from(p.quota_per_sec);
    let paid = r.flooder_events as f64 - f64::from(p.quota_burst);
    let at_quota = paid / quota;
    assert!(
        r.flooder_secs >= 0.8 * at_quota,
        "the flooder took {:.2} s for {} events; at {quota}/s after the burst it needs {at_quota:.2} s",
        r.flooder_secs,
        r.flooder_events
    );
    let rate = r.flooder_events as f64 / r.flooder_secs;
    assert!(
        rate < 0.5 * r.flooder_offered_per_s,
        "flooder ran at {rate:.0}/s of {:.0}/s offered",
        r.flooder_offered_per_s
    );
    assert_eq!(r.flooder_resends, 0, "held for less than the ack timeout");
    let delayed: Vec<_> = r.quota_delayed.keys().collect();
    assert_eq!(
        delayed,
        [&r.flooder_agent],
        "only the flooder was held: {:?}",
        r.quota_delayed
    );

    // The others did not wait behind it.
    let frames = (p.good_agents * p.phase_frames) as u64;
    assert_eq!(r.alone.frames, frames);
    assert_eq!(r.flooded.frames, frames);
    let limit = 2.0 * r.alone.p99_ms + 25.0;
    assert!(
        r.flooded.p99_ms <= limit,
        "p99 {:.1} ms beside the flooder vs {:.1} ms alone (limit {limit:.1} ms)",
        r.flooded.p99_ms,
        r.alone.p99_ms
    );
}
