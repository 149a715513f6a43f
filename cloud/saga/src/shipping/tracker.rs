//! The shipping tracker's decisions (pure): which carrier call a shipment
//! needs next ([`call_for`]), and what its answer ([`on_answer`]) or its
//! failure ([`on_failure`]) makes of the shipment: its new state, the
//! events to emit and when to look at it again.
//!
//! ```text
//! to_book ──book──► booked ──(carrier: in_transit)──► dispatched ──► delivered
//!    │                 │                                  ShipmentDispatched  ShipmentDelivered
//!    │ cancelled,      │ cancelled: cancel at the carrier
//!    │ never booked    ▼
//!    └────────────► cancelled (ShipmentCancelled); too late: stays on its way
//! to_book ──book refused for good──► failed (ShipmentCancelled "carrier_rejected")
//! ```
//!
//! The IO around it (claims with a lease, the carrier calls, the writes)
//! is [`super::worker`].

use std::time::Duration;

use o2c_protocol::retry::{Decision, Failure, RetryPolicy};

use super::carrier::CarrierStatus;

/// A shipment's state in `o2c_shipping.shipments`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShipState {
    /// Recorded by the step; not yet booked at the carrier.
    ToBook,
    /// Booked at the carrier; not yet picked up.
    Booked,
    /// With the carrier (`ShipmentDispatched` emitted).
    Dispatched,
    /// Delivered (`ShipmentDelivered` emitted). Final.
    Delivered,
    /// Cancelled before dispatch (`ShipmentCancelled` emitted). Final.
    Cancelled,
    /// The carrier refused the booking for good (`ShipmentCancelled`
    /// emitted). Final.
    Failed,
}

impl ShipState {
    /// Every state.
    pub const ALL: [ShipState; 6] = [
        ShipState::ToBook,
        ShipState::Booked,
        ShipState::Dispatched,
        ShipState::Delivered,
        ShipState::Cancelled,
        ShipState::Failed,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ShipState::ToBook => "to_book",
            ShipState::Booked => "booked",
            ShipState::Dispatched => "dispatched",
            ShipState::Delivered => "delivered",
            ShipState::Cancelled => "cancelled",
            ShipState::Failed => "failed",
        }
    }

    /// Reads a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Not yet picked up by the carrier.
    fn before_dispatch(self) -> bool {
        matches!(self, ShipState::ToBook | ShipState::Booked)
    }
}

/// The carrier call a shipment needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// None: cancelled before any booking call was made.
    CancelLocally,
    /// `POST /v1/shipments` (idempotent by shipment id).
    Book,
    /// `POST .../cancel`.
    Cancel,
    /// `GET .../{tracking_number}`.
    Track,
}

impl Call {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Call::CancelLocally => "cancel_locally",
            Call::Book => "book",
            Call::Cancel => "cancel",
            Call::Track => "track",
        }
    }
}

/// The call `state` needs, if any. A cancelled shipment whose booking may
/// have reached the carrier (a booking call was made, its answer perhaps
/// lost in a crash) is booked again with the same key first, which
/// answers the same booking, then cancelled there.
pub fn call_for(state: ShipState, cancel_requested: bool, book_calls: i32) -> Option<Call> {
    match state {
        ShipState::ToBook if cancel_requested && book_calls == 0 => Some(Call::CancelLocally),
        ShipState::ToBook => Some(Call::Book),
        ShipState::Booked if cancel_requested => Some(Call::Cancel),
        ShipState::Booked | ShipState::Dispatched => Some(Call::Track),
        ShipState::Delivered | ShipState::Cancelled | ShipState::Failed => None,
    }
}

/// An event the tracker emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// `ShipmentDispatched`.
    Dispatched,
    /// `ShipmentDelivered`.
    Delivered,
    /// `ShipmentCancelled` with this reason.
    Cancelled(&'static str),
}

/// When to look at the shipment again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// At once (a cancellation waits).
    Now,
    /// After the tracking interval.
    Track,
    /// After this wait (a failed call).
    Retry(Duration),
    /// Never: the shipment is final.
    Done,
}

/// What a call made of the shipment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// Its new state.
    pub state: ShipState,
    /// Events to emit, in order.
    pub emit: Vec<Emit>,
    /// When next.
    pub next: Next,
    /// Failed calls in a row now.
    pub attempts: u32,
    /// What the call's metric says: `ok`, `retry`, `rejected`, `too_late`.
    pub outcome: &'static str,
}

