//! A mixed fleet: a store agent built on the previous contract (1.0),
//! simulated by that version's golden events, syncs into today's cloud;
//! its orders complete, and every status message and ack today's cloud
//! sends it is one the 1.0 reader accepts (its kept JSON Schema, which
//! refuses any field it does not know). Issue 14. The one exception is the
//! documented fallback for a status added later (contract 1.6's
//! `dispatched` and `delivered`): the 1.0 agent decodes each update of a
//! message on its own and skips one whose status it does not know, so such
//! updates are taken out before the rest of the message is checked, and
//! are not applied.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use o2c_protocol::topic::Channel;
use o2c_protocol::{EventId, OrderId};
use o2c_tests::raw_agent::{RawAgent, frame};
use o2c_tests::saga::SagaWorld;
use serde_json::Value;

const OLD: &str = "1.0";

/// Statuses added after 1.0, which the 1.0 agent skips (docs/schemas.md).
const ADDED_SINCE: [&str; 2] = ["dispatched", "delivered"];

fn contract(rel: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../protocol/schemas")
        .join(OLD)
        .join(rel);
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{path:?}: {e}")))
        .unwrap()
}

/// A golden 1.0 store event, as that agent would write it for this
/// test's store: its ids are the test's, its shape the golden file's.
fn old_event(golden: &str, store: &str, agent: &str, seq: u64) -> (String, Vec<u8>) {
    let mut v = contract(&format!("golden/{golden}"));
    let order = OrderId::from_uuid(uuid::Uuid::now_v7())
        .unwrap()
        .to_string();
    v["event_id"] = EventId::from_uuid(uuid::Uuid::now_v7())
        .unwrap()
        .to_string()
        .into();
    v["store_id"] = store.into();
    v["agent_id"] = agent.into();
    v["seq"] = seq.into();
    v["payload"]["store_id"] = store.into();
    v["payload"]["order_id"] = order.clone().into();
    (order, serde_json::to_vec(&v).unwrap())
}

fn accepted_by(schema: &Value, bytes: &[u8], what: &str) {
    let validator = jsonschema::validator_for(schema).expect("schema");
    let instance: Value = serde_json::from_slice(bytes).unwrap_or_else(|e| {
        panic!(
            "{what} is not JSON ({e}): {}",
            String::from_utf8_lossy(bytes)
        )
    });
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "a {OLD} agent refuses this {what}: {errors:#?}\n{instance}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_on_the_previous_contract_syncs_and_its_orders_complete() {
    let w = SagaWorld::start(&["all"], "", "").await.expect("world");
    let store = w.env.store_id("s1");
    let agent = "OLD-A1";
    let mut old = RawAgent::connect(w.mosq.port(), &store, agent).await;

    let mut orders = Vec::new();
    let mut events = Vec::new();
    for (seq, golden) in [
        "OrderCreated.card.json",
        "OrderCreated.cash.json",
        "OrderCreated.ship_gift.json",
    ]
    .into_iter()
    .enumerate()
    {
        let (order, bytes) = old_event(golden, &store, agent, seq as u64 + 1);
        orders.push(order);
        events.push(bytes);
    }
    old.publish(frame(agent, &events)).await;

    let ack_schema = contract("Ack.json");
    let status_schema = contract("StatusMessage.json");
    let mut acked = 0;
    let mut status: HashMap<String, String> = HashMap::new();
    let mut newest: HashMap<String, time::OffsetDateTime> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked < 3
        || orders
            .iter()
            .any(|o| status.get(o).map(String::as_str) != Some("completed"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(r) = old.next(left).await else {
            panic!("timed out: acked {acked}, status {status:?}\n{}", w.logs());
        };
        match r.channel {
            Channel::Acks => {
                accepted_by(&ack_schema, &r.payload, "ack");
                let ack: Value = serde_json::from_slice(&r.payload).unwrap();
                assert_eq!(ack["rejected"].as_array().map_or(0, Vec::len), 0, "{ack}");
                acked = ack["through_seq"].as_u64().unwrap();
            }
            _ => {
                let all: Vec<Value> = serde_json::from_slice(&r.payload).unwrap();
                let (updates, skipped): (Vec<Value>, Vec<Value>) = all
                    .into_iter()
                    .partition(|u| !ADDED_SINCE.contains(&u["status"].as_str().unwrap_or("")));
                for u in &skipped {
                    assert!(u.is_object(), "{u}");
                }
                accepted_by(
                    &status_schema,
                    &serde_json::to_vec(&updates).unwrap(),
                    "status message",
                );
                // Applied as the 1.0 agent did: per order, the update with
                // the newest `occurred_at` wins. Updates of different saga
                // topics may arrive in any order (the publisher reads the
                // topics independently): `completed` can come before
                // `inventory_confirmed`.
                for u in updates {
                    let (id, st) = (
                        u["order_id"].as_str().unwrap(),
                        u["status"].as_str().unwrap(),
                    );
                    let at = time::OffsetDateTime::parse(
                        u["occurred_at"].as_str().unwrap(),
                        &time::format_description::well_known::Rfc3339,
                    )
                    .unwrap();
                    if newest.get(id).is_none_or(|seen| at > *seen) {
                        newest.insert(id.to_owned(), at);
                        status.insert(id.to_owned(), st.to_owned());
                    }
                }
            }
        }
    }
    // The saga did the work for real: one capture per card or gift card.
    assert_eq!(w.psp.captures_of(&orders[0]).await.unwrap(), 1);
    assert_eq!(w.psp.captures_of(&orders[1]).await.unwrap(), 0, "cash");
}
