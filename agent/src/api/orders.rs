//! Order handlers: capture, read, list and cancel.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use o2c_protocol::validate::{MAX_REASON_LEN, contains_card_number};
use std::sync::Arc;

use o2c_protocol::{Fulfillment, OrderId, StockCheck, TerminalId, Traceparent};
use o2c_runtime::trace;
use sha2::{Digest, Sha256};
use tracing::Instrument as _;

use super::capture::{self, CaptureError, Price};
use super::links;
use super::model::{
    CancelRequest, CancelResponse, CaptureRequest, ErrorBody, ListQuery, OrderListItem, OrderPage,
    OrderView, SyncError,
};
use super::{ApiError, AppState, MAX_BODY_BYTES};
use crate::catalog::check::Check;
use crate::store::{LocalStatus, NewCapture, StoredOrder};

/// Capture an order: durable on this agent's disk when the answer comes,
/// synced to the cloud later. The order's id is in the answer; read it
/// with `getOrder` and void it with `cancelOrder`.
#[utoipa::path(
    post, path = "/v1/orders", tag = "orders", operation_id = "captureOrder",
    request_body(content = CaptureRequest, description = "The sale. At most 64 KiB.",
        examples(
            ("carry_out_cash" = (summary = "Two units, carried out, paid cash",
                value = json!({
                    "terminal_id": "T1", "currency": "CAD",
                    "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price_minor": 1499}],
                    "payments": [{"method": "cash", "amount_minor": 2998}],
                    "fulfillment": {"type": "carry_out"}
                }))),
            ("ship_to_home_split_tender" = (
                summary = "Two lines shipped to the customer, part card (online), part gift card",
                value = json!({
                    "terminal_id": "T1", "currency": "CAD",
                    "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price_minor": 1499},
                        {"sku": "SKU-2", "quantity": 1, "unit_price_minor": 1499}],
                    "payments": [{"method": "card", "amount_minor": 1998, "token": "tok_visa_4f9a2c",
                        "brand": "visa", "last4": "4242", "authorization": "online"},
                        {"method": "gift_card", "amount_minor": 1000, "token": "gc_7d1e0b"}],
                    "fulfillment": {"type": "ship_to_home", "address": {"name": "Ada Tremblay",
                        "line1": "123 Rue Sainte-Catherine", "city": "Montréal", "region": "QC",
                        "postal_code": "H2X 1Y4", "country": "CA"}},
                    "customer": {"email": "ada@example.com", "phone": "+1 514 555 0100"}
                }))),
        )),
    params(
        ("Idempotency-Key" = String, Header, min_length = 1, max_length = 128,
            pattern = "^[!-~]{1,128}$",
            description = "1-128 visible ASCII characters (0x21-0x7E), one per sale: a retry \
                reuses it and gets the first answer (200), the same key with another body gets \
                409 `idempotency_conflict`. A key holding what looks like a card number (a \
                Luhn-valid run of 13-19 digits) is refused as `invalid_idempotency_key`. A UUID \
                is a good key."),
        ("traceparent" = Option<String>, Header,
            description = "W3C trace context (`00-<32 hex>-<16 hex>-<2 hex>`), copied into the \
                event; an invalid value is ignored",
            example = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ),
    responses(
        (status = 201, response = inline(links::Captured)),
        (status = 200, response = inline(links::Replayed)),
        (status = 400, description = "malformed_json, malformed_body, missing_idempotency_key, \
            invalid_idempotency_key, unknown_field", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "forbidden: terminal_id is not the token's terminal", body = ErrorBody),
        (status = 409, description = "idempotency_conflict", body = ErrorBody),
        (status = 413, description = "payload_too_large (over 64 KiB)", body = ErrorBody),
        (status = 422, description = "invalid_field (a value of the wrong type or out of its \
            type's range), invalid_order (a rule of the order: `field` names the value, the \
            message ends with the rule, e.g. `(payment_total_mismatch)`), unknown_sku, \
            card_data_rejected, out_of_stock, offline_limit_exceeded, offline_currency_mismatch, \
            offline_card_unavailable", body = ErrorBody),
        (status = 503, description = "backlog_full, storage_unavailable, unavailable, \
            stock_unverified; retry after `Retry-After` seconds when given", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before a retry"))),
        (status = 507, description = "storage_full", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before a retry"))),
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
    let key = o2c_order_http::idempotency_key(headers)?;
    let body = read_body(body)?;
    o2c_order_http::scan_card_data(&body)?;
    let req = capture::parse_request(&body)?;
    same_terminal(&req.terminal_id, &terminal)?;
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
            Ok(inner
                .catalog
                .price_and_category(sku, currency, now)
                .map_err(|e| e.to_string())?
                .map(|(minor, currency, category)| Price {
                    minor,
                    currency,
                    category,
                }))
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

/// 403 unless the body's `terminal_id` is the token's terminal.
pub(crate) fn same_terminal(body_terminal: &str, token: &TerminalId) -> Result<(), ApiError> {
    if body_terminal == token.as_str() {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        "the token belongs to another terminal",
    )
    .field("terminal_id"))
}

/// The context of an event about order `id` (a void, a return): with
/// traces exported, `span` goes under the order's capture span (else the
/// till's) and its context is the event's; without, the till's context
/// goes on.
pub(crate) async fn continue_order_trace(
    st: &AppState,
    id: OrderId,
    headers: &HeaderMap,
    span: &tracing::Span,
) -> Result<Option<Traceparent>, ApiError> {
    let tp = traceparent(headers);
    if !trace::enabled() {
        return Ok(tp);
    }
    let captured = st.inner.store.order(id).await?.and_then(|o| o.traceparent);
    if let Some(parent) = captured.as_deref().or(header_traceparent(headers)) {
        trace::set_parent(span, parent);
    }
    Ok(trace::traceparent(span)
        .and_then(|t| Traceparent::new(&t).ok())
        .or(tp))
}

pub(super) fn read_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::payload_too_large(MAX_BODY_BYTES)
        } else {
            ApiError::bad_request("malformed_body", r.body_text())
        }
    })
}

