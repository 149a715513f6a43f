//! The ingest's spans of an order's way (issue 17), one set per event of a
//! frame: `ingest.event` (from the frame's arrival to its ack), under the
//! agent's publish span named in the frame's `traceparent` user properties,
//! with `ingest.validate`, `ingest.produce` and `ingest.ack` under it. The
//! records go to Kafka with the `ingest.produce` span's context in their
//! `traceparent` header; the envelope, the agent's bytes, is never touched.
//!
//! With traces off every span here is disabled and nothing is kept.

use o2c_runtime::trace;
use tracing::Span;

use crate::core::Plan;

/// The spans of one frame's events, by trace id.
#[derive(Debug, Default)]
pub(crate) struct FrameSpans {
    events: Vec<(String, Span)>,
}

impl FrameSpans {
    /// Opens an `ingest.event` span under each context the agent sent
    /// (the MQTT user properties named `traceparent`).
    pub(crate) fn open(user_properties: &[(String, String)]) -> Self {
        if !trace::enabled() {
            return Self::default();
        }
        let events = user_properties
            .iter()
            .filter(|(k, _)| k == "traceparent")
            .filter_map(|(_, tp)| Some((trace::trace_id(tp)?.to_owned(), event_span(tp))))
            .collect();
        Self { events }
    }

    /// An `ingest.validate` span under each event's span, for the planning.
    pub(crate) fn validating(&self) -> Vec<Span> {
        self.children(
            |parent| tracing::info_span!(target: trace::TARGET, parent: parent, "ingest.validate"),
        )
    }

    /// An `ingest.ack` span under each event's span, for the ack.
    pub(crate) fn acking(&self) -> Vec<Span> {
        self.children(
            |parent| tracing::info_span!(target: trace::TARGET, parent: parent, "ingest.ack"),
        )
    }

    /// Opens an `ingest.produce` span for each record of `plan`, under its
    /// event's span (one is opened, under the envelope's own context, for
    /// an event the agent sent none for), and puts the span's context in
    /// the record's `traceparent` header.
    pub(crate) fn producing(&mut self, plan: &mut Plan) -> Vec<Span> {
        if !trace::enabled() {
            return Vec::new();
        }
        let mut spans = Vec::with_capacity(plan.produce.len());
        for r in &mut plan.produce {
            let Some(slot) = r.headers.iter_mut().find(|(k, _)| *k == "traceparent") else {
                continue;
            };
            let Some(trace_id) = trace::trace_id(&slot.1).map(str::to_owned) else {
                continue;
            };
            let parent = match self.events.iter().find(|(t, _)| *t == trace_id) {
                Some((_, span)) => span.clone(),
                None => {
                    let span = event_span(&slot.1);
                    self.events.push((trace_id, span.clone()));
                    span
                }
            };
            let span = tracing::info_span!(target: trace::TARGET, parent: &parent,
                "ingest.produce", otel.kind = "producer", seq = r.seq,
                event_type = r.event_type);
            if let Some(tp) = trace::traceparent(&span) {
                slot.1 = tp;
            }
            spans.push(span);
        }
        spans
    }

    fn children(&self, f: impl Fn(&Span) -> Span) -> Vec<Span> {
        self.events.iter().map(|(_, s)| f(s)).collect()
    }
}

fn event_span(traceparent: &str) -> Span {
    let span = tracing::info_span!(target: trace::TARGET, "ingest.event", otel.kind = "consumer");
    trace::set_parent(&span, traceparent);
    span
}
