//! Shipment tracking (issue 20), against the real services: the saga,
//! Kafka, PostgreSQL, the agent, `o2c-cloud notify` with an SMTP server of
//! the test's own, and the carrier simulator (`o2c-carrier-sim`).
//!
//! - A ship-to-home order is booked at the carrier once, shows
//!   `dispatched` and then `delivered` at the store as the carrier moves
//!   the parcel, and completes only after delivery.
//! - A void before pick-up cancels the booking at the carrier, publishes
//!   `ShipmentCancelled`, refunds, and tells the customer; no shipment
//!   notice goes out.
//! - A booking the carrier refuses for good cancels the order and refunds
//!   it; one the carrier answers 503 to is booked on a later try, once.
//! - A shipping service killed (-9) while it waits for the answer to a
//!   booking the carrier has made books it again after the restart under
//!   the same key: one booking, one dispatch, one delivery.

use std::time::Duration;

use o2c_tests::notify::NotifyProc;
use o2c_tests::saga::{SagaProc, SagaWorld, Tender, capture, order_body, wait_status};
use o2c_tests::smtp::SmtpServer;
use o2c_tests::wait::wait_until_named;
use serde_json::Value;

const SAGA: Duration = Duration::from_secs(120);

/// A ship-to-home card order to `name`, with `email` if given.
fn parcel_order(token: &str, name: &str, email: Option<&str>) -> Value {
    let mut body = order_body("SKU-P", 1, &Tender::Card(token.to_owned()), true);
    body["fulfillment"]["address"]["name"] = Value::from(name);
    if let Some(e) = email {
        body["customer"] = serde_json::json!({ "email": e });
    }
    body
}

