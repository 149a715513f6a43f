//! Request quotas, as the architecture gives them: per authenticated
//! customer (default 1,000 a minute) and per client IP for requests without
//! a valid token (default 100 a minute). Each is a keyed GCRA bucket from
//! `governor` (a burst of the whole minute's allowance, refilled evenly);
//! over it, the answer is 429 with `Retry-After`.
//!
//! The decision is pure over an injected [`Clock`]; the HTTP layer uses the
//! default one.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use o2c_protocol::CustomerId;

type Keyed<K, C> = RateLimiter<K, DashMapStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The API's two quotas.
#[derive(Debug)]
pub struct Quotas<C: Clock = DefaultClock> {
    customers: Keyed<CustomerId, C>,
    anonymous: Keyed<IpAddr, C>,
    clock: C,
}

/// Over quota: retry after this long (whole seconds, at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

impl Quotas<DefaultClock> {
    /// Quotas of `customer_per_minute` and `anonymous_per_minute`.
    pub fn new(customer_per_minute: u32, anonymous_per_minute: u32) -> Self {
        Self::with_clock(
            customer_per_minute,
            anonymous_per_minute,
            DefaultClock::default(),
        )
    }
}

impl<C: Clock + Clone> Quotas<C> {
    /// As [`Quotas::new`], on `clock`.
    pub fn with_clock(customer_per_minute: u32, anonymous_per_minute: u32, clock: C) -> Self {
        Self {
            customers: RateLimiter::dashmap_with_clock(
                per_minute(customer_per_minute),
                clock.clone(),
            ),
            anonymous: RateLimiter::dashmap_with_clock(
                per_minute(anonymous_per_minute),
                clock.clone(),
            ),
            clock,
        }
    }

    /// Charges one request of `customer`.
    pub fn customer(&self, customer: &CustomerId) -> Result<(), RetryAfter> {
        check(&self.customers, customer, &self.clock)
    }

    /// Charges one request without a valid token from `ip`.
    pub fn anonymous(&self, ip: IpAddr) -> Result<(), RetryAfter> {
        check(&self.anonymous, &ip, &self.clock)
    }

    /// Forgets buckets that are full again (bounded memory under many
    /// distinct keys); call now and then.
    pub fn shrink(&self) {
        self.customers.retain_recent();
        self.anonymous.retain_recent();
        self.customers.shrink_to_fit();
        self.anonymous.shrink_to_fit();
    }
}

fn check<K: Hash + Eq + Clone, C: Clock>(
    limiter: &Keyed<K, C>,
    key: &K,
    clock: &C,
) -> Result<(), RetryAfter> {
    limiter.check_key(key).map_err(|not_until| {
        let wait: Duration = not_until.wait_time_from(clock.now());
        RetryAfter(wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(RetryAfter(1))
    })
}

impl PartialOrd for RetryAfter {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RetryAfter {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    #[test]
    fn a_customer_gets_a_minutes_allowance_then_waits_for_the_refill() {
        let clock = FakeRelativeClock::default();
        let q = Quotas::with_clock(3, 2, clock.clone());
        let alice = CustomerId::new("alice").expect("id");
        let bob = CustomerId::new("bob").expect("id");
        for _ in 0..3 {
            assert_eq!(q.customer(&alice), Ok(()));
        }
        // One request every 20 s refills a bucket of 3 a minute.
        assert_eq!(q.customer(&alice), Err(RetryAfter(20)));
        // Another customer has a bucket of their own.
        assert_eq!(q.customer(&bob), Ok(()));
        clock.advance(Duration::from_secs(20));
        assert_eq!(q.customer(&alice), Ok(()));
        assert!(q.customer(&alice).is_err());
    }

    #[test]
    fn anonymous_requests_are_limited_per_ip() {
        let clock = FakeRelativeClock::default();
        let q = Quotas::with_clock(1000, 2, clock.clone());
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        assert_eq!(q.anonymous(a), Ok(()));
        assert_eq!(q.anonymous(a), Ok(()));
        assert_eq!(q.anonymous(a), Err(RetryAfter(30)));
        assert_eq!(q.anonymous(b), Ok(()));
        clock.advance(Duration::from_millis(29_500));
        // Never "retry after 0".
        assert_eq!(q.anonymous(a), Err(RetryAfter(1)));
    }
}
