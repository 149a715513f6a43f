//! In-store returns (issue 20), against the real services: the agent's
//! `POST /v1/orders/{id}/returns`, the ingest, Kafka, the saga on
//! PostgreSQL, the payment simulator and the order API.
//!
//! - A partial return of a card sale is refunded once at the processor,
//!   restocked at the store, and shown at the till; a second return of the
//!   same line is refused at the till (422, naming the line) and nothing
//!   more is refunded.
//! - A card sale returned for cash is accepted with no processor call.
//! - A web order is returned in a store (buy online, return in store): the
//!   store cannot check it, so it is accepted locally, then the cloud
//!   checks it against the web order, refunds the web order's card and
//!   restocks at the store; a second return of more than is left is
//!   refused by the cloud, with its SKU, and the till shows it. The web
//!   customer gets one mail for the return's refund. A return of an order
//!   the cloud has never seen waits, answered by nobody.
//! - A card return accepted while the processor hangs is owed, not
//!   dead-lettered, and refunded once by the reconciler when it is back,
//!   across a kill of the saga.

use std::time::Duration;

use o2c_tests::api::{ApiProc, product_line, token, web_order};
use o2c_tests::notify::NotifyProc;
use o2c_tests::saga::returns::{card_refund, request_return, return_body, wait_return};
use o2c_tests::saga::{SagaWorld, Tender, capture, order_body, wait_status};
use o2c_tests::smtp::SmtpServer;
use reqwest::Method;
use serde_json::{Value, json};

const SAGA: Duration = Duration::from_secs(120);

async fn records(w: &SagaWorld, topic: &str) -> i64 {
    o2c_tests::topic_record_count(&w.brokers, &w.env.topic(topic))
        .await
        .expect("count records")
}

/// `(on_hand, return movements)` of `sku` at `warehouse`.
async fn stock(w: &SagaWorld, sku: &str, warehouse: &str) -> (i64, i64) {
    let db = w.db().await.expect("db");
    let on_hand = db
        .query_opt(
            "SELECT on_hand FROM o2c_inventory.stock WHERE sku = $1 AND warehouse = $2",
            &[&sku, &warehouse],
        )
        .await
        .expect("stock")
        .map_or(0, |r| r.get::<_, i64>(0));
    let moves = db
        .query_one(
            "SELECT count(*) FROM o2c_inventory.movements \
             WHERE sku = $1 AND warehouse = $2 AND kind = 'return'",
            &[&sku, &warehouse],
        )
        .await
        .expect("movements")
        .get::<_, i64>(0);
    (on_hand, moves)
}

