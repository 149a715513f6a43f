//! Products, sync state, health, metrics and the OpenAPI document.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::model::{ErrorBody, HealthBody, SyncResponse};
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

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = HealthBody)))]
pub(crate) async fn healthz() -> Json<HealthBody> {
    Json(HealthBody {
        status: "ok".into(),
    })
}

/// Readiness: the store writer is running.
#[utoipa::path(
    get, path = "/readyz", tag = "ops",
    responses((status = 200, body = HealthBody), (status = 503, body = HealthBody))
)]
pub(crate) async fn readyz(State(st): State<AppState>) -> Response {
    if st.inner.store.is_alive() {
        Json(HealthBody {
            status: "ok".into(),
        })
        .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(HealthBody {
                status: "unavailable".into(),
            }),
        )
            .into_response()
    }
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(
    get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text"))
)]
pub(crate) async fn metrics(State(st): State<AppState>) -> Response {
    let m = &st.inner.metrics;
    m.offline_exposure
        .set(st.inner.store.offline_exposure_minor());
    m.sync_connected
        .set(i64::from(st.inner.connected.load(Ordering::Acquire)));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
        .into_response()
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