pub(super) fn header_traceparent(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

pub(super) fn traceparent(headers: &HeaderMap) -> Option<Traceparent> {
    header_traceparent(headers).and_then(|s| Traceparent::new(s).ok())
}

/// The `{order_id}` of the path: 404 when it is not an order id, a
/// segment that does not decode to UTF-8 included (axum's own rejection
/// would answer a plain-text 400, outside the API's error shape).
pub(super) fn path_order_id(
    path: Result<Path<String>, PathRejection>,
) -> Result<OrderId, ApiError> {
    let not_found = || ApiError::not_found("order_not_found", "no such order");
    let Path(raw) = path.map_err(|_| not_found())?;
    raw.parse().map_err(|_| not_found())
}

/// Read one order.
#[utoipa::path(
    get, path = "/v1/orders/{order_id}", tag = "orders", operation_id = "getOrder",
    params(("order_id" = String, Path, description = "The order's id (a UUIDv7), as \
        `captureOrder` returned it; anything else is 404 `order_not_found`",
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        example = "0196f3a2-7c1e-7b3a-9f00-5a2b3c4d5e6f")),
    responses(
        (status = 200, response = inline(links::OrderRead)),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "order_not_found", body = ErrorBody),
        (status = 503, description = "storage_unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_one(
    State(st): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<OrderView>, ApiError> {
    st.authenticate(&headers).await?;
    let id = path_order_id(path)?;
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
        lines: o.lines.iter().map(o2c_order_http::line_view).collect(),
        payments: o
            .payments
            .iter()
            .map(o2c_order_http::payment_view)
            .collect(),
        fulfillment: o2c_order_http::fulfillment_body(&o.fulfillment),
        customer: o.customer.as_ref().map(o2c_order_http::customer_body),
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
        (status = 200, description = "A page of orders", body = OrderPage),
        (status = 400, description = "invalid_query (the field at fault: limit, after, \
            captured_from, captured_to)", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 503, description = "storage_unavailable", body = ErrorBody),
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

/// The body of a void: no body, or JSON `null` (what the document has
/// always allowed), is the default request.
fn cancel_request(body: &[u8]) -> Result<CancelRequest, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(CancelRequest::default());
    }
    o2c_order_http::scan_card_data(body)?;
    serde_json::from_slice::<Option<CancelRequest>>(body)
        .map(Option::unwrap_or_default)
        .map_err(|e| {
            if e.is_data() && e.to_string().starts_with("unknown field") {
                ApiError::bad_request("unknown_field", e.to_string())
            } else {
                ApiError::bad_request("malformed_json", e.to_string())
            }
        })
}

/// Void an order: appends `OrderCancelled` to the outbox. Idempotent.
#[utoipa::path(
    post, path = "/v1/orders/{order_id}/cancel", tag = "orders", operation_id = "cancelOrder",
    params(("order_id" = String, Path, description = "The order's id (a UUIDv7), as \
        `captureOrder` returned it; anything else is 404 `order_not_found`",
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        example = "0196f3a2-7c1e-7b3a-9f00-5a2b3c4d5e6f")),
    request_body(content = Option<CancelRequest>, description = "Optional: no body, `null` and \
        `{}` are the same; reason defaults to store_void. At most 64 KiB."),
    responses(
        (status = 200, response = inline(links::Cancelled)),
        (status = 400, description = "malformed_json, malformed_body, unknown_field", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "order_not_found", body = ErrorBody),
        (status = 413, description = "payload_too_large (over 64 KiB)", body = ErrorBody),
        (status = 422, description = "invalid_field, card_data_rejected", body = ErrorBody),
        (status = 503, description = "backlog_full, storage_unavailable, unavailable; retry \
            after `Retry-After` seconds", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before a retry"))),
        (status = 507, description = "storage_full", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before a retry"))),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn cancel(
    State(st): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CancelResponse>, ApiError> {
    st.authenticate(&headers).await?;
    let id = path_order_id(path)?;
    let body = read_body(body)?;
    let req = cancel_request(&body)?;
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
        return Err(o2c_order_http::BodyError::CardData {
            field: Some("reason".into()),
        }
        .into());
    }
    // A void continues its order's trace (the capture span), when traces
    // are exported; else the till's context goes on as before.
    let span = tracing::info_span!(target: trace::TARGET, "agent.cancel", otel.kind = "server",
        order_id = %id);
    let tp = continue_order_trace(&st, id, &headers, &span).await?;
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

#[cfg(test)]
mod tests;
