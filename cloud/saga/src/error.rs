//! [`SagaError`]: why the saga (or a DLQ command) failed.

/// Why the saga (or a DLQ command) failed.
#[derive(Debug, thiserror::Error)]
pub enum SagaError {
    /// PostgreSQL.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// A migration failed.
    #[error("migration {schema}/{version}: {message}")]
    Migration {
        /// Schema.
        schema: &'static str,
        /// Version.
        version: i32,
        /// Error.
        message: String,
    },
    /// A stored state row does not decode.
    #[error("state: {0}")]
    State(serde_json::Error),
    /// A store event about an order another store created.
    #[error("store {store} may not act on order {order}, created by store {owner}")]
    NotOwner {
        /// The order.
        order: String,
        /// The store that sent the event.
        store: String,
        /// The store that created the order.
        owner: String,
    },
    /// A changed state had no locked row to go to (a bug).
    #[error("{schema}: {updated} of {expected} changed order states written")]
    StateRowMissing {
        /// Schema.
        schema: &'static str,
        /// States that changed.
        expected: usize,
        /// Rows updated.
        updated: u64,
    },
    /// Kafka.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// Kafka setup.
    #[error(transparent)]
    KafkaOp(#[from] o2c_runtime::kafka::KafkaOpError),
    /// MQTT setup.
    #[error(transparent)]
    MqttSetup(#[from] o2c_runtime::mqtt::MqttError),
    /// MQTT client.
    #[error("mqtt: {0}")]
    Mqtt(String),
    /// Payment processor client setup.
    #[error(transparent)]
    Psp(#[from] crate::psp::PspError),
    /// Encoding an event (a bug).
    #[error("encode: {0}")]
    Encode(String),
    /// A connection or task ended.
    #[error("{0} closed")]
    Closed(&'static str),
    /// HTTP listener.
    #[error("http: {0}")]
    Http(#[from] std::io::Error),
    /// A service name that does not exist.
    #[error("unknown service {0:?}: use order, payment, inventory, shipping or status")]
    UnknownService(String),
}
