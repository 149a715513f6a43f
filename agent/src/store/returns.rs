//! Returns as the store keeps them (table `returns`, migration 0012): the
//! request handed to the writer ([`NewReturn`]), what it did
//! ([`ReturnOutcome`]), a stored return ([`StoredReturn`]) and its JSON
//! view ([`ReturnView`], the body of `requestReturn` and `getReturn`,
//! stored with the idempotency record like a capture's receipt), and the
//! one read ([`read_return`]).
//!
//! The writer's side (the op, its ledger, acks and cloud statuses of
//! returns) is `writer::returns`.

use o2c_protocol::returns::{RefundTender, ReturnLine, ReturnRequested};
use o2c_protocol::{CloudStatus, Currency, Money, OrderId, ReturnId, Seq, Traceparent};
use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::StoreError;
use super::read::corrupt;
use super::types::OrderSyncState;

/// A validated return to commit (the caller minted its `return_id`).
#[derive(Debug, Clone)]
pub struct NewReturn {
    /// The `ReturnRequested` payload, valid by `ReturnRequested::validate`.
    pub request: ReturnRequested,
    /// The request's `Idempotency-Key`, scoped to its terminal.
    pub idempotency_key: String,
    /// SHA-256 of what the request asked (its order and body); the same
    /// key with another hash is a conflict.
    pub request_sha256: [u8; 32],
    /// Trace context for the envelope; without one, a return of a local
    /// order continues that order's trace.
    pub traceparent: Option<Traceparent>,
}

/// What [`Store::request_return`](super::Store::request_return) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnOutcome {
    /// The return (the original one on a replay).
    pub return_id: ReturnId,
    /// The `ReturnRequested` seq; `None` on a replay.
    pub seq: Option<Seq>,
    /// Whether this was a replay of an earlier request.
    pub replayed: bool,
    /// The response body (JSON of a [`ReturnView`]).
    pub response_json: String,
}

/// One returned SKU, as requested and as shown back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnLineBody {
    /// A SKU sold on the order, 1–64 characters, one line per SKU.
    #[schema(example = "SKU-1", min_length = 1, max_length = 64)]
    pub sku: String,
    /// Units given back, 1–1,000,000.
    #[schema(minimum = 1, maximum = 1_000_000, example = 1)]
    #[serde(deserialize_with = "o2c_order_http::integer::integral")]
    pub quantity: i64,
}

/// How the money goes back, by `method`: the contract's tender as the
/// API writes it (a card is its processor token, brand and last four,
/// never a card number; unknown fields are refused). A newtype only so
/// that its OpenAPI schema can be written out, in `api::returns::schema`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RefundBody(pub RefundTender);

/// Where a return stands, as the till sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReturnState {
    /// Taken at the till; the cloud has not answered yet.
    Requested,
    /// The cloud checked it against the order and accepted it.
    Accepted,
    /// The cloud refused it (see `cloud_reason`, e.g. `over_return`).
    Refused,
    /// The card refund was made.
    Refunded,
}

impl ReturnState {
    /// The state a cloud status puts a return in.
    pub fn of(cloud: Option<CloudStatus>) -> ReturnState {
        match cloud {
            Some(CloudStatus::ReturnRefunded) => ReturnState::Refunded,
            Some(CloudStatus::ReturnRefused) => ReturnState::Refused,
            Some(CloudStatus::ReturnAccepted) => ReturnState::Accepted,
            _ => ReturnState::Requested,
        }
    }
}

