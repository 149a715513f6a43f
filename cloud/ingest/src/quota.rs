//! Per-agent quotas: a token bucket (GCRA, from `governor`) per
//! `(store, agent)`, the identity the ingest already took from the topic.
//!
//! An agent over its quota is slowed, never dropped: the shell asks
//! [`AgentQuota::poll`] before producing a batch, and while it answers
//! "wait", the frame's task sleeps holding only *that agent's* ledger lock.
//! Nothing is produced and nothing is acked meanwhile, so the events stay in
//! the agent's durable outbox (invariant 1), and the agent, which keeps one
//! batch in flight, sends nothing new until the ack comes: its sync window
//! paces it to the quota. A resend of the held batch queues behind the lock
//! (later copies are coalesced, as today), and only newly produced events
//! are charged, so a resend is never paid for twice.
//!
//! Other agents never wait behind a slowed one: the limiter is a sharded
//! lock-free map touched for a few microseconds, the wait is a timer in the
//! agent's own task, and a slowed agent holds at most two of the ingest's
//! `max_inflight_frames` permits (its frame and one queued resend).
//!
//! The decision is pure over an injected [`Clock`]; [`AgentQuota::admit`]
//! is the thin async shell that sleeps and counts.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use o2c_protocol::{AgentId, StoreId};

use crate::metrics::{AgentLabel, IngestMetrics};
use o2c_cloud_common::config::IngestConfig;

/// The identity a quota is kept for.
pub type AgentKey = (StoreId, AgentId);

/// The per-agent limiter: `None` when quotas are off.
#[derive(Debug)]
pub struct AgentQuota<C: Clock = DefaultClock> {
    limiter: Option<Limiter<C>>,
}

#[derive(Debug)]
struct Limiter<C: Clock> {
    buckets: RateLimiter<AgentKey, DashMapStateStore<AgentKey>, C, NoOpMiddleware<C::Instant>>,
    clock: C,
    /// Largest charge the bucket takes at once.
    burst: NonZeroU32,
}

/// Events of one batch still to be paid for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    left: u32,
}

impl Charge {
    /// A charge of `events` (saturating at `u32::MAX`).
    pub fn new(events: usize) -> Self {
        Self {
            left: u32::try_from(events).unwrap_or(u32::MAX),
        }
    }

    /// Events not paid for yet.
    pub fn left(&self) -> u32 {
        self.left
    }
}

impl AgentQuota<DefaultClock> {
    /// From `[ingest] agent_quota_events_per_sec` / `agent_quota_burst`
    /// (0 events/s: off; burst 0: one second's worth).
    pub fn from_config(cfg: &IngestConfig) -> Self {
        Self::with_clock(
            cfg.agent_quota_events_per_sec,
            cfg.agent_quota_burst,
            DefaultClock::default(),
        )
    }
}

impl<C: Clock + Clone> AgentQuota<C> {
    /// `per_sec` events per second per agent (0: no quota), with a bucket of
    /// `burst` events (0: `per_sec`), on `clock`.
    pub fn with_clock(per_sec: u32, burst: u32, clock: C) -> Self {
        let limiter = NonZeroU32::new(per_sec).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            let quota = Quota::per_second(rate).allow_burst(burst);
            Limiter {
                buckets: RateLimiter::dashmap_with_clock(quota, clock.clone()),
                clock,
                burst,
            }
        });
        Self { limiter }
    }

    /// Whether a quota is configured.
    pub fn is_on(&self) -> bool {
        self.limiter.is_some()
    }

    /// Pays as much of `charge` as `key`'s bucket allows now. `None`: paid
    /// in full, go on. `Some(wait)`: try again after `wait`; what was paid
    /// stays paid. A charge larger than the bucket is paid in bucket-sized
    /// parts, so a big batch is slowed, never refused.
    pub fn poll(&self, key: &AgentKey, charge: &mut Charge) -> Option<Duration> {
        let l = self.limiter.as_ref()?;
        while let Some(left) = NonZeroU32::new(charge.left) {
            let part = left.min(l.burst);
            match l.buckets.check_key_n(key, part) {
                Ok(Ok(())) => charge.left -= part.get(),
                Ok(Err(not_until)) => {
                    return Some(not_until.wait_time_from(l.clock.now()));
                }
                // `part` <= burst, the bucket's capacity: cannot happen; pay
                // what fits rather than loop.
                Err(governor::InsufficientCapacity(cap)) => {
                    charge.left = charge.left.saturating_sub(cap.max(1));
                }
            }
        }
        None
    }
}

