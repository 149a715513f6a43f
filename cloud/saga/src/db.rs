//! PostgreSQL plumbing shared by the saga services: connecting, numbered
//! migrations per schema and single reads of the idempotent-consumer
//! ledger and per-order state (stored as JSON; the writes are set-based,
//! in [`super::batch`]).
//!
//! A [`Lane`] is one connection with a cache of prepared statements (the
//! SQL of a service never changes, so each text is parsed once per
//! connection instead of once per call); a [`Tx`] is a transaction on it
//! that may carry many events (see `consumer`) and sends its outbox
//! notification once.

use std::collections::HashMap;
use std::sync::Mutex;

use o2c_protocol::Envelope;
use serde::de::DeserializeOwned;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row, Statement, Transaction};

use crate::service::Service;

/// Why a database step failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
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
    /// A stored state row does not decode (or a state does not encode).
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
    /// Encoding an event for the outbox (a bug).
    #[error("encode: {0}")]
    Encode(String),
    /// A pooled connection was not there.
    #[error("{0} closed")]
    Closed(&'static str),
}

/// `(version, name, sql)`; `{schema}` in the SQL names the service's schema. Common
/// and own migrations share one numbering and are applied in version order.
type Migration = (i32, &'static str, &'static str);

const COMMON: &[Migration] = &[
    (
        1,
        "processed_events_outbox",
        include_str!("../migrations/common/001_processed_events_outbox.sql"),
    ),
    (
        3,
        "retention_indexes",
        include_str!("../migrations/common/003_retention_indexes.sql"),
    ),
    (
        4,
        "order_owner",
        include_str!("../migrations/common/004_order_owner.sql"),
    ),
];

fn own_migrations(service: Service) -> &'static [Migration] {
    match service {
        Service::Order => &[(
            2,
            "order",
            include_str!("../migrations/order/002_order.sql"),
        )],
        Service::Payment => &[
            (
                2,
                "psp_calls",
                include_str!("../migrations/payment/002_psp_calls.sql"),
            ),
            (
                5,
                "capture_recovery",
                include_str!("../migrations/payment/005_capture_recovery.sql"),
            ),
            (
                6,
                "refunds_owed",
                include_str!("../migrations/payment/006_refunds_owed.sql"),
            ),
            (
                11,
                "returns_owed",
                include_str!("../migrations/payment/011_returns_owed.sql"),
            ),
        ],
        Service::Inventory => &[
            (
                2,
                "stock",
                include_str!("../migrations/inventory/002_stock.sql"),
            ),
            (
                7,
                "stock_version",
                include_str!("../migrations/inventory/007_stock_version.sql"),
            ),
            (
                8,
                "store_reservations",
                include_str!("../migrations/inventory/008_store_reservations.sql"),
            ),
        ],
        Service::Shipping => &[
            (
                2,
                "notifications",
                include_str!("../migrations/shipping/002_notifications.sql"),
            ),
            (
                9,
                "shipments",
                include_str!("../migrations/shipping/009_shipments.sql"),
            ),
        ],
        Service::State => &[(
            2,
            "status_seq",
            include_str!("../migrations/state/002_status_seq.sql"),
        )],
        Service::Api => &[(
            2,
            "channel_orders",
            include_str!("../migrations/api/002_channel_orders.sql"),
        )],
        Service::Notify => &[
            (
                2,
                "messages",
                include_str!("../migrations/notify/002_messages.sql"),
            ),
            (
                10,
                "message_ref",
                include_str!("../migrations/notify/010_message_ref.sql"),
            ),
        ],
    }
}

/// Connects and drives the connection on a task of its own.
pub async fn connect(url: &str) -> Result<Client, DbError> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %e, "postgres connection ended");
        }
    });
    set_up_session(&client).await?;
    Ok(client)
}

/// Session settings of every saga connection.
///
/// Every statement is prepared once per connection and takes its rows as
/// an array (`WHERE order_id = ANY($1)`, `unnest($1)`). Left to itself,
/// PostgreSQL switches a prepared statement to a generic plan after five
/// runs and keeps it; planned while the tables were nearly empty (a fresh
/// service, a new schema) that plan is a sequential scan, which then
/// compares every row of a growing table with every array element. A
/// custom plan per execution costs a few tens of microseconds per
/// statement and always sees the table's real size.
pub(crate) async fn set_up_session(client: &Client) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute("SET plan_cache_mode = force_custom_plan")
        .await
}

/// One connection of a service and its prepared statements.
#[derive(Debug)]
pub struct Lane {
    client: Client,
    stmts: Mutex<HashMap<String, Statement>>,
}

impl Lane {
    /// Connects a new lane.
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        Ok(Self {
            client: connect(url).await?,
            stmts: Mutex::new(HashMap::new()),
        })
    }

    /// The connection (for reads outside a transaction).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Whether the connection is gone.
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Begins a transaction.
    pub async fn begin(&mut self) -> Result<Tx<'_>, tokio_postgres::Error> {
        let Lane { client, stmts } = self;
        Ok(Tx {
            tx: client.transaction().await?,
            stmts,
            wakes: Mutex::new(Vec::new()),
        })
    }
}

/// A transaction on a [`Lane`]; statements are prepared once per lane.
pub struct Tx<'a> {
    tx: Transaction<'a>,
    stmts: &'a Mutex<HashMap<String, Statement>>,
    wakes: Mutex<Vec<String>>,
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx").finish_non_exhaustive()
    }
}

