//! Return handlers: take goods back at a till (`requestReturn`) and read a
//! return (`getReturn`); and the pure step between them and the store,
//! request → validated `ReturnRequested` ([`build_return`]). The refund
//! tender's OpenAPI schema is written out in `schema`.
//!
//! Order of checks for a return: the bearer token, the order id in the
//! path (well-formed: an order this store did not capture is allowed, the
//! cloud checks it), the `Idempotency-Key`, card data anywhere in the raw
//! body, the JSON shape, the terminal, the payload's own rules; then the
//! store: the idempotency record, the backlog, and for an order captured
//! here the check against it (`over_return`, `not_on_order`,
//! `refund_tender_mismatch`, `refund_exceeds_tender`, `order_cancelled`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use o2c_order_http::{BodyError, parse_body};
use o2c_protocol::returns::{ReturnLine, ReturnRequested};
use o2c_protocol::validate::CARD_DATA;
use o2c_protocol::{OrderId, ReturnId, TerminalId};
use o2c_runtime::trace;
use sha2::{Digest, Sha256};
use tracing::Instrument as _;

use super::model::{ErrorBody, ReturnRequest, ReturnView};
use super::{ApiError, AppState, links, orders};
use crate::store::{NewReturn, ReturnOutcome};

/// Take goods back: the return is durable on this agent's disk when the
/// answer comes, its `ReturnRequested` event synced to the cloud later,
/// which checks it against the order and refunds a card. A return of an
/// order this agent captured is checked here first against the order and
/// its earlier returns here; one of an order it does not know (another
/// store's, a web order) is taken unverified (`verified_locally: false`,
/// no amount until the cloud answers). Read it with `getReturn`.
#[utoipa::path(
    post, path = "/v1/orders/{order_id}/returns", tag = "returns",
    operation_id = "requestReturn",
    params(
        ("order_id" = String, Path, description = "The order the goods were sold on (a \
            UUIDv7): this store's, another store's or a web order's. Anything but a UUIDv7 is \
            404 `order_not_found`",
            pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
            example = "0196f3a2-7c1e-7b3a-9f00-5a2b3c4d5e6f"),
        ("Idempotency-Key" = String, Header, min_length = 1, max_length = 128,
            pattern = "^[!-~]{1,128}$",
            description = "1-128 visible ASCII characters, one per return, with the rules of \
                `captureOrder`'s: a retry with the same key, order and body gets the first \
                answer (200); the same key with another order or body gets 409 \
                `idempotency_conflict`."),
        ("traceparent" = Option<String>, Header,
            description = "W3C trace context, copied into the event; without one, the return \
                of an order captured here continues that order's trace",
            example = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ),
    request_body(content = ReturnRequest, description = "The return. At most 64 KiB.",
        examples(
            ("card" = (summary = "One unit back to the card the order was paid with",
                value = json!({
                    "terminal_id": "T1",
                    "lines": [{"sku": "SKU-1", "quantity": 1}],
                    "refund": {"method": "card", "token": "tok_visa_4f9a2c", "brand": "visa",
                        "last4": "4242"},
                    "reason": "damaged"
                }))),
            ("cash" = (summary = "Two units of two SKUs back in cash",
                value = json!({
                    "terminal_id": "T1",
                    "lines": [{"sku": "SKU-1", "quantity": 1}, {"sku": "SKU-2", "quantity": 1}],
                    "refund": {"method": "cash"},
                    "reason": "changed_mind"
                }))),
        )),
    responses(
        (status = 201, response = inline(links::ReturnCreated)),
        (status = 200, response = inline(links::ReturnReplayed)),
        (status = 400, description = "malformed_json, malformed_body, missing_idempotency_key, \
            invalid_idempotency_key, unknown_field", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "forbidden: terminal_id is not the token's terminal", body = ErrorBody),
        (status = 404, description = "order_not_found: the path's order id is not a UUIDv7",
            body = ErrorBody),
        (status = 409, description = "idempotency_conflict", body = ErrorBody),
        (status = 413, description = "payload_too_large (over 64 KiB)", body = ErrorBody),
        (status = 422, description = "invalid_field (a value of the wrong type, or a rule of \
            the return: `field` names the value, the message ends with the rule), \
            card_data_rejected; for an order captured here: over_return (`lines[i].quantity`), \
            not_on_order (`lines[i].sku`), refund_tender_mismatch and refund_exceeds_tender \
            (`refund`), order_cancelled (`order_id`)", body = ErrorBody),
        (status = 503, description = "backlog_full, storage_unavailable, unavailable; retry \
            after `Retry-After` seconds", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before a retry"))),
        (status = 507, description = "storage_full", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before a retry"))),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn request_return(
    State(st): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = request_inner(&st, &headers, path, body).await;
    let m = &st.inner.metrics;
    match result {
        Ok(out) => {
            let (status, result) = if out.replayed {
                (StatusCode::OK, "replayed")
            } else {
                (StatusCode::CREATED, "created")
            };
            m.return_outcome(result);
            let location = format!("/v1/returns/{}", out.return_id);
            (
                status,
                [
                    (header::CONTENT_TYPE, "application/json".to_owned()),
                    (header::LOCATION, location),
                ],
                out.response_json,
            )
                .into_response()
        }
        Err(e) => {
            m.return_outcome("refused");
            e.into_response()
        }
    }
}

async fn request_inner(
    st: &AppState,
    headers: &HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<ReturnOutcome, ApiError> {
    let terminal = st.authenticate(headers).await?;
    let order_id = orders::path_order_id(path)?;
    let key = o2c_order_http::idempotency_key(headers)?;
    let body = orders::read_body(body)?;
    o2c_order_http::scan_card_data(&body)?;
    let req: ReturnRequest = parse_body(&body)?;
    orders::same_terminal(&req.terminal_id, &terminal)?;
    let return_id = ReturnId::from_uuid(uuid::Uuid::now_v7())
        .map_err(|e| ApiError::internal("minting a return id", &e))?;
    let request = build_return(req, order_id, return_id, terminal)?;
    let request_sha256 = request_hash(order_id, &body);
    // A return continues its order's trace (the capture span) when traces
    // are exported; else the till's context goes on, or, without one, the
    // writer continues the order's stored trace.
    let span = tracing::info_span!(target: trace::TARGET, "agent.return", otel.kind = "server",
        order_id = %order_id, return_id = %return_id);
    let tp = orders::continue_order_trace(st, order_id, headers, &span).await?;
    Ok(st
        .inner
        .store
        .request_return(NewReturn {
            request,
            idempotency_key: key,
            request_sha256,
            traceparent: tp,
        })
        .instrument(span)
        .await?)
}

/// What the idempotency record compares: the order (from the path) and
/// the body, so the same key and body for another order is a conflict.
pub(crate) fn request_hash(order_id: OrderId, body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"return\n");
    h.update(order_id.to_string().as_bytes());
    h.update(b"\n");
    h.update(body);
    h.finalize().into()
}

/// The `ReturnRequested` of a parsed request, checked against its own
/// rules (`ReturnRequested::problems`, their `payload.` paths mapped onto
/// the request's names): 422 `card_data_rejected` for card data, else 422
/// `invalid_field` naming the first problem's field.
pub(crate) fn build_return(
    req: ReturnRequest,
    order_id: OrderId,
    return_id: ReturnId,
    terminal_id: TerminalId,
) -> Result<ReturnRequested, ApiError> {
    let request = ReturnRequested {
        order_id,
        return_id,
        terminal_id,
        lines: req
            .lines
            .into_iter()
            .map(|l| ReturnLine {
                sku: l.sku,
                quantity: l.quantity,
            })
            .collect(),
        refund: req.refund.0,
        reason: req.reason,
    };
    let problems = request.problems();
    let first = problems
        .iter()
        .find(|e| e.code == CARD_DATA)
        .or_else(|| problems.first());
    if let Some(e) = first {
        let field = e
            .field
            .strip_prefix("payload.")
            .unwrap_or(&e.field)
            .to_owned();
        if e.code == CARD_DATA {
            return Err(BodyError::CardData { field: Some(field) }.into());
        }
        let message = e.message.replace("payload.", "");
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!("{message} ({})", e.code),
        )
        .field(field));
    }
    Ok(request)
}

/// Read one return: what was taken, how the money goes back, and where
/// the cloud's check of it stands.
#[utoipa::path(
    get, path = "/v1/returns/{return_id}", tag = "returns", operation_id = "getReturn",
    params(("return_id" = String, Path, description = "The return's id (a UUIDv7), as \
        `requestReturn` returned it; anything else is 404 `return_not_found`",
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        example = "0196f3b0-1a2b-7c3d-8e4f-5a6b7c8d9e0f")),
    responses(
        (status = 200, description = "The return", body = ReturnView),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "return_not_found", body = ErrorBody),
        (status = 503, description = "storage_unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_return(
    State(st): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<ReturnView>, ApiError> {
    st.authenticate(&headers).await?;
    let not_found = || ApiError::not_found("return_not_found", "no such return");
    let Path(raw) = path.map_err(|_| not_found())?;
    let id: ReturnId = raw.parse().map_err(|_| not_found())?;
    let stored = st
        .inner
        .store
        .stored_return(id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(stored.view()))
}

mod schema;

#[cfg(test)]
mod tests;
