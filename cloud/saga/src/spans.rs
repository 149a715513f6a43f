//! The saga's spans of an order's way (issue 17). Each record a service
//! takes gets `{service}.consume`, under the context in the record's
//! `traceparent` header (the hop that produced it; the envelope's own
//! otherwise), and `{service}.step` under it, for the handling. The
//! decoded envelope then carries the step span's context, so everything
//! the step causes hangs under it: the processor call, the outbox write
//! (`{service}.outbox`, whose context the new event's row keeps) and, in
//! the relay, `{service}.relay`, whose context is the produced record's
//! `traceparent` header.
//!
//! With traces off every span here is disabled and no context changes.

use o2c_protocol::{Envelope, Traceparent};
use o2c_runtime::trace;
use tracing::Span;

/// The spans of one event being handled: kept open until it is.
#[derive(Debug)]
pub(crate) struct Handling {
    _consume: Span,
    _step: Span,
}

/// Opens the consume and step spans of `env`, taken by `service` from a
/// record with the header context `header`, and gives `env` the step
/// span's context.
pub(crate) fn handling(
    service: &str,
    header: Option<&str>,
    env: &mut Envelope,
) -> Option<Handling> {
    if !trace::enabled() {
        return None;
    }
    let consume = tracing::info_span!(target: trace::TARGET, "saga.consume",
        otel.name = format!("{service}.consume").as_str(), otel.kind = "consumer",
        order_id = %env.payload.order_id(), event_type = env.event_type().as_str());
    let parent = header.or(env.traceparent.as_ref().map(Traceparent::as_str));
    if let Some(tp) = parent {
        trace::set_parent(&consume, tp);
    }
    let step = tracing::info_span!(target: trace::TARGET, parent: &consume, "saga.step",
        otel.name = format!("{service}.step").as_str());
    if let Some(tp) = trace::traceparent(&step).and_then(|t| Traceparent::new(&t).ok()) {
        env.traceparent = Some(tp);
    }
    Some(Handling {
        _consume: consume,
        _step: step,
    })
}

/// A span named `{service}.{what}` under the context `traceparent`, and
/// that span's own context (`None` with traces off).
pub(crate) fn child(
    service: &str,
    what: &str,
    traceparent: Option<&str>,
) -> (Span, Option<String>) {
    if !trace::enabled() {
        return (Span::none(), None);
    }
    let span = tracing::info_span!(target: trace::TARGET, "saga.hop",
        otel.name = format!("{service}.{what}").as_str());
    if let Some(tp) = traceparent {
        trace::set_parent(&span, tp);
    }
    let own = trace::traceparent(&span);
    (span, own)
}
