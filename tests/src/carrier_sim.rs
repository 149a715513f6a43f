//! `o2c-carrier-sim`: a deterministic carrier simulator, the test double
//! the shipping suites, the benchmarks, the chaos runner and the demo run
//! in place of a real carrier (the sibling of [`crate::psp_sim`]). It speaks
//! the wire types of `o2c_saga::shipping::carrier` and is not shipped with
//! the cloud.
//!
//! - `POST /v1/shipments` needs an `Idempotency-Key` and a
//!   [`BookRequest`]; it books as carrier [`CARRIER`] with tracking numbers
//!   `SP0000000001`, `SP0000000002`, … (201). A key seen before answers
//!   the same booking with its current status (200,
//!   `Idempotent-Replayed: true`); the same key with another body is a 422.
//!   5xx answers are not stored, as with real carriers.
//! - Faults by the recipient's name (case-insensitive substring):
//!   `REJECT` is refused for good (422 `address_rejected`, stored);
//!   `FLAKY` answers 503 to the first two tries of a key, then books;
//!   `HOLD` books but never moves on its own; `SLOW` books at once but
//!   answers the first request of a key [`SLOW_ANSWER`] late (a client
//!   that gives up or dies first never learns the booking was made).
//! - Time: a shipment not held nor cancelled is `in_transit` once
//!   [`SimConfig::dispatch_after`] has passed since booking, and
//!   `delivered` once `dispatch_after + deliver_after` has. The status is
//!   computed when read ([`status_at`]); only control moves are stored.
//! - `GET /v1/shipments/{tracking_number}`: where it stands (404 unknown).
//! - `POST /v1/shipments/{tracking_number}/cancel`: a booked shipment is
//!   cancelled (200, again 200 once cancelled); one picked up answers 409
//!   with its state.
//! - `POST /v1/control/shipments/{tracking_number}/advance`
//!   (`{"status":"in_transit"|"delivered"}`) moves a shipment forward, and
//!   `POST /v1/control/fail-next` (`{"count":N,"status":503}`) makes the
//!   next N requests to the `/v1/shipments` routes fail: both for tests.
//! - `GET /v1/stats`: every booking, for tests. `GET /healthz`.
//!
//! Only ids are ever logged: addresses are personal data.

use crate::sim_http::{error, lock};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::time::Instant;

use o2c_saga::shipping::carrier::{BookRequest, CarrierStatus, ShipmentInfo};

/// The simulated carrier's name.
pub const CARRIER: &str = "simpost";

/// How the simulated parcels move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimConfig {
    /// From booking to pick-up (`in_transit`).
    pub dispatch_after: Duration,
    /// From pick-up to `delivered`.
    pub deliver_after: Duration,
}

impl Default for SimConfig {
    /// 200 ms to pick-up, 500 ms more to delivery (the CLI's defaults).
    fn default() -> Self {
        Self {
            dispatch_after: Duration::from_millis(200),
            deliver_after: Duration::from_millis(500),
        }
    }
}

/// One booking, as `GET /v1/stats` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Booking {
    /// Our shipment id (the booking's idempotency key).
    pub shipment_id: String,
    /// The order.
    pub reference: String,
    /// `SP…`.
    pub tracking_number: String,
    /// Where it stands now.
    pub status: CarrierStatus,
    /// `POST /v1/shipments` received with its key, replays and failed
    /// tries included.
    pub book_requests: u64,
}

/// `GET /v1/stats`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Shipments booked, in booking order.
    pub bookings: Vec<Booking>,
    /// Shipments cancelled (once each).
    pub cancels: u64,
    /// Requests to the `/v1/shipments` routes, replays and injected
    /// failures included.
    pub requests: u64,
}

/// One booked shipment.
#[derive(Debug)]
struct Shipment {
    /// The booking's idempotency key.
    key: String,
    shipment_id: String,
    reference: String,
    tracking_number: String,
    booked_at: Instant,
    /// `HOLD`: never moves on its own.
    held: bool,
    /// The furthest status control moved it to.
    advanced: Option<CarrierStatus>,
    cancelled: bool,
}

/// What a key was answered, for good.
#[derive(Debug)]
enum Answer {
    /// Booked: index into [`Sim::shipments`].
    Booked(usize),
    /// 422 `address_rejected`.
    Rejected,
}

#[derive(Debug, Default)]
struct Sim {
    cfg: SimConfig,
    shipments: Vec<Shipment>,
    /// key → (the request it came with, its answer).
    answers: HashMap<String, (BookRequest, Answer)>,
    /// key → `POST /v1/shipments` received (for `FLAKY` and the stats).
    posts: HashMap<String, u64>,
    /// Injected failures left: (count, status).
    fail_next: (u32, u16),
    cancels: u64,
    requests: u64,
}

type Shared = Arc<Mutex<Sim>>;

