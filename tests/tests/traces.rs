//! One trace per order (issue 17): an order captured at an agent and run
//! to `completed` leaves, in a real OTLP receiver (Arize Phoenix), one
//! trace with spans from the agent, the ingest and the saga services, whose
//! parent links follow the order's way from the till to the status applied
//! back at the store.

use std::collections::BTreeSet;
use std::time::Duration;

use o2c_tests::saga::{SagaWorld, Tender, WorldOptions, capture, order_body, wait_status};
use o2c_tests::traces::{StoredSpan, ancestry, require_phoenix, telemetry_table, trace_spans};
use o2c_tests::wait::wait_for_value;

const SAGA: Duration = Duration::from_secs(120);

/// What a whole trace holds: the names of the spans that must be there.
const EXPECTED: &[&str] = &[
    "agent.capture",
    "agent.group_commit",
    "agent.sync.publish",
    "agent.sync.ack",
    "ingest.event",
    "ingest.validate",
    "ingest.produce",
    "ingest.ack",
    "payment.processor_call",
    "status.publish",
    "agent.status.apply",
];

/// The saga services whose spans are named `{service}.consume`.
const SERVICES: &[&str] = &["order", "payment", "inventory", "shipping"];

fn complete(spans: &[StoredSpan]) -> bool {
    let names: BTreeSet<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    EXPECTED.iter().all(|n| names.contains(n))
        && SERVICES
            .iter()
            .all(|s| names.contains(format!("{s}.consume").as_str()))
        && longest_status_chain(spans).is_some_and(|c| c.len() > 12 && chain_services(&c) >= 3)
        && dangling(spans).is_empty()
}

/// How many saga services a status chain passes through. The wait holds
/// out for the completed status's chain (three or more): an earlier
/// status's (`inventory_confirmed`, two services) can be whole first.
fn chain_services(chain: &[String]) -> usize {
    chain
        .iter()
        .filter_map(|n| n.strip_suffix(".consume"))
        .collect::<BTreeSet<_>>()
        .len()
}

/// Spans whose parent has not (yet) reached the receiver. Each process
/// exports in its own batches, so an `agent.status.apply` can land before
/// the `status.publish` it hangs from: the trace is whole only when none is
/// left.
fn dangling(spans: &[StoredSpan]) -> Vec<&str> {
    spans
        .iter()
        .filter(|s| {
            s.parent_id
                .as_ref()
                .is_some_and(|p| !spans.iter().any(|x| &x.span_id == p))
        })
        .map(|s| s.name.as_str())
        .collect()
}

/// The longest parent chain, root first, that ends at an
/// `agent.status.apply` span: the completed status's.
fn longest_status_chain(spans: &[StoredSpan]) -> Option<Vec<String>> {
    spans
        .iter()
        .filter(|s| s.name == "agent.status.apply")
        .map(|s| {
            let mut chain = ancestry(spans, s);
            chain.reverse();
            chain
        })
        .max_by_key(Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_leaves_one_trace_from_the_till_to_its_completed_status() {
    let phoenix = require_phoenix().await;
    let project = format!("o2c-test-{}", uuid::Uuid::now_v7().simple());
    let tables = telemetry_table(&phoenix, &project);
    let opts = WorldOptions {
        tables: &tables,
        ..WorldOptions::default()
    };
    let w = SagaWorld::start_with(&["all"], &opts).await.expect("world");
    let body = order_body("SKU-T", 1, &Tender::Card("tok_trace".into()), true);
    let id = capture(&w.agent, "trace-1", &body).await.expect("capture");
    wait_status(&w.agent, &id, "completed", SAGA)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", w.logs()));

    // The agent names the order's trace.
    let view = w
        .agent
        .get(&format!("/v1/orders/{id}"))
        .await
        .expect("order");
    let trace_id = view["trace_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no trace_id in {view}"))
        .to_owned();
    assert_eq!(trace_id.len(), 32, "{trace_id}");

    // Spans leave each process in batches (every 0.5 s): poll the receiver
    // until the whole way is there.
    let spans = wait_for_value(
        "the order's whole trace in Phoenix",
        || {
            let (phoenix, project, trace_id) = (&phoenix, &project, &trace_id);
            async move {
                let spans = trace_spans(phoenix, project, trace_id)
                    .await
                    .unwrap_or_default();
                (complete(&spans), spans)
            }
        },
        Duration::from_secs(60),
    )
    .await
    .unwrap_or_else(|(e, last)| {
        let last = last.unwrap_or_default();
        let names: Vec<&str> = last.iter().map(|s| s.name.as_str()).collect();
        panic!(
            "{e}: spans so far {names:?}; with a parent outside the trace {:?}",
            dangling(&last)
        )
    });

    // One trace: every span but the capture has its parent in the trace
    // (the wait above holds out for every parent), and the capture is the
    // only root.
    let roots: Vec<&StoredSpan> = spans.iter().filter(|s| s.parent_id.is_none()).collect();
    assert_eq!(
        roots.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["agent.capture"],
        "one root"
    );
    // The completed status's chain follows the order's way: the till's
    // capture, the agent's publish, the ingest, three or more saga
    // services in turn, the status publisher, the agent's apply.
    let chain = longest_status_chain(&spans).expect("a status chain");
    let at = |name: &str| {
        chain
            .iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("{name} not on the chain {chain:?}"))
    };
    assert_eq!(chain.first().map(String::as_str), Some("agent.capture"));
    assert_eq!(chain.last().map(String::as_str), Some("agent.status.apply"));
    assert!(at("agent.capture") < at("agent.sync.publish"), "{chain:?}");
    assert!(at("agent.sync.publish") < at("ingest.event"), "{chain:?}");
    assert!(at("ingest.event") < at("ingest.produce"), "{chain:?}");
    assert!(at("status.publish") < at("agent.status.apply"), "{chain:?}");
    assert!(
        chain_services(&chain) >= 3,
        "saga services on the chain: {chain:?}"
    );
    assert!(
        chain
            .iter()
            .any(|n| n.ends_with(".relay") || n.ends_with(".outbox")),
        "{chain:?}"
    );
}
