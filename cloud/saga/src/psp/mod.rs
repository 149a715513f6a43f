//! The payment processor (PSP): its HTTP wire types and the client the
//! payment service uses (idempotency keys, a 2 s timeout, a circuit
//! breaker). Its simulator, a test double, is `o2c-psp-sim` in `tests/`.
//!
//! - the HTTP plumbing (timeout, breaker, answer classification) is
//!   [`crate::upstream`], shared with the carrier client.
//! - this module: wire types and [`PspClient`].
//!
//! Only processor tokens cross this boundary, never card numbers.

use prometheus_client::metrics::gauge::Gauge;
use serde::{Deserialize, Serialize};

use o2c_protocol::breaker::BreakerState;

pub use crate::upstream::BreakerConfig;
use crate::upstream::{Upstream, UpstreamError};

/// `POST /v1/captures` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureRequest {
    /// The order (metadata).
    pub order_id: String,
    /// Processor token.
    pub token: String,
    /// Amount, minor units.
    pub amount_minor: i64,
    /// ISO 4217.
    pub currency: String,
}

/// `POST /v1/refunds` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// The order (metadata).
    pub order_id: String,
    /// The capture to refund.
    pub capture_id: String,
    /// Amount, minor units.
    pub amount_minor: i64,
    /// ISO 4217.
    pub currency: String,
}

/// The processor's answer to a capture or refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PspResponse {
    /// `cap_…` or `ref_…`; absent on a decline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `approved`, `declined` or `refunded`.
    pub status: String,
    /// Why it was declined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decline_code: Option<String>,
}

/// What a capture came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureOutcome {
    /// Money captured; the capture id.
    Approved(String),
    /// The processor declined; its code.
    Declined(String),
}

/// What the processor knows of a capture's idempotency key
/// (`GET /v1/captures/{key}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureLookup {
    /// It captured; the capture id.
    Captured(String),
    /// It declined; its code.
    Declined(String),
    /// It never received (or never finished) a capture with that key: a
    /// capture with it may be sent (again).
    Unknown,
}

/// Why a processor call failed (see [`UpstreamError`]).
pub type PspError = UpstreamError;

/// The processor client: every call carries an `Idempotency-Key` and goes
/// through the breaker; a 402 is an answer (a decline).
#[derive(Debug, Clone)]
pub struct PspClient {
    up: Upstream,
}

impl PspClient {
    /// A client for `base` (e.g. `http://127.0.0.1:9400`); `state_gauge`
    /// reports the breaker state (0 closed, 1 open, 2 half-open).
    pub fn new(base: &str, cfg: BreakerConfig, state_gauge: Gauge) -> Result<Self, PspError> {
        Ok(Self {
            up: Upstream::new(base, cfg, state_gauge, &[402])?,
        })
    }

    /// The breaker's state now.
    pub fn breaker_state(&self) -> BreakerState {
        self.up.breaker_state()
    }

    /// Captures `req`; the same `key` never captures twice.
    pub async fn capture(
        &self,
        key: &str,
        req: &CaptureRequest,
    ) -> Result<CaptureOutcome, PspError> {
        let r: PspResponse = self.up.post("/v1/captures", key, req).await?;
        match (r.status.as_str(), r.id) {
            ("approved", Some(id)) => Ok(CaptureOutcome::Approved(id)),
            ("declined", _) => Ok(CaptureOutcome::Declined(
                r.decline_code.unwrap_or_else(|| "declined".into()),
            )),
            (other, _) => Err(PspError::Status {
                status: 200,
                body: format!("unexpected status {other:?}"),
            }),
        }
    }

    /// Refunds a capture; the same `key` never refunds twice. Returns the
    /// refund id once the processor says `refunded`; any other answer
    /// (`pending` included) is an error, so the refund is asked again with
    /// the same key rather than reported done.
    pub async fn refund(&self, key: &str, req: &RefundRequest) -> Result<String, PspError> {
        let r: PspResponse = self.up.post("/v1/refunds", key, req).await?;
        match (r.status.as_str(), r.id) {
            ("refunded", Some(id)) => Ok(id),
            (other, id) => Err(PspError::Status {
                status: 200,
                body: format!("refund not done: status {other:?}, id {id:?}"),
            }),
        }
    }