/// `POST /v1/orders/{order_id}/returns` (201, or 200 on a replay: the
/// first answer) and `GET /v1/returns/{return_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReturnView {
    /// The return (UUIDv7).
    #[schema(value_type = String,
        pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$",
        example = "0196f3b0-1a2b-7c3d-8e4f-5a6b7c8d9e0f")]
    pub return_id: ReturnId,
    /// The order the goods were sold on (this store's, another store's or
    /// a web order).
    #[schema(value_type = String,
        pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$",
        example = "0196f3a2-7c1e-7b3a-9f00-5a2b3c4d5e6f")]
    pub order_id: OrderId,
    /// The till that took the goods back.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$", example = "T1")]
    pub terminal_id: String,
    /// What came back.
    #[schema(min_items = 1, max_items = 500)]
    pub lines: Vec<ReturnLineBody>,
    /// How the money goes back.
    pub refund: RefundBody,
    /// Why.
    #[schema(example = "damaged")]
    pub reason: String,
    /// `requested` until the cloud answers.
    pub status: ReturnState,
    /// Whether this agent checked the return against its own copy of the
    /// order (false for an order it did not capture: the cloud checks it).
    pub verified_locally: bool,
    /// The money given back, minor units: the cloud's figure once it gave
    /// one, else this agent's, else null (an order not known here).
    #[schema(required = true, minimum = 0, example = 1499)]
    pub amount_minor: Option<i64>,
    /// The currency of `amount_minor` (null with it).
    #[schema(required = true, value_type = Option<o2c_order_http::CurrencyCode>)]
    pub currency: Option<String>,
    /// Sync state of the `ReturnRequested` event.
    pub sync: OrderSyncState,
    /// The cloud's last status of the return: `return_accepted`,
    /// `return_refused` or `return_refunded`; null before it answered.
    #[schema(required = true, example = json!(null))]
    pub cloud_status: Option<String>,
    /// For a refusal, why (`over_return`, `not_on_order`,
    /// `refund_tender_mismatch`, `refund_exceeds_tender`,
    /// `order_cancelled`, ...).
    #[schema(required = true)]
    pub cloud_reason: Option<String>,
    /// For a refusal, the SKU at fault when there is one.
    #[schema(required = true)]
    pub cloud_sku: Option<String>,
    /// When this agent took the return (RFC 3339, its own clock).
    #[schema(format = DateTime)]
    pub requested_at: String,
    /// When this agent received the cloud's current status (RFC 3339).
    #[schema(required = true, format = DateTime)]
    pub cloud_status_received_at: Option<String>,
}

/// One stored return with everything known about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReturn {
    /// The return as requested (the event's payload).
    pub request: ReturnRequested,
    /// The amount this agent computed, when it knows the order.
    pub local_amount: Option<Money>,
    /// For a card refund of a local order: the order's payment refunded.
    pub tender: Option<u32>,
    /// Whether it was checked against a local order.
    pub verified_locally: bool,
    /// Sync state of its `ReturnRequested`.
    pub sync: OrderSyncState,
    /// The cloud's rejection code of the event, when rejected.
    pub reject_code: Option<String>,
    /// The cloud's rejection reason, when rejected.
    pub reject_reason: Option<String>,
    /// The cloud's last status of the return.
    pub cloud_status: Option<CloudStatus>,
    /// Its reason (a refusal code).
    pub cloud_reason: Option<String>,
    /// The SKU at fault of a refusal.
    pub cloud_sku: Option<String>,
    /// The cloud's amount.
    pub cloud_amount: Option<Money>,
    /// When this agent stored the cloud status (unix ms).
    pub cloud_status_received_at_ms: Option<i64>,
    /// When the return was taken (unix ms).
    pub created_at_ms: i64,
}

impl StoredReturn {
    /// Its JSON view.
    pub fn view(&self) -> ReturnView {
        let r = &self.request;
        let amount = self.cloud_amount.or(self.local_amount);
        ReturnView {
            return_id: r.return_id,
            order_id: r.order_id,
            terminal_id: r.terminal_id.to_string(),
            lines: r
                .lines
                .iter()
                .map(|l| ReturnLineBody {
                    sku: l.sku.clone(),
                    quantity: l.quantity,
                })
                .collect(),
            refund: RefundBody(r.refund.clone()),
            reason: r.reason.clone(),
            status: ReturnState::of(self.cloud_status),
            verified_locally: self.verified_locally,
            amount_minor: amount.map(|m| m.minor),
            currency: amount.map(|m| m.currency.code().to_owned()),
            sync: self.sync,
            cloud_status: self.cloud_status.map(|c| c.as_str().to_owned()),
            cloud_reason: self.cloud_reason.clone(),
            cloud_sku: self.cloud_sku.clone(),
            requested_at: crate::api::rfc3339_ms(self.created_at_ms),
            cloud_status_received_at: self.cloud_status_received_at_ms.map(crate::api::rfc3339_ms),
        }
    }
}