/// The order was cancelled before its parcel was picked up.
pub const ORDER_CANCELLED: &str = "order_cancelled";
/// The carrier cancelled the shipment itself.
pub const CARRIER_CANCELLED: &str = "carrier_cancelled";
/// The carrier refused the booking for good.
pub const CARRIER_REJECTED: &str = "carrier_rejected";

/// What `call` being answered with `status` makes of a shipment in
/// `state` (for [`Call::CancelLocally`], `status` is not read). A
/// cancellation answered `booked` did not take: the caller treats it as a
/// failure ([`on_failure`]), not as an answer.
pub fn on_answer(
    state: ShipState,
    call: Call,
    cancel_requested: bool,
    status: CarrierStatus,
) -> Transition {
    let done = |state, emit: Vec<Emit>, next, outcome| Transition {
        state,
        emit,
        next,
        attempts: 0,
        outcome,
    };
    if call == Call::CancelLocally {
        return done(
            ShipState::Cancelled,
            vec![Emit::Cancelled(ORDER_CANCELLED)],
            Next::Done,
            "ok",
        );
    }
    // Picked up: say so once, whichever call learnt it.
    let dispatched = || {
        if state.before_dispatch() {
            vec![Emit::Dispatched]
        } else {
            Vec::new()
        }
    };
    let too_late = call == Call::Cancel && cancel_requested;
    match status {
        CarrierStatus::Booked => done(
            ShipState::Booked,
            Vec::new(),
            if cancel_requested {
                Next::Now
            } else {
                Next::Track
            },
            "ok",
        ),
        CarrierStatus::InTransit => done(
            ShipState::Dispatched,
            dispatched(),
            Next::Track,
            if too_late { "too_late" } else { "ok" },
        ),
        CarrierStatus::Delivered => {
            let mut emit = dispatched();
            if state != ShipState::Delivered {
                emit.push(Emit::Delivered);
            }
            done(
                ShipState::Delivered,
                emit,
                Next::Done,
                if too_late { "too_late" } else { "ok" },
            )
        }
        CarrierStatus::Cancelled => {
            let reason = if cancel_requested {
                ORDER_CANCELLED
            } else {
                CARRIER_CANCELLED
            };
            done(
                ShipState::Cancelled,
                vec![Emit::Cancelled(reason)],
                Next::Done,
                "ok",
            )
        }
    }
}

