//! Products, sync state and the OpenAPI document.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use super::model::{ErrorBody, SyncResponse};
use super::{ApiError, AppState};
use o2c_protocol::breaker::BreakerState;

use crate::catalog::Kind;
use crate::catalog::pull::PullStatus;

/// A catalog entry as the till sees it, from the local cache.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ProductView {
    /// Stock-keeping unit.
    #[schema(example = "SKU-1")]
    pub(crate) sku: String,
    /// Display name.
    pub(crate) name: String,
    /// Category.
    pub(crate) category: Option<String>,
    /// Sellable; capture refuses an inactive SKU as `unknown_sku`.
    pub(crate) active: bool,
    /// The price in force now in the store currency, minor units (absent
    /// when the catalog has none).
    pub(crate) price_minor: Option<i64>,
    /// Its ISO 4217 code.
    #[schema(example = "CAD")]
    pub(crate) currency: Option<String>,
    /// Every price of the product, with its `effective_from`.
    #[schema(value_type = Vec<Object>)]
    pub(crate) prices: Vec<o2c_protocol::catalog::Price>,
    /// Units on hand in the cloud's books for this store, as last pulled.
    pub(crate) on_hand: Option<i64>,
    /// What can be promised: the cloud's on-hand as last pulled, less the
    /// units it holds for open orders and this store's carry-out sales it
    /// has not confirmed yet.
    pub(crate) available: Option<i64>,
    /// The catalog version the cache holds.
    pub(crate) catalog_version: Option<u64>,
}

/// A catalog entry, from the local cache.
#[utoipa::path(
    get, path = "/v1/products/{sku}", tag = "catalog", operation_id = "getProduct",
    params(("sku" = String, Path, description = "SKU", example = "SKU-1")),
    responses(
        (status = 200, body = ProductView),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "unknown_sku", body = ErrorBody),
        (status = 503, description = "storage_unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn product(
    State(st): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<ProductView>, ApiError> {
    st.authenticate(&headers).await?;
    let unknown = || ApiError::not_found("unknown_sku", "no such SKU in the catalog");
    // A segment that is not UTF-8 names no SKU (axum's own rejection would
    // answer a plain-text 400, outside the API's error shape).
    let Path(sku) = path.map_err(|_| unknown())?;
    let catalog = &st.inner.catalog;
    let p = catalog.get(&sku)?.ok_or_else(unknown)?;
    // The store currency, or (a store without one) the product's first.
    let currency = st
        .inner
        .offline
        .currency
        .or_else(|| p.prices.first().map(|x| x.currency));
    let now = time::OffsetDateTime::from(o2c_runtime::clock::wall());
    let stock = catalog.stock(&sku)?;
    let unreflected = match &stock {
        Some(_) => st.inner.store.unreflected_units(&sku).await?,
        None => 0,
    };
    Ok(Json(ProductView {
        price_minor: currency
            .filter(|_| p.active)
            .and_then(|c| p.price_at(c, now)),
        currency: currency.map(|c| c.code().to_owned()),
        on_hand: stock.as_ref().map(|s| s.on_hand),
        available: stock
            .as_ref()
            .map(|s| (s.on_hand - s.reserved - unreflected).max(0)),
        catalog_version: catalog.version(Kind::Catalog)?.map(|v| v.0),
        sku: p.sku,
        name: p.name,
        category: p.category,
        active: p.active,
        prices: p.prices,
    }))
}

/// The catalog cache and its pulls from the cloud (operational state, like
/// `GET /v1/sync`: no till token needed).
#[utoipa::path(
    get, path = "/v1/catalog/status", tag = "catalog", operation_id = "getCatalogStatus",
    responses(
        (status = 200, body = PullStatus),
        (status = 503, description = "storage_unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn catalog_status(
    State(st): State<AppState>,
) -> Result<Json<PullStatus>, ApiError> {
    let mut status = st.inner.catalog.status()?;
    status.stock_check_breaker = st.inner.checker.as_ref().map(|c| {
        match c.breaker_state() {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
        .to_owned()
    });
    Ok(Json(status))
}

/// Outbox and cloud-link state.
#[utoipa::path(
    get, path = "/v1/sync", tag = "sync", operation_id = "getSync",
    responses(
        (status = 200, body = SyncResponse),
        (status = 503, description = "storage_unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn sync(State(st): State<AppState>) -> Result<Json<SyncResponse>, ApiError> {
    let now_ms = crate::store::now_ms();
    let c = st.inner.store.sync_counts(now_ms).await?;
    Ok(Json(SyncResponse {
        connected: st.inner.connected.load(Ordering::Acquire),
        pending_events: c.pending_events,
        oldest_pending_age_ms: c.oldest_pending_age_ms,
        last_acked_seq: c.last_acked_seq,
        last_ack_at: c.last_ack_at_ms.map(super::rfc3339_ms),
        rejected_events: c.rejected_events,
    }))
}

/// This document.
#[utoipa::path(
    get, path = "/openapi.json", tag = "ops",
    responses((status = 200, description = "OpenAPI 3 document", content_type = "application/json"))
)]
pub(crate) async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::openapi_json(),
    )
        .into_response()
}