/// The carrier's one booking of `order`, once it exists.
async fn booking(w: &SagaWorld, order: &str) -> Value {
    wait_until_named(
        &format!("a booking of {order}"),
        || async {
            w.carrier
                .bookings_of(order)
                .await
                .is_ok_and(|b| !b.is_empty())
        },
        SAGA,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", w.logs()));
    let mut all = w.carrier.bookings_of(order).await.expect("bookings");
    assert_eq!(all.len(), 1, "one booking per order: {all:?}");
    all.remove(0)
}

async fn records(w: &SagaWorld, topic: &str) -> i64 {
    o2c_tests::topic_record_count(&w.brokers, &w.env.topic(topic))
        .await
        .expect("count records")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ship_to_home_order_is_dispatched_delivered_then_completed_at_the_store() {
    // No order service yet: nothing completes the order before the test
    // has seen `delivered` at the store.
    let mut w = SagaWorld::start(&["payment", "inventory", "shipping", "status"], "", "")
        .await
        .expect("world");
    let id = capture(&w.agent, "p1", &parcel_order("tok_ok_p1", "HOLD Ada", None))
        .await
        .expect("capture");
    wait_status(&w.agent, &id, "shipment_scheduled", SAGA)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", w.logs()));
    let b = booking(&w, &id).await;
    assert_eq!(b["status"], "booked", "{b}");
    let tracking = b["tracking_number"].as_str().expect("tracking").to_owned();

    w.carrier
        .advance(&tracking, "in_transit")
        .await
        .expect("pick up");
    wait_status(&w.agent, &id, "dispatched", SAGA)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", w.logs()));
    w.carrier
        .advance(&tracking, "delivered")
        .await
        .expect("deliver");
    wait_status(&w.agent, &id, "delivered", SAGA)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", w.logs()));

    let order = SagaProc::start(w.env.path(), &w.settings, "order")
        .await
        .expect("order service");
    w.sagas.push(order);
    wait_status(&w.agent, &id, "completed", SAGA)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", w.logs()));

    // Booked once (the tracker looked at the parcel many times), one event
    // per step, the tracking number in the dispatch.
    let b = booking(&w, &id).await;
    assert_eq!(b["book_requests"], 1, "{b}");
    assert_eq!(b["status"], "delivered", "{b}");
    assert_eq!(records(&w, "shipments.dispatched").await, 1);
    assert_eq!(records(&w, "shipments.delivered").await, 1);
    assert_eq!(records(&w, "shipments.cancelled").await, 0);
    let dispatched =
        o2c_tests::consume_all(&w.brokers, &w.env.topic("shipments.dispatched"), 1, SAGA)
            .await
            .expect("dispatched");
    let env = o2c_protocol::Envelope::decode(&dispatched[0].payload).expect("envelope");
    let o2c_protocol::Event::ShipmentDispatched(d) = env.payload else {
        panic!("a ShipmentDispatched");
    };
    assert_eq!(d.tracking_number, tracking);
    assert_eq!(d.carrier, "simpost");
    let db = w.db().await.expect("db");
    let row = db
        .query_one(
            "SELECT state, tracking_number FROM o2c_shipping.shipments WHERE order_id = $1",
            &[&id],
        )
        .await
        .expect("shipment row");
    assert_eq!(row.get::<_, String>(0), "delivered");
    assert_eq!(row.get::<_, Option<String>>(1), Some(tracking));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_void_before_pick_up_cancels_the_booking_and_a_refused_one_cancels_the_order() {
    let w = SagaWorld::start(&["all"], "", "").await.expect("world");
    let a = &w.agent;
    let dir = w.env.path().join("smtp");
    std::fs::create_dir_all(&dir).expect("smtp dir");
    let server = SmtpServer::start(&dir).await.expect("smtp server");
    let notify = NotifyProc::start(
        w.env.path(),
        "ship",
        &w.settings,
        &w.settings.prefix,
        &server.url(),
        "retry_base_ms = 200\npoll_ms = 20",
    )
    .await
    .expect("notify");

    // Held at the carrier (never picked up on its own), then voided.
    let held = capture(
        a,
        "held",
        &parcel_order("tok_ok_h", "HOLD Bo", Some("bo@shop.test")),
    )
    .await
    .expect("capture");
    // Refused by the carrier for good; and one it fails twice with 503.
    let refused = capture(a, "refused", &parcel_order("tok_ok_r", "REJECT Cy", None))
        .await
        .expect("capture");
    let flaky = capture(a, "flaky", &parcel_order("tok_ok_f", "FLAKY Di", None))
        .await
        .expect("capture");

    let b = booking(&w, &held).await;
    assert_eq!(b["status"], "booked", "{b}");
    wait_status(a, &held, "shipment_scheduled", SAGA)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", w.logs()));
    a.cancel(&held).await.expect("void before pick-up");
    wait_status(a, &held, "refunded", SAGA)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", w.logs()));
    wait_until_named(
        "the booking cancelled at the carrier",
        || async { booking(&w, &held).await["status"] == "cancelled" },
        SAGA,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", w.logs()));
    assert_eq!(w.psp.refunds_of(&held).await.expect("psp"), 1);

    // The refused booking cancels the order, which is refunded.
    wait_status(a, &refused, "refunded", SAGA)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", w.logs()));
    let db = w.db().await.expect("db");
    let reason: Option<String> = db
        .query_one(
            "SELECT state::jsonb ->> 'cancel_reason' FROM o2c_order.orders WHERE order_id = $1",
            &[&refused],
        )
        .await
        .expect("order state")
        .get(0);
    assert_eq!(reason.as_deref(), Some("shipment_carrier_rejected"));
    assert_eq!(w.psp.refunds_of(&refused).await.expect("psp"), 1);
    // The flaky one gets through, booked once.
    wait_status(a, &flaky, "completed", SAGA)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", w.logs()));
    let f = booking(&w, &flaky).await;
    assert_eq!(f["status"], "delivered", "{f}");
    assert!(
        w.metric("o2c_saga_carrier_calls_total{call=\"book\",outcome=\"retry\"}")
            .await
            >= 2.0
    );

    // Two ShipmentCancelled (the void and the refusal), no dispatch for
    // either.
    wait_until_named(
        "two ShipmentCancelled",
        || async { records(&w, "shipments.cancelled").await == 2 },
        SAGA,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", w.logs()));
    assert_eq!(
        records(&w, "shipments.dispatched").await,
        1,
        "the flaky one"
    );

    // The customer of the voided order is told: confirmed, cancelled,
    // refunded; never that it shipped.
    server
        .wait_for_messages(3, SAGA)
        .await
        .unwrap_or_else(|e| panic!("{e}\nnotify: {}", notify.log_tail()));
    let mails = server.messages().expect("messages");
    let mut subjects: Vec<String> = mails
        .iter()
        .filter(|m| m.rcpt_tos == ["bo@shop.test"])
        .map(|m| m.message_id.clone())
        .collect();
    subjects.sort();
    let want: Vec<String> = ["order_cancelled", "order_confirmed", "refund_issued"]
        .iter()
        .map(|k| format!("<{held}.{k}@shop.test>"))
        .collect();
    assert_eq!(subjects, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_the_booking_call_books_once() {
    let mut w = SagaWorld::start(
        &["order", "payment", "inventory", "shipping", "status"],
        "",
        "",
    )
    .await
    .expect("world");
    let shipping = w
        .sagas
        .iter()
        .position(|s| s.log_path().to_string_lossy().contains("saga-shipping"))
        .expect("the shipping process");
    // The carrier books at once and answers 30 s late (`SLOW`): the
    // tracker is killed while it waits, so the booking is made and its
    // answer never recorded.
    let id = capture(&w.agent, "k1", &parcel_order("tok_ok_k1", "SLOW Eve", None))
        .await
        .expect("capture");
    booking(&w, &id).await;
    w.sagas[shipping].kill().expect("kill -9 shipping");
    let db = w.db().await.expect("db");
    let row = db
        .query_one(
            "SELECT state, book_calls FROM o2c_shipping.shipments WHERE order_id = $1",
            &[&id],
        )
        .await
        .expect("shipment row");
    assert_eq!(
        row.get::<_, String>(0),
        "to_book",
        "the answer was not recorded"
    );
    assert_eq!(
        row.get::<_, i32>(1),
        1,
        "the call was counted before it was made"
    );
    w.sagas[shipping].restart().await.expect("restart shipping");
    wait_status(&w.agent, &id, "completed", SAGA)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", w.logs()));
    let b = booking(&w, &id).await;
    assert_eq!(b["status"], "delivered", "{b}");
    assert_eq!(
        b["book_requests"], 2,
        "booked again under the same key: {b}"
    );
    assert_eq!(records(&w, "shipments.dispatched").await, 1);
    assert_eq!(records(&w, "shipments.delivered").await, 1);
}