impl AgentQuota<DefaultClock> {
    /// Waits until `key`'s bucket has paid for `events` new events; counts
    /// the delay. Returns at once when quotas are off or tokens are there.
    pub async fn admit(&self, key: &AgentKey, events: usize, metrics: &IngestMetrics) {
        let mut charge = Charge::new(events);
        let Some(mut wait) = self.poll(key, &mut charge) else {
            return;
        };
        let started = o2c_runtime::clock::now();
        metrics
            .quota_delayed
            .get_or_create(&AgentLabel {
                store: key.0.to_string(),
                agent: key.1.to_string(),
            })
            .inc();
        loop {
            tokio::time::sleep(wait).await;
            match self.poll(key, &mut charge) {
                Some(w) => wait = w,
                None => break,
            }
        }
        metrics
            .quota_delay_seconds
            .observe(started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn key(i: u32) -> AgentKey {
        (
            StoreId::new(format!("S{i}")).unwrap(),
            AgentId::new(format!("S{i}-A1")).unwrap(),
        )
    }

    /// Drives one agent's charges to completion on the fake clock; returns
    /// the total time waited.
    fn pay(
        q: &AgentQuota<FakeRelativeClock>,
        clock: &FakeRelativeClock,
        k: &AgentKey,
        n: usize,
    ) -> Duration {
        let mut charge = Charge::new(n);
        let mut waited = Duration::ZERO;
        while let Some(w) = q.poll(k, &mut charge) {
            assert!(w > Duration::ZERO, "a wait is never zero");
            clock.advance(w);
            waited += w;
        }
        assert_eq!(charge.left(), 0);
        waited
    }

    #[test]
    fn off_never_waits() {
        let clock = FakeRelativeClock::default();
        let q = AgentQuota::with_clock(0, 50, clock.clone());
        assert!(!q.is_on());
        let mut c = Charge::new(1_000_000);
        assert_eq!(q.poll(&key(1), &mut c), None);
    }

    #[test]
    fn within_burst_passes_then_pays_at_the_rate() {
        let clock = FakeRelativeClock::default();
        let q = AgentQuota::with_clock(100, 200, clock.clone());
        let k = key(1);
        // The full bucket takes 200 at once.
        assert_eq!(pay(&q, &clock, &k, 200), Duration::ZERO);
        // Then 100 more cost one second at 100/s.
        let waited = pay(&q, &clock, &k, 100);
        assert!(
            waited >= Duration::from_millis(990) && waited <= Duration::from_millis(1010),
            "{waited:?}"
        );
    }

    #[test]
    fn sustained_rate_is_the_quota() {
        let clock = FakeRelativeClock::default();
        let q = AgentQuota::with_clock(200, 100, clock.clone());
        let k = key(7);
        // 50 batches of 100 as fast as acks allow: 5,000 events, of which
        // the first 100 are the burst, take (5,000 - 100) / 200 = 24.5 s.
        let waited: Duration = (0..50).map(|_| pay(&q, &clock, &k, 100)).sum();
        let secs = waited.as_secs_f64();
        assert!((24.4..=24.6).contains(&secs), "{secs}");
    }

    #[test]
    fn a_batch_larger_than_the_bucket_is_slowed_not_refused() {
        let clock = FakeRelativeClock::default();
        let q = AgentQuota::with_clock(100, 50, clock.clone());
        let k = key(2);
        // 500 events through a 50-event bucket: 450 paid at 100/s.
        let secs = pay(&q, &clock, &k, 500).as_secs_f64();
        assert!((4.45..=4.55).contains(&secs), "{secs}");
    }

    #[test]
    fn a_partial_payment_is_kept() {
        let clock = FakeRelativeClock::default();
        let q = AgentQuota::with_clock(10, 10, clock.clone());
        let k = key(3);
        let mut c = Charge::new(25);
        let w = q.poll(&k, &mut c).expect("must wait");
        assert_eq!(c.left(), 15, "the first full bucket is paid at once");
        assert!(w <= Duration::from_secs(1), "{w:?}");
    }

    #[test]
    fn agents_do_not_share_a_bucket() {
        let clock = FakeRelativeClock::default();
        let q = AgentQuota::with_clock(10, 10, clock.clone());
        let flooder = key(1);
        let mut c = Charge::new(1_000);
        assert!(q.poll(&flooder, &mut c).is_some(), "the flooder waits");
        // Same instant: every other agent still has its whole bucket.
        for i in 2..100 {
            let mut c = Charge::new(10);
            assert_eq!(q.poll(&key(i), &mut c), None, "agent {i}");
        }
        // And the same store with another agent id is another bucket.
        let other = (flooder.0.clone(), AgentId::new("S1-A2").unwrap());
        assert_eq!(q.poll(&other, &mut Charge::new(10)), None);
    }

    #[test]
    fn burst_zero_means_one_second_of_rate() {
        let clock = FakeRelativeClock::default();
        let q = AgentQuota::with_clock(30, 0, clock.clone());
        let k = key(4);
        assert_eq!(q.poll(&k, &mut Charge::new(30)), None);
        assert!(q.poll(&k, &mut Charge::new(1)).is_some());
    }

    #[test]
    fn charge_saturates() {
        assert_eq!(Charge::new(usize::MAX).left(), u32::MAX);
        assert_eq!(Charge::new(0).left(), 0);
        let clock = FakeRelativeClock::default();
        let q = AgentQuota::with_clock(1, 1, clock);
        assert_eq!(q.poll(&key(5), &mut Charge::new(0)), None, "nothing to pay");
    }
}
