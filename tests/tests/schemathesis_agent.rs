//! The agent's OpenAPI document states what the agent enforces: a
//! Schemathesis run (from PyPI, `deploy/dev/schemathesis.sh install`)
//! against a real `o2c-agent`'s `/openapi.json` finds no server error and
//! no response outside the document, and most of the orders it generates
//! from the document are captured (201, a new order).
//!
//! The agent runs with no broker (capture needs none) and a two-product
//! catalog holding the SKUs of the document's examples. The only help
//! Schemathesis gets is a fresh `Idempotency-Key` when it would reuse one
//! with another body, as the document says a till must not; bodies are
//! sent as generated. What still refuses orders, and what JSON Schema
//! cannot state: the payments must sum to the lines' total, `terminal_id`
//! must be the token's terminal, and an integer written as `2998.0` is
//! refused (JSON Schema counts it an integer; Schemathesis sends such
//! values on purpose). The test prints the breakdown per phase: the
//! coverage phase (boundary values around the examples) is mostly
//! captured, the fuzzing phase mostly refused for those reasons.

use std::time::Duration;

use o2c_tests::pipeline::{AgentProc, TERMINAL_TOKEN};
use o2c_tests::schemathesis::Run;
use o2c_tests::{TestEnv, free_port};

/// Fixed, so that the run is the same every time.
const SEED: u64 = 20_261_206;
/// Requests per operation in the fuzzing and stateful phases.
const MAX_EXAMPLES: u32 = 50;

const CATALOG: &str = r#"{"sku":"SKU-1","name":"Widget","category":"tools","prices":[{"currency":"CAD","minor":1499}]}
{"sku":"SKU-2","name":"Gadget","prices":[{"currency":"CAD","minor":1499}]}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_the_agent_as_its_document_says() {
    let env = TestEnv::new();
    // Nothing listens there: the sync task retries in the background.
    let mqtt = format!("mqtt://127.0.0.1:{}", free_port().expect("port"));
    let mut agent = AgentProc::start(env.path(), &env.store_id("st"), "A1", &mqtt, "")
        .await
        .expect("agent");
    agent.import_catalog(CATALOG).await.expect("catalog");
    let addr = std::fs::read_to_string(agent.db_path().with_file_name("http.addr"))
        .expect("the agent's http.addr");
    let base = format!("http://{}", addr.trim());

    let outcome = Run::new(format!("{base}/openapi.json"), &base)
        .bearer(TERMINAL_TOKEN)
        .max_examples(MAX_EXAMPLES)
        .seed(SEED)
        .unique_header("Idempotency-Key")
        .timeout(Duration::from_secs(120))
        .execute()
        .await
        .expect("schemathesis run");
    println!("{outcome}");
    outcome.assert_no_failures();

    let capture = outcome.operation("POST /v1/orders");
    let sent = capture.positive.total();
    // New orders only: a 200 is the replay of a request already sent.
    let created = capture.positive.by_status.get(&201).copied().unwrap_or(0);
    let share = f64::from(created) / f64::from(sent.max(1));
    println!(
        "POST /v1/orders: {created} of {sent} generated orders captured ({:.1}%), {:.1}% 2xx",
        100.0 * share,
        100.0 * capture.positive.accepted_fraction()
    );
    assert!(
        sent >= 100,
        "too few orders generated to measure: {}",
        capture.positive
    );
    assert!(
        share > 0.5,
        "most generated orders must be captured; POST /v1/orders {}, refused: {:?}",
        capture.positive,
        capture.refusals
    );
    // Reads of the captured orders, by the document's links.
    let read = outcome.operation("GET /v1/orders/{order_id}");
    assert!(
        read.positive.success > 0,
        "no order read back: {}",
        read.positive
    );
}