/// The processor's refunds of `order` as `(amount, capture)`.
async fn refunds(w: &SagaWorld, order: &str) -> Vec<(i64, String)> {
    let s = w.psp.stats().await.expect("psp stats");
    s["refunds"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["order_id"] == order)
        .map(|r| {
            (
                r["amount_minor"].as_i64().unwrap_or(-1),
                r["capture_id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn created(status: u16, v: &Value) -> String {
    assert_eq!(status, 201, "{v}");
    v["return_id"].as_str().expect("return_id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_return_is_refunded_and_restocked_then_the_same_line_again_is_refused() {
    let w = SagaWorld::start(&["all"], "", "").await.expect("world");
    let store = w.agent.store_id.clone();
    let id = capture(
        &w.agent,
        "r-1",
        &order_body("SKU-R", 2, &Tender::Card("tok_ret_1".into()), false),
    )
    .await
    .expect("capture");
    wait_status(&w.agent, &id, "completed", SAGA)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", w.logs()));
    let (before, _) = stock(&w, "SKU-R", &store).await;

    // One of the two units, back on the card it was paid with.
    let body = return_body(&[("SKU-R", 1)], card_refund("tok_ret_1"));
    let (status, v) = request_return(&w.agent, &id, "ret-1", &body)
        .await
        .expect("return");
    let ret = created(status, &v);
    assert_eq!(v["verified_locally"], true, "{v}");
    assert_eq!(v["amount_minor"], 1000, "{v}");
    assert_eq!(v["status"], "requested", "{v}");
    // A retry of the request is the same return.
    let (again, v2) = request_return(&w.agent, &id, "ret-1", &body)
        .await
        .expect("retry");
    assert_eq!(again, 200, "{v2}");
    assert_eq!(v2["return_id"], ret.as_str());

    let done = wait_return(&w.agent, &ret, "return_refunded", SAGA)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", w.logs()));
    assert_eq!(done["amount_minor"], 1000, "{done}");
    assert_eq!(done["status"], "refunded", "{done}");
    let refunded = refunds(&w, &id).await;
    assert_eq!(refunded.len(), 1, "one refund: {refunded:?}");
    assert_eq!(refunded[0].0, 1000);
    assert_eq!(stock(&w, "SKU-R", &store).await, (before + 1, 1));
    // The order itself stays completed.
    wait_status(&w.agent, &id, "completed", SAGA)
        .await
        .expect("the order's status is its own");

    // Two more of that line: one is left. Refused at the till, naming it.
    let body = return_body(&[("SKU-R", 2)], json!({"method": "cash"}));
    let (status, v) = request_return(&w.agent, &id, "ret-2", &body)
        .await
        .expect("second return");
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "over_return", "{v}");
    assert_eq!(v["error"]["field"], "lines[0].quantity", "{v}");

    // Nothing else was sent, refunded or restocked.
    assert_eq!(records(&w, "returns.requested").await, 1);
    assert_eq!(records(&w, "returns.accepted").await, 1);
    assert_eq!(records(&w, "returns.refused").await, 0);
    assert_eq!(refunds(&w, &id).await.len(), 1);
    assert_eq!(stock(&w, "SKU-R", &store).await, (before + 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_sale_is_returned_for_cash_with_no_processor_call() {
    let w = SagaWorld::start(&["all"], "", "").await.expect("world");
    let id = capture(
        &w.agent,
        "c-1",
        &order_body("SKU-C", 3, &Tender::Card("tok_ret_cash".into()), false),
    )
    .await
    .expect("capture");
    wait_status(&w.agent, &id, "completed", SAGA)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", w.logs()));
    let body = return_body(&[("SKU-C", 3)], json!({"method": "cash"}));
    let (status, v) = request_return(&w.agent, &id, "cash-1", &body)
        .await
        .expect("return");
    let ret = created(status, &v);
    assert_eq!(v["amount_minor"], 3000, "{v}");
    let done = wait_return(&w.agent, &ret, "return_accepted", SAGA)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", w.logs()));
    assert_eq!(done["amount_minor"], 3000, "{done}");
    assert_eq!(done["refund"]["method"], "cash", "{done}");
    let accepted = o2c_tests::consume_all(&w.brokers, &w.env.topic("returns.accepted"), 1, SAGA)
        .await
        .expect("accepted");
    let env = o2c_protocol::Envelope::decode(&accepted[0].payload).expect("envelope");
    let o2c_protocol::Event::ReturnAccepted(a) = env.payload else {
        panic!("a ReturnAccepted");
    };
    assert_eq!((a.amount.minor, a.tender), (3000, None));
    assert_eq!(a.store_id.as_str(), w.agent.store_id);
    // Cash from the till: the processor is not called, no RefundIssued.
    assert!(refunds(&w, &id).await.is_empty());
    assert_eq!(records(&w, "refunds.issued").await, 0);
    let store = w.agent.store_id.clone();
    assert_eq!(stock(&w, "SKU-C", &store).await.1, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_order_is_returned_in_a_store_and_checked_by_the_cloud() {
    let w = SagaWorld::start(&["all"], "", "").await.expect("world");
    let api = ApiProc::start(w.env.path(), &w.settings, "")
        .await
        .expect("api");
    let dir = w.env.path().join("smtp");
    std::fs::create_dir_all(&dir).expect("smtp dir");
    let server = SmtpServer::start(&dir).await.expect("smtp server");
    let notify = NotifyProc::start(
        w.env.path(),
        "ret",
        &w.settings,
        &w.settings.prefix,
        &server.url(),
        "retry_base_ms = 200\npoll_ms = 20",
    )
    .await
    .expect("notify");
    api.import_catalog(w.env.path(), &product_line("SKU-W", 1500));
    let created_order = api
        .call(
            Method::POST,
            "/v1/orders",
            Some(&token("ada")),
            Some("web-1"),
            Some(&web_order("SKU-W", 2, 1500, true)),
        )
        .await;
    assert_eq!(created_order.status, 201, "{}", created_order.text);
    let web = created_order.json["order_id"]
        .as_str()
        .expect("order_id")
        .to_owned();
    // The carrier delivers it; the order completes.
    o2c_tests::wait::wait_for_value(
        &format!("web order {web} completed"),
        || {
            let t = token("ada");
            let api = &api;
            let web = web.clone();
            async move {
                let r = api
                    .call(
                        Method::GET,
                        &format!("/v1/orders/{web}"),
                        Some(&t),
                        None,
                        None,
                    )
                    .await;
                (r.json["status"] == "completed", r.json)
            }
        },
        SAGA,
    )
    .await
    .unwrap_or_else(|(e, last)| panic!("{e}: {last:?}\n{}", w.logs()));

    // The store has never seen the order: accepted locally, unverified.
    let store = w.agent.store_id.clone();
    let body = return_body(&[("SKU-W", 1)], card_refund("tok_web_1"));
    let (status, v) = request_return(&w.agent, &web, "boris-1", &body)
        .await
        .expect("return");
    let ret = created(status, &v);
    assert_eq!(v["verified_locally"], false, "{v}");
    assert_eq!(v["amount_minor"], Value::Null, "{v}");
    let done = wait_return(&w.agent, &ret, "return_refunded", SAGA)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", w.logs()));
    assert_eq!(done["amount_minor"], 1500, "the web price: {done}");
    let refunded = refunds(&w, &web).await;
    assert_eq!(refunded.len(), 1, "{refunded:?}");
    assert_eq!(refunded[0].0, 1500);
    assert_eq!(stock(&w, "SKU-W", &store).await.1, 1, "restocked here");

    // Two more: one is left. The till cannot know; the cloud refuses.
    let body = return_body(&[("SKU-W", 2)], json!({"method": "cash"}));
    let (status, v) = request_return(&w.agent, &web, "boris-2", &body)
        .await
        .expect("second return");
    let second = created(status, &v);
    let refused = wait_return(&w.agent, &second, "return_refused", SAGA)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", w.logs()));
    assert_eq!(refused["cloud_reason"], "over_return", "{refused}");
    assert_eq!(refused["cloud_sku"], "SKU-W", "{refused}");
    assert_eq!(refused["status"], "refused", "{refused}");

    // A return of an order the cloud has never seen is held, not answered.
    let unknown = o2c_protocol::OrderId::from_uuid(uuid::Uuid::now_v7())
        .expect("order id")
        .to_string();
    let (status, v) = request_return(&w.agent, &unknown, "boris-3", &body)
        .await
        .expect("unknown order");
    let held = created(status, &v);
    let db = w.db().await.expect("db");
    o2c_tests::wait::wait_for_value(
        "the unknown order's return held",
        || {
            let db = &db;
            let unknown = unknown.clone();
            async move {
                let row = db
                    .query_opt(
                        "SELECT state FROM o2c_order.orders WHERE order_id = $1",
                        &[&unknown],
                    )
                    .await
                    .ok()
                    .flatten()
                    .map(|r| r.get::<_, String>(0));
                (row.as_deref().is_some_and(|s| s.contains("held")), row)
            }
        },
        SAGA,
    )
    .await
    .unwrap_or_else(|(e, last)| panic!("{e}: {last:?}\n{}", w.logs()));
    let v = w
        .agent
        .get(&format!("/v1/returns/{held}"))
        .await
        .expect("held return");
    assert_eq!(v["status"], "requested", "{v}");
    assert_eq!(records(&w, "returns.accepted").await, 1);
    assert_eq!(records(&w, "returns.refused").await, 1);
    assert_eq!(refunds(&w, &web).await.len(), 1);

    // The web customer is told of the return's refund, once; the refusal
    // was said at the till.
    let want = format!("<{web}.return_refunded.{ret}@shop.test>");
    o2c_tests::wait::wait_until_named(
        "the return's refund mailed",
        || async {
            server
                .messages()
                .is_ok_and(|m| m.iter().any(|m| m.message_id == want))
        },
        SAGA,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\nnotify: {}", notify.log_tail()));
    let mails = server.messages().expect("messages");
    let returned: Vec<_> = mails
        .iter()
        .filter(|m| m.message_id.contains("return_refunded"))
        .collect();
    assert_eq!(returned.len(), 1, "{returned:?}");
    assert_eq!(returned[0].rcpt_tos, ["ada@example.com"]);
    assert!(
        returned[0].body.contains("15.00 CAD to your card"),
        "{}",
        returned[0].body
    );
}

/// Whether the payment service owes a return's refund for `order`.
async fn return_owed(w: &SagaWorld, order: &str) -> bool {
    let Ok(db) = w.db().await else { return false };
    db.query_opt(
        "SELECT (state::jsonb ->> 'return_owed') = 'true' FROM o2c_payment.orders \
         WHERE order_id = $1",
        &[&order],
    )
    .await
    .ok()
    .flatten()
    .and_then(|r| r.get::<_, Option<bool>>(0))
    .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_return_while_the_processor_hangs_is_refunded_once_it_is_back() {
    // Retries at 100, 200 and 400 ms: without the owed refund, the return
    // would be dead-lettered within a second and never refunded.
    let saga = "retry_base_ms = 100\ncapture_reconcile_secs = 1\ncapture_stuck_secs = 2";
    let psp = "timeout_ms = 500\nbreaker_open_ms = 1000";
    let mut w = SagaWorld::start(&["all"], saga, psp).await.expect("world");
    let id = capture(
        &w.agent,
        "h-1",
        &order_body("SKU-H", 2, &Tender::Card("tok_ret_hang".into()), false),
    )
    .await
    .expect("capture");
    wait_status(&w.agent, &id, "completed", SAGA)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", w.logs()));

    // The processor hangs (its ledger kept); a unit comes back on the card.
    // The return is accepted and its refund owed, not dead-lettered.
    w.psp.freeze().expect("freeze");
    let body = return_body(&[("SKU-H", 1)], card_refund("tok_ret_hang"));
    let (status, v) = request_return(&w.agent, &id, "hang-1", &body)
        .await
        .expect("return");
    let ret = created(status, &v);
    wait_return(&w.agent, &ret, "return_accepted", SAGA)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", w.logs()));
    if let Err(e) =
        o2c_tests::wait::wait_until_named("the return's refund owed", || return_owed(&w, &id), SAGA)
            .await
    {
        let db = w.db().await.expect("db");
        let state: Vec<String> = db
            .query(
                "SELECT state FROM o2c_payment.orders WHERE order_id = $1",
                &[&id],
            )
            .await
            .expect("state")
            .iter()
            .map(|r| r.get(0))
            .collect();
        panic!("{e}: payment state {state:?}\n{}", w.logs());
    }
    w.wait_groups_caught_up(SAGA).await.expect("caught up");

    // The saga dies too; the processor comes back, then the saga. The
    // reconciler refunds under the return's key, once.
    w.sagas[0].kill().expect("kill");
    w.psp.thaw().expect("thaw");
    w.sagas[0].restart().await.expect("restart");
    let done = wait_return(&w.agent, &ret, "return_refunded", SAGA)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", w.logs()));
    assert_eq!(done["amount_minor"], 1000, "{done}");
    assert!(!return_owed(&w, &id).await);
    let refunded = refunds(&w, &id).await;
    assert_eq!(refunded.len(), 1, "{refunded:?}");
    assert_eq!(refunded[0].0, 1000);
    assert_eq!(records(&w, "refunds.issued").await, 1);
    let outcome = "o2c_saga_payment_reconciled_total{outcome=\"return_refunded\"}";
    assert_eq!(w.metric(outcome).await, 1.0, "after the restart");
    let dead = o2c_tests::topic_record_count(&w.brokers, &w.env.topic("o2c.dlq"))
        .await
        .expect("dlq");
    assert_eq!(dead, 0, "nothing dead-lettered");
}
