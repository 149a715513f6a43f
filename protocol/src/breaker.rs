//! A circuit breaker as a pure state machine: time is passed in. The
//! payment service guards its processor calls with one, and the store
//! agent its ship-to-home stock check (issue 15).
//!
//! Closed: calls pass; `failure_threshold` consecutive failures open it.
//! Open: calls fail fast until `open_for` has passed, then one trial call
//! is let through (half-open). The trial's success closes the breaker, its
//! failure opens it again.

use std::time::{Duration, Instant};

/// The breaker's state, as reported in metrics (0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls pass.
    Closed,
    /// Calls fail fast.
    Open,
    /// One trial call is in flight or allowed.
    HalfOpen,
}

impl BreakerState {
    /// Gauge value: closed 0, open 1, half-open 2.
    pub fn code(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

/// The breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    failure_threshold: u32,
    open_for: Duration,
    failures: u32,
    open_until: Option<Instant>,
    trial_in_flight: bool,
}

/// A call refused because the breaker is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected;

impl Breaker {
    /// A closed breaker.
    pub fn new(failure_threshold: u32, open_for: Duration) -> Self {
        Self {
            failure_threshold: failure_threshold.max(1),
            open_for,
            failures: 0,
            open_until: None,
            trial_in_flight: false,
        }
    }

    /// The state at `now`.
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.open_until {
            None => BreakerState::Closed,
            Some(_) if self.trial_in_flight => BreakerState::HalfOpen,
            Some(until) if now >= until => BreakerState::HalfOpen,
            Some(_) => BreakerState::Open,
        }
    }

    /// Asks to make a call at `now`.
    pub fn acquire(&mut self, now: Instant) -> Result<(), Rejected> {
        match self.state(now) {
            BreakerState::Closed => Ok(()),
            BreakerState::Open => Err(Rejected),
            BreakerState::HalfOpen if self.trial_in_flight => Err(Rejected),
            BreakerState::HalfOpen => {
                self.trial_in_flight = true;
                Ok(())
            }
        }
    }

    /// The call succeeded (the remote answered, even with a refusal).
    pub fn on_success(&mut self) {
        self.failures = 0;
        self.open_until = None;
        self.trial_in_flight = false;
    }

    /// The call failed (transport error, timeout, 5xx).
    pub fn on_failure(&mut self, now: Instant) {
        if self.open_until.is_some() {
            // A failed trial (or a late failure while open) re-opens.
            self.trial_in_flight = false;
            self.open_until = Some(now + self.open_for);
            return;
        }
        self.failures += 1;
        if self.failures >= self.failure_threshold {
            self.open_until = Some(now + self.open_for);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_then_half_opens_with_one_trial() {
        let t0 = Instant::now();
        let mut b = Breaker::new(5, Duration::from_secs(30));
        for _ in 0..4 {
            b.acquire(t0).unwrap();
            b.on_failure(t0);
        }
        assert_eq!(b.state(t0), BreakerState::Closed);
        b.acquire(t0).unwrap();
        b.on_failure(t0);
        assert_eq!(b.state(t0), BreakerState::Open);
        assert_eq!(b.acquire(t0 + Duration::from_secs(29)), Err(Rejected));
        let t1 = t0 + Duration::from_secs(30);
        assert_eq!(b.state(t1), BreakerState::HalfOpen);
        b.acquire(t1).unwrap();
        assert_eq!(b.acquire(t1), Err(Rejected), "one trial only");
        b.on_failure(t1);
        assert_eq!(b.state(t1 + Duration::from_secs(1)), BreakerState::Open);
        let t2 = t1 + Duration::from_secs(30);
        b.acquire(t2).unwrap();
        b.on_success();
        assert_eq!(b.state(t2), BreakerState::Closed);
    }

    #[test]
    fn a_success_resets_the_count() {
        let t = Instant::now();
        let mut b = Breaker::new(2, Duration::from_secs(1));
        b.on_failure(t);
        b.on_success();
        b.on_failure(t);
        assert_eq!(b.state(t), BreakerState::Closed);
    }
}
