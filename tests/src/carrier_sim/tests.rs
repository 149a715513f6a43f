//! The carrier simulator driven through its router (`oneshot`, no socket),
//! and once through [`serve`] on a port of its own.

use super::*;
use axum::body::Body;
use axum::http::Request;
use serde_json::{Value, json};
use tower::ServiceExt;

/// Long enough that nothing moves on its own during a test.
const NEVER: Duration = Duration::from_secs(24 * 3600);

fn still() -> Router {
    router_with(SimConfig {
        dispatch_after: NEVER,
        deliver_after: NEVER,
    })
}

fn book_request(shipment_id: &str, name: &str) -> BookRequest {
    BookRequest {
        shipment_id: shipment_id.into(),
        reference: format!("order-{shipment_id}"),
        address: o2c_protocol::Address {
            name: name.into(),
            line1: "1 Main St".into(),
            line2: None,
            city: "Montreal".into(),
            region: Some("QC".into()),
            postal_code: "H2X 1Y4".into(),
            country: "CA".into(),
        },
        units: 2,
    }
}

struct Answer {
    status: u16,
    replayed: bool,
    body: Value,
}

async fn call(app: &Router, method: &str, uri: &str, key: Option<&str>, body: Body) -> Answer {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    let resp = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let replayed = resp.headers().get("idempotent-replayed").is_some();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = if bytes.is_empty() || status == 200 && bytes.as_ref() == b"ok" {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    Answer {
        status,
        replayed,
        body,
    }
}

async fn book(app: &Router, key: &str, req: &BookRequest) -> Answer {
    let body = Body::from(serde_json::to_vec(req).unwrap());
    call(app, "POST", "/v1/shipments", Some(key), body).await
}

async fn track(app: &Router, tracking: &str) -> Answer {
    let uri = format!("/v1/shipments/{tracking}");
    call(app, "GET", &uri, None, Body::empty()).await
}

async fn cancel(app: &Router, tracking: &str) -> Answer {
    let uri = format!("/v1/shipments/{tracking}/cancel");
    call(app, "POST", &uri, Some("cancel-x"), Body::from("{}")).await
}

async fn advance(app: &Router, tracking: &str, status: &str) -> Answer {
    let uri = format!("/v1/control/shipments/{tracking}/advance");
    let body = Body::from(json!({ "status": status }).to_string());
    call(app, "POST", &uri, None, body).await
}

async fn stats(app: &Router) -> Value {
    call(app, "GET", "/v1/stats", None, Body::empty())
        .await
        .body
}

#[tokio::test]
async fn booking_replays_the_same_shipment() {
    let app = still();
    let req = book_request("s1", "Ada Lovelace");
    let first = book(&app, "s1", &req).await;
    assert_eq!((first.status, first.replayed), (201, false));
    assert_eq!(
        first.body,
        json!({"tracking_number": "SP0000000001", "carrier": "simpost", "status": "booked"})
    );
    let again = book(&app, "s1", &req).await;
    assert_eq!((again.status, again.replayed), (200, true));
    assert_eq!(again.body, first.body);
    let s = stats(&app).await;
    assert_eq!(
        s["bookings"],
        json!([{
            "shipment_id": "s1",
            "reference": "order-s1",
            "tracking_number": "SP0000000001",
            "status": "booked",
            "book_requests": 2,
        }])
    );
    assert_eq!(
        (s["requests"].as_u64(), s["cancels"].as_u64()),
        (Some(2), Some(0))
    );
    // The next booking takes the next number.
    let second = book(&app, "s2", &book_request("s2", "Grace Hopper")).await;
    assert_eq!(second.body["tracking_number"], "SP0000000002");
}

#[tokio::test]
async fn the_same_key_with_another_body_is_refused() {
    let app = still();
    assert_eq!(
        book(&app, "s1", &book_request("s1", "Ada")).await.status,
        201
    );
    let other = book(&app, "s1", &book_request("s1", "Someone Else")).await;
    assert_eq!(other.status, 422);
    assert_eq!(other.body, json!({"error": "idempotency_key_reused"}));
    assert_eq!(
        stats(&app).await["bookings"].as_array().map(Vec::len),
        Some(1)
    );
}

#[tokio::test]
async fn bad_requests_are_400_with_a_json_error() {
    let app = still();
    let body = || Body::from(serde_json::to_vec(&book_request("s1", "Ada")).unwrap());
    let no_key = call(&app, "POST", "/v1/shipments", None, body()).await;
    assert_eq!(no_key.status, 400);
    assert_eq!(no_key.body, json!({"error": "idempotency_key_required"}));
    for bad in ["{", "{}", r#"{"shipment_id":"s1"}"#, "[1]"] {
        let a = call(&app, "POST", "/v1/shipments", Some("s1"), Body::from(bad)).await;
        assert_eq!(a.status, 400, "{bad}");
        assert_eq!(a.body, json!({"error": "malformed_request"}), "{bad}");
    }
    assert_eq!(
        track(&app, "SP0000000001").await.body,
        json!({"error": "unknown_shipment"})
    );
    assert_eq!(track(&app, "nonsense").await.status, 404);
    assert_eq!(cancel(&app, "SP0000000001").await.status, 404);
    assert_eq!(advance(&app, "SP0000000001", "delivered").await.status, 404);
    let health = call(&app, "GET", "/healthz", None, Body::empty()).await;
    assert_eq!(health.status, 200);
}

#[tokio::test]
async fn reject_is_permanent_and_stored() {
    let app = still();
    let req = book_request("s1", "Mr Reject Me");
    let first = book(&app, "s1", &req).await;
    assert_eq!((first.status, first.replayed), (422, false));
    assert_eq!(first.body, json!({"error": "address_rejected"}));
    let again = book(&app, "s1", &req).await;
    assert_eq!((again.status, again.replayed), (422, true));
    assert_eq!(again.body, first.body);
    assert_eq!(stats(&app).await["bookings"], json!([]));
}

#[tokio::test]
async fn flaky_fails_twice_then_books() {
    let app = still();
    let req = book_request("s1", "flaky fred");
    for _ in 0..2 {
        let a = book(&app, "s1", &req).await;
        assert_eq!((a.status, a.replayed), (503, false));
    }
    let a = book(&app, "s1", &req).await;
    assert_eq!(
        (a.status, a.body["tracking_number"].as_str()),
        (201, Some("SP0000000001"))
    );
    assert_eq!(stats(&app).await["bookings"][0]["book_requests"], 3);
}

#[tokio::test]
async fn hold_stays_booked_until_advanced() {
    // No time needed to pass: anything not held is delivered at once.
    let app = router_with(SimConfig {
        dispatch_after: Duration::ZERO,
        deliver_after: Duration::ZERO,
    });
    let a = book(&app, "s1", &book_request("s1", "Please Hold")).await;
    assert_eq!((a.status, a.body["status"].as_str()), (201, Some("booked")));
    let tn = "SP0000000001";
    assert_eq!(track(&app, tn).await.body["status"], "booked");
    let moved = advance(&app, tn, "in_transit").await;
    assert_eq!(
        (moved.status, moved.body["status"].as_str()),
        (200, Some("in_transit"))
    );
    assert_eq!(track(&app, tn).await.body["status"], "in_transit");
    assert_eq!(
        advance(&app, tn, "delivered").await.body["status"],
        "delivered"
    );
    // Never backwards, and only to a forward status.
    let back = advance(&app, tn, "in_transit").await;
    assert_eq!(
        (back.status, back.body["status"].as_str()),
        (409, Some("delivered"))
    );
    assert_eq!(advance(&app, tn, "booked").await.status, 400);
    assert_eq!(stats(&app).await["bookings"][0]["status"], "delivered");
}

#[tokio::test]
async fn with_no_delays_a_booking_reads_delivered() {
    let app = router_with(SimConfig {
        dispatch_after: Duration::ZERO,
        deliver_after: Duration::ZERO,
    });
    let req = book_request("s1", "Ada");
    assert_eq!(book(&app, "s1", &req).await.status, 201);
    assert_eq!(
        track(&app, "SP0000000001").await.body["status"],
        "delivered"
    );
    let replay = book(&app, "s1", &req).await;
    assert_eq!(
        (replay.status, replay.body["status"].as_str()),
        (200, Some("delivered"))
    );
    // Too late to cancel.
    let late = cancel(&app, "SP0000000001").await;
    assert_eq!(
        (late.status, late.body["status"].as_str()),
        (409, Some("delivered"))
    );
}

#[test]
fn time_moves_a_shipment_along() {
    let cfg = SimConfig::default();
    let booked_at = Instant::now();
    let mut ship = Shipment {
        key: "s1".into(),
        shipment_id: "s1".into(),
        reference: "o1".into(),
        tracking_number: "SP0000000001".into(),
        booked_at,
        held: false,
        advanced: None,
        cancelled: false,
    };
    let at = |ms| booked_at + Duration::from_millis(ms);
    for (ms, status) in [
        (0, CarrierStatus::Booked),
        (199, CarrierStatus::Booked),
        (200, CarrierStatus::InTransit),
        (699, CarrierStatus::InTransit),
        (700, CarrierStatus::Delivered),
    ] {
        assert_eq!(status_at(&ship, &cfg, at(ms)), status, "+{ms} ms");
    }
    // Control moves it ahead of time, never back.
    ship.advanced = Some(CarrierStatus::InTransit);
    assert_eq!(status_at(&ship, &cfg, at(0)), CarrierStatus::InTransit);
    assert_eq!(status_at(&ship, &cfg, at(700)), CarrierStatus::Delivered);
    ship.held = true;
    ship.advanced = None;
    assert_eq!(status_at(&ship, &cfg, at(10_000)), CarrierStatus::Booked);
    ship.cancelled = true;
    assert_eq!(status_at(&ship, &cfg, at(10_000)), CarrierStatus::Cancelled);
    // Huge delays do not overflow.
    let never = SimConfig {
        dispatch_after: Duration::MAX,
        deliver_after: Duration::MAX,
    };
    ship.held = false;
    ship.cancelled = false;
    assert_eq!(status_at(&ship, &never, at(10_000)), CarrierStatus::Booked);
}

#[tokio::test]
async fn cancel_before_pick_up_only() {
    let app = still();
    assert_eq!(
        book(&app, "s1", &book_request("s1", "Ada")).await.status,
        201
    );
    let done = cancel(&app, "SP0000000001").await;
    assert_eq!(
        (done.status, done.body["status"].as_str()),
        (200, Some("cancelled"))
    );
    let again = cancel(&app, "SP0000000001").await;
    assert_eq!(
        (again.status, again.body["status"].as_str()),
        (200, Some("cancelled"))
    );
    assert_eq!(
        track(&app, "SP0000000001").await.body["status"],
        "cancelled"
    );
    assert_eq!(
        advance(&app, "SP0000000001", "in_transit").await.status,
        409
    );

    assert_eq!(
        book(&app, "s2", &book_request("s2", "Grace")).await.status,
        201
    );
    assert_eq!(
        advance(&app, "SP0000000002", "in_transit").await.status,
        200
    );
    let late = cancel(&app, "SP0000000002").await;
    assert_eq!(late.status, 409);
    assert_eq!(
        late.body,
        json!({"tracking_number": "SP0000000002", "carrier": "simpost", "status": "in_transit"})
    );
    let s = stats(&app).await;
    assert_eq!(s["cancels"], 1);
    assert_eq!(s["bookings"][0]["status"], "cancelled");
    assert_eq!(s["bookings"][1]["status"], "in_transit");
}

#[tokio::test]
async fn fail_next_injects_then_stops() {
    let app = still();
    let body = Body::from(json!({"count": 2, "status": 503}).to_string());
    assert_eq!(
        call(&app, "POST", "/v1/control/fail-next", None, body)
            .await
            .status,
        200
    );
    // Control and stats are not affected.
    assert_eq!(stats(&app).await["requests"], 0);
    let req = book_request("s1", "Ada");
    let a = book(&app, "s1", &req).await;
    assert_eq!(
        (a.status, a.body.clone()),
        (503, json!({"error": "injected"}))
    );
    assert_eq!(track(&app, "SP0000000001").await.status, 503);
    // Nothing was stored: the key books afresh.
    let a = book(&app, "s1", &req).await;
    assert_eq!((a.status, a.replayed), (201, false));
    let s = stats(&app).await;
    assert_eq!(s["requests"], 3);
    assert_eq!(s["bookings"][0]["book_requests"], 1);

    let body = Body::from(json!({"count": 1, "status": 200}).to_string());
    assert_eq!(
        call(&app, "POST", "/v1/control/fail-next", None, body)
            .await
            .status,
        400
    );
}

#[tokio::test]
async fn serves_on_a_port_of_its_own() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, SimConfig::default(), async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{base}/v1/shipments"))
        .header("idempotency-key", "s1")
        .json(&book_request("s1", "Ada"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let info: ShipmentInfo = resp.json().await.unwrap();
    assert_eq!(
        info,
        ShipmentInfo {
            tracking_number: "SP0000000001".into(),
            carrier: CARRIER.into(),
            status: CarrierStatus::Booked,
        }
    );
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
