//! Writer-only capacity check (no HTTP): N captures from C concurrent
//! tasks straight into the store, in a temp dir.
//!
//! `cargo run --release --example store_load -- [N] [C]`
// Load generators and tests measure and wait on real time.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::time::Instant;

use o2c_agent::metrics::Metrics;
use o2c_agent::store::{NewCapture, Store, StoreOptions};
use o2c_protocol::{
    AgentId, CardAuthorization, Currency, Fulfillment, Money, Order, OrderId, OrderLine, Payment,
    StoreId, TerminalId,
};

fn order() -> Order {
    let cad = Currency::from_code("CAD").expect("CAD");
    Order {
        order_id: OrderId::from_uuid(uuid::Uuid::now_v7()).expect("v7"),
        store_id: StoreId::new("S001").expect("id"),
        terminal_id: TerminalId::new("T1").expect("id"),
        currency: cad,
        lines: vec![OrderLine {
            sku: "SKU-1".into(),
            quantity: 2,
            unit_price: Money::new(1499, cad),
            category: None,
        }],
        payments: vec![Payment::Card {
            amount: Money::new(2998, cad),
            token: "tok_abc".into(),
            brand: "visa".into(),
            last4: "4242".into(),
            authorization: CardAuthorization::Online,
        }],
        fulfillment: Fulfillment::CarryOut {},
        customer: None,
        captured_at: time::OffsetDateTime::UNIX_EPOCH,
        catalog_version: None,
        stock_check: None,
        channel: None,
        customer_id: None,
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(20_000);
    let c = args.get(1).copied().unwrap_or(256);
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = Metrics::new();
    let opts = StoreOptions::new(
        dir.path().join("agent.db"),
        StoreId::new("S001").expect("id"),
        AgentId::new("S001-A1").expect("id"),
    );
    let store = Store::open(opts, o2c_agent::metrics::StoreMetrics::default()).expect("open");
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..c {
        let (store, next) = (store.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break;
                }
                store
                    .capture(NewCapture {
                        order: order(),
                        idempotency_key: format!("k{i}"),
                        request_sha256: [0; 32],
                        traceparent: None,
                    })
                    .await
                    .expect("capture");
            }
        });
    }
    tasks.join_all().await;
    let secs = start.elapsed().as_secs_f64();
    println!("{n} captures in {secs:.2}s = {:.0}/s", n as f64 / secs);
    drop(metrics);
    store.close().await.expect("close");
}
