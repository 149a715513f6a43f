//! What the saga suites read back from a [`SagaWorld`]: consumer groups
//! caught up, outbox rows, stock.

use std::time::Duration;

use super::SagaWorld;
use crate::{HarnessError, wait_until_named};

/// The saga topics (without prefix) each consumer group reads: the
/// services' own subscription lists, so a topic added to a service is
/// waited for here too.
pub fn group_topics() -> Vec<(&'static str, Vec<&'static str>)> {
    use o2c_protocol::EventType;
    let topics = |types: &[EventType]| types.iter().map(|t| t.kafka_topic()).collect();
    vec![
        ("order", topics(o2c_saga::order::SUBSCRIBES)),
        ("payment", topics(o2c_saga::payment::SUBSCRIBES)),
        ("inventory", topics(o2c_saga::inventory::SUBSCRIBES)),
        ("shipping", topics(o2c_saga::shipping::SUBSCRIBES)),
        ("state", vec!["orders.events"]),
        ("status", topics(o2c_saga::status::SUBSCRIBES)),
    ]
}

impl SagaWorld {
    /// Waits until the consumer group of every saga service that runs has
    /// committed every record.
    pub async fn wait_groups_caught_up(&self, timeout: Duration) -> Result<(), HarnessError> {
        let prefix = self.env.prefix().to_owned();
        let runs = |group: &str| {
            self.sagas
                .iter()
                .any(|s| s.service == "all" || s.service == group)
        };
        wait_until_named(
            "saga consumer groups caught up",
            || {
                let prefix = prefix.clone();
                async move {
                    for (group, topics) in group_topics().into_iter().filter(|(g, _)| runs(g)) {
                        let topics: Vec<String> =
                            topics.iter().map(|t| format!("{prefix}.{t}")).collect();
                        let g = format!("{prefix}-{group}");
                        if !crate::kafka::group_caught_up(&self.brokers, &g, &topics)
                            .await
                            .unwrap_or(false)
                        {
                            return false;
                        }
                    }
                    true
                }
            },
            timeout,
        )
        .await
    }

    /// Rows in the outbox of each service that ran: `[(schema, count)]`.
    pub async fn outbox_counts(&self) -> Result<Vec<(String, i64)>, HarnessError> {
        self.outbox_counts_where("true").await
    }

    /// Rows of each service's outbox not yet published to Kafka.
    pub async fn outbox_unpublished(&self) -> Result<Vec<(String, i64)>, HarnessError> {
        self.outbox_counts_where("published_at IS NULL").await
    }

    /// Waits until every outbox row is published (to its topic and to the
    /// order history).
    pub async fn wait_outboxes_published(&self, timeout: Duration) -> Result<(), HarnessError> {
        wait_until_named(
            "outboxes published",
            || async {
                self.outbox_unpublished()
                    .await
                    .is_ok_and(|c| c.iter().all(|(_, n)| *n == 0))
            },
            timeout,
        )
        .await
    }

    async fn outbox_counts_where(&self, filter: &str) -> Result<Vec<(String, i64)>, HarnessError> {
        let db = self.db().await?;
        let mut out = Vec::new();
        for schema in [
            "o2c_order",
            "o2c_payment",
            "o2c_inventory",
            "o2c_shipping",
            "o2c_state",
        ] {
            let exists: bool = db
                .query_one(
                    "SELECT to_regclass($1) IS NOT NULL",
                    &[&format!("{schema}.outbox")],
                )
                .await
                .map_err(|source| HarnessError::Postgres {
                    what: format!("look up {schema}.outbox"),
                    source,
                })?
                .get(0);
            if !exists {
                continue;
            }
            let n: i64 = db
                .query_one(
                    &format!("SELECT count(*) FROM {schema}.outbox WHERE {filter}"),
                    &[],
                )
                .await
                .map_err(|source| HarnessError::Postgres {
                    what: format!("count {schema}.outbox"),
                    source,
                })?
                .get(0);
            out.push((schema.to_owned(), n));
        }
        Ok(out)
    }

    /// Sets `on_hand` of `sku` in the central warehouse, once the
    /// inventory service has created its tables.
    pub async fn set_stock(&self, sku: &str, on_hand: i64) -> Result<(), HarnessError> {
        let db = self.db().await?;
        wait_until_named(
            "inventory tables",
            || async {
                db.execute(
                    "INSERT INTO o2c_inventory.stock (sku, warehouse, on_hand) VALUES ($1, 'central', $2) \
                     ON CONFLICT (sku, warehouse) DO UPDATE SET on_hand = excluded.on_hand",
                    &[&sku, &on_hand],
                )
                .await
                .is_ok()
            },
            Duration::from_secs(60),
        )
        .await
    }
}
