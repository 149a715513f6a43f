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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SamplingDecision, SamplingResult,
    SdkTracerProvider, ShouldSample,
};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
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
    let health = Arc::new(Health::new());
    let processor = BatchSpanProcessor::builder(Reported {
        inner: exporter,
        endpoint: endpoint.clone(),
        gate: Mutex::new(Gate::default()),
        health: Arc::clone(&health),
    })
    .with_batch_config(batch)
    .build();
    let name = cfg
        .service_name
        .clone()
        .unwrap_or_else(|| service.to_owned());
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(GatedSampler {
            inner: Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(cfg.sampling_ratio))),
            health,
        })
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

/// When a failing collector is tried again: after a failed export the
/// batches of the next second are dropped unsent, then of the next two, up
/// to [`Gate::MAX_BACKOFF`]; a success ends it. Dropping unsent spares the
/// encoding of every batch for a collector that is down. Pure: the caller
/// passes the time.
#[derive(Debug, Default)]
struct Gate {
    backoff: Option<Duration>,
    retry_at: Option<Instant>,
}

impl Gate {
    const FIRST_BACKOFF: Duration = Duration::from_secs(1);
    const MAX_BACKOFF: Duration = Duration::from_secs(30);

    /// Whether a batch is sent now.
    fn admit(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|at| now >= at)
    }

    /// Records an export's outcome; true when it changes the state
    /// (the first failure, or the first success after failures).
    fn record(&mut self, ok: bool, now: Instant) -> bool {
        if ok {
            self.retry_at = None;
            return self.backoff.take().is_some();
        }
        let first = self.backoff.is_none();
        let next = self
            .backoff
            .map_or(Self::FIRST_BACKOFF, |b| (b * 2).min(Self::MAX_BACKOFF));
        self.backoff = Some(next);
        self.retry_at = Some(now + next);
        first
    }
}

/// Until when the collector is held to be down, for [`GatedSampler`]:
/// ms after `base`, 0 when it is up.
#[derive(Debug)]
struct Health {
    base: Instant,
    down_until_ms: AtomicU64,
}

impl Health {
    fn new() -> Self {
        Self {
            base: crate::clock::now(),
            down_until_ms: AtomicU64::new(0),
        }
    }

    fn set(&self, retry_at: Option<Instant>) {
        let ms = retry_at.map_or(0, |at| {
            u64::try_from(at.saturating_duration_since(self.base).as_millis()).unwrap_or(u64::MAX)
        });
        self.down_until_ms.store(ms, Ordering::Relaxed);
    }

    fn down(&self, now: Instant) -> bool {
        let until = self.down_until_ms.load(Ordering::Relaxed);
        until != 0
            && u64::try_from(now.saturating_duration_since(self.base).as_millis())
                .is_ok_and(|n| n < until)
    }
}

/// The configured sampler, except while the collector is held to be down:
/// then no span is recorded (their contexts still travel, unsampled), so a
/// dead collector costs capture next to nothing. Spans are recorded again
/// once the backoff ends, and the next export tells whether it is back.
#[derive(Debug, Clone)]
struct GatedSampler {
    inner: Sampler,
    health: Arc<Health>,
}

impl ShouldSample for GatedSampler {
    fn should_sample(
        &self,
        parent_context: Option<&opentelemetry::Context>,
        trace_id: opentelemetry::trace::TraceId,
        name: &str,
        span_kind: &opentelemetry::trace::SpanKind,
        attributes: &[opentelemetry::KeyValue],
        links: &[opentelemetry::trace::Link],
    ) -> SamplingResult {
        if self.health.down(crate::clock::now()) {
            return SamplingResult {
                decision: SamplingDecision::Drop,
                attributes: Vec::new(),
                trace_state: parent_context
                    .map(|c| c.span().span_context().trace_state().clone())
                    .unwrap_or_default(),
            };
        }
        self.inner
            .should_sample(parent_context, trace_id, name, span_kind, attributes, links)
    }
}

/// The OTLP exporter behind a [`Gate`], its failures logged once per
/// episode: a collector that is down costs one warning and dropped spans,
/// not an error line and an encoding per batch.
#[derive(Debug)]
struct Reported<E> {
    inner: E,
    endpoint: String,
    gate: Mutex<Gate>,
    health: Arc<Health>,
}

impl<E: SpanExporter> SpanExporter for Reported<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let admitted = self
            .gate
            .lock()
            .map(|g| g.admit(crate::clock::now()))
            .unwrap_or(true);
        if !admitted {
            return Err(OTelSdkError::InternalFailure(
                "collector down: batch dropped unsent".into(),
            ));
        }
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        let changed = self
            .gate
            .lock()
            .map(|mut g| {
                let changed = g.record(result.is_ok(), crate::clock::now());
                self.health.set(g.retry_at);
                changed
            })
            .unwrap_or(false);
        match (&result, changed) {
            (Ok(()), true) => tracing::info!(endpoint = %self.endpoint, "trace export works again"),
            (Err(e), true) => tracing::warn!(endpoint = %self.endpoint, error = %e, spans,
                "trace export failed; spans are dropped until the collector answers"),
            _ => {}
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
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

/// Set once the global subscriber exports [`TARGET`] spans.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Records that the global subscriber exports [`TARGET`] spans
/// (`Telemetry::init_with_traces`).
pub(crate) fn set_exporting() {
    EXPORTING.store(true, Ordering::Relaxed);
}

/// Whether [`TARGET`] spans are exported (a pipeline is installed): a
/// caller can skip work only a trace needs. A flag, not
/// `tracing::enabled!`: with per-layer filters that macro leaves the
/// filters' per-thread state behind, and the next event on the thread was
/// dropped from the log.
pub fn enabled() -> bool {
    EXPORTING.load(Ordering::Relaxed)
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
    fn a_failing_collector_is_tried_again_after_a_growing_backoff() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut g = Gate::default();
        assert!(g.admit(t0));
        assert!(g.record(false, t0), "the first failure is news");
        assert!(!g.admit(t0 + Duration::from_millis(999)));
        assert!(g.admit(t0 + s(1)));
        assert!(!g.record(false, t0 + s(1)), "the next one is not");
        assert!(!g.admit(t0 + s(2)));
        assert!(g.admit(t0 + s(3)), "2 s after the second failure");
        for i in 0..10 {
            g.record(false, t0 + s(10 + i));
        }
        assert!(!g.admit(t0 + s(19 + 29)));
        assert!(g.admit(t0 + s(19 + 30)), "capped at 30 s");
        assert!(g.record(true, t0 + s(60)), "recovery is news");
        assert!(g.admit(t0 + s(60)));
        assert!(!g.record(true, t0 + s(61)));
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
