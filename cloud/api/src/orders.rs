//! The order handlers, each with its OpenAPI description.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use o2c_order_http::{ApiError, ErrorBody, idempotency_key, parse_body, scan_card_data};
use o2c_protocol::{
    Envelope, Event, Fulfillment, OrderId, SCHEMA_VERSION, SalesChannel, StockCheck, Traceparent,
};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::build::{Context, build};
use crate::http::{
    CANCEL_REASON, Shared, bad_query, build_error, order_id_of, page_limit, sku_shaped, store_error,
};
use crate::model::{CancelAccepted, CreateOrderRequest, CreatedOrder, ListParams, OrderList};
use crate::stock::Checked;
use crate::store::{Cancelled, Created};
use crate::view;

/// Create a web or mobile order for the token's customer. Its lines are
/// priced from the catalog; a ship-to-home order's stock is reserved
/// before the answer. The order's id is in the answer: read it with
/// `getOrder`, cancel it with `cancelOrder`.
#[utoipa::path(
    post, path = "/v1/orders", tag = "orders", operation_id = "createOrder",
    security(("bearer" = [])),
    request_body(content = CreateOrderRequest, description = "The order. At most 64 KiB.",
        examples(
            ("collect_in_store" = (summary = "Two units, collected in store, paid by card",
                value = json!({
                    "channel": "web", "currency": "CAD",
                    "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price_minor": 1499}],
                    "payments": [{"method": "card", "amount_minor": 2998, "token": "tok_visa_4f9a2c",
                        "brand": "visa", "last4": "4242", "authorization": "online"}],
                    "fulfillment": {"type": "carry_out"}
                }))),
            ("split_tender" = (summary = "Part card, part gift card, from the app",
                value = json!({
                    "channel": "mobile", "currency": "CAD",
                    "lines": [{"sku": "SKU-1", "quantity": 2}],
                    "payments": [
                        {"method": "card", "amount_minor": 1998, "token": "tok_visa_4f9a2c",
                         "brand": "visa", "last4": "4242", "authorization": "online"},
                        {"method": "gift_card", "amount_minor": 1000, "token": "gc_7d1e0b"}
                    ],
                    "fulfillment": {"type": "carry_out"},
                    "customer": {"email": "ada@example.com"}
                }))),
            ("ship_to_home" = (summary = "Shipped to the customer, paid by card",
                value = json!({
                    "channel": "web", "currency": "CAD",
                    "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price_minor": 1499}],
                    "payments": [{"method": "card", "amount_minor": 2998, "token": "tok_mc_81d0e4",
                        "brand": "mastercard", "last4": "4444", "authorization": "online"}],
                    "fulfillment": {"type": "ship_to_home", "address": {
                        "name": "Ada Tremblay", "line1": "123 Rue Sainte-Catherine",
                        "city": "Montréal", "region": "QC", "postal_code": "H2X 1Y4",
                        "country": "CA"}},
                    "customer": {"email": "ada@example.com", "phone": "+1 514 555 0100"}
                }))),
        )),
    params(
        ("Idempotency-Key" = String, Header, min_length = 1, max_length = 128,
            pattern = "^[!-~]{1,128}$",
            description = "1-128 visible ASCII characters, one per order and customer: a retry \
                reuses it and gets the first answer (200), the same key with another body gets \
                409 `idempotency_conflict`. A key holding what looks like a card number is \
                refused. A UUID is a good key."),
        ("traceparent" = Option<String>, Header,
            description = "W3C trace context, copied into the order's events; an invalid value \
                is ignored"),
    ),
    responses(
        (status = 201, response = inline(crate::openapi::Created)),
        (status = 200, response = inline(crate::openapi::Replayed)),
        (status = 400, description = "malformed_json, missing_idempotency_key, \
            invalid_idempotency_key, unknown_field", body = ErrorBody),
        (status = 401, response = inline(crate::openapi::Unauthorized)),
        (status = 409, description = "idempotency_conflict", body = ErrorBody),
        (status = 413, description = "payload_too_large (over 64 KiB)", body = ErrorBody),
        (status = 422, description = "invalid_field, invalid_order (`field` names the value, \
            the message ends with the rule), unknown_sku, price_changed, card_data_rejected, \
            out_of_stock", body = ErrorBody),
        (status = 429, response = inline(crate::openapi::TooMany)),
        (status = 503, response = inline(crate::openapi::Unavailable)),
    )
)]
pub(crate) async fn create(
    State(api): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let customer = api.authenticate(&headers, peer)?;
    let key = idempotency_key(&headers)?;
    scan_card_data(&body)?;
    let sha = hex::encode(Sha256::digest(&body));
    if let Some(prior) = api
        .db
        .prior(&customer, &key, &sha)
        .await
        .map_err(store_error)?
    {
        return answer(prior, None);
    }
    let req: CreateOrderRequest = parse_body(&body)?;
    // Only SKUs the catalog can hold are looked up (PostgreSQL text has no
    // NUL, and a SKU is 1-64 characters); the others are unknown, or
    // refused by the order's validation, never a failed query.
    let skus: Vec<String> = req
        .lines
        .iter()
        .map(|l| &l.sku)
        .filter(|s| sku_shaped(s))
        .cloned()
        .collect();
    let catalog = api
        .db
        .products(&customer, &skus)
        .await
        .map_err(store_error)?;
    let now = OffsetDateTime::now_utc();
    let order_id = OrderId::from_parts(
        u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0),
        rand::random(),
    );
    let cx = Context {
        store: &api.store,
        customer: &customer,
        order_id,
        now,
        currencies: &api.currencies,
    };
    let mut order = build(req, cx, &catalog).map_err(build_error)?;
    if matches!(order.fulfillment, Fulfillment::ShipToHome { .. }) {
        let wanted = o2c_saga::store_reservation::merge(
            &order
                .lines
                .iter()
                .map(|l| (l.sku.clone(), l.quantity))
                .collect::<Vec<_>>(),
        );
        order.stock_check = Some(
            match api.stock.reserve(&order_id, &api.store, &wanted).await {
                Checked::Verified => StockCheck::Verified,
                Checked::OutOfStock { sku } => {
                    let at = order.lines.iter().position(|l| l.sku == sku).unwrap_or(0);
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "out_of_stock",
                        format!("not enough stock of {sku} to ship"),
                    )
                    .field(format!("lines[{at}].quantity")));
                }
                Checked::Unverified { why } => {
                    tracing::info!(%order_id, why, "ship-to-home order taken unverified");
                    StockCheck::Unverified
                }
            },
        );
    }
    let channel = order.channel.unwrap_or(SalesChannel::Web);
    let created = view::created(&order, now);
    let env = Envelope {
        event_id: o2c_saga::outbox::new_event_id(),
        schema_version: SCHEMA_VERSION,
        store_id: api.store.clone(),
        agent_id: channel
            .cloud_agent()
            .ok_or_else(|| ApiError::internal("channel", &"pos has no cloud agent"))?,
        seq: None,
        occurred_at: now,
        traceparent: traceparent(&headers),
        payload: Event::OrderCreated(Box::new(order)),
    };
    env.validate_channel_event()
        .map_err(|e| ApiError::internal("built an invalid event", &e))?;
    let json = serde_json::to_string(&created).map_err(|e| ApiError::internal("encode", &e))?;
    let outcome = api
        .db
        .create(&customer, &key, &sha, &env, &json)
        .await
        .map_err(store_error)?;
    answer(outcome, Some(&created))
}

