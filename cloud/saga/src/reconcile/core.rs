//! The reconciler's decision, pure: from a stuck order (its processor
//! tenders, whether a cancellation was requested, when its capture key was
//! first used), what the processor says of each tender's capture key, and
//! the time now, to what to do. No I/O, no clock: [`super`] does the rest.

use std::time::Duration;

use o2c_protocol::Money;

use crate::payment::Captured;
use crate::psp::CaptureLookup;

/// The reason of the `PaymentFailed` of a capture that could not be
/// finished within its idempotency key's lifetime.
pub const CAPTURE_EXPIRED: &str = "capture_expired";

/// What the reconciler knows of one order left `Capturing`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuck {
    /// Its processor tenders, in order: `(index in the order, amount)`.
    pub tenders: Vec<(usize, Money)>,
    /// A cancellation arrived meanwhile: never capture.
    pub cancel_requested: bool,
    /// When the first capture call was made (Unix ms): the key's birth.
    pub started_ms: i64,
}

/// What to do with a stuck order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send the capture of these tenders again, with the same keys (the
    /// processor never got them), then decide again with the answers.
    Retry(Vec<usize>),
    /// Everything captured: finish as a successful capture does
    /// (`Captured`, `PaymentCaptured`).
    Capture(Vec<Captured>),
    /// A tender was declined: give back the tenders captured (`void`) and
    /// end `Failed` with `PaymentFailed`, or `Cancelled` with no event if a
    /// cancellation was requested.
    Decline {
        /// The declined tender.
        tender: usize,
        /// The processor's code.
        code: String,
        /// Captured tenders to void.
        void: Vec<Captured>,
        /// A cancellation was requested.
        cancelled: bool,
    },
    /// A cancellation was requested: refund what was captured (then
    /// `Refunded` with one `RefundIssued`), or end `Cancelled` if nothing was.
    Cancel(Vec<Captured>),
    /// The key's lifetime is over with tenders still unknown: never send
    /// them; void what was captured and fail with [`CAPTURE_EXPIRED`].
    Expire(Vec<Captured>),
}

impl Action {
    /// The metric label of the outcome.
    pub fn outcome(&self) -> &'static str {
        match self {
            Action::Retry(_) => "retried",
            Action::Capture(_) => "captured",
            Action::Decline {
                cancelled: false, ..
            } => "declined",
            Action::Decline {
                cancelled: true, ..
            } => "cancelled",
            Action::Cancel(refund) if refund.is_empty() => "cancelled",
            Action::Cancel(_) => "refunded",
            Action::Expire(_) => "expired",
        }
    }
}

