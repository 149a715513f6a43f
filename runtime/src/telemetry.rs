//! tracing-subscriber initialisation: an `EnvFilter` from `RUST_LOG`
//! (falling back to a default directive), text or JSON lines, to stderr or
//! stdout.

use tracing_subscriber::EnvFilter;

/// Why the subscriber could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A global subscriber is already set.
    #[error("cannot install the tracing subscriber: {0}")]
    Init(String),
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

    /// Installs the global subscriber.
    pub fn init(self) -> Result<(), TelemetryError> {
        let builder = tracing_subscriber::fmt().with_env_filter(self.filter());
        let result = match (self.format, self.target) {
            (LogFormat::Text, LogTarget::Stderr) => builder.with_writer(std::io::stderr).try_init(),
            (LogFormat::Text, LogTarget::Stdout) => builder.try_init(),
            (LogFormat::Json, LogTarget::Stderr) => {
                builder.json().with_writer(std::io::stderr).try_init()
            }
            (LogFormat::Json, LogTarget::Stdout) => builder.json().try_init(),
        };
        result.map_err(|e| TelemetryError::Init(e.to_string()))
    }
}