/// The answer to a creation: 201 for a new order, the stored body with 200
/// for a retry, 409 for a key reused with another body.
fn answer(outcome: Created, created: Option<&CreatedOrder>) -> Result<Response, ApiError> {
    match outcome {
        Created::New(body) => Ok(json_response(StatusCode::CREATED, body, created)),
        Created::Replay(body) => {
            let mut resp = json_response(StatusCode::OK, body, None);
            resp.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(resp)
        }
        Created::Conflict => Err(ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_conflict",
            "this Idempotency-Key was already used with a different request",
        )),
    }
}

fn json_response(status: StatusCode, body: String, created: Option<&CreatedOrder>) -> Response {
    let mut resp = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    if let Some(c) = created
        && let Ok(v) = HeaderValue::from_str(&format!("/v1/orders/{}", c.order_id))
    {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

fn traceparent(headers: &HeaderMap) -> Option<Traceparent> {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Traceparent::new(v).ok())
}

/// One of the customer's orders: its status and its saga history.
/// Another customer's order is not found.
#[utoipa::path(
    get, path = "/v1/orders/{order_id}", tag = "orders", operation_id = "getOrder",
    security(("bearer" = [])),
    params(("order_id" = String, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$",
        description = "The order id `createOrder` answered")),
    responses(
        (status = 200, response = inline(crate::openapi::OrderRead)),
        (status = 401, response = inline(crate::openapi::Unauthorized)),
        (status = 404, description = "order_not_found", body = ErrorBody),
        (status = 429, response = inline(crate::openapi::TooMany)),
        (status = 503, response = inline(crate::openapi::Unavailable)),
    )
)]
pub(crate) async fn get_order(
    State(api): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let customer = api.authenticate(&headers, peer)?;
    let id = order_id_of(&raw)?;
    let row = api
        .db
        .order(&customer, id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found("order_not_found", format!("no order {id}")))?;
    Ok(axum::Json(view::detail(&row)).into_response())
}

