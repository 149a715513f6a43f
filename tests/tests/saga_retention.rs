//! Retention sweeps against a real PostgreSQL: published outbox rows past
//! their age go, in batches; an unpublished row stays however old; young
//! rows stay; the ledger is kept unless a ledger retention is set.

use std::time::Duration;

use o2c_saga::retention::{self, BATCH, Retention, Swept};
use o2c_saga::{Service, db};
use o2c_tests::TestEnv;
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

const DAY: Duration = Duration::from_secs(24 * 3600);

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.expect("connect");
    tokio::spawn(conn);
    client
}

/// `n` outbox rows written `age_days` ago, published or not, with event ids
/// starting with `tag`.
async fn outbox_rows(
    db: &tokio_postgres::Client,
    tag: &str,
    n: i64,
    age_days: i32,
    published: bool,
) {
    db.execute(
        "INSERT INTO o2c_order.outbox \
         (event_id, topic, key, event_type, store_id, agent_id, payload, created_at, published_at) \
         SELECT $1 || i, 'orders.completed', 'o' || i, 'OrderCompleted', 's', 'a', '\\x00', \
                now() - make_interval(days => $3), \
                CASE WHEN $4 THEN now() - make_interval(days => $3) END \
         FROM generate_series(1::bigint, $2::bigint) AS i",
        &[&tag, &n, &age_days, &published],
    )
    .await
    .expect("outbox rows");
}

async fn ledger_row(db: &tokio_postgres::Client, id: &str, age_days: i32) {
    db.execute(
        "INSERT INTO o2c_order.processed_events (event_id, event_type, order_id, processed_at) \
         VALUES ($1, 'InventoryConfirmed', 'o1', now() - make_interval(days => $2))",
        &[&id, &age_days],
    )
    .await
    .expect("ledger row");
}

async fn ids(db: &tokio_postgres::Client, table: &str) -> Vec<String> {
    db.query(
        &format!("SELECT event_id FROM o2c_order.{table} ORDER BY event_id"),
        &[],
    )
    .await
    .expect("ids")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[tokio::test]
async fn sweeps_old_published_outbox_rows_and_only_an_opted_in_ledger() {
    let env = TestEnv::new();
    env.require_postgres().await;
    let url = env.create_database("retention").await.expect("database");
    let mut client = connect(&url).await;
    db::migrate(&mut client, Service::Order)
        .await
        .expect("migrate");
    let versions: Vec<i32> = client
        .query(
            "SELECT version FROM o2c_order.schema_migrations ORDER BY applied_at, version",
            &[],
        )
        .await
        .expect("versions")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [1, 2, 3, 4], "applied in version order");

    // More old published rows than one batch, so the sweep loops.
    let old = 2 * BATCH + 7;
    outbox_rows(&client, "old-", old, 10, true).await;
    outbox_rows(&client, "stuck-", 1, 30, false).await;
    outbox_rows(&client, "young-", 3, 1, true).await;
    ledger_row(&client, "ledger-old", 400).await;
    ledger_row(&client, "ledger-young", 1).await;

    let cancel = CancellationToken::new();
    let outbox_only = Retention::from_hours(7 * 24, 0);
    assert!(outbox_only.is_enabled());
    let swept = retention::sweep(&client, "o2c_order", outbox_only, &cancel)
        .await
        .expect("sweep");
    assert_eq!(
        swept,
        Swept {
            outbox: old as u64,
            ledger: 0
        }
    );
    assert_eq!(
        ids(&client, "outbox").await,
        ["stuck-1", "young-1", "young-2", "young-3"],
        "an unpublished row stays however old; young rows stay"
    );
    assert_eq!(
        ids(&client, "processed_events").await,
        ["ledger-old", "ledger-young"]
    );

    let both = Retention {
        outbox: Some(7 * DAY),
        ledger: Some(14 * DAY),
    };
    let swept = retention::sweep(&client, "o2c_order", both, &cancel)
        .await
        .expect("sweep");
    assert_eq!(
        swept,
        Swept {
            outbox: 0,
            ledger: 1
        }
    );
    assert_eq!(ids(&client, "processed_events").await, ["ledger-young"]);
    assert_eq!(ids(&client, "outbox").await.len(), 4);

    let none = Retention::from_hours(0, 0);
    assert!(!none.is_enabled());
    let swept = retention::sweep(&client, "o2c_order", none, &cancel)
        .await
        .expect("sweep");
    assert_eq!(swept, Swept::default());
}