/// Where `ship` stands at `now`: cancelled, or the furthest of where time
/// took it (unless held) and where control moved it.
fn status_at(ship: &Shipment, cfg: &SimConfig, now: Instant) -> CarrierStatus {
    if ship.cancelled {
        return CarrierStatus::Cancelled;
    }
    let elapsed = now.saturating_duration_since(ship.booked_at);
    let by_time = if ship.held || elapsed < cfg.dispatch_after {
        CarrierStatus::Booked
    } else if elapsed < cfg.dispatch_after.saturating_add(cfg.deliver_after) {
        CarrierStatus::InTransit
    } else {
        CarrierStatus::Delivered
    };
    match ship.advanced {
        Some(a) if rank(a) > rank(by_time) => a,
        _ => by_time,
    }
}

/// Order of the forward moves; cancelled is off the line.
fn rank(s: CarrierStatus) -> u8 {
    match s {
        CarrierStatus::Booked | CarrierStatus::Cancelled => 0,
        CarrierStatus::InTransit => 1,
        CarrierStatus::Delivered => 2,
    }
}

impl Sim {
    fn info(&self, i: usize, now: Instant) -> ShipmentInfo {
        let ship = &self.shipments[i];
        ShipmentInfo {
            tracking_number: ship.tracking_number.clone(),
            carrier: CARRIER.to_owned(),
            status: status_at(ship, &self.cfg, now),
        }
    }

    /// The index of `SP{n:010}`, if booked.
    fn find(&self, tracking_number: &str) -> Option<usize> {
        let digits = tracking_number.strip_prefix("SP")?;
        if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: usize = digits.parse().ok()?;
        (1..=self.shipments.len()).contains(&n).then(|| n - 1)
    }

    /// Counts a request to the `/v1/shipments` routes; `Some` is an
    /// injected failure to answer instead.
    fn inject(&mut self) -> Option<Response> {
        self.requests += 1;
        let (left, status) = &mut self.fail_next;
        if *left == 0 {
            return None;
        }
        *left -= 1;
        let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        Some(error(status, "injected"))
    }
}

/// The simulator's router.
pub fn router_with(cfg: SimConfig) -> Router {
    let sim = Sim {
        cfg,
        ..Sim::default()
    };
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/shipments", post(book))
        .route("/v1/shipments/{tracking_number}", get(track))
        .route("/v1/shipments/{tracking_number}/cancel", post(cancel))
        .route(
            "/v1/control/shipments/{tracking_number}/advance",
            post(advance),
        )
        .route("/v1/control/fail-next", post(fail_next))
        .route("/v1/stats", get(stats))
        .with_state(Arc::new(Mutex::new(sim)))
}

/// Serves the simulator on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    cfg: SimConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router_with(cfg))
        .with_graceful_shutdown(shutdown)
        .await
}

fn replayed(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    resp
}

/// A JSON body, or the 400 to answer. serde's message is not echoed: it
/// may quote the address.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    serde_json::from_slice(body)
        .map_err(|_| Box::new(error(StatusCode::BAD_REQUEST, "malformed_request")))
}

/// How late `SLOW` bookings are first answered.
pub const SLOW_ANSWER: Duration = Duration::from_secs(30);

async fn book(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let (resp, slow) = book_now(&s, &headers, &body);
    if slow {
        tokio::time::sleep(SLOW_ANSWER).await;
    }
    resp
}

/// Books; the answer, and whether it is to come [`SLOW_ANSWER`] late.
fn book_now(s: &Shared, headers: &HeaderMap, body: &[u8]) -> (Response, bool) {
    let now = Instant::now();
    let mut sim = lock(s);
    if let Some(resp) = sim.inject() {
        return (resp, false);
    }
    let Some(key) = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty() && k.len() <= 255)
    else {
        return (
            error(StatusCode::BAD_REQUEST, "idempotency_key_required"),
            false,
        );
    };
    let posts = {
        let n = sim.posts.entry(key.to_owned()).or_default();
        *n += 1;
        *n
    };
    let req: BookRequest = match parse(body) {
        Ok(r) => r,
        Err(resp) => return (*resp, false),
    };
    if let Some((seen, answer)) = sim.answers.get(key) {
        if *seen != req {
            return (
                error(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
                false,
            );
        }
        let resp = replayed(match answer {
            Answer::Booked(i) => (StatusCode::OK, Json(sim.info(*i, now))).into_response(),
            Answer::Rejected => error(StatusCode::UNPROCESSABLE_ENTITY, "address_rejected"),
        });
        return (resp, false);
    }
    let name = req.address.name.to_ascii_uppercase();
    if name.contains("REJECT") {
        tracing::debug!(shipment_id = %req.shipment_id, "carrier sim: address rejected");
        sim.answers.insert(key.to_owned(), (req, Answer::Rejected));
        return (
            error(StatusCode::UNPROCESSABLE_ENTITY, "address_rejected"),
            false,
        );
    }
    if name.contains("FLAKY") && posts <= 2 {
        return (error(StatusCode::SERVICE_UNAVAILABLE, "try_again"), false);
    }
    let i = sim.shipments.len();
    let tracking_number = format!("SP{:010}", i + 1);
    tracing::debug!(shipment_id = %req.shipment_id, %tracking_number, "carrier sim: booked");
    sim.shipments.push(Shipment {
        key: key.to_owned(),
        shipment_id: req.shipment_id.clone(),
        reference: req.reference.clone(),
        tracking_number: tracking_number.clone(),
        booked_at: now,
        held: name.contains("HOLD"),
        advanced: None,
        cancelled: false,
    });
    sim.answers.insert(key.to_owned(), (req, Answer::Booked(i)));
    // The booking's own answer: booked, even if no time is configured to
    // pass before pick-up.
    let info = ShipmentInfo {
        tracking_number,
        carrier: CARRIER.to_owned(),
        status: CarrierStatus::Booked,
    };
    (
        (StatusCode::CREATED, Json(info)).into_response(),
        name.contains("SLOW"),
    )
}