/// Decides what to do with `stuck` given `answers` (one per tender, in the
/// same order) at `now_ms`, for keys that live `key_lifetime`.
pub fn decide(
    stuck: &Stuck,
    answers: &[CaptureLookup],
    now_ms: i64,
    key_lifetime: Duration,
) -> Action {
    let mut captured = Vec::new();
    let mut declined = None;
    let mut unknown = Vec::new();
    for (&(tender, amount), answer) in stuck.tenders.iter().zip(answers) {
        match answer {
            CaptureLookup::Captured(id) => captured.push(Captured {
                tender,
                capture_id: id.clone(),
                amount,
            }),
            CaptureLookup::Declined(code) => {
                declined.get_or_insert((tender, code.clone()));
            }
            CaptureLookup::Unknown => unknown.push(tender),
        }
    }
    // A tender without an answer counts as unknown.
    unknown.extend(stuck.tenders.iter().skip(answers.len()).map(|(t, _)| *t));
    if let Some((tender, code)) = declined {
        return Action::Decline {
            tender,
            code,
            void: captured,
            cancelled: stuck.cancel_requested,
        };
    }
    if stuck.cancel_requested {
        return Action::Cancel(captured);
    }
    if unknown.is_empty() {
        return Action::Capture(captured);
    }
    let lifetime_ms = i64::try_from(key_lifetime.as_millis()).unwrap_or(i64::MAX);
    if now_ms.saturating_sub(stuck.started_ms) < lifetime_ms {
        Action::Retry(unknown)
    } else {
        Action::Expire(captured)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use o2c_protocol::Currency;

    const HOUR: i64 = 3_600_000;
    const LIFE: Duration = Duration::from_secs(24 * 3600);

    fn cad(minor: i64) -> Money {
        Money::new(minor, Currency::from_code("CAD").unwrap())
    }

    fn stuck(tenders: usize, cancel: bool) -> Stuck {
        Stuck {
            tenders: (0..tenders)
                .map(|i| (i, cad(100 * (i as i64 + 1))))
                .collect(),
            cancel_requested: cancel,
            started_ms: 0,
        }
    }

    fn cap(tender: usize, id: &str) -> Captured {
        Captured {
            tender,
            capture_id: id.into(),
            amount: cad(100 * (tender as i64 + 1)),
        }
    }

    use CaptureLookup::{Captured as C, Declined as D, Unknown as U};

    #[test]
    fn captured_everywhere_completes_as_a_capture() {
        let a = decide(
            &stuck(2, false),
            &[C("c1".into()), C("c2".into())],
            HOUR,
            LIFE,
        );
        assert_eq!(a, Action::Capture(vec![cap(0, "c1"), cap(1, "c2")]));
        assert_eq!(a.outcome(), "captured");
    }

    #[test]
    fn a_decline_voids_the_captured_tenders_and_fails_or_cancels() {
        let answers = [C("c1".into()), D("card_declined".into())];
        let a = decide(&stuck(2, false), &answers, HOUR, LIFE);
        assert_eq!(
            a,
            Action::Decline {
                tender: 1,
                code: "card_declined".into(),
                void: vec![cap(0, "c1")],
                cancelled: false
            }
        );
        assert_eq!(a.outcome(), "declined");
        let a = decide(&stuck(2, true), &answers, HOUR, LIFE);
        assert!(matches!(
            a,
            Action::Decline {
                cancelled: true,
                ..
            }
        ));
        assert_eq!(a.outcome(), "cancelled");
    }

    #[test]
    fn unknown_is_sent_again_within_the_key_lifetime_and_expires_after() {
        let answers = [C("c1".into()), U];
        assert_eq!(
            decide(&stuck(2, false), &answers, HOUR, LIFE),
            Action::Retry(vec![1])
        );
        // A tender without any answer is unknown too.
        assert_eq!(
            decide(&stuck(2, false), &[], HOUR, LIFE),
            Action::Retry(vec![0, 1])
        );
        let late = 24 * HOUR;
        let a = decide(&stuck(2, false), &answers, late, LIFE);
        assert_eq!(a, Action::Expire(vec![cap(0, "c1")]));
        assert_eq!(a.outcome(), "expired");
        assert_eq!(
            decide(&stuck(2, false), &answers, late - 1, LIFE),
            Action::Retry(vec![1])
        );
    }

    #[test]
    fn a_requested_cancellation_never_captures_and_refunds_what_was() {
        // The processor never got it: nothing to capture or refund.
        let a = decide(&stuck(1, true), &[U], HOUR, LIFE);
        assert_eq!(a, Action::Cancel(vec![]));
        assert_eq!(a.outcome(), "cancelled");
        // It captured before the cancellation: refund, once.
        let a = decide(&stuck(2, true), &[C("c1".into()), U], HOUR, LIFE);
        assert_eq!(a, Action::Cancel(vec![cap(0, "c1")]));
        assert_eq!(a.outcome(), "refunded");
        // Even past the key's lifetime, a cancellation is a cancellation.
        assert_eq!(
            decide(&stuck(1, true), &[U], 48 * HOUR, LIFE),
            Action::Cancel(vec![])
        );
    }
}
