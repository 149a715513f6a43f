//! The harness's one error type.

use std::time::Duration;

/// Everything the harness can fail at, with enough context to debug a red CI run.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What the harness was doing.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A Kafka client call failed.
    #[error("kafka: {what}: {source}")]
    Kafka {
        /// What the harness was doing.
        what: String,
        /// The underlying error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// Creating one topic failed with something other than `TopicAlreadyExists`.
    #[error("kafka: creating topic {topic}: {code:?}")]
    CreateTopic {
        /// The topic that failed.
        topic: String,
        /// The broker's error code.
        code: rdkafka::types::RDKafkaErrorCode,
    },
    /// A PostgreSQL call failed.
    #[error("postgres: {what}: {source}")]
    Postgres {
        /// What the harness was doing.
        what: String,
        /// The underlying error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// Writing the Tansu header index failed.
    #[error("sqlite: {what}: {source}")]
    Sqlite {
        /// What the harness was doing.
        what: String,
        /// The underlying error.
        #[source]
        source: rusqlite::Error,
    },
    /// A private broker did not answer its protocol in time.
    #[error(
        "{service} on port {port} not ready after {timeout:?}; last error: {last_error}\n--- log tail ---\n{log_tail}"
    )]
    NotReady {
        /// Which broker.
        service: &'static str,
        /// Its port.
        port: u16,
        /// How long the harness waited.
        timeout: Duration,
        /// The last probe failure.
        last_error: String,
        /// The end of the broker's log.
        log_tail: String,
    },
    /// A helper program (mosquitto, tansu) is not installed.
    #[error("program `{name}` not found ({hint})")]
    ProgramNotFound {
        /// The program name.
        name: String,
        /// How to install it.
        hint: &'static str,
    },
    /// A polling helper ran out of time.
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The deadline that passed.
        timeout: Duration,
    },
    /// `consume_all` saw fewer records than expected before its deadline.
    #[error("consumed {got} of {expected} records from topic {topic} within {timeout:?}")]
    ConsumeShort {
        /// The topic read.
        topic: String,
        /// How many records were expected.
        expected: usize,
        /// How many arrived.
        got: usize,
        /// The deadline that passed.
        timeout: Duration,
    },
    /// A pipeline process or its API misbehaved.
    #[error("pipeline: {0}")]
    Pipeline(String),
    /// A name (database, topic) contains characters the harness refuses to quote.
    #[error("invalid name {name:?}: {why}")]
    InvalidName {
        /// The offending name.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

impl HarnessError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn kafka(what: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        Self::Kafka {
            what: what.into(),
            source,
        }
    }
}