async fn track(State(s): State<Shared>, Path(tracking_number): Path<String>) -> Response {
    let now = Instant::now();
    let mut sim = lock(&s);
    if let Some(resp) = sim.inject() {
        return resp;
    }
    match sim.find(&tracking_number) {
        Some(i) => Json(sim.info(i, now)).into_response(),
        None => error(StatusCode::NOT_FOUND, "unknown_shipment"),
    }
}

/// The client sends an `Idempotency-Key`; cancelling is idempotent by
/// itself, so it is not needed.
async fn cancel(State(s): State<Shared>, Path(tracking_number): Path<String>) -> Response {
    let now = Instant::now();
    let mut sim = lock(&s);
    if let Some(resp) = sim.inject() {
        return resp;
    }
    let Some(i) = sim.find(&tracking_number) else {
        return error(StatusCode::NOT_FOUND, "unknown_shipment");
    };
    let status = match sim.info(i, now).status {
        CarrierStatus::Booked => {
            sim.shipments[i].cancelled = true;
            sim.cancels += 1;
            tracing::debug!(%tracking_number, "carrier sim: cancelled");
            StatusCode::OK
        }
        CarrierStatus::Cancelled => StatusCode::OK,
        CarrierStatus::InTransit | CarrierStatus::Delivered => StatusCode::CONFLICT,
    };
    (status, Json(sim.info(i, now))).into_response()
}

/// `POST /v1/control/shipments/{tracking_number}/advance` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    status: CarrierStatus,
}

async fn advance(
    State(s): State<Shared>,
    Path(tracking_number): Path<String>,
    body: Bytes,
) -> Response {
    let now = Instant::now();
    let to = match parse::<Advance>(&body) {
        Ok(a) => a.status,
        Err(resp) => return *resp,
    };
    if !matches!(to, CarrierStatus::InTransit | CarrierStatus::Delivered) {
        return error(StatusCode::BAD_REQUEST, "not_a_forward_status");
    }
    let mut sim = lock(&s);
    let Some(i) = sim.find(&tracking_number) else {
        return error(StatusCode::NOT_FOUND, "unknown_shipment");
    };
    let from = sim.info(i, now).status;
    if from == CarrierStatus::Cancelled || rank(from) > rank(to) {
        return (StatusCode::CONFLICT, Json(sim.info(i, now))).into_response();
    }
    sim.shipments[i].advanced = Some(to);
    tracing::debug!(%tracking_number, ?to, "carrier sim: advanced");
    Json(sim.info(i, now)).into_response()
}

/// `POST /v1/control/fail-next` body.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FailNext {
    count: u32,
    #[serde(default = "service_unavailable")]
    status: u16,
}

fn service_unavailable() -> u16 {
    503
}

async fn fail_next(State(s): State<Shared>, body: Bytes) -> Response {
    let req = match parse::<FailNext>(&body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    if !(400..=599).contains(&req.status) {
        return error(StatusCode::BAD_REQUEST, "status_not_an_error");
    }
    lock(&s).fail_next = (req.count, req.status);
    Json(req).into_response()
}

async fn stats(State(s): State<Shared>) -> Json<Stats> {
    let now = Instant::now();
    let sim = lock(&s);
    let bookings = sim
        .shipments
        .iter()
        .map(|ship| Booking {
            shipment_id: ship.shipment_id.clone(),
            reference: ship.reference.clone(),
            tracking_number: ship.tracking_number.clone(),
            status: status_at(ship, &sim.cfg, now),
            book_requests: sim.posts.get(&ship.key).copied().unwrap_or(0),
        })
        .collect();
    Json(Stats {
        bookings,
        cancels: sim.cancels,
        requests: sim.requests,
    })
}

#[cfg(test)]
mod tests;
