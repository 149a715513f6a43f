//! The sender's side of `o2c_notify.messages` (PostgreSQL): take due
//! messages under a lease, record each outcome, list the dead letters.
//!
//! A message is taken by setting `leased_until` and counting the attempt in
//! one statement (`FOR UPDATE SKIP LOCKED`), so replicas never send the same
//! message at once. A sender killed mid-send leaves its lease to run out;
//! the message is then taken again.

use std::time::Duration;

use o2c_saga::notice::{Facts, Kind, SCHEMA, UNADDRESSED};
use tokio_postgres::Client;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// PostgreSQL.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// Connecting or migrating.
    #[error(transparent)]
    Db(#[from] o2c_saga::db::DbError),
}

/// A message taken for sending, with who it goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// Its row.
    pub id: i64,
    /// The order.
    pub order_id: String,
    /// What it says.
    pub kind: Kind,
    /// `email` or `webhook`.
    pub channel: String,
    /// The event that called for it.
    pub event_id: String,
    /// What its template shows.
    pub facts: Facts,
    /// Sends so far, this one included.
    pub attempts: u32,
    /// The order's e-mail address.
    pub email: Option<String>,
    /// Its customer.
    pub customer_id: Option<String>,
    /// Its store.
    pub store_id: String,
    /// `pos`, `web` or `mobile`.
    pub sales_channel: String,
    /// Its currency.
    pub currency: String,
    /// Its total, minor units.
    pub total_minor: i64,
    /// What else names it: a return's id for a return's notice, else empty.
    pub reference: String,
}

impl Claimed {
    /// The notice's stable name, `{order}.{kind}` (and `.{reference}`
    /// when it has one): its `Message-ID` and its webhook
    /// `Idempotency-Key`.
    pub fn key(&self) -> String {
        if self.reference.is_empty() {
            format!("{}.{}", self.order_id, self.kind.as_str())
        } else {
            format!(
                "{}.{}.{}",
                self.order_id,
                self.kind.as_str(),
                self.reference
            )
        }
    }
}

/// One dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dead {
    /// The order.
    pub order_id: String,
    /// Its kind.
    pub kind: String,
    /// Its channel.
    pub channel: String,
    /// Sends made.
    pub attempts: i32,
    /// Why it was given up.
    pub reason: String,
}

/// Takes up to `limit` due messages for `lease`. A message whose order's
/// `OrderCreated` has not been read yet waits for it; one whose order has
/// no address for its channel is never taken (the events' side marks it
/// `skipped`: [`UNADDRESSED`]).
pub async fn claim(
    client: &Client,
    limit: i64,
    lease: Duration,
) -> Result<Vec<Claimed>, StoreError> {
    let rows = client
        .query(
            &format!(
                "WITH due AS ( \
                   SELECT m.id FROM {SCHEMA}.messages m \
                   JOIN {SCHEMA}.contacts c ON c.order_id = m.order_id \
                   WHERE m.state = 'pending' AND m.due_at <= now() \
                   AND (m.leased_until IS NULL OR m.leased_until < now()) \
                   AND NOT {UNADDRESSED} \
                   ORDER BY m.due_at, m.id LIMIT $1 FOR UPDATE OF m SKIP LOCKED) \
                 UPDATE {SCHEMA}.messages m \
                 SET leased_until = now() + make_interval(secs => $2), attempts = m.attempts + 1 \
                 FROM due, {SCHEMA}.contacts c \
                 WHERE m.id = due.id AND c.order_id = m.order_id \
                 RETURNING m.id, m.order_id, m.kind, m.channel, m.event_id, m.facts::text, \
                 m.attempts, c.email, c.customer_id, c.store_id, c.channel, c.currency, c.total_minor, \
                 m.ref"
            ),
            &[&limit, &lease.as_secs_f64()],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id: i64 = r.get(0);
        let kind_name: String = r.get(2);
        let facts_text: String = r.get(5);
        let (Some(kind), Ok(facts)) = (
            Kind::parse(&kind_name),
            serde_json::from_str::<Facts>(&facts_text),
        ) else {
            // Written by a newer build; left for it, and said.
            tracing::warn!(id, kind = %kind_name, "a message this build cannot read; left pending");
            release(client, id).await?;
            continue;
        };
        out.push(Claimed {
            id,
            order_id: r.get(1),
            kind,
            channel: r.get(3),
            event_id: r.get(4),
            facts,
            attempts: u32::try_from(r.get::<_, i32>(6)).unwrap_or(0),
            email: r.get(7),
            customer_id: r.get(8),
            store_id: r.get(9),
            sales_channel: r.get(10),
            currency: r.get(11),
            total_minor: r.get(12),
            reference: r.get(13),
        });
    }
    Ok(out)
}

async fn release(client: &Client, id: i64) -> Result<(), StoreError> {
    client
        .execute(
            &format!(
                "UPDATE {SCHEMA}.messages SET leased_until = NULL, attempts = attempts - 1, \
                 due_at = now() + interval '1 hour' WHERE id = $1"
            ),
            &[&id],
        )
        .await?;
    Ok(())
}

/// Records message `id` as sent.
pub async fn sent(client: &Client, id: i64) -> Result<(), StoreError> {
    client
        .execute(
            &format!(
                "UPDATE {SCHEMA}.messages SET state = 'sent', sent_at = now(), \
                 leased_until = NULL, last_error = NULL WHERE id = $1"
            ),
            &[&id],
        )
        .await?;
    Ok(())
}

/// Schedules message `id` again after `after`, recording why it failed.
pub async fn retry(
    client: &Client,
    id: i64,
    after: Duration,
    reason: &str,
) -> Result<(), StoreError> {
    client
        .execute(
            &format!(
                "UPDATE {SCHEMA}.messages SET due_at = now() + make_interval(secs => $2), \
                 leased_until = NULL, last_error = $3 WHERE id = $1"
            ),
            &[&id, &after.as_secs_f64(), &reason],
        )
        .await?;
    Ok(())
}

/// Dead-letters message `id` with its reason.
pub async fn dead(client: &Client, id: i64, reason: &str) -> Result<(), StoreError> {
    client
        .execute(
            &format!(
                "UPDATE {SCHEMA}.messages SET state = 'dead', leased_until = NULL, \
                 last_error = $2 WHERE id = $1"
            ),
            &[&id, &reason],
        )
        .await?;
    Ok(())
}

/// The dead letters, newest first (at most `limit`).
pub async fn dead_letters(client: &Client, limit: i64) -> Result<Vec<Dead>, StoreError> {
    let rows = client
        .query(
            &format!(
                "SELECT order_id, kind, channel, attempts, coalesce(last_error, '') \
                 FROM {SCHEMA}.messages WHERE state = 'dead' \
                 ORDER BY created_at DESC, id DESC LIMIT $1"
            ),
            &[&limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Dead {
            order_id: r.get(0),
            kind: r.get(1),
            channel: r.get(2),
            attempts: r.get(3),
            reason: r.get(4),
        })
        .collect())
}