/// An amount column pair as money (`None` unless both are set).
pub(super) fn money(minor: Option<i64>, currency: Option<&str>) -> Option<Money> {
    Some(Money::new(minor?, Currency::from_code(currency?).ok()?))
}

/// One return by id.
pub(crate) fn read_return(
    c: &Connection,
    return_id: ReturnId,
) -> Result<Option<StoredReturn>, StoreError> {
    let id = return_id.to_string();
    let row = c
        .prepare_cached(
            "SELECT order_id, terminal_id, lines_json, refund_json, reason, local_amount_minor, \
             currency, tender_index, verified_locally, sync_state, reject_code, reject_reason, \
             cloud_status, cloud_reason, cloud_sku, cloud_amount_minor, cloud_currency, \
             cloud_status_received_at_ms, created_at_ms FROM returns WHERE return_id = ?1",
        )?
        .query_row([&id], |r| {
            Ok(Row {
                order_id: r.get(0)?,
                terminal_id: r.get(1)?,
                lines_json: r.get(2)?,
                refund_json: r.get(3)?,
                reason: r.get(4)?,
                local_amount_minor: r.get(5)?,
                currency: r.get(6)?,
                tender_index: r.get(7)?,
                verified_locally: r.get(8)?,
                sync_state: r.get(9)?,
                reject_code: r.get(10)?,
                reject_reason: r.get(11)?,
                cloud_status: r.get(12)?,
                cloud_reason: r.get(13)?,
                cloud_sku: r.get(14)?,
                cloud_amount_minor: r.get(15)?,
                cloud_currency: r.get(16)?,
                cloud_status_received_at_ms: r.get(17)?,
                created_at_ms: r.get(18)?,
            })
        })
        .optional()?;
    row.map(|row| row.into_stored(return_id)).transpose()
}

/// The columns of one `returns` row, as read.
struct Row {
    order_id: String,
    terminal_id: String,
    lines_json: String,
    refund_json: String,
    reason: String,
    local_amount_minor: Option<i64>,
    currency: Option<String>,
    tender_index: Option<i64>,
    verified_locally: bool,
    sync_state: String,
    reject_code: Option<String>,
    reject_reason: Option<String>,
    cloud_status: Option<String>,
    cloud_reason: Option<String>,
    cloud_sku: Option<String>,
    cloud_amount_minor: Option<i64>,
    cloud_currency: Option<String>,
    cloud_status_received_at_ms: Option<i64>,
    created_at_ms: i64,
}

impl Row {
    fn into_stored(self, return_id: ReturnId) -> Result<StoredReturn, StoreError> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            StoreError::Corrupt(format!("return {return_id}: {what}: {e}"))
        };
        let lines: Vec<ReturnLine> =
            serde_json::from_str(&self.lines_json).map_err(|e| bad("lines_json", &e))?;
        let refund: RefundTender =
            serde_json::from_str(&self.refund_json).map_err(|e| bad("refund_json", &e))?;
        let request = ReturnRequested {
            order_id: self
                .order_id
                .parse()
                .map_err(|_| corrupt("order_id", &self.order_id))?,
            return_id,
            terminal_id: self
                .terminal_id
                .parse()
                .map_err(|_| corrupt("terminal_id", &self.terminal_id))?,
            lines,
            refund,
            reason: self.reason,
        };
        Ok(StoredReturn {
            request,
            local_amount: money(self.local_amount_minor, self.currency.as_deref()),
            tender: self.tender_index.and_then(|t| u32::try_from(t).ok()),
            verified_locally: self.verified_locally,
            sync: OrderSyncState::parse(&self.sync_state)
                .ok_or_else(|| corrupt("sync_state", &self.sync_state))?,
            reject_code: self.reject_code,
            reject_reason: self.reject_reason,
            cloud_status: self.cloud_status.as_deref().and_then(|c| c.parse().ok()),
            cloud_reason: self.cloud_reason,
            cloud_sku: self.cloud_sku,
            cloud_amount: money(self.cloud_amount_minor, self.cloud_currency.as_deref()),
            cloud_status_received_at_ms: self.cloud_status_received_at_ms,
            created_at_ms: self.created_at_ms,
        })
    }
}
