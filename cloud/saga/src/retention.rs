//! Retention: without it a service's outbox and ledger grow by every event
//! it ever handled. A sweep per service, at start and then every
//! [`SWEEP_EVERY`], deletes in batches of [`BATCH`] rows:
//!
//! - **outbox** rows that are published and were written more than
//!   `saga.outbox_retention_hours` ago (default 7 days; 0 keeps them).
//!   Kafka has those events; the rows are only an audit trail. An
//!   unpublished row is never deleted, however old.
//! - **ledger** (`processed_events`) rows processed more than
//!   `saga.ledger_retention_hours` ago. Off by default: the ledger is what
//!   makes a replay or a redelivery harmless, so it must outlive every
//!   record Kafka still keeps (the config refuses less than two weeks).
//!
//! Both tables are written in time order and have a BRIN index on their
//! timestamp (migration 003), so a sweep reads only the old end.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::db::DbError;
use crate::metrics::SagaMetrics;
use crate::service::Service;

/// Time between two sweeps.
pub const SWEEP_EVERY: Duration = Duration::from_secs(600);
/// Rows deleted per statement (each its own short transaction).
pub const BATCH: i64 = 5_000;

/// How long each table keeps its rows (`None`: forever).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Published outbox rows.
    pub outbox: Option<Duration>,
    /// Ledger rows.
    pub ledger: Option<Duration>,
}

impl Retention {
    /// From `saga.outbox_retention_hours` and `saga.ledger_retention_hours`
    /// (0: forever).
    pub fn from_hours(outbox: u64, ledger: u64) -> Self {
        let hours = |h: u64| (h > 0).then(|| Duration::from_secs(h.saturating_mul(3600)));
        Self {
            outbox: hours(outbox),
            ledger: hours(ledger),
        }
    }

    /// Whether anything is ever deleted.
    pub fn is_enabled(&self) -> bool {
        self.outbox.is_some() || self.ledger.is_some()
    }
}

/// Rows one sweep deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Published outbox rows.
    pub outbox: u64,
    /// Ledger rows.
    pub ledger: u64,
}

/// Deletes `schema`'s rows past `retention`, a batch at a time, until none
/// is left or `cancel` fires.
pub async fn sweep(
    client: &Client,
    schema: &str,
    retention: Retention,
    cancel: &CancellationToken,
) -> Result<Swept, DbError> {
    let mut swept = Swept::default();
    if let Some(age) = retention.outbox {
        let sql = format!(
            "DELETE FROM {schema}.outbox WHERE id IN (SELECT id FROM {schema}.outbox \
             WHERE created_at < now() - $1::bigint * interval '1 second' AND published_at IS NOT NULL \
             LIMIT $2)"
        );
        swept.outbox = delete_all(client, &sql, age, cancel).await?;
    }
    if let Some(age) = retention.ledger {
        let sql = format!(
            "DELETE FROM {schema}.processed_events WHERE event_id IN (SELECT event_id \
             FROM {schema}.processed_events \
             WHERE processed_at < now() - $1::bigint * interval '1 second' LIMIT $2)"
        );
        swept.ledger = delete_all(client, &sql, age, cancel).await?;
    }
    Ok(swept)
}

/// Runs `sql` (parameters: age in seconds, batch size) until a run
/// deletes less than a batch.
async fn delete_all(
    client: &Client,
    sql: &str,
    age: Duration,
    cancel: &CancellationToken,
) -> Result<u64, DbError> {
    let stmt = client.prepare(sql).await?;
    let secs = i64::try_from(age.as_secs()).unwrap_or(i64::MAX);
    let mut total = 0;
    while !cancel.is_cancelled() {
        let n = client.execute(&stmt, &[&secs, &BATCH]).await?;
        total += n;
        if n < BATCH as u64 {
            break;
        }
    }
    Ok(total)
}

/// Sweeps `service`'s schema now and every [`SWEEP_EVERY`] until `cancel`
/// (and returns only then). A failed sweep is logged and tried again at the
/// next one.
pub(crate) async fn run(
    pg_url: String,
    service: Service,
    retention: Retention,
    metrics: Arc<SagaMetrics>,
    cancel: CancellationToken,
) {
    let schema = service.schema();
    loop {
        let result = async {
            let client = super::db::connect(&pg_url).await?;
            sweep(&client, schema, retention, &cancel).await
        }
        .await;
        match result {
            Ok(swept) => {
                metrics.record_retention(service, swept);
                if swept != Swept::default() {
                    tracing::info!(
                        schema,
                        outbox = swept.outbox,
                        ledger = swept.ledger,
                        "retention sweep"
                    );
                }
            }
            Err(e) => tracing::warn!(schema, error = %e, "retention sweep failed"),
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(SWEEP_EVERY) => {}
        }
    }
}
