//! `o2c-psp-sim`: a deterministic payment processor simulator, the test
//! double the saga suites, the benchmarks, the chaos runner and the demo
//! run in place of a real processor. It is not shipped with the cloud.
//!
//! - `POST /v1/captures` and `POST /v1/refunds` need an `Idempotency-Key`.
//!   A key seen before returns the stored answer (with
//!   `Idempotent-Replayed: true`); the same key with another body is a 422.
//!   5xx answers are not stored, as with real processors.
//! - Tokens: `tok_decline…` is declined (402), `tok_flaky…` answers 503
//!   to the first two tries of a key, `tok_slow…` is approved at once but
//!   every answer for it (replays included) comes [`SLOW`] late, so a
//!   client with a shorter timeout never learns it; anything else is
//!   approved. A token that looks like a card number is refused (400).
//! - `GET /v1/captures/{key}`: what became of the capture sent with that
//!   key: `{"status":"approved","id":…}`, `{"status":"declined",…}` or
//!   `{"status":"unknown"}` (never received, or only failed with a 5xx).
//! - `GET /v1/stats`: every capture and refund, for tests.
//! - A refund beyond what its capture has left (partial refunds add up)
//!   is refused: 422 `refund_exceeds_capture`.
//! - `GET /healthz`.

use crate::sim_http::{error, lock};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use tokio::net::TcpListener;

use o2c_saga::psp::{CaptureRequest, PspResponse, RefundRequest};

/// One capture or refund made.
#[derive(Debug, Clone, Serialize)]
pub struct Movement {
    /// `cap_…` or `ref_…`.
    pub id: String,
    /// The order.
    pub order_id: String,
    /// Amount, minor units.
    pub amount_minor: i64,
    /// For refunds: the capture refunded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture_id: Option<String>,
}

/// `GET /v1/stats`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Captures made.
    pub captures: Vec<Movement>,
    /// Refunds made.
    pub refunds: Vec<Movement>,
    /// Declines answered (first time per key).
    pub declines: u64,
    /// Requests received, replays included.
    pub requests: u64,
}

/// How late `tok_slow…` captures are answered.
pub const SLOW: Duration = Duration::from_secs(3);

#[derive(Debug, Default)]
struct Sim {
    /// key → (request fingerprint, status, body).
    answers: HashMap<String, (String, u16, PspResponse)>,
    /// Keys answered as captures (for `GET /v1/captures/{key}`).
    capture_keys: std::collections::HashSet<String>,
    /// key → tries seen (for `tok_flaky`).
    tries: HashMap<String, u32>,
    stats: Stats,
}

type Shared = Arc<Mutex<Sim>>;

/// The simulator's router.
pub fn router() -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/captures", post(capture))
        .route("/v1/captures/{key}", get(lookup))
        .route("/v1/refunds", post(refund))
        .route("/v1/stats", get(stats))
        .with_state(Shared::default())
}

/// Serves the simulator on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router())
        .with_graceful_shutdown(shutdown)
        .await
}

/// Looks the key up: `Err` is the answer to send right away.
fn replay(sim: &mut Sim, headers: &HeaderMap, fingerprint: &str) -> Result<String, Box<Response>> {
    sim.stats.requests += 1;
    let Some(key) = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty() && k.len() <= 255)
    else {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "idempotency_key_required",
        )));
    };
    if let Some((fp, status, body)) = sim.answers.get(key) {
        if fp != fingerprint {
            return Err(Box::new(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
            )));
        }
        let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::OK);
        let mut resp = (status, Json(body.clone())).into_response();
        resp.headers_mut().insert(
            "idempotent-replayed",
            axum::http::HeaderValue::from_static("true"),
        );
        return Err(Box::new(resp));
    }
    Ok(key.to_owned())
}

async fn capture(
    State(s): State<Shared>,
    headers: HeaderMap,
    Json(req): Json<CaptureRequest>,
) -> Response {
    let slow = req.token.starts_with("tok_slow");
    let resp = capture_now(&s, &headers, req);
    if slow {
        tokio::time::sleep(SLOW).await;
    }
    resp
}

fn capture_now(s: &Shared, headers: &HeaderMap, req: CaptureRequest) -> Response {
    let fingerprint = format!("{req:?}");
    let mut sim = lock(s);
    let key = match replay(&mut sim, headers, &fingerprint) {
        Ok(k) => k,
        Err(resp) => return *resp,
    };
    if o2c_protocol::validate::contains_card_number(&req.token) {
        return error(StatusCode::BAD_REQUEST, "card_number_not_accepted");
    }
    if req.token.starts_with("tok_flaky") {
        let tries = sim.tries.entry(key.clone()).or_default();
        *tries += 1;
        if *tries <= 2 {
            return error(StatusCode::SERVICE_UNAVAILABLE, "try_again");
        }
    }
    let (status, body) = if req.token.starts_with("tok_decline") {
        sim.stats.declines += 1;
        (
            StatusCode::PAYMENT_REQUIRED,
            PspResponse {
                id: None,
                status: "declined".into(),
                decline_code: Some("card_declined".into()),
            },
        )
    } else {
        let id = format!("cap_{}", sim.stats.captures.len() + 1);
        sim.stats.captures.push(Movement {
            id: id.clone(),
            order_id: req.order_id.clone(),
            amount_minor: req.amount_minor,
            capture_id: None,
        });
        (
            StatusCode::CREATED,
            PspResponse {
                id: Some(id),
                status: "approved".into(),
                decline_code: None,
            },
        )
    };
    sim.capture_keys.insert(key.clone());
    sim.answers
        .insert(key, (fingerprint, status.as_u16(), body.clone()));
    (status, Json(body)).into_response()
}

