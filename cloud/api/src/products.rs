//! `GET /v1/products`: what a web shop or app shows before an order, the
//! catalog's active products priced in one currency the API sells in.
//! The prices are the ones `createOrder` charges (the catalog's price in
//! force now), so a client that orders what it listed is never refused
//! `unknown_sku` or `price_changed`, unless the catalog changed between.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use o2c_order_http::{ApiError, ErrorBody};
use time::OffsetDateTime;

use crate::build::{BuildError, sold_currency};
use crate::http::{Shared, bad_query, page_limit, sku_shaped, store_error};
use crate::model::{ProductPage, ProductParams, ProductView};

/// The catalog's active products priced in `currency`, in SKU order, paged
/// with `after`. Order one with `createOrder`: its `sku`, and its
/// `unit_price_minor` as the line's price.
#[utoipa::path(
    get, path = "/v1/products", tag = "catalog", operation_id = "listProducts",
    security(("bearer" = [])),
    params(ProductParams),
    responses(
        (status = 200, response = inline(crate::openapi::ProductsRead)),
        (status = 400, description = "invalid_query (`field` names the parameter)",
            body = ErrorBody),
        (status = 401, response = inline(crate::openapi::Unauthorized)),
        (status = 429, response = inline(crate::openapi::TooMany)),
        (status = 503, response = inline(crate::openapi::Unavailable)),
    )
)]
pub(crate) async fn list(
    State(api): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<ProductParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let customer = api.authenticate(&headers, peer)?;
    let Query(q) = query.map_err(|e| bad_query(&e))?;
    let currency = sold_currency(&q.currency, &api.currencies).map_err(|e| match e {
        BuildError::Invalid { message, .. } => {
            ApiError::bad_request("invalid_query", message).field("currency")
        }
        other => ApiError::internal("currency check", &other),
    })?;
    let limit = page_limit(q.limit)?;
    let after = q.after.unwrap_or_default();
    if !after.is_empty() && !sku_shaped(&after) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!(
                "after must be a SKU of at most {} characters",
                o2c_protocol::validate::MAX_SKU_LEN
            ),
        )
        .field("after"));
    }
    let code = currency.to_string();
    let rows = api
        .db
        .priced_products(&customer, &code, &after, u32::try_from(limit).unwrap_or(20))
        .await
        .map_err(store_error)?;
    let full = rows.len() == usize::try_from(limit).unwrap_or(0);
    let next_after = full.then(|| rows.last().map(|p| p.sku.clone())).flatten();
    let now = OffsetDateTime::now_utc();
    let products = rows
        .into_iter()
        .filter_map(|p| {
            let unit_price_minor = p.price_at(currency, now)?;
            Some(ProductView {
                sku: p.sku,
                name: p.name,
                category: p.category,
                unit_price_minor,
            })
        })
        .collect();
    Ok(axum::Json(ProductPage {
        currency: code,
        products,
        next_after,
    })
    .into_response())
}
