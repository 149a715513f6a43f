//! The payment state machine, pure: what an `OrderCreated` or an
//! `OrderCancelled` does to one order's [`PaymentState`], and what the step
//! must then do (call the processor, leave it to the reconciler, emit). No
//! I/O: the step ([`super::PaymentStep`]) makes the calls and writes.

use super::{PayPhase, PaymentState};

/// What to do with an order's `OrderCreated`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureStart {
    /// Call the processor now (the state is `Capturing`). For a cash-only
    /// order no call is made and the capture completes at once.
    Call,
    /// The breaker is open: recorded `Capturing` with no call; the
    /// reconciler captures once the processor is back.
    Defer,
    /// Cancelled while an earlier attempt failed: never capture again; the
    /// reconciler settles it.
    Reconcile,
    /// Settled or cancelled already: nothing to capture.
    Skip,
}

/// What an `OrderCancelled` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// Nothing was taken: `Cancelled`, no event.
    Cancelled,
    /// The captures were refunded: `Refunded`, one `RefundIssued`.
    Refunded,
    /// A capture is in flight: `cancel_requested` recorded; its settlement
    /// refunds (or never captures).
    Requested,
    /// The state changed since the refunds were decided: roll back and
    /// handle the cancellation again.
    Changed,
    /// Failed, cancelled or refunded already: nothing to do.
    Nothing,
}

impl PaymentState {
    /// An `OrderCreated` arrives; `card` if it has processor tenders,
    /// `breaker_open` if no call could be made now.
    pub fn start_capture(&mut self, card: bool, breaker_open: bool) -> CaptureStart {
        match self.phase {
            PayPhase::Capturing if self.cancel_requested && card => CaptureStart::Reconcile,
            PayPhase::Pending | PayPhase::Capturing if breaker_open && card => {
                self.phase = PayPhase::Capturing;
                CaptureStart::Defer
            }
            PayPhase::Pending | PayPhase::Capturing => {
                self.phase = PayPhase::Capturing;
                CaptureStart::Call
            }
            PayPhase::Captured | PayPhase::Failed | PayPhase::Cancelled | PayPhase::Refunded => {
                CaptureStart::Skip
            }
        }
    }

    /// An `OrderCancelled` arrives. `refunded` is true when the refunds of
    /// the captures were made before this transaction, from a state that
    /// was `Captured` then.
    pub fn cancel(&mut self, refunded: bool) -> CancelOutcome {
        match self.phase {
            PayPhase::Pending => {
                self.phase = PayPhase::Cancelled;
                CancelOutcome::Cancelled
            }
            PayPhase::Captured if refunded => {
                self.phase = PayPhase::Refunded;
                CancelOutcome::Refunded
            }
            PayPhase::Captured => CancelOutcome::Changed,
            PayPhase::Capturing => {
                self.cancel_requested = true;
                CancelOutcome::Requested
            }
            PayPhase::Failed | PayPhase::Cancelled | PayPhase::Refunded => CancelOutcome::Nothing,
        }
    }

    /// The refunds of a cancelled `Captured` order cannot be made now:
    /// records the debt (`cancel_requested`, phase kept) for the
    /// reconciler. False if the state is no longer `Captured`.
    pub fn owe_refund(&mut self) -> bool {
        if self.phase != PayPhase::Captured {
            return false;
        }
        self.cancel_requested = true;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(phase: PayPhase) -> PaymentState {
        PaymentState {
            phase,
            ..PaymentState::default()
        }
    }

    #[test]
    fn a_new_order_is_captured_now_or_deferred_while_the_breaker_is_open() {
        let mut st = PaymentState::default();
        assert_eq!(st.start_capture(true, false), CaptureStart::Call);
        assert_eq!(st.phase, PayPhase::Capturing);
        let mut st = PaymentState::default();
        assert_eq!(st.start_capture(true, true), CaptureStart::Defer);
        assert_eq!(st.phase, PayPhase::Capturing);
        // Cash needs no processor, open breaker or not.
        let mut st = PaymentState::default();
        assert_eq!(st.start_capture(false, true), CaptureStart::Call);
        // A retried capture is called again (same idempotency keys).
        let mut st = at(PayPhase::Capturing);
        assert_eq!(st.start_capture(true, false), CaptureStart::Call);
    }

    #[test]
    fn a_capture_cancelled_meanwhile_is_never_sent_again() {
        let mut st = at(PayPhase::Capturing);
        st.cancel_requested = true;
        assert_eq!(st.start_capture(true, false), CaptureStart::Reconcile);
        assert_eq!(st.start_capture(true, true), CaptureStart::Reconcile);
        assert_eq!(st.phase, PayPhase::Capturing);
    }

    #[test]
    fn settled_orders_are_never_captured_again() {
        for phase in [
            PayPhase::Captured,
            PayPhase::Failed,
            PayPhase::Cancelled,
            PayPhase::Refunded,
        ] {
            let mut st = at(phase);
            assert_eq!(
                st.start_capture(true, false),
                CaptureStart::Skip,
                "{phase:?}"
            );
            assert_eq!(st.phase, phase);
        }
    }

    #[test]
    fn a_cancellation_refunds_a_capture_once() {
        let mut st = at(PayPhase::Captured);
        assert_eq!(st.cancel(true), CancelOutcome::Refunded);
        assert_eq!(st.phase, PayPhase::Refunded);
        // Replayed: nothing more.
        assert_eq!(st.cancel(true), CancelOutcome::Nothing);
        // Captured but the refunds were decided on another state.
        assert_eq!(at(PayPhase::Captured).cancel(false), CancelOutcome::Changed);
    }

    #[test]
    fn a_cancellation_before_or_during_a_capture() {
        let mut st = PaymentState::default();
        assert_eq!(st.cancel(false), CancelOutcome::Cancelled);
        assert_eq!(st.start_capture(true, false), CaptureStart::Skip);
        let mut st = at(PayPhase::Capturing);
        assert_eq!(st.cancel(false), CancelOutcome::Requested);
        assert!(st.cancel_requested);
        assert_eq!(st.phase, PayPhase::Capturing);
    }

    #[test]
    fn a_refund_is_owed_only_by_a_captured_order() {
        let mut st = at(PayPhase::Captured);
        assert!(st.owe_refund());
        assert!(st.cancel_requested);
        assert_eq!(st.phase, PayPhase::Captured);
        for phase in [PayPhase::Pending, PayPhase::Capturing, PayPhase::Refunded] {
            assert!(!at(phase).owe_refund(), "{phase:?}");
        }
    }
}