/// What a failed `call` makes of a shipment in `state`, after `attempts`
/// failed calls in a row before this one. A booking the carrier refuses
/// for good fails the shipment (and so cancels the order); any other
/// failure is retried after a doubling wait, for as long as it takes: a
/// parcel is never given up on silently.
pub fn on_failure(
    state: ShipState,
    call: Call,
    failure: &Failure,
    attempts: u32,
    policy: &RetryPolicy,
) -> Transition {
    let attempts = attempts.saturating_add(1);
    if call == Call::Book && matches!(failure, Failure::Permanent(_)) {
        return Transition {
            state: ShipState::Failed,
            emit: vec![Emit::Cancelled(CARRIER_REJECTED)],
            next: Next::Done,
            attempts,
            outcome: "rejected",
        };
    }
    let retry = RetryPolicy {
        max_attempts: u32::MAX,
        ..*policy
    };
    let wait = match retry.decide(attempts, &Failure::Transient(String::new())) {
        Decision::RetryAfter(d) => d,
        Decision::Dead => policy.max,
    };
    Transition {
        state,
        emit: Vec::new(),
        next: Next::Retry(wait),
        attempts,
        outcome: if matches!(failure, Failure::Permanent(_)) {
            "rejected"
        } else {
            "retry"
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_shipment_goes_booked_dispatched_delivered_with_one_event_each() {
        let s = ShipState::ToBook;
        assert_eq!(call_for(s, false, 0), Some(Call::Book));
        let t = on_answer(s, Call::Book, false, CarrierStatus::Booked);
        assert_eq!((t.state, t.next), (ShipState::Booked, Next::Track));
        assert!(t.emit.is_empty());
        assert_eq!(call_for(t.state, false, 1), Some(Call::Track));
        let same = on_answer(t.state, Call::Track, false, CarrierStatus::Booked);
        assert!(same.emit.is_empty());
        let t = on_answer(t.state, Call::Track, false, CarrierStatus::InTransit);
        assert_eq!(t.state, ShipState::Dispatched);
        assert_eq!(t.emit, vec![Emit::Dispatched]);
        let again = on_answer(t.state, Call::Track, false, CarrierStatus::InTransit);
        assert!(again.emit.is_empty(), "dispatched once");
        let t = on_answer(t.state, Call::Track, false, CarrierStatus::Delivered);
        assert_eq!(t.emit, vec![Emit::Delivered]);
        assert_eq!((t.state, t.next), (ShipState::Delivered, Next::Done));
        assert_eq!(call_for(t.state, false, 1), None);
    }

    #[test]
    fn a_parcel_delivered_between_two_looks_is_dispatched_then_delivered() {
        let t = on_answer(
            ShipState::Booked,
            Call::Track,
            false,
            CarrierStatus::Delivered,
        );
        assert_eq!(t.emit, vec![Emit::Dispatched, Emit::Delivered]);
    }

    #[test]
    fn a_cancellation_before_any_booking_call_needs_no_carrier() {
        assert_eq!(
            call_for(ShipState::ToBook, true, 0),
            Some(Call::CancelLocally)
        );
        let t = on_answer(
            ShipState::ToBook,
            Call::CancelLocally,
            true,
            CarrierStatus::Cancelled,
        );
        assert_eq!(t.emit, vec![Emit::Cancelled(ORDER_CANCELLED)]);
        assert_eq!(t.state, ShipState::Cancelled);
    }

    #[test]
    fn a_cancellation_after_a_booking_call_books_again_then_cancels_there() {
        // The call may have reached the carrier: book (same key), then
        // cancel at once.
        assert_eq!(call_for(ShipState::ToBook, true, 1), Some(Call::Book));
        let t = on_answer(ShipState::ToBook, Call::Book, true, CarrierStatus::Booked);
        assert_eq!((t.state, t.next), (ShipState::Booked, Next::Now));
        assert_eq!(call_for(t.state, true, 1), Some(Call::Cancel));
        let t = on_answer(t.state, Call::Cancel, true, CarrierStatus::Cancelled);
        assert_eq!(t.emit, vec![Emit::Cancelled(ORDER_CANCELLED)]);
        assert_eq!(t.next, Next::Done);
    }

    #[test]
    fn a_cancellation_after_pick_up_is_too_late_and_the_parcel_is_followed() {
        let t = on_answer(
            ShipState::Booked,
            Call::Cancel,
            true,
            CarrierStatus::InTransit,
        );
        assert_eq!(t.outcome, "too_late");
        assert_eq!(t.emit, vec![Emit::Dispatched]);
        assert_eq!(t.state, ShipState::Dispatched);
        assert_eq!(call_for(t.state, true, 1), Some(Call::Track));
    }

    #[test]
    fn a_refused_booking_fails_the_shipment_and_other_failures_retry_forever() {
        let p = policy();
        let t = on_failure(
            ShipState::ToBook,
            Call::Book,
            &Failure::Permanent("422".into()),
            0,
            &p,
        );
        assert_eq!(t.state, ShipState::Failed);
        assert_eq!(t.emit, vec![Emit::Cancelled(CARRIER_REJECTED)]);
        let t = on_failure(
            ShipState::ToBook,
            Call::Book,
            &Failure::Transient("503".into()),
            0,
            &p,
        );
        assert_eq!(t.next, Next::Retry(Duration::from_secs(1)));
        assert_eq!((t.state, t.attempts), (ShipState::ToBook, 1));
        // Past max_attempts, still retried, at the longest wait.
        let t = on_failure(
            ShipState::Booked,
            Call::Track,
            &Failure::Permanent("404".into()),
            40,
            &p,
        );
        assert_eq!(t.next, Next::Retry(Duration::from_secs(60)));
        assert_eq!(t.state, ShipState::Booked);
        assert!(t.emit.is_empty());
    }

    #[test]
    fn every_state_reads_back() {
        for s in ShipState::ALL {
            assert_eq!(ShipState::parse(s.as_str()), Some(s));
        }
        assert_eq!(ShipState::parse("lost"), None);
    }
}
