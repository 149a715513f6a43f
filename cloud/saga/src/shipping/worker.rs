//! The shipping tracker's IO: the rows the step records
//! ([`NewShipments`], [`request_cancel`]), and the loop ([`Tracker`]) that
//! claims due shipments with a lease, makes the carrier call each needs and
//! records the outcome with its events.
//!
//! - A claim takes due rows (`FOR UPDATE SKIP LOCKED`) and stamps them with
//!   a lease and a token, so several shipping processes share the work and
//!   no row lock is held across a carrier call.
//! - Before a booking call, the row counts it (`book_calls`), committed: a
//!   crash after the call but before its answer is recorded leaves a row
//!   that knows the carrier may have the booking (see
//!   [`super::tracker::call_for`]). The call's `Idempotency-Key` is the
//!   shipment id, so booking again answers the same booking.
//! - The new state and its events are written in one transaction, only if
//!   the row still carries this worker's token: a worker whose lease ran
//!   out (it stalled) writes nothing, and the next holder decides afresh.
//!   An event is therefore emitted once, by the one write that moves the
//!   state on.

use std::sync::Arc;
use std::time::Duration;

use o2c_protocol::event::{ShipmentCancelled, ShipmentDelivered, ShipmentDispatched};
use o2c_protocol::retry::{Failure, RetryPolicy};
use o2c_protocol::{Envelope, Event, KafkaTopics};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::carrier::{BookRequest, CarrierClient, CarrierError, CarrierStatus, ShipmentInfo};
use super::tracker::{Call, Emit, Next, ShipState, Transition, call_for, on_answer, on_failure};
use super::{Parcel, SCHEMA};
use crate::db::{DbError, Tx};
use crate::metrics::{CarrierLabel, SagaMetrics};
use crate::outbox;
use crate::pool::Pg;

/// Why one shipment's round failed (it is tried again when its lease
/// runs out).
#[derive(Debug, thiserror::Error)]
pub(crate) enum TrackerError {
    /// PostgreSQL.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// A connection, or a row's encoding.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The stored row cannot be worked as it is.
    #[error("shipment of order {order}: {detail}")]
    BadRow {
        /// The order.
        order: String,
        /// What is wrong.
        detail: String,
    },
    /// Another tracker holds the row now (this one stalled past its lease).
    #[error("lease lost")]
    LeaseLost,
}

/// Shipments a step batch schedules, inserted with one statement.
#[derive(Debug, Default)]
pub(crate) struct NewShipments {
    orders: Vec<String>,
    ids: Vec<String>,
    requests: Vec<String>,
    causes: Vec<Vec<u8>>,
}

impl NewShipments {
    /// Adds the shipment `shipment_id` of `parcel`, scheduled by `cause`.
    pub(crate) fn push(
        &mut self,
        cause: &Envelope,
        shipment_id: String,
        parcel: &Parcel,
    ) -> Result<(), DbError> {
        let order = cause.payload.order_id().to_string();
        let req = BookRequest {
            shipment_id: shipment_id.clone(),
            reference: order.clone(),
            address: parcel.address.clone(),
            units: parcel.units,
        };
        self.requests
            .push(serde_json::to_string(&req).map_err(DbError::State)?);
        self.causes
            .push(cause.encode().map_err(|e| DbError::Encode(e.to_string()))?);
        self.orders.push(order);
        self.ids.push(shipment_id);
        Ok(())
    }

    /// Inserts them inside the step's transaction (an order already there,
    /// from a replayed batch, is left as it is).
    pub(crate) async fn insert(self, tx: &Tx<'_>) -> Result<(), DbError> {
        if self.orders.is_empty() {
            return Ok(());
        }
        tx.execute(
            &format!(
                "INSERT INTO {SCHEMA}.shipments (order_id, shipment_id, request, cause) \
                 SELECT o, i, r::jsonb, c \
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[]) AS t(o, i, r, c) \
                 ON CONFLICT (order_id) DO NOTHING"
            ),
            &[&self.orders, &self.ids, &self.requests, &self.causes],
        )
        .await?;
        Ok(())
    }
}

/// Flags the shipments of cancelled `orders`, inside the step's
/// transaction; the tracker cancels those not yet dispatched.
pub(crate) async fn request_cancel(tx: &Tx<'_>, orders: &[String]) -> Result<(), DbError> {
    if orders.is_empty() {
        return Ok(());
    }
    tx.execute(
        &format!(
            "UPDATE {SCHEMA}.shipments SET cancel_requested = true, next_at = now(), \
             updated_at = now() WHERE order_id = ANY($1) AND NOT cancel_requested"
        ),
        &[&orders],
    )
    .await?;
    Ok(())
}

/// Due open shipments, oldest first: leased to the caller.
const CLAIM: &str = "UPDATE o2c_shipping.shipments s \
     SET lease_until = now() + $2::int8 * interval '1 second', lease_token = $3 \
     FROM (SELECT order_id FROM o2c_shipping.shipments \
           WHERE state IN ('to_book', 'booked', 'dispatched') AND next_at <= now() \
           AND (lease_until IS NULL OR lease_until < now()) \
           ORDER BY next_at LIMIT $1 FOR UPDATE SKIP LOCKED) d \
     WHERE s.order_id = d.order_id \
     RETURNING s.order_id, s.shipment_id, s.state, s.cancel_requested, s.book_calls, \
     s.attempts, s.request::text, s.cause, s.tracking_number";

