//! Order handlers: capture, read, list and cancel.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use o2c_protocol::validate::{MAX_REASON_LEN, contains_card_number};
use std::sync::Arc;

use o2c_protocol::{Fulfillment, OrderId, Payment, StockCheck, Traceparent};
use o2c_runtime::trace;
use sha2::{Digest, Sha256};
use tracing::Instrument as _;

use super::capture::{self, CaptureError, Price};
use super::model::{
    CancelRequest, CancelResponse, CaptureRequest, CardAuthorizationBody, ErrorBody, LineView,
    ListQuery, OrderListItem, OrderPage, OrderView, PaymentView, SyncError,
};
use super::{ApiError, AppState, MAX_BODY_BYTES};
use crate::catalog::check::Check;
use crate::store::{CaptureReceipt, LocalStatus, NewCapture, StoredOrder};

const MAX_KEY_LEN: usize = 128;

/// Capture an order.
#[utoipa::path(
    post, path = "/v1/orders", tag = "orders", operation_id = "captureOrder",
    request_body = CaptureRequest,
    params(
        ("Idempotency-Key" = String, Header, description = "1-128 visible ASCII characters; retries reuse it"),
        ("traceparent" = Option<String>, Header, description = "W3C trace context, copied into the event"),
    ),
    responses(
        (status = 201, description = "Captured and durable", body = CaptureReceipt),
        (status = 200, description = "Replay of an earlier request with the same key and body", body = CaptureReceipt),
        (status = 400, description = "malformed_json, missing_idempotency_key, invalid_idempotency_key, unknown_field", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "forbidden: terminal_id is not the token's terminal", body = ErrorBody),
        (status = 409, description = "idempotency_conflict", body = ErrorBody),
        (status = 413, description = "payload_too_large (over 64 KiB)", body = ErrorBody),
        (status = 422, description = "invalid_order, invalid_field, unknown_sku, card_data_rejected, offline_limit_exceeded, offline_currency_mismatch, offline_card_unavailable", body = ErrorBody),
        (status = 503, description = "backlog_full (with Retry-After), storage_unavailable, unavailable", body = ErrorBody),
        (status = 507, description = "storage_full", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn capture(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = o2c_runtime::clock::now();
    // The order's trace starts here (under the till's, when it sent one).
    let span = tracing::info_span!(target: trace::TARGET, "agent.capture",
        otel.kind = "server", order_id = tracing::field::Empty);
    if let Some(tp) = header_traceparent(&headers) {
        trace::set_parent(&span, tp);
    }
    // Held, not entered: the span lasts until the answer is built, and
    // the group commit names it as parent explicitly (entering it on every
    // poll would cost each capture for nothing).
    let result = capture_inner(&st, &headers, body, &span).await;
    let m = &st.inner.metrics;
    m.capture_seconds.observe(started.elapsed().as_secs_f64());
    match result {
        Ok((status, json)) => {
            m.capture(if status == StatusCode::CREATED {
                "created"
            } else {
                "replayed"
            });
            (status, [(header::CONTENT_TYPE, "application/json")], json).into_response()
        }
        Err(e) => {
            m.capture("refused");
            e.into_response()
        }
    }
}

async fn capture_inner(
    st: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    span: &tracing::Span,
) -> Result<(StatusCode, String), ApiError> {
    let terminal = st.authenticate(headers).await?;
    let key = idempotency_key(headers)?;
    let body = read_body(body)?;
    capture::scan_card_data(&body)?;
    let req = capture::parse_request(&body)?;
    if req.terminal_id != terminal.as_str() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the token belongs to another terminal",
        )
        .field("terminal_id"));
    }
    let order_id = OrderId::from_uuid(uuid::Uuid::now_v7())
        .map_err(|e| ApiError::from(CaptureError::Catalog(e.to_string())))?;
    span.record("order_id", tracing::field::display(order_id));
    let inner = &st.inner;
    let request_sha256: [u8; 32] = Sha256::digest(&body).into();
    let now = time::OffsetDateTime::from(o2c_runtime::clock::wall());
    let built = capture::build_order(
        req,
        &inner.store_id,
        order_id,
        inner.offline,
        |sku, currency| {
            Ok(inner.catalog.price_and_category(sku, currency, now).map(
                |(minor, currency, category)| Price {
                    minor,
                    currency,
                    category,
                },
            ))
        },
    );
    let mut order = match built {
        Ok(order) => order,
        Err(e) => {
            // The retry of a sale already captured gets its answer even if
            // the catalog or the floor limit changed since: the till must
            // not think a committed sale failed.
            return match inner
                .store
                .idempotent_replay(terminal.as_str(), &key, request_sha256)
                .await?
            {
                Some(response) => Ok((StatusCode::OK, response)),
                None => Err(e.into()),
            };
        }
    };
    order.catalog_version = inner.catalog.catalog_version();
    if let (Fulfillment::ShipToHome { .. }, Some(checker)) = (&order.fulfillment, &inner.checker) {
        // A retry of a sale already captured is answered as before, with
        // no second reservation.
        if let Some(response) = inner
            .store
            .idempotent_replay(terminal.as_str(), &key, request_sha256)
            .await?
        {
            return Ok((StatusCode::OK, response));
        }
        let lines: Vec<(String, i64)> = order
            .lines
            .iter()
            .map(|l| (l.sku.clone(), l.quantity))
            .collect();
        order.stock_check = Some(match checker.reserve(order.order_id, &lines).await {
            Check::Verified => StockCheck::Verified,
            Check::OutOfStock { sku } => {
                let i = order.lines.iter().position(|l| l.sku == sku).unwrap_or(0);
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "out_of_stock",
                    format!("not enough stock of {sku} to ship"),
                )
                .field(format!("lines[{i}].sku")));
            }
            Check::Unverified { accept: true, .. } => StockCheck::Unverified,
            Check::Unverified { accept: false, why } => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "stock_unverified",
                    format!(
                        "the ship-to-home stock check is not possible now ({why}) and this \
                         store refuses unverified ship-to-home sales"
                    ),
                ));
            }
        });
    }
    // The event names the capture span, so the order's next hops hang
    // under it; without trace export, the till's context goes on as is.
    let traceparent = trace::traceparent(span)
        .and_then(|tp| Traceparent::new(&tp).ok())
        .or_else(|| traceparent(headers));
    let commit = tracing::info_span!(target: trace::TARGET, parent: span, "agent.group_commit");
    let outcome = inner
        .store
        .capture(NewCapture {
            order,
            idempotency_key: key,
            request_sha256,
            traceparent,
        })
        .await?;
    drop(commit);
    let status = if outcome.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, outcome.response_json))
}