/// Cancel one of the customer's orders: the saga releases its stock,
/// cancels its shipment and refunds what was captured. Asking again
/// changes nothing (`repeat: true`).
#[utoipa::path(
    post, path = "/v1/orders/{order_id}/cancel", tag = "orders", operation_id = "cancelOrder",
    security(("bearer" = [])),
    params(("order_id" = String, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$",
        description = "The order id `createOrder` answered")),
    responses(
        (status = 202, description = "The cancellation is on its way to the saga",
            body = CancelAccepted),
        (status = 401, response = inline(crate::openapi::Unauthorized)),
        (status = 404, description = "order_not_found", body = ErrorBody),
        (status = 429, response = inline(crate::openapi::TooMany)),
        (status = 503, response = inline(crate::openapi::Unavailable)),
    )
)]
pub(crate) async fn cancel(
    State(api): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let customer = api.authenticate(&headers, peer)?;
    let id = order_id_of(&raw)?;
    let tp = traceparent(&headers);
    let outcome = api
        .db
        .cancel(
            &customer,
            id,
            |order, cancelled| {
                Some(Envelope {
                    event_id: o2c_saga::outbox::new_event_id(),
                    schema_version: SCHEMA_VERSION,
                    store_id: order.store_id.clone(),
                    agent_id: order.channel.and_then(SalesChannel::cloud_agent)?,
                    seq: None,
                    occurred_at: OffsetDateTime::now_utc(),
                    traceparent: tp,
                    payload: Event::OrderCancelled(cancelled),
                })
            },
            CANCEL_REASON,
        )
        .await
        .map_err(store_error)?;
    let repeat = match outcome {
        Cancelled::NotFound => {
            return Err(ApiError::not_found(
                "order_not_found",
                format!("no order {id}"),
            ));
        }
        Cancelled::Requested => false,
        Cancelled::Already => true,
    };
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(CancelAccepted {
            order_id: id.to_string(),
            repeat,
        }),
    )
        .into_response())
}

/// The customer's orders, newest first, with their status.
#[utoipa::path(
    get, path = "/v1/customers/me/orders", tag = "orders", operation_id = "listMyOrders",
    security(("bearer" = [])),
    params(ListParams),
    responses(
        (status = 200, description = "A page of orders", body = OrderList),
        (status = 400, description = "invalid_query", body = ErrorBody),
        (status = 401, response = inline(crate::openapi::Unauthorized)),
        (status = 429, response = inline(crate::openapi::TooMany)),
        (status = 503, response = inline(crate::openapi::Unavailable)),
    )
)]
pub(crate) async fn my_orders(
    State(api): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let customer = api.authenticate(&headers, peer)?;
    let Query(q) = query.map_err(|e| bad_query(&e))?;
    let limit = page_limit(q.limit)?;
    let before = q
        .before
        .as_deref()
        .map(|b| {
            b.parse::<OrderId>().map_err(|_| {
                ApiError::bad_request("invalid_query", "before must be an order id").field("before")
            })
        })
        .transpose()?;
    let rows = api
        .db
        .orders(&customer, limit, before)
        .await
        .map_err(store_error)?;
    let orders: Vec<_> = rows.iter().map(view::summary).collect();
    let next_before = (orders.len() == usize::try_from(limit).unwrap_or(0))
        .then(|| orders.last().map(|o| o.order_id.clone()))
        .flatten();
    Ok(axum::Json(OrderList {
        orders,
        next_before,
    })
    .into_response())
}
