//! The cloud order API's OpenAPI document states what the API enforces: a
//! Schemathesis run (from PyPI, `deploy/dev/schemathesis.sh install`)
//! against a real `o2c-cloud api`'s `/openapi.json` finds no server error
//! and no response outside the document, and most of the orders it
//! generates from the document are accepted: over all its phases, 201 (a
//! new order) or 200 (a retry's stored answer).
//!
//! The API runs alone (its saga side on the shared Kafka) selling in three
//! currencies (the served document lists them) with a catalog holding the
//! document's example SKU at the example price in each, one customer's
//! token, and quotas above the run's size. The stateful phase reaches real
//! SKUs through the document's links from `listProducts` and `getOrder` to
//! `createOrder`. As for the agent, the only help Schemathesis gets is a fresh `Idempotency-Key` when it
//! would reuse one with another body, as the document says a client must
//! not; bodies are sent as generated. What still refuses orders, and what
//! JSON Schema cannot state: the payments must sum to the lines' total, a
//! line's SKU must be in the catalog and a stated price must be its price,
//! and a number with a decimal point beyond 2^52 is refused.

use std::time::Duration;

use o2c_tests::TestEnv;
use o2c_tests::api::{ApiProc, token};
use o2c_tests::schemathesis::Run;

/// Fixed, so that the run is the same every time.
const SEED: u64 = 20_261_206;
/// Requests per operation in the fuzzing and stateful phases.
const MAX_EXAMPLES: u32 = 50;

const CATALOG: &str = r#"{"sku":"SKU-1","name":"Widget","category":"tools","prices":[{"currency":"CAD","minor":1499},{"currency":"EUR","minor":1499},{"currency":"USD","minor":1499}]}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_the_order_api_as_its_document_says() {
    let env = TestEnv::new();
    let api = ApiProc::alone(
        &env,
        "customer_per_minute = 1000000\nanonymous_per_minute = 1000000\ncurrencies = [\"CAD\", \"EUR\", \"USD\"]",
    )
    .await
    .expect("api");
    // The document's example SKU at its example price, in each currency the
    // shop sells in.
    api.import_catalog(env.path(), CATALOG);
    let base = api.url();

    let outcome = Run::new(format!("{base}/openapi.json"), &base)
        .bearer(&token("c-schemathesis"))
        .max_examples(MAX_EXAMPLES)
        .seed(SEED)
        .unique_header("Idempotency-Key")
        .timeout(Duration::from_secs(180))
        .execute()
        .await
        .unwrap_or_else(|e| panic!("schemathesis run: {e}\n{}", api.log()));
    println!("{outcome}");
    outcome.assert_no_failures();

    let create = outcome.operation("POST /v1/orders");
    // Every phase counts, the stateful one too: it follows the document's
    // links from a product page (`orderFirstProduct`) and from a read order
    // (`orderAgain`) to real SKUs at their prices, besides orders of its
    // own making. Accepted: a new order (201), or a retry of one with its
    // key and body, answered with the stored order (200).
    let sent = create.positive.total();
    let accepted = create.positive.success;
    let created = create.positive.by_status.get(&201).copied().unwrap_or(0);
    let share = f64::from(accepted) / f64::from(sent.max(1));
    println!(
        "POST /v1/orders: {accepted} of {sent} generated orders accepted ({:.1}%), {created} \
         of them new; by phase: {:?}",
        100.0 * share,
        create.positive_by_phase
    );
    assert!(
        sent >= 100,
        "too few orders generated to measure: {}",
        create.positive
    );
    assert!(
        share > 0.5,
        "most generated orders must be accepted; POST /v1/orders {}, refused: {:?}",
        create.positive,
        create.refusals
    );
    let read = outcome.operation("GET /v1/orders/{order_id}");
    assert!(
        read.positive.success > 0,
        "no order read back: {}",
        read.positive
    );
}
