//! Distributed traces (issue 17): the `[telemetry]` table, the OTLP/HTTP
//! export pipeline behind `tracing-opentelemetry`, and the W3C trace
//! context carried between processes (an MQTT v5 user property, a Kafka
//! header, the envelope's `traceparent`).
//!
//! Only spans with target [`TARGET`] are exported: each process opens them
//! at the steps of an order's way (capture, publish, ingest, consume,
//! step, outbox, relay, status). When no endpoint is configured no
//! exporter exists and those spans are disabled, so they cost nothing.
//!
//! The export is batched on the SDK's own thread through a bounded queue
//! ([`TraceConfig::max_queue_spans`]): when the collector is down or slow
//! the queue fills and further spans are dropped, so tracing never adds
//! latency or memory to the code it observes.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use serde::{Deserialize, Serialize};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The target of every exported span: `tracing::info_span!(target:
/// o2c_runtime::trace::TARGET, "...")`.
pub const TARGET: &str = "o2c.trace";

/// Why traces could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// A `[telemetry]` value that cannot work, by key.
    #[error("telemetry.{key}: {message}")]
    Invalid {
        /// The key under `[telemetry]`.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The OTLP exporter could not be built.
    #[error("telemetry: OTLP exporter: {0}")]
    Exporter(String),
}

/// The `[telemetry]` table: where spans go, how many, under which name.
/// Off (no endpoint) by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TraceConfig {
    /// The OTLP/HTTP traces URL of a collector, for example
    /// `http://127.0.0.1:6006/v1/traces` (Phoenix) or
    /// `http://127.0.0.1:4318/v1/traces`. Absent: no traces.
    pub endpoint: Option<String>,
    /// The share of new traces kept, 0.0 to 1.0, decided where a trace
    /// starts (the till's capture); every later hop follows that decision
    /// (the `sampled` flag of the W3C context).
    pub sampling_ratio: f64,
    /// The `service.name` of this process's spans; absent: the binary's
    /// own (`o2c-agent`, `o2c-ingest`, `o2c-saga`, ...).
    pub service_name: Option<String>,
    /// Spans held for export at most; more are dropped (and counted by the
    /// SDK) while the collector is slow or down.
    pub max_queue_spans: usize,
    /// How long one export request may take before it is abandoned.
    pub export_timeout_ms: u64,
    /// More resource attributes of every span, e.g.
    /// `"deployment.environment" = "prod"` (or, for Arize Phoenix, the
    /// project: `"openinference.project.name" = "stores"`).
    pub resource: BTreeMap<String, String>,
}

impl Default for TraceConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            sampling_ratio: 1.0,
            service_name: None,
            max_queue_spans: 2048,
            export_timeout_ms: 2000,
            resource: BTreeMap::new(),
        }
    }
}

impl TraceConfig {
    /// Checks the values; called when a config is loaded.
    pub fn validate(&self) -> Result<(), TraceError> {
        let invalid = |key, message: &str| TraceError::Invalid {
            key,
            message: message.to_owned(),
        };
        if !(self.sampling_ratio.is_finite() && (0.0..=1.0).contains(&self.sampling_ratio)) {
            return Err(invalid("sampling_ratio", "must be between 0.0 and 1.0"));
        }
        if let Some(e) = &self.endpoint
            && (!e.starts_with("http://") || e.len() <= "http://".len())
        {
            return Err(invalid(
                "endpoint",
                "must be an http:// OTLP/HTTP traces URL (a collector on this host or \
                 network; this build exports without TLS)",
            ));
        }
        if self.max_queue_spans == 0 {
            return Err(invalid("max_queue_spans", "must be at least 1"));
        }
        if self.export_timeout_ms == 0 {
            return Err(invalid("export_timeout_ms", "must be at least 1"));
        }
        Ok(())
    }
}

impl TraceConfig {
    /// [`TraceConfig::validate`] as a config error naming the key, for the
    /// binaries' config loaders.
    pub fn check(&self) -> Result<(), crate::ConfigError> {
        self.validate().map_err(|e| match e {
            TraceError::Invalid { key, message } => {
                crate::ConfigError::key(format!("telemetry.{key}"), message)
            }
            other => crate::ConfigError::key("telemetry", other.to_string()),
        })
    }
}

/// The installed export pipeline. Dropping it flushes what is queued (a
/// bounded wait) and stops the export thread.
#[derive(Debug)]
pub struct TraceGuard {
    provider: SdkTracerProvider,
}

impl Drop for TraceGuard {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::debug!(error = %e, "trace export shut down with an error");
        }
    }
}

