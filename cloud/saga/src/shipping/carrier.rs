//! The carrier: its HTTP wire types and the client the shipping service's
//! tracker uses (idempotency keys, timeout, circuit breaker, all in
//! [`crate::upstream`]). Its simulator, a test double, is
//! `o2c-carrier-sim` in `tests/`.
//!
//! - `POST /v1/shipments` with `Idempotency-Key: {shipment_id}` books a
//!   shipment ([`BookRequest`]); the same key answers the same booking.
//! - `GET /v1/shipments/{tracking_number}`: where it stands.
//! - `POST /v1/shipments/{tracking_number}/cancel`: cancels a booking not
//!   yet picked up; a parcel already with the carrier answers 409 with
//!   its state, which [`CarrierClient::cancel`] reads as an answer.

use prometheus_client::metrics::gauge::Gauge;
use serde::{Deserialize, Serialize};

use o2c_protocol::Address;
use o2c_protocol::breaker::BreakerState;

use crate::upstream::{BreakerConfig, Upstream, UpstreamError};

/// `POST /v1/shipments` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BookRequest {
    /// Our shipment id (also the idempotency key).
    pub shipment_id: String,
    /// The order (the sender's reference on the label).
    pub reference: String,
    /// Where to.
    pub address: Address,
    /// Units in the parcel.
    pub units: i64,
}

/// Where a shipment stands at the carrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CarrierStatus {
    /// Booked, label printed, not yet picked up: may still be cancelled.
    Booked,
    /// Picked up: on its way.
    InTransit,
    /// Delivered.
    Delivered,
    /// Cancelled before pick-up.
    Cancelled,
}

/// The carrier's answer about one shipment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentInfo {
    /// The carrier's tracking number.
    pub tracking_number: String,
    /// The carrier's name.
    pub carrier: String,
    /// Where it stands.
    pub status: CarrierStatus,
}

/// Why a carrier call failed (see [`UpstreamError`]).
pub type CarrierError = UpstreamError;

/// The carrier client.
#[derive(Debug, Clone)]
pub struct CarrierClient {
    up: Upstream,
}

impl CarrierClient {
    /// A client for `base`; `state_gauge` reports its breaker's state.
    pub fn new(base: &str, cfg: BreakerConfig, state_gauge: Gauge) -> Result<Self, CarrierError> {
        Ok(Self {
            // 409: a cancel too late, with the shipment's state.
            up: Upstream::new(base, cfg, state_gauge, &[409])?,
        })
    }

    /// The breaker's state now.
    pub fn breaker_state(&self) -> BreakerState {
        self.up.breaker_state()
    }

    /// Books `req`; the same shipment id never books twice.
    pub async fn book(&self, req: &BookRequest) -> Result<ShipmentInfo, CarrierError> {
        self.up.post("/v1/shipments", &req.shipment_id, req).await
    }

    /// Where the shipment stands.
    pub async fn track(&self, tracking_number: &str) -> Result<ShipmentInfo, CarrierError> {
        self.up
            .get(&format!("/v1/shipments/{}", path_segment(tracking_number)?))
            .await
    }

    /// Asks to cancel; the answer says whether it was
    /// ([`CarrierStatus::Cancelled`]) or was too late (any other).
    pub async fn cancel(
        &self,
        tracking_number: &str,
        shipment_id: &str,
    ) -> Result<ShipmentInfo, CarrierError> {
        let path = format!("/v1/shipments/{}/cancel", path_segment(tracking_number)?);
        let key = format!("cancel-{shipment_id}");
        self.up.post(&path, &key, &serde_json::json!({})).await
    }
}

/// A tracking number as one URL path segment: the carrier's own strings
/// are not trusted to be URL-safe.
fn path_segment(s: &str) -> Result<&str, CarrierError> {
    if !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(s)
    } else {
        Err(CarrierError::Status {
            status: 200,
            body: format!(
                "tracking number {:?} is not URL-safe",
                s.chars().take(64).collect::<String>()
            ),
        })
    }
}
