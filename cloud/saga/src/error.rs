//! [`SagaError`]: why a saga process stopped. Each plumbing module has its
//! own error ([`crate::db::DbError`], [`crate::member::MemberError`],
//! [`crate::outbox::OutboxError`], [`crate::status::StatusError`],
//! [`crate::psp::PspError`]); this one composes them for the runner and
//! adds what only the runner meets.

/// Why a saga process (or one of its tasks) stopped.
#[derive(Debug, thiserror::Error)]
pub enum SagaError {
    /// The database.
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    /// A consumer group member.
    #[error(transparent)]
    Member(#[from] crate::member::MemberError),
    /// An outbox relay.
    #[error(transparent)]
    Outbox(#[from] crate::outbox::OutboxError),
    /// The status publisher.
    #[error(transparent)]
    Status(#[from] crate::status::StatusError),
    /// Kafka setup.
    #[error(transparent)]
    KafkaOp(#[from] o2c_runtime::kafka::KafkaOpError),
    /// The Kafka topics are missing or differ from the topology file.
    #[error(transparent)]
    Topology(#[from] o2c_topology::AdminError),
    /// The schema registry has not every subject (or did not answer).
    #[error(transparent)]
    Registry(#[from] o2c_topology::registry::RegistryError),
    /// A processor or carrier client's setup.
    #[error(transparent)]
    Psp(#[from] crate::upstream::UpstreamError),
    /// HTTP listener.
    #[error("http: {0}")]
    Http(#[from] std::io::Error),
    /// A task ended unexpectedly.
    #[error("{0} closed")]
    Closed(&'static str),
    /// A service name that does not exist.
    #[error("unknown service {0:?}: use order, payment, inventory, shipping or status")]
    UnknownService(String),
}