/// Builds the exporter and tracer provider for `cfg`; `None` when no
/// endpoint is set. `service` is the default `service.name`. Building does
/// no I/O: a collector that is down is found, and its spans dropped, only
/// when a batch is exported.
pub fn pipeline(
    cfg: &TraceConfig,
    service: &str,
) -> Result<Option<(opentelemetry_sdk::trace::Tracer, TraceGuard)>, TraceError> {
    cfg.validate()?;
    let Some(endpoint) = &cfg.endpoint else {
        return Ok(None);
    };
    let timeout = Duration::from_millis(cfg.export_timeout_ms);
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint.clone())
        .with_timeout(timeout)
        .with_headers(HashMap::new())
        .build()
        .map_err(|e| TraceError::Exporter(e.to_string()))?;
    let batch = BatchConfigBuilder::default()
        .with_max_queue_size(cfg.max_queue_spans)
        .with_max_export_batch_size(cfg.max_queue_spans.min(512))
        .with_scheduled_delay(Duration::from_millis(500))
        .build();
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(batch)
        .build();
    let name = cfg
        .service_name
        .clone()
        .unwrap_or_else(|| service.to_owned());
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            cfg.sampling_ratio,
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name(name)
                .with_attributes(
                    cfg.resource
                        .iter()
                        .map(|(k, v)| opentelemetry::KeyValue::new(k.clone(), v.clone())),
                )
                .build(),
        )
        .build();
    let tracer = provider.tracer("o2c");
    Ok(Some((tracer, TraceGuard { provider })))
}

struct One<'a>(&'a str);

impl Extractor for One<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

#[derive(Default)]
struct Out(Option<String>);

impl Injector for Out {
    fn set(&mut self, key: &str, value: String) {
        if key == "traceparent" {
            self.0 = Some(value);
        }
    }
}

/// Makes the remote span of the W3C `traceparent` the parent of `span`.
/// Call it right after creating `span`, before it is entered. A malformed
/// value, or a disabled span, leaves `span` as it was.
pub fn set_parent(span: &Span, traceparent: &str) {
    let cx = TraceContextPropagator::new().extract(&One(traceparent));
    if cx.span().span_context().is_valid() {
        // Err: the span is disabled (no exporter) or already started.
        let _ = span.set_parent(cx);
    }
}

/// The W3C `traceparent` naming `span` itself, to hand to the next hop;
/// `None` when traces are off (the span has no OpenTelemetry context).
pub fn traceparent(span: &Span) -> Option<String> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut out = Out::default();
    TraceContextPropagator::new().inject_context(&cx, &mut out);
    out.0
}

/// Whether [`TARGET`] spans are exported (a pipeline is installed): a
/// caller can skip work only a trace needs.
pub fn enabled() -> bool {
    tracing::enabled!(target: TARGET, tracing::Level::INFO)
}

/// The trace id (32 hex digits) of a W3C `traceparent`.
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let id = traceparent.split('-').nth(1)?;
    (id.len() == 32).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_off_by_default_and_checks_its_values() {
        let d = TraceConfig::default();
        assert_eq!(d.endpoint, None);
        assert!(d.validate().is_ok());
        assert!(pipeline(&d, "x").unwrap().is_none());
        for (cfg, key) in [
            (
                TraceConfig {
                    sampling_ratio: 1.5,
                    ..TraceConfig::default()
                },
                "sampling_ratio",
            ),
            (
                TraceConfig {
                    sampling_ratio: f64::NAN,
                    ..TraceConfig::default()
                },
                "sampling_ratio",
            ),
            (
                TraceConfig {
                    endpoint: Some("https://collector:4318/v1/traces".into()),
                    ..TraceConfig::default()
                },
                "endpoint",
            ),
            (
                TraceConfig {
                    max_queue_spans: 0,
                    ..TraceConfig::default()
                },
                "max_queue_spans",
            ),
        ] {
            let e = cfg.validate().unwrap_err().to_string();
            assert!(e.starts_with(&format!("telemetry.{key}:")), "{e}");
        }
    }

    #[test]
    fn a_trace_id_is_read_from_a_traceparent() {
        assert_eq!(
            trace_id("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        assert_eq!(trace_id("garbage"), None);
    }

    /// A span whose parent is a remote context continues its trace, and
    /// the context it hands on names the span itself, sampled.
    #[test]
    fn a_child_span_continues_the_remote_trace_and_hands_on_its_own_id() {
        use tracing_subscriber::layer::SubscriberExt as _;
        let provider = SdkTracerProvider::builder().build();
        let tracer = provider.tracer("test");
        let subscriber =
            tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer));
        tracing::subscriber::with_default(subscriber, || {
            let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
            let span = tracing::info_span!(target: TARGET, "step");
            set_parent(&span, parent);
            let tp = traceparent(&span).expect("a context");
            assert_eq!(trace_id(&tp), trace_id(parent));
            assert!(tp.ends_with("-01"), "{tp}");
            assert!(!tp.contains("b7ad6b7169203331"), "a new span id: {tp}");
        });
        // Without a layer there is no context to hand on.
        let span = tracing::info_span!(target: TARGET, "off");
        assert_eq!(traceparent(&span), None);
    }
}