impl Tx<'_> {
    async fn stmt(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        let cached = self
            .stmts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(sql)
            .cloned();
        if let Some(s) = cached {
            return Ok(s);
        }
        // Named statements outlive a rolled-back transaction, so caching
        // one prepared here is safe.
        let s = self.tx.prepare(sql).await?;
        self.stmts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    /// Executes `sql`; returns the rows changed.
    pub async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        let s = self.stmt(sql).await?;
        self.tx.execute(&s, params).await
    }

    /// Runs `sql`; returns its rows.
    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let s = self.stmt(sql).await?;
        self.tx.query(&s, params).await
    }

    /// Wakes this process's relays of the outbox in `schema` once the
    /// transaction commits (see [`crate::wake`]); nothing if it rolls back.
    pub fn wake_relay_at_commit(&self, schema: &str) {
        let mut wakes = self.wakes.lock().unwrap_or_else(|p| p.into_inner());
        if !wakes.iter().any(|w| w == schema) {
            wakes.push(schema.to_owned());
        }
    }

    /// Commits, then wakes the relays of the outboxes written.
    pub async fn commit(self) -> Result<(), tokio_postgres::Error> {
        self.tx.commit().await?;
        let wakes = self.wakes.into_inner().unwrap_or_else(|p| p.into_inner());
        for schema in &wakes {
            crate::wake::wake(schema);
        }
        Ok(())
    }
}

/// Applies the service's pending migrations, once, under an advisory lock
/// (several processes may start at the same time).
pub async fn migrate(client: &mut Client, service: Service) -> Result<(), DbError> {
    let all: Vec<Migration> = COMMON
        .iter()
        .chain(own_migrations(service))
        .copied()
        .collect();
    migrate_schema(client, service.schema(), all).await
}

/// The status publisher's schema: the latest update sent per order.
pub const STATUS_SCHEMA: &str = "o2c_status";

/// Applies the status publisher's pending migrations (see [`migrate`]).
pub async fn migrate_status(client: &mut Client) -> Result<(), DbError> {
    let own: &[Migration] = &[(
        1,
        "latest",
        include_str!("../migrations/status/001_latest.sql"),
    )];
    migrate_schema(client, STATUS_SCHEMA, own.to_vec()).await
}

async fn migrate_schema(
    client: &mut Client,
    schema: &'static str,
    mut all: Vec<Migration>,
) -> Result<(), DbError> {
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[&format!("o2c-migrate-{schema}")],
    )
    .await?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
             version int PRIMARY KEY, name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now())"
    ))
    .await?;
    all.sort_by_key(|m| m.0);
    for (version, name, sql) in all {
        let done = tx
            .query_opt(
                &format!("SELECT 1 FROM {schema}.schema_migrations WHERE version = $1"),
                &[&version],
            )
            .await?
            .is_some();
        if done {
            continue;
        }
        tx.batch_execute(&sql.replace("{schema}", schema))
            .await
            .map_err(|e| DbError::Migration {
                schema,
                version,
                message: e.to_string(),
            })?;
        tx.execute(
            &format!("INSERT INTO {schema}.schema_migrations (version, name) VALUES ($1, $2)"),
            &[&version, &name],
        )
        .await?;
        tracing::info!(schema, version, name, "migration applied");
    }
    tx.commit().await?;
    Ok(())
}

/// Whether `event_id` was processed already (a read outside any
/// transaction, to skip side effects early).
pub(crate) async fn is_processed(
    client: &Client,
    schema: &str,
    event_id: &str,
) -> Result<bool, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            &format!("SELECT 1 FROM {schema}.processed_events WHERE event_id = $1"),
            &[&event_id],
        )
        .await?
        .is_some())
}

/// Reads the order's state without locking, if any.
///
/// Fails with [`DbError::NotOwner`] when `event` is a store event and the
/// order was created by another store.
pub(crate) async fn read_state<S: DeserializeOwned>(
    client: &Client,
    schema: &str,
    event: &Envelope,
) -> Result<Option<S>, DbError> {
    let order_id = event.payload.order_id().to_string();
    let row = client
        .query_opt(
            &format!("SELECT state, store_id FROM {schema}.orders WHERE order_id = $1"),
            &[&order_id],
        )
        .await?;
    match row {
        None => Ok(None),
        Some(r) => {
            check_owner(event, r.get(1))?;
            let text: String = r.get(0);
            serde_json::from_str(&text)
                .map(Some)
                .map_err(DbError::State)
        }
    }
}

/// Refuses a store event (one with a seq) about an order that `owner`, a
/// different store, created. Events the cloud mints carry their cause's
/// store and no seq.
pub(crate) fn check_owner(event: &Envelope, owner: Option<&str>) -> Result<(), DbError> {
    match owner {
        // A return may name another store's order, or a web order (buy
        // online, return in store): the order service checks it instead.
        Some(owner)
            if event.seq.is_some()
                && event.event_type().needs_order_owner()
                && owner != event.store_id.as_str() =>
        {
            Err(DbError::NotOwner {
                order: event.payload.order_id().to_string(),
                store: event.store_id.to_string(),
                owner: owner.to_owned(),
            })
        }
        _ => Ok(()),
    }
}