async fn lookup(State(s): State<Shared>, Path(key): Path<String>) -> Json<PspResponse> {
    let sim = lock(&s);
    let known = sim
        .capture_keys
        .contains(&key)
        .then(|| sim.answers.get(&key))
        .flatten();
    Json(match known {
        Some((_, _, body)) => body.clone(),
        None => PspResponse {
            id: None,
            status: "unknown".into(),
            decline_code: None,
        },
    })
}

async fn refund(
    State(s): State<Shared>,
    headers: HeaderMap,
    Json(req): Json<RefundRequest>,
) -> Response {
    let fingerprint = format!("{req:?}");
    let mut sim = lock(&s);
    let key = match replay(&mut sim, &headers, &fingerprint) {
        Ok(k) => k,
        Err(resp) => return *resp,
    };
    let Some(captured) = sim
        .stats
        .captures
        .iter()
        .find(|c| c.id == req.capture_id)
        .map(|c| c.amount_minor)
    else {
        return error(StatusCode::NOT_FOUND, "no_such_capture");
    };
    // As a processor does: the refunds of a capture (partial ones, for
    // returns) never add up to more than it took.
    let refunded: i64 = sim
        .stats
        .refunds
        .iter()
        .filter(|r| r.capture_id.as_deref() == Some(req.capture_id.as_str()))
        .map(|r| r.amount_minor)
        .sum();
    if req.amount_minor <= 0 || refunded + req.amount_minor > captured {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "refund_exceeds_capture");
    }
    let id = format!("ref_{}", sim.stats.refunds.len() + 1);
    sim.stats.refunds.push(Movement {
        id: id.clone(),
        order_id: req.order_id.clone(),
        amount_minor: req.amount_minor,
        capture_id: Some(req.capture_id.clone()),
    });
    let body = PspResponse {
        id: Some(id),
        status: "refunded".into(),
        decline_code: None,
    };
    sim.answers.insert(
        key,
        (fingerprint, StatusCode::CREATED.as_u16(), body.clone()),
    );
    (StatusCode::CREATED, Json(body)).into_response()
}

async fn stats(State(s): State<Shared>) -> Json<Stats> {
    Json(lock(&s).stats.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn post_capture(app: &Router, key: &str, token: &str) -> (u16, serde_json::Value) {
        let body = serde_json::to_vec(&CaptureRequest {
            order_id: "o1".into(),
            token: token.into(),
            amount_minor: 100,
            currency: "CAD".into(),
        })
        .unwrap();
        let resp = app
            .clone()
            .oneshot(
                Request::post("/v1/captures")
                    .header("content-type", "application/json")
                    .header("idempotency-key", key)
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn tokens_decide_and_keys_are_idempotent() {
        let app = router();
        let (s, b) = post_capture(&app, "k1", "tok_ok").await;
        assert_eq!((s, b["id"].as_str()), (201, Some("cap_1")));
        let (s, b) = post_capture(&app, "k1", "tok_ok").await;
        assert_eq!((s, b["id"].as_str()), (201, Some("cap_1")), "replayed");
        let (s, _) = post_capture(&app, "k1", "tok_other").await;
        assert_eq!(s, 422);
        let (s, b) = post_capture(&app, "k2", "tok_decline_x").await;
        assert_eq!((s, b["status"].as_str()), (402, Some("declined")));
        for _ in 0..2 {
            assert_eq!(post_capture(&app, "k3", "tok_flaky").await.0, 503);
        }
        assert_eq!(post_capture(&app, "k3", "tok_flaky").await.0, 201);
        assert_eq!(post_capture(&app, "k4", "4111111111111111").await.0, 400);
        for (key, status) in [("k1", "approved"), ("k2", "declined"), ("k3", "approved")] {
            assert_eq!(get_lookup(&app, key).await["status"], status, "{key}");
        }
        assert_eq!(get_lookup(&app, "k1").await["id"], "cap_1");
        // Never received, or refused before any capture: unknown.
        for key in ["nope", "k4"] {
            assert_eq!(get_lookup(&app, key).await["status"], "unknown", "{key}");
        }
    }

    async fn get_lookup(app: &Router, key: &str) -> serde_json::Value {
        let resp = app
            .clone()
            .oneshot(
                Request::get(format!("/v1/captures/{key}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }
}
