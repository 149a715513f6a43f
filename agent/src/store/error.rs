//! [`StoreError`]: why a store operation failed, and its mapping from
//! SQLite's error codes.

use o2c_protocol::OrderId;

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The disk is full (`SQLITE_FULL`). Nothing of the command was kept;
    /// later commands succeed once space returns.
    #[error("storage full: {0}")]
    StorageFull(String),
    /// An I/O error from SQLite (`SQLITE_IOERR*`).
    #[error("storage I/O error: {0}")]
    StorageIo(String),
    /// Any other SQLite error.
    #[error("database error: {0}")]
    Database(String),
    /// Opening or migrating the database failed.
    #[error("database setup: {0}")]
    Setup(String),
    /// The idempotency key was used before with a different request.
    #[error("idempotency key already used with a different request")]
    IdempotencyConflict,
    /// Too many events are waiting for the cloud.
    #[error("outbox backlog full: {pending} events pending (limit {limit})")]
    BacklogFull {
        /// Pending events now.
        pending: u64,
        /// The configured limit.
        limit: u64,
    },
    /// Accepting this order would push unconfirmed offline card money over
    /// the store's cap.
    #[error("offline card total would be {would_be} (cap {cap})")]
    OfflineCapExceeded {
        /// Exposure after this order.
        would_be: i64,
        /// The cap.
        cap: i64,
    },
    /// An offline card sale in another currency than the store's (or with
    /// no store currency): the cap is in the store's currency.
    #[error("offline card sale in {order}; the store's offline cap is in {}", store.map_or("no currency", |c| c.code()))]
    OfflineCurrency {
        /// The order's currency.
        order: o2c_protocol::Currency,
        /// The store's (`[store] currency`).
        store: Option<o2c_protocol::Currency>,
    },
    /// A return that does not fit its (local) order: its refusal names
    /// the code and the request field at fault.
    #[error("return refused: {0}")]
    ReturnRefused(o2c_protocol::returns::Refusal),
    /// No such order.
    #[error("order {0} not found")]
    OrderNotFound(OrderId),
    /// An order of another store was submitted.
    #[error("order belongs to store {0}, not this one")]
    WrongStore(String),
    /// An ack that covers seqs never assigned.
    #[error("ack covers seq {seq}, but the last assigned seq is {head}")]
    InvalidAck {
        /// The offending seq.
        seq: u64,
        /// The last assigned seq.
        head: u64,
    },
    /// Serialising an order or envelope failed.
    #[error("encode: {0}")]
    Encode(String),
    /// A stored row could not be read back.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The writer thread has stopped (shutdown or a fatal error).
    #[error("the store writer has stopped")]
    WriterGone,
}

impl StoreError {
    /// Whether the error is the disk being full.
    pub fn is_storage_full(&self) -> bool {
        matches!(self, StoreError::StorageFull(_))
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        match e.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => StoreError::StorageFull(e.to_string()),
            Some(ErrorCode::SystemIoFailure) => StoreError::StorageIo(e.to_string()),
            _ => StoreError::Database(e.to_string()),
        }
    }
}

impl From<o2c_protocol::MoneyError> for StoreError {
    fn from(e: o2c_protocol::MoneyError) -> Self {
        StoreError::Encode(e.to_string())
    }
}
