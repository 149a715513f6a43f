//! Tills first: the down-sync yields to capture. Every price lookup (a
//! till selling, or asking a price) marks the tills busy. Before the pull
//! writes a page, it waits until they have been quiet for [`QUIET`], but
//! never longer than its configured yield per page (`[catalog]
//! yield_per_page_ms`), so a sync under continuous selling still moves on
//! by a page per yield. Pure, with injected time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long the tills must have been quiet for a page to go at once.
pub const QUIET: Duration = Duration::from_millis(20);

/// When the tills last looked a price up.
#[derive(Debug)]
pub struct Pace {
    origin: Instant,
    /// Microseconds from `origin` to the last lookup, plus one (0: none).
    last: AtomicU64,
}

impl Pace {
    /// No lookup yet; `origin` is any instant before the first.
    pub fn new(origin: Instant) -> Pace {
        Pace {
            origin,
            last: AtomicU64::new(0),
        }
    }

    /// A lookup at `now`.
    pub fn busy(&self, now: Instant) {
        let us = u64::try_from(now.saturating_duration_since(self.origin).as_micros())
            .unwrap_or(u64::MAX - 1);
        self.last.fetch_max(us + 1, Ordering::Relaxed);
    }

    /// How much longer a page that has waited `waited` of its `max` should
    /// wait at `now` (`None`: go).
    pub fn wait(&self, now: Instant, waited: Duration, max: Duration) -> Option<Duration> {
        let last = self.last.load(Ordering::Relaxed);
        if last == 0 || waited >= max {
            return None;
        }
        let at = self.origin + Duration::from_micros(last - 1);
        let quiet_for = now.saturating_duration_since(at);
        (quiet_for < QUIET).then(|| (QUIET - quiet_for).min(max - waited))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_waits_for_quiet_tills_but_never_past_its_yield() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let pace = Pace::new(t0);
        let max = ms(200);
        // No till has sold: go.
        assert_eq!(pace.wait(t0 + ms(5), ms(0), max), None);
        // A sale 5 ms ago: wait the 15 ms left of the quiet time.
        pace.busy(t0 + ms(100));
        assert_eq!(pace.wait(t0 + ms(105), ms(0), max), Some(ms(15)));
        // Quiet long enough: go.
        assert_eq!(pace.wait(t0 + ms(120), ms(15), max), None);
        // Selling without a pause: the wait ends at the yield.
        pace.busy(t0 + ms(290));
        assert_eq!(pace.wait(t0 + ms(291), ms(195), max), Some(ms(5)));
        assert_eq!(pace.wait(t0 + ms(296), ms(200), max), None);
        // An older lookup recorded late never moves the mark back.
        pace.busy(t0 + ms(10));
        assert_eq!(pace.wait(t0 + ms(300), ms(0), max), Some(ms(10)));
        // A yield of 0 turns pacing off.
        assert_eq!(pace.wait(t0 + ms(291), ms(0), ms(0)), None);
    }
}