fn read_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::payload_too_large(MAX_BODY_BYTES)
        } else {
            ApiError::bad_request("malformed_body", r.body_text())
        }
    })
}

fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let v = headers.get("idempotency-key").ok_or_else(|| {
        ApiError::bad_request(
            "missing_idempotency_key",
            "the Idempotency-Key header is required",
        )
    })?;
    let s = v.to_str().unwrap_or_default();
    let ok = !s.is_empty()
        && s.len() <= MAX_KEY_LEN
        && s.bytes().all(|b| b.is_ascii_graphic())
        && !contains_card_number(s);
    if ok {
        Ok(s.to_owned())
    } else {
        Err(ApiError::bad_request(
            "invalid_idempotency_key",
            "the Idempotency-Key must be 1-128 visible ASCII characters",
        ))
    }
}

fn header_traceparent(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn traceparent(headers: &HeaderMap) -> Option<Traceparent> {
    header_traceparent(headers).and_then(|s| Traceparent::new(s).ok())
}

fn parse_order_id(raw: &str) -> Result<OrderId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::not_found("order_not_found", "no such order"))
}

/// Read one order.
#[utoipa::path(
    get, path = "/v1/orders/{order_id}", tag = "orders", operation_id = "getOrder",
    params(("order_id" = String, Path, description = "UUIDv7")),
    responses(
        (status = 200, body = OrderView),
        (status = 401, body = ErrorBody),
        (status = 404, description = "order_not_found", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_one(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Result<Json<OrderView>, ApiError> {
    st.authenticate(&headers).await?;
    let id = parse_order_id(&raw)?;
    let stored = st
        .inner
        .store
        .order(id)
        .await?
        .ok_or_else(|| ApiError::not_found("order_not_found", format!("no order {id}")))?;
    Ok(Json(order_view(stored)))
}

fn order_view(s: StoredOrder) -> OrderView {
    let o = &s.order;
    let total = o.total().map(|m| m.minor).unwrap_or_default();
    OrderView {
        order_id: o.order_id.to_string(),
        terminal_id: o.terminal_id.to_string(),
        currency: o.currency.code().to_owned(),
        total_minor: total,
        captured_at: o
            .captured_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        lines: o
            .lines
            .iter()
            .map(|l| LineView {
                sku: l.sku.clone(),
                quantity: l.quantity,
                unit_price_minor: l.unit_price.minor,
            })
            .collect(),
        payments: o.payments.iter().map(payment_view).collect(),
        fulfillment: capture::fulfillment_body(&o.fulfillment),
        customer: o.customer.as_ref().map(|c| super::model::CustomerBody {
            email: c.email.clone(),
            phone: c.phone.clone(),
        }),
        status: s.status,
        cancel_reason: s.cancel_reason,
        sync: s.sync,
        sync_error: s.reject_code.map(|code| SyncError {
            code,
            reason: s.reject_reason.unwrap_or_default(),
        }),
        cloud_status: s.cloud_status.map(|c| c.as_str().to_owned()),
        cloud_reason: s.cloud_reason,
        cloud_status_received_at: s.cloud_status_received_at_ms.map(super::rfc3339_ms),
        trace_id: s
            .traceparent
            .as_deref()
            .and_then(o2c_runtime::trace::trace_id)
            .map(str::to_owned),
    }
}

fn payment_view(p: &Payment) -> PaymentView {
    let mut v = PaymentView {
        method: p.method().to_owned(),
        amount_minor: p.amount().minor,
        brand: None,
        last4: None,
        authorization: None,
    };
    if let Payment::Card {
        brand,
        last4,
        authorization,
        ..
    } = p
    {
        v.brand = Some(brand.clone());
        v.last4 = Some(last4.clone());
        v.authorization = Some(match authorization {
            o2c_protocol::CardAuthorization::Online => CardAuthorizationBody::Online,
            o2c_protocol::CardAuthorization::Offline => CardAuthorizationBody::Offline,
        });
    }
    v
}

/// A `captured_from`/`captured_to` bound as Unix ms, rounded up: stored
/// capture times are whole milliseconds, so `t >= bound` and `t < bound`
/// mean the same on them as on the exact moment given.
fn captured_bound(raw: Option<&str>, field: &'static str) -> Result<Option<i64>, ApiError> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::bad_request(
            "invalid_query",
            format!("{field} must be an RFC 3339 time such as 2026-12-03T02:00:00Z"),
        )
        .field(field)
    };
    let at = time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .map_err(|_| bad())?;
    let nanos = at.unix_timestamp_nanos();
    let ms = nanos.div_euclid(1_000_000) + i128::from(nanos.rem_euclid(1_000_000) > 0);
    i64::try_from(ms).map(Some).map_err(|_| bad())
}

/// List orders, oldest first, for end-of-day reports; `captured_from` and
/// `captured_to` keep the orders captured in `[from, to)`.
#[utoipa::path(
    get, path = "/v1/orders", tag = "orders", operation_id = "listOrders",
    params(ListQuery),
    responses(
        (status = 200, body = OrderPage),
        (status = 400, description = "invalid_query (the field at fault: limit, after, captured_from, captured_to)", body = ErrorBody),
        (status = 401, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(st): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<OrderPage>, ApiError> {
    st.authenticate(&headers).await?;
    let Query(q) = query.map_err(|r| ApiError::bad_request("invalid_query", r.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(
            ApiError::bad_request("invalid_query", "limit must be between 1 and 1000")
                .field("limit"),
        );
    }
    let after = match q.after.as_deref() {
        None | Some("") => None,
        Some(a) => Some(a.parse::<OrderId>().map_err(|_| {
            ApiError::bad_request("invalid_query", "after must be an order id").field("after")
        })?),
    };
    let from = captured_bound(q.captured_from.as_deref(), "captured_from")?;
    let to = captured_bound(q.captured_to.as_deref(), "captured_to")?;
    if let (Some(f), Some(t)) = (from, to)
        && f >= t
    {
        return Err(ApiError::bad_request(
            "invalid_query",
            "captured_to must be after captured_from",
        )
        .field("captured_to"));
    }
    let rows = if from.is_some() || to.is_some() {
        st.inner
            .store
            .list_orders_captured(from, to, after, limit)
            .await?
    } else {
        st.inner.store.list_orders(after, limit).await?
    };
    let next_after = (rows.len() == limit)
        .then(|| rows.last().map(|r| r.order_id.to_string()))
        .flatten();
    let orders = rows
        .into_iter()
        .map(|r| OrderListItem {
            order_id: r.order_id.to_string(),
            terminal_id: r.terminal_id.to_string(),
            currency: r.currency,
            total_minor: r.total_minor,
            captured_at: r.captured_at,
            status: r.status,
            sync: r.sync,
            cloud_status: r.cloud_status.map(|c| c.as_str().to_owned()),
            cloud_status_received_at: r.cloud_status_received_at_ms.map(super::rfc3339_ms),
        })
        .collect();
    Ok(Json(OrderPage { orders, next_after }))
}

/// Void an order: appends `OrderCancelled` to the outbox. Idempotent.
#[utoipa::path(
    post, path = "/v1/orders/{order_id}/cancel", tag = "orders", operation_id = "cancelOrder",
    params(("order_id" = String, Path, description = "UUIDv7")),
    request_body(content = Option<CancelRequest>, description = "Optional; reason defaults to store_void"),
    responses(
        (status = 200, description = "Cancelled (now or by an earlier call)", body = CancelResponse),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "order_not_found", body = ErrorBody),
        (status = 422, description = "invalid_field, card_data_rejected", body = ErrorBody),
        (status = 503, description = "backlog_full", body = ErrorBody),
        (status = 507, description = "storage_full", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn cancel(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CancelResponse>, ApiError> {
    st.authenticate(&headers).await?;
    let id = parse_order_id(&raw)?;
    let body = read_body(body)?;
    let req = if body.iter().all(u8::is_ascii_whitespace) {
        CancelRequest::default()
    } else {
        capture::scan_card_data(&body)?;
        serde_json::from_slice::<CancelRequest>(&body).map_err(|e| {
            if e.is_data() && e.to_string().starts_with("unknown field") {
                ApiError::bad_request("unknown_field", e.to_string())
            } else {
                ApiError::bad_request("malformed_json", e.to_string())
            }
        })?
    };
    let reason = req.reason.unwrap_or_else(|| "store_void".to_owned());
    if reason.is_empty() || reason.chars().count() > MAX_REASON_LEN {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!("reason must be 1-{MAX_REASON_LEN} characters"),
        )
        .field("reason"));
    }
    // Checked decoded too: JSON escapes hide digits from the body scan.
    if contains_card_number(&reason) {
        return Err(capture::CaptureError::CardData {
            field: Some("reason".into()),
        }
        .into());
    }
    // A void continues its order's trace (the capture span), when traces
    // are exported; else the till's context goes on as before.
    let span = tracing::info_span!(target: trace::TARGET, "agent.cancel", otel.kind = "server",
        order_id = %id);
    let mut tp = traceparent(&headers);
    if trace::enabled() {
        let captured = st.inner.store.order(id).await?.and_then(|o| o.traceparent);
        if let Some(parent) = captured.as_deref().or(header_traceparent(&headers)) {
            trace::set_parent(&span, parent);
        }
        tp = trace::traceparent(&span)
            .and_then(|t| Traceparent::new(&t).ok())
            .or(tp);
    }
    let out = st
        .inner
        .store
        .cancel(id, reason, tp)
        .instrument(span)
        .await?;
    if let (Some(checker), false) = (&st.inner.checker, out.already_cancelled) {
        // Off the void's path: a held reservation goes back now instead
        // of at its TTL.
        let checker = Arc::clone(checker);
        tokio::spawn(async move { checker.release(out.order_id).await });
    }
    let at = super::rfc3339_ms(out.cancelled_at_ms);
    Ok(Json(CancelResponse {
        order_id: out.order_id.to_string(),
        status: LocalStatus::Cancelled,
        cancelled_at: at,
        already_cancelled: out.already_cancelled,
    }))
}
