//! tracing-subscriber initialisation: an `EnvFilter` from `RUST_LOG`
//! (falling back to a default directive), text or JSON lines, to stderr or
//! stdout; and, with [`Telemetry::init_with_traces`], the OpenTelemetry
//! layer that exports the [`crate::trace::TARGET`] spans.

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

use crate::trace::{self, TraceConfig, TraceError, TraceGuard};

/// Why the subscriber could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A global subscriber is already set.
    #[error("cannot install the tracing subscriber: {0}")]
    Init(String),
    /// The `[telemetry]` table cannot work.
    #[error(transparent)]
    Trace(#[from] TraceError),
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogTarget {
    /// Standard error (keeps stdout for a command's output).
    #[default]
    Stderr,
    /// Standard output.
    Stdout,
}

/// Subscriber settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Telemetry {
    /// Filter used when `RUST_LOG` is unset or invalid.
    pub default_filter: &'static str,
    /// Text or JSON.
    pub format: LogFormat,
    /// Stderr or stdout.
    pub target: LogTarget,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self {
            default_filter: "info",
            format: LogFormat::Text,
            target: LogTarget::Stderr,
        }
    }
}

impl Telemetry {
    /// The filter: `RUST_LOG`, else [`Telemetry::default_filter`].
    pub fn filter(&self) -> EnvFilter {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(self.default_filter))
    }

    /// Installs the global subscriber (logs only).
    pub fn init(self) -> Result<(), TelemetryError> {
        self.init_with_traces(&TraceConfig::default(), "o2c")
            .map(|_| ())
    }

    /// Installs the global subscriber: the log lines, and when `traces`
    /// names an endpoint, the export of the [`trace::TARGET`] spans under
    /// `service` (unless `traces` names another). Keep the guard for the
    /// life of the process: dropping it flushes and stops the export.
    pub fn init_with_traces(
        self,
        traces: &TraceConfig,
        service: &str,
    ) -> Result<Option<TraceGuard>, TelemetryError> {
        let (subscriber, guard) = self.subscriber(traces, service)?;
        subscriber
            .try_init()
            .map_err(|e| TelemetryError::Init(e.to_string()))?;
        if guard.is_some() {
            trace::set_exporting();
        }
        Ok(guard)
    }

    /// The subscriber [`Telemetry::init_with_traces`] installs, for a
    /// scope of its own (`tracing::subscriber::with_default`): a binary
    /// that must log while it loads the config that names its trace
    /// endpoint.
    pub fn subscriber(
        self,
        traces: &TraceConfig,
        service: &str,
    ) -> Result<
        (
            Box<dyn tracing::Subscriber + Send + Sync>,
            Option<TraceGuard>,
        ),
        TelemetryError,
    > {
        // The order-path spans are for the exporter, not the log: without
        // one they are disabled outright and cost nothing.
        let logs = self
            .filter()
            .add_directive(format!("{}=off", trace::TARGET).parse().map_err(
                |e: tracing_subscriber::filter::ParseError| TelemetryError::Init(e.to_string()),
            )?);
        let fmt = tracing_subscriber::fmt::layer();
        let fmt = match (self.format, self.target) {
            (LogFormat::Text, LogTarget::Stderr) => fmt.with_writer(std::io::stderr).boxed(),
            (LogFormat::Text, LogTarget::Stdout) => fmt.boxed(),
            (LogFormat::Json, LogTarget::Stderr) => fmt.json().with_writer(std::io::stderr).boxed(),
            (LogFormat::Json, LogTarget::Stdout) => fmt.json().boxed(),
        };
        let (otel, guard) = match trace::pipeline(traces, service)? {
            Some((tracer, guard)) => {
                let only_ours = Targets::new().with_target(trace::TARGET, LevelFilter::TRACE);
                // Only what a hop's span needs: no source location,
                // thread or busy/idle attributes, which cost every span
                // allocations and clock reads on the capture path.
                let layer = tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_location(false)
                    .with_threads(false)
                    .with_tracked_inactivity(false)
                    .with_filter(only_ours);
                (Some(layer), Some(guard))
            }
            None => (None, None),
        };
        let subscriber = tracing_subscriber::registry()
            .with(fmt.with_filter(logs))
            .with(otel);
        Ok((Box::new(subscriber), guard))
    }
}
