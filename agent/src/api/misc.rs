//! Products, sync state and the OpenAPI document.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use super::model::{ErrorBody, SyncResponse};
use super::{ApiError, AppState};
use crate::catalog::Product;

/// A catalog entry, from the local cache.
#[utoipa::path(
    get, path = "/v1/products/{sku}", tag = "catalog", operation_id = "getProduct",
    params(("sku" = String, Path, description = "SKU")),
    responses(
        (status = 200, body = Product),
        (status = 401, body = ErrorBody),
        (status = 404, description = "unknown_sku", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn product(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(sku): Path<String>,
) -> Result<Json<Product>, ApiError> {
    st.authenticate(&headers).await?;
    st.inner
        .catalog
        .get(&sku)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("unknown_sku", "no such SKU in the catalog"))
}

/// Outbox and cloud-link state.
#[utoipa::path(
    get, path = "/v1/sync", tag = "sync", operation_id = "getSync",
    responses((status = 200, body = SyncResponse))
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
