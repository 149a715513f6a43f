//! The API's PostgreSQL side (schema `o2c_api`, migrated by the saga's
//! [`Service::Api`]): each write is one transaction on the customer's lane.
//!
//! - [`Store::create`]: the idempotency record, the order's row and its
//!   `OrderCreated` in the outbox commit together. The record is inserted
//!   first (`ON CONFLICT DO NOTHING`), so of two requests with one key,
//!   across processes too, one writes and the other answers from it: the
//!   stored 201 for the same body, a conflict for another.
//! - [`Store::cancel`]: the first cancel writes `OrderCancelled` and marks
//!   the order; a repeat answers the same without a second event.
//! - [`Store::order`] and [`Store::orders`]: reads, always of one customer
//!   (another customer's order is not found).

use o2c_protocol::catalog::Product;
use o2c_protocol::event::OrderCancelled;
use o2c_protocol::{CustomerId, Envelope, Event, KafkaTopics, Order, OrderId, SalesChannel};
use o2c_saga::Service;
use o2c_saga::db::DbError;
use o2c_saga::outbox::insert_envelopes;
use o2c_saga::pool::Pg;

const SCHEMA: &str = o2c_saga::channel::SCHEMA;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// PostgreSQL (unavailable or refused).
    #[error(transparent)]
    Db(#[from] DbError),
    /// A statement failed.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// The catalog's tables.
    #[error(transparent)]
    Catalog(#[from] o2c_catalog::CatalogError),
    /// A stored row that does not read back (a bug or a hand edit).
    #[error("stored {what} unreadable: {detail}")]
    Corrupt {
        /// Which row.
        what: &'static str,
        /// Why.
        detail: String,
    },
}

/// What a creation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// Written now; the body to answer.
    New(String),
    /// The same key and body before: the stored answer.
    Replay(String),
    /// The same key with another body.
    Conflict,
}

/// What a cancel request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancelled {
    /// `OrderCancelled` written now.
    Requested,
    /// Asked before; nothing more written.
    Already,
    /// No such order of this customer.
    NotFound,
}

/// One entry of an order's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    /// The event.
    pub event_id: String,
    /// Its type.
    pub event_type: String,
    /// The status it set, if any.
    pub status: Option<String>,
    /// Its sequence (greater is newer).
    pub status_seq: Option<i64>,
    /// Why, for a cancellation.
    pub reason: Option<String>,
    /// What happened.
    pub detail: String,
    /// When, unix ms.
    pub occurred_ms: i64,
}

/// One order of a customer, with its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    /// The order as created.
    pub order: Order,
    /// Its channel.
    pub channel: SalesChannel,
    /// When the API wrote it, unix ms.
    pub created_ms: i64,
    /// Whether the customer asked to cancel it.
    pub cancel_requested: bool,
    /// Its history, oldest first (the read model may lag the saga).
    pub history: Vec<HistoryRow>,
}

impl OrderRow {
    /// The entry with the greatest status sequence: the order's status.
    pub fn latest(&self) -> Option<&HistoryRow> {
        self.history
            .iter()
            .filter(|h| h.status.is_some())
            .max_by_key(|h| h.status_seq)
    }
}

/// The API's connections.
#[derive(Debug)]
pub struct Store {
    pg: Pg,
    topics: KafkaTopics,
}

impl Store {
    /// Connects lazily (`lanes` connections, picked by customer) and
    /// migrates the schema now.
    pub async fn open(url: &str, lanes: usize, topics: KafkaTopics) -> Result<Self, StoreError> {
        let mut client = o2c_saga::db::connect(url).await?;
        o2c_saga::db::migrate(&mut client, Service::Api).await?;
        // Prices are read from the catalog service's tables, and ship-to-home
        // stock is reserved in the inventory service's (as the catalog
        // service does): an API that starts first finds them empty, not
        // missing.
        o2c_catalog::db::migrate(&client).await?;
        o2c_saga::db::migrate(&mut client, Service::Inventory).await?;
        Ok(Self {
            pg: Pg::new(url, lanes),
            topics,
        })
    }

    /// The catalog's products among `skus` (the catalog service's schema,
    /// in the same database), by SKU.
    pub async fn products(
        &self,
        customer: &CustomerId,
        skus: &[String],
    ) -> Result<std::collections::HashMap<String, Product>, StoreError> {
        let lane = self.pg.get(customer.as_str()).await?;
        let found = o2c_catalog::pages::products(lane.client(), skus).await?;
        Ok(found.into_iter().map(|p| (p.sku.clone(), p)).collect())
    }

