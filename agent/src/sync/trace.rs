//! The spans of the sync hop (issue 17): an `agent.sync.publish` span per
//! event sent, under the event's own context (its capture), whose context
//! goes to the ingest in the frame's `traceparent` user properties; and an
//! `agent.sync.ack` span under it when the cloud acks the event.
//!
//! The contexts of events sent and not yet acked are kept in memory, at
//! most [`MAX_TRACKED`] (the oldest go first): enough for any sync window,
//! and nothing at all while traces are off.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use o2c_protocol::Seq;
use o2c_runtime::trace;

/// Contexts kept for ack spans at most.
const MAX_TRACKED: usize = 10_000;

/// The publish contexts of events in flight, by seq.
#[derive(Debug, Clone, Default)]
pub struct SyncTraces {
    sent: Arc<Mutex<BTreeMap<u64, String>>>,
}

impl SyncTraces {
    /// Opens the publish span of event `seq`, whose context is
    /// `traceparent`, and returns the context to send in its place: the
    /// span's when traces are exported, else the event's own.
    pub(crate) fn publish(&self, seq: Seq, traceparent: Option<String>) -> Option<String> {
        if !trace::enabled() {
            return traceparent;
        }
        let span = tracing::info_span!(target: trace::TARGET, "agent.sync.publish",
            otel.kind = "producer", seq = seq.get());
        if let Some(tp) = &traceparent {
            trace::set_parent(&span, tp);
        }
        let Some(sent) = trace::traceparent(&span) else {
            return traceparent;
        };
        if let Ok(mut map) = self.sent.lock() {
            map.insert(seq.get(), sent.clone());
            while map.len() > MAX_TRACKED {
                map.pop_first();
            }
        }
        Some(sent)
    }

    /// Records the ack of every event through `through`: an
    /// `agent.sync.ack` span under each one's publish span.
    pub(crate) fn acked(&self, through: Seq) {
        let Ok(mut map) = self.sent.lock() else {
            return;
        };
        if map.is_empty() {
            return;
        }
        let rest = map.split_off(&(through.get() + 1));
        let acked = std::mem::replace(&mut *map, rest);
        drop(map);
        for (seq, tp) in acked {
            let span = tracing::info_span!(target: trace::TARGET, "agent.sync.ack", seq);
            trace::set_parent(&span, &tp);
        }
    }
}