/// A claimed shipment.
#[derive(Debug)]
struct Claimed {
    order_id: String,
    shipment_id: String,
    state: ShipState,
    cancel_requested: bool,
    book_calls: i32,
    attempts: u32,
    request: String,
    cause: Vec<u8>,
    tracking_number: Option<String>,
}

impl Claimed {
    fn from_row(r: &tokio_postgres::Row) -> Result<Self, TrackerError> {
        let order_id: String = r.try_get(0)?;
        let state: String = r.try_get(2)?;
        let Some(parsed) = ShipState::parse(&state) else {
            return Err(TrackerError::BadRow {
                order: order_id,
                detail: format!("unknown state {state:?}"),
            });
        };
        Ok(Self {
            order_id,
            shipment_id: r.try_get(1)?,
            state: parsed,
            cancel_requested: r.try_get(3)?,
            book_calls: r.try_get(4)?,
            attempts: u32::try_from(r.try_get::<_, i32>(5)?).unwrap_or(0),
            request: r.try_get(6)?,
            cause: r.try_get(7)?,
            tracking_number: r.try_get(8)?,
        })
    }
}

/// The tracker of one shipping process.
#[derive(Debug)]
pub(crate) struct Tracker {
    pub(crate) pg: Pg,
    pub(crate) carrier: CarrierClient,
    pub(crate) topics: KafkaTopics,
    pub(crate) metrics: Arc<SagaMetrics>,
    pub(crate) policy: RetryPolicy,
    /// How often a parcel on its way is asked about.
    pub(crate) track_every: Duration,
    /// How often due work is looked for.
    pub(crate) claim_every: Duration,
    pub(crate) lease: Duration,
    pub(crate) concurrency: usize,
}