    /// Up to `limit` active products after `after` with a price in
    /// `currency` (see [`o2c_catalog::pages::priced_page`]).
    pub async fn priced_products(
        &self,
        customer: &CustomerId,
        currency: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<Product>, StoreError> {
        let lane = self.pg.get(customer.as_str()).await?;
        Ok(o2c_catalog::pages::priced_page(lane.client(), currency, after, limit).await?)
    }

    /// What `key` of `customer` answered before, if it was used:
    /// [`Created::Replay`] for the same body, [`Created::Conflict`] for
    /// another.
    pub async fn prior(
        &self,
        customer: &CustomerId,
        key: &str,
        request_sha256: &str,
    ) -> Result<Option<Created>, StoreError> {
        let lane = self.pg.get(customer.as_str()).await?;
        prior(lane.client(), customer, key, request_sha256).await
    }

    /// Writes `env` (an `OrderCreated` of `customer`) with its idempotency
    /// record, unless `key` was used before.
    pub async fn create(
        &self,
        customer: &CustomerId,
        key: &str,
        request_sha256: &str,
        env: &Envelope,
        response: &str,
    ) -> Result<Created, StoreError> {
        let Event::OrderCreated(order) = &env.payload else {
            return Err(StoreError::Corrupt {
                what: "creation",
                detail: format!("{} is not an OrderCreated", env.event_type()),
            });
        };
        let mut lane = self.pg.get(customer.as_str()).await?;
        let tx = lane.begin().await?;
        let order_id = order.order_id.to_string();
        let mine = tx
            .execute(
                &format!(
                    "INSERT INTO {SCHEMA}.idempotency \
                     (customer_id, key, request_sha256, order_id, response) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING"
                ),
                &[
                    &customer.as_str(),
                    &key,
                    &request_sha256,
                    &order_id,
                    &response,
                ],
            )
            .await?;
        if mine == 0 {
            // Another request with this key committed first.
            drop(tx);
            return prior(lane.client(), customer, key, request_sha256)
                .await?
                .ok_or_else(|| StoreError::Corrupt {
                    what: "idempotency record",
                    detail: "conflicted, then not found".into(),
                });
        }
        let json = serde_json::to_string(order.as_ref()).map_err(|e| StoreError::Corrupt {
            what: "order",
            detail: e.to_string(),
        })?;
        let channel = order.channel.unwrap_or(SalesChannel::Pos).as_str();
        tx.execute(
            &format!(
                "INSERT INTO {SCHEMA}.channel_orders \
                 (order_id, customer_id, channel, store_id, order_json) \
                 VALUES ($1, $2, $3, $4, $5)"
            ),
            &[
                &order_id,
                &customer.as_str(),
                &channel,
                &order.store_id.as_str(),
                &json,
            ],
        )
        .await?;
        insert_envelopes(&tx, SCHEMA, &self.topics, std::slice::from_ref(env)).await?;
        tx.commit().await?;
        Ok(Created::New(response.to_owned()))
    }

    /// Writes the customer's cancellation of `order` (minted by `mint`
    /// from the order's row; `None` for an order with no channel, which the
    /// API never writes) unless asked before.
    pub async fn cancel(
        &self,
        customer: &CustomerId,
        order: OrderId,
        mint: impl FnOnce(&Order, OrderCancelled) -> Option<Envelope>,
        reason: &str,
    ) -> Result<Cancelled, StoreError> {
        let mut lane = self.pg.get(customer.as_str()).await?;
        let tx = lane.begin().await?;
        let rows = tx
            .query(
                &format!(
                    "SELECT order_json, cancel_requested_at IS NOT NULL \
                     FROM {SCHEMA}.channel_orders \
                     WHERE order_id = $1 AND customer_id = $2 FOR UPDATE"
                ),
                &[&order.to_string(), &customer.as_str()],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(Cancelled::NotFound);
        };
        if row.get::<_, bool>(1) {
            return Ok(Cancelled::Already);
        }
        let stored = parse_order(&row.get::<_, String>(0))?;
        let env = mint(
            &stored,
            OrderCancelled {
                order_id: order,
                reason: reason.to_owned(),
            },
        )
        .ok_or_else(|| StoreError::Corrupt {
            what: "order",
            detail: format!("{order} has no web or mobile channel"),
        })?;
        tx.execute(
            &format!(
                "UPDATE {SCHEMA}.channel_orders SET cancel_requested_at = now() \
                 WHERE order_id = $1"
            ),
            &[&order.to_string()],
        )
        .await?;
        insert_envelopes(&tx, SCHEMA, &self.topics, std::slice::from_ref(&env)).await?;
        tx.commit().await?;
        Ok(Cancelled::Requested)
    }

    /// `customer`'s order `order` with its history, if it is theirs.
    pub async fn order(
        &self,
        customer: &CustomerId,
        order: OrderId,
    ) -> Result<Option<OrderRow>, StoreError> {
        let lane = self.pg.get(customer.as_str()).await?;
        let id = order.to_string();
        let rows = lane
            .client()
            .query(
                &format!(
                    "SELECT order_json, channel, \
                     (extract(epoch FROM created_at) * 1000)::bigint, \
                     cancel_requested_at IS NOT NULL \
                     FROM {SCHEMA}.channel_orders WHERE order_id = $1 AND customer_id = $2"
                ),
                &[&id, &customer.as_str()],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let history = lane
            .client()
            .query(
                &format!(
                    "SELECT event_id, event_type, status, status_seq, reason, detail, occurred_ms \
                     FROM {SCHEMA}.history WHERE order_id = $1 ORDER BY occurred_ms, event_id"
                ),
                &[&id],
            )
            .await?
            .iter()
            .map(|h| HistoryRow {
                event_id: h.get(0),
                event_type: h.get(1),
                status: h.get(2),
                status_seq: h.get(3),
                reason: h.get(4),
                detail: h.get(5),
                occurred_ms: h.get(6),
            })
            .collect();
        Ok(Some(OrderRow {
            order: parse_order(&row.get::<_, String>(0))?,
            channel: parse_channel(&row.get::<_, String>(1))?,
            created_ms: row.get(2),
            cancel_requested: row.get(3),
            history,
        }))
    }

    /// `customer`'s orders, newest first: at most `limit`, created before
    /// `before` (an order id from a previous page) when given; each with its
    /// latest status only.
    pub async fn orders(
        &self,
        customer: &CustomerId,
        limit: i64,
        before: Option<OrderId>,
    ) -> Result<Vec<OrderRow>, StoreError> {
        let lane = self.pg.get(customer.as_str()).await?;
        let before = before.map(|b| b.to_string());
        let rows = lane
            .client()
            .query(
                &format!(
                    "SELECT o.order_json, o.channel, \
                     (extract(epoch FROM o.created_at) * 1000)::bigint, \
                     o.cancel_requested_at IS NOT NULL, \
                     h.event_id, h.event_type, h.status, h.status_seq, h.reason, h.detail, \
                     h.occurred_ms \
                     FROM {SCHEMA}.channel_orders o \
                     LEFT JOIN LATERAL (SELECT * FROM {SCHEMA}.history x \
                       WHERE x.order_id = o.order_id AND x.status IS NOT NULL \
                       ORDER BY x.status_seq DESC LIMIT 1) h ON true \
                     WHERE o.customer_id = $1 AND ($2::text IS NULL OR (o.created_at, o.order_id) < \
                       (SELECT created_at, order_id FROM {SCHEMA}.channel_orders \
                        WHERE order_id = $2 AND customer_id = $1)) \
                     ORDER BY o.created_at DESC, o.order_id DESC LIMIT $3"
                ),
                &[&customer.as_str(), &before, &limit],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let latest = r.get::<_, Option<String>>(4).map(|event_id| HistoryRow {
                    event_id,
                    event_type: r.get(5),
                    status: r.get(6),
                    status_seq: r.get(7),
                    reason: r.get(8),
                    detail: r.get(9),
                    occurred_ms: r.get(10),
                });
                Ok(OrderRow {
                    order: parse_order(&r.get::<_, String>(0))?,
                    channel: parse_channel(&r.get::<_, String>(1))?,
                    created_ms: r.get(2),
                    cancel_requested: r.get(3),
                    history: latest.into_iter().collect(),
                })
            })
            .collect()
    }
}

async fn prior(
    client: &tokio_postgres::Client,
    customer: &CustomerId,
    key: &str,
    request_sha256: &str,
) -> Result<Option<Created>, StoreError> {
    let rows = client
        .query(
            &format!(
                "SELECT request_sha256, response FROM {SCHEMA}.idempotency \
                 WHERE customer_id = $1 AND key = $2"
            ),
            &[&customer.as_str(), &key],
        )
        .await?;
    Ok(rows.first().map(|row| {
        if row.get::<_, String>(0) == request_sha256 {
            Created::Replay(row.get(1))
        } else {
            Created::Conflict
        }
    }))
}

fn parse_order(json: &str) -> Result<Order, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
        what: "order",
        detail: e.to_string(),
    })
}

fn parse_channel(s: &str) -> Result<SalesChannel, StoreError> {
    s.parse().map_err(|detail| StoreError::Corrupt {
        what: "channel",
        detail,
    })
}