    /// Asks what became of the capture sent with `key` (without capturing).
    pub async fn lookup_capture(&self, key: &str) -> Result<CaptureLookup, PspError> {
        let r: PspResponse = self.up.get(&format!("/v1/captures/{key}")).await?;
        match (r.status.as_str(), r.id) {
            ("approved", Some(id)) => Ok(CaptureLookup::Captured(id)),
            ("declined", _) => Ok(CaptureLookup::Declined(
                r.decline_code.unwrap_or_else(|| "declined".into()),
            )),
            ("unknown", _) => Ok(CaptureLookup::Unknown),
            (other, _) => Err(PspError::Status {
                status: 200,
                body: format!("unexpected lookup status {other:?}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::extract::Path;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;

    use std::time::Duration;

    use super::*;

    /// A processor that answers by `Idempotency-Key`: a capture key is the
    /// HTTP status to answer; a refund key is the refund status to report.
    async fn scripted() -> String {
        async fn capture(h: HeaderMap) -> (StatusCode, String) {
            let key = h["idempotency-key"].to_str().unwrap_or_default();
            let status = StatusCode::from_bytes(key.as_bytes()).unwrap_or(StatusCode::CREATED);
            let body = if status.is_success() {
                r#"{"id":"cap_1","status":"approved"}"#
            } else {
                r#"{"error":"scripted"}"#
            };
            (status, body.into())
        }
        async fn refund(h: HeaderMap) -> String {
            let status = h["idempotency-key"].to_str().unwrap_or_default();
            format!(r#"{{"id":"ref_1","status":"{status}"}}"#)
        }
        async fn lookup(Path(key): Path<String>) -> (StatusCode, String) {
            match key.as_str() {
                "approved" => (
                    StatusCode::OK,
                    r#"{"id":"cap_9","status":"approved"}"#.into(),
                ),
                "declined" => (
                    StatusCode::OK,
                    r#"{"status":"declined","decline_code":"card_declined"}"#.into(),
                ),
                "500" => (StatusCode::INTERNAL_SERVER_ERROR, "{}".into()),
                other => (StatusCode::OK, format!(r#"{{"status":"{other}"}}"#)),
            }
        }
        let app = Router::new()
            .route("/v1/captures", post(capture))
            .route("/v1/captures/{key}", axum::routing::get(lookup))
            .route("/v1/refunds", post(refund));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    fn client(base: &str) -> PspClient {
        let cfg = BreakerConfig {
            failures: 5,
            open_for: Duration::from_secs(30),
            timeout: Duration::from_secs(2),
        };
        PspClient::new(base, cfg, Gauge::default()).unwrap()
    }

    fn capture_req() -> CaptureRequest {
        CaptureRequest {
            order_id: "o1".into(),
            token: "tok_x".into(),
            amount_minor: 100,
            currency: "CAD".into(),
        }
    }

    #[tokio::test]
    async fn a_refused_request_is_final_and_does_not_trip_the_breaker() {
        let psp = client(&scripted().await);
        for _ in 0..6 {
            let e = psp.capture("400", &capture_req()).await.unwrap_err();
            assert!(matches!(e, PspError::Rejected { status: 400, .. }), "{e}");
        }
        assert_eq!(psp.breaker_state(), BreakerState::Closed);
        assert_eq!(
            psp.capture("201", &capture_req()).await.unwrap(),
            CaptureOutcome::Approved("cap_1".into())
        );
        // "Come back later" answers are failures, and open the breaker.
        for _ in 0..5 {
            let e = psp.capture("429", &capture_req()).await.unwrap_err();
            assert!(matches!(e, PspError::Status { status: 429, .. }), "{e}");
        }
        assert_eq!(psp.breaker_state(), BreakerState::Open);
        assert!(matches!(
            psp.capture("201", &capture_req()).await,
            Err(PspError::BreakerOpen)
        ));
    }

    #[tokio::test]
    async fn a_refund_counts_only_once_the_processor_says_refunded() {
        let psp = client(&scripted().await);
        let req = RefundRequest {
            order_id: "o1".into(),
            capture_id: "cap_1".into(),
            amount_minor: 100,
            currency: "CAD".into(),
        };
        for status in ["pending", "failed"] {
            let e = psp.refund(status, &req).await.unwrap_err();
            assert!(matches!(e, PspError::Status { .. }), "{status}: {e}");
        }
        assert_eq!(psp.refund("refunded", &req).await.unwrap(), "ref_1");
    }

    #[tokio::test]
    async fn a_lookup_reads_the_processor_answer_by_key() {
        let psp = client(&scripted().await);
        assert_eq!(
            psp.lookup_capture("approved").await.unwrap(),
            CaptureLookup::Captured("cap_9".into())
        );
        assert_eq!(
            psp.lookup_capture("declined").await.unwrap(),
            CaptureLookup::Declined("card_declined".into())
        );
        assert_eq!(
            psp.lookup_capture("unknown").await.unwrap(),
            CaptureLookup::Unknown
        );
        // Neither a failure nor an answer it does not know is "unknown":
        // that would send the capture again.
        for key in ["500", "pending"] {
            let e = psp.lookup_capture(key).await.unwrap_err();
            assert!(matches!(e, PspError::Status { .. }), "{key}: {e}");
        }
    }
}