impl Tracker {
    /// Claims and works due shipments until `cancel`; returns only then.
    pub(crate) async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut calls: JoinSet<()> = JoinSet::new();
        loop {
            // Take work while there are free slots.
            let free = self.concurrency.saturating_sub(calls.len());
            let claimed = if free > 0 {
                match self.claim(free).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "shipping tracker cannot claim");
                        Vec::new()
                    }
                }
            } else {
                Vec::new()
            };
            for (row, token) in claimed {
                let me = self.clone();
                calls.spawn(async move { me.work(row, token).await });
            }
            self.metrics
                .carrier_breaker_state
                .set(self.carrier.breaker_state().code());
            // Claim again as soon as a call ends (a slot is free), or at the
            // next round.
            tokio::select! {
                () = cancel.cancelled() => {
                    calls.abort_all();
                    return;
                }
                Some(done) = calls.join_next(), if !calls.is_empty() => {
                    if let Err(e) = done {
                        tracing::error!(error = %e, "shipping tracker call panicked");
                    }
                }
                () = tokio::time::sleep(self.claim_every) => {}
            }
        }
    }

    async fn claim(&self, n: usize) -> Result<Vec<(Claimed, i64)>, TrackerError> {
        let token: i64 = rand::random();
        let lane = self.pg.lane(0).await?;
        let lease = i64::try_from(self.lease.as_secs()).unwrap_or(i64::MAX);
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let rows = lane.client().query(CLAIM, &[&n, &lease, &token]).await?;
        rows.iter()
            .map(|r| Ok((Claimed::from_row(r)?, token)))
            .collect()
    }

    /// Makes `row`'s call and records what came of it.
    async fn work(&self, row: Claimed, token: i64) {
        let Some(call) = call_for(row.state, row.cancel_requested, row.book_calls) else {
            return;
        };
        let answer = match self.call(&row, call, token).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(order_id = %row.order_id, error = %e, "shipping tracker");
                return;
            }
        };
        let (transition, info) = match answer {
            // A cancellation the carrier answers with a booking it still
            // holds did not take: a failure, retried after the usual wait.
            Ok(info) if call == Call::Cancel && info.status == CarrierStatus::Booked => (
                on_failure(
                    row.state,
                    call,
                    &Failure::Transient("the carrier still holds the booking".into()),
                    row.attempts,
                    &self.policy,
                ),
                Some(info),
            ),
            Ok(info) => (
                on_answer(row.state, call, row.cancel_requested, info.status),
                Some(info),
            ),
            Err(e) => {
                let failure = failure_of(&e);
                tracing::warn!(
                    order_id = %row.order_id, call = call.as_str(), error = %e,
                    "carrier call failed"
                );
                (
                    on_failure(row.state, call, &failure, row.attempts, &self.policy),
                    None,
                )
            }
        };
        self.metrics
            .carrier_calls
            .get_or_create(&CarrierLabel {
                call: call.as_str(),
                outcome: transition.outcome,
            })
            .inc();
        if let Err(e) = self.record(&row, token, &transition, info.as_ref()).await {
            tracing::warn!(order_id = %row.order_id, error = %e, "shipping tracker cannot record");
        }
    }

    /// The carrier call (none for [`Call::CancelLocally`], answered as
    /// cancelled). The outer error is the database's.
    async fn call(
        &self,
        row: &Claimed,
        call: Call,
        token: i64,
    ) -> Result<Result<ShipmentInfo, CarrierError>, TrackerError> {
        let tracking = || row.tracking_number.clone().unwrap_or_default();
        Ok(match call {
            Call::CancelLocally => Ok(ShipmentInfo {
                tracking_number: String::new(),
                carrier: String::new(),
                status: CarrierStatus::Cancelled,
            }),
            Call::Book => {
                let req: BookRequest =
                    serde_json::from_str(&row.request).map_err(|e| TrackerError::BadRow {
                        order: row.order_id.clone(),
                        detail: format!("booking request: {e}"),
                    })?;
                let lane = self.pg.get(&row.order_id).await?;
                let counted = lane
                    .client()
                    .execute(
                        "UPDATE o2c_shipping.shipments SET book_calls = book_calls + 1 \
                         WHERE order_id = $1 AND lease_token = $2",
                        &[&row.order_id, &token],
                    )
                    .await?;
                drop(lane);
                if counted == 0 {
                    return Err(TrackerError::LeaseLost);
                }
                self.carrier.book(&req).await
            }
            Call::Cancel => self.carrier.cancel(&tracking(), &row.shipment_id).await,
            Call::Track => self.carrier.track(&tracking()).await,
        })
    }

    /// Writes `t` and its events, if `token` still holds the row.
    async fn record(
        &self,
        row: &Claimed,
        token: i64,
        t: &Transition,
        info: Option<&ShipmentInfo>,
    ) -> Result<(), TrackerError> {
        let cause = Envelope::decode(&row.cause).map_err(|e| TrackerError::BadRow {
            order: row.order_id.clone(),
            detail: format!("cause: {e}"),
        })?;
        let order_id = cause.payload.order_id();
        let known = info.filter(|i| !i.tracking_number.is_empty());
        let carrier = known.map(|i| i.carrier.clone());
        let tracking = known
            .map(|i| i.tracking_number.clone())
            .or_else(|| row.tracking_number.clone());
        let next_ms: Option<i64> = match t.next {
            Next::Now => Some(0),
            Next::Track => Some(millis(self.track_every)),
            Next::Retry(d) => Some(millis(d)),
            Next::Done => None,
        };
        let attempts = i32::try_from(t.attempts).unwrap_or(i32::MAX);
        let error = (t.outcome != "ok").then_some(t.outcome);
        let mut lane = self.pg.get(&row.order_id).await?;
        let tx = lane.begin().await?;
        // A cancellation flagged meanwhile is looked at at once.
        let n = tx
            .execute(
                "UPDATE o2c_shipping.shipments SET state = $3, \
                 carrier = coalesce($4, carrier), tracking_number = coalesce($5, tracking_number), \
                 attempts = $6, last_error = $7, \
                 next_at = CASE WHEN cancel_requested AND $3 IN ('to_book', 'booked') THEN now() \
                   ELSE now() + coalesce($8::int8, 0) * interval '1 millisecond' END, \
                 lease_until = NULL, lease_token = NULL, updated_at = now() \
                 WHERE order_id = $1 AND lease_token = $2",
                &[
                    &row.order_id,
                    &token,
                    &t.state.as_str(),
                    &carrier,
                    &tracking,
                    &attempts,
                    &error,
                    &next_ms,
                ],
            )
            .await?;
        if n == 0 {
            return Err(TrackerError::LeaseLost);
        }
        let events: Vec<(&Envelope, Event)> = t
            .emit
            .iter()
            .map(|e| {
                let carrier = carrier.clone().unwrap_or_default();
                let tracking_number = tracking.clone().unwrap_or_default();
                let shipment_id = row.shipment_id.clone();
                let event = match *e {
                    Emit::Dispatched => Event::ShipmentDispatched(ShipmentDispatched {
                        order_id,
                        shipment_id,
                        carrier,
                        tracking_number,
                    }),
                    Emit::Delivered => Event::ShipmentDelivered(ShipmentDelivered {
                        order_id,
                        shipment_id,
                        carrier,
                        tracking_number,
                    }),
                    Emit::Cancelled(reason) => Event::ShipmentCancelled(ShipmentCancelled {
                        order_id,
                        shipment_id,
                        reason: reason.to_owned(),
                    }),
                };
                (&cause, event)
            })
            .collect();
        outbox::insert_many(&tx, SCHEMA, &self.topics, events).await?;
        tx.commit().await?;
        if let Some(state) = (t.state != row.state).then_some(t.state) {
            tracing::info!(order_id = %row.order_id, state = state.as_str(), "shipment");
        }
        Ok(())
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A carrier error as a retry decision's input: a refusal is permanent,
/// anything else may pass.
fn failure_of(e: &CarrierError) -> Failure {
    match e {
        CarrierError::Rejected { .. } => Failure::Permanent(e.to_string()),
        _ => Failure::Transient(e.to_string()),
    }
}
