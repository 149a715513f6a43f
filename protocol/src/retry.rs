//! What happens to a piece of work whose call out failed (pure): a
//! transient failure (a mail server's 4xx, a refused connection, a timeout,
//! a webhook's or carrier's 5xx or 429) is retried after a doubling wait,
//! until the attempts run out; a permanent one (a mail server's 5xx, an
//! address that cannot be parsed, a 4xx) is given up at once. Either way
//! only that piece waits: the others keep going. Used by customer
//! notifications (`o2c-notify`) and the shipping tracker (`o2c-saga`).

use std::time::Duration;

/// How one send failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// May work later.
    Transient(String),
    /// Never will.
    Permanent(String),
}

impl Failure {
    /// What to record.
    pub fn reason(&self) -> &str {
        match self {
            Failure::Transient(r) | Failure::Permanent(r) => r,
        }
    }
}

/// What to do with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Try again after this long.
    RetryAfter(Duration),
    /// Give up: dead-letter it with its reason.
    Dead,
}

/// `[notify]`'s retry settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Sends after which a message is dead-lettered.
    pub max_attempts: u32,
    /// The wait before the first retry.
    pub base: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl RetryPolicy {
    /// The decision after send number `attempts` (1 for the first) failed.
    pub fn decide(&self, attempts: u32, failure: &Failure) -> Decision {
        match failure {
            Failure::Permanent(_) => Decision::Dead,
            Failure::Transient(_) if attempts >= self.max_attempts => Decision::Dead,
            Failure::Transient(_) => {
                let doublings = attempts.saturating_sub(1).min(30);
                let wait = self.base.saturating_mul(1u32 << doublings);
                Decision::RetryAfter(wait.min(self.max))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        max_attempts: 4,
        base: Duration::from_secs(1),
        max: Duration::from_secs(3),
    };

    #[test]
    fn a_transient_failure_waits_twice_as_long_each_time_then_gives_up() {
        let busy = Failure::Transient("451 busy".into());
        assert_eq!(
            POLICY.decide(1, &busy),
            Decision::RetryAfter(Duration::from_secs(1))
        );
        assert_eq!(
            POLICY.decide(2, &busy),
            Decision::RetryAfter(Duration::from_secs(2))
        );
        // Capped.
        assert_eq!(
            POLICY.decide(3, &busy),
            Decision::RetryAfter(Duration::from_secs(3))
        );
        assert_eq!(POLICY.decide(4, &busy), Decision::Dead);
        // Huge attempt counts neither overflow nor retry.
        assert_eq!(POLICY.decide(u32::MAX, &busy), Decision::Dead);
    }

    #[test]
    fn a_permanent_failure_is_dead_at_once() {
        let refused = Failure::Permanent("550 no such mailbox".into());
        assert_eq!(POLICY.decide(1, &refused), Decision::Dead);
        assert_eq!(refused.reason(), "550 no such mailbox");
    }
}
