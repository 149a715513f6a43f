//! How the agent's own failures become an `ApiError` (the shared
//! `o2c_order_http` one: a status and the stable body `{"error": {"code",
//! "message", "field"}}`). Internal details are logged, never sent.

use axum::http::StatusCode;

use super::capture::CaptureError;
use crate::catalog::CatalogError;
use crate::report::ReportError;
use crate::store::StoreError;

pub(crate) use o2c_order_http::{ApiError, ErrorCode};

/// 401 for a request without a terminal's valid bearer token.
pub(crate) fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a valid `Authorization: Bearer <token>` header is required",
    )
}

impl From<CaptureError> for ApiError {
    fn from(e: CaptureError) -> Self {
        let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
        match e {
            CaptureError::Body(b) => ApiError::from(b),
            CaptureError::Invalid {
                field,
                rule,
                message,
            } => ApiError::invalid_order(field, &rule, &message),
            CaptureError::UnknownSku { field } => ApiError::new(
                unprocessable,
                "unknown_sku",
                "the SKU is not in the catalog; send unit_price_minor",
            )
            .field(field),
            CaptureError::OfflineFloor {
                field,
                amount,
                limit,
            } => ApiError::new(
                unprocessable,
                "offline_limit_exceeded",
                format!("offline card payment of {amount} exceeds the floor limit of {limit}"),
            )
            .field(field),
            CaptureError::OfflineUnavailable { field } => ApiError::new(
                unprocessable,
                "offline_card_unavailable",
                "this store takes no offline card payment ([store] currency is not configured); \
                 authorise the card online or take another tender",
            )
            .field(field),
            CaptureError::OfflineCurrency { order, store } => ApiError::new(
                unprocessable,
                "offline_currency_mismatch",
                format!(
                    "offline card payments are limited in {store}, the store's currency; this \
                     order is in {order}: authorise the card online or take another tender"
                ),
            )
            .field("currency"),
            CaptureError::Catalog(m) => ApiError::internal("catalog lookup failed", &m),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::StorageFull(m) => {
                tracing::warn!(error = %m, "storage full");
                ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "storage_full",
                    "the store's disk is full; nothing was written",
                )
                .retry_after(5)
            }
            StoreError::StorageIo(m) => {
                tracing::warn!(error = %m, "storage I/O error");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "storage I/O error; nothing was written",
                )
                .retry_after(1)
            }
            StoreError::IdempotencyConflict => ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_conflict",
                "this Idempotency-Key was already used with a different request",
            ),
            StoreError::BacklogFull { pending, limit } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "backlog_full",
                format!("{pending} events are waiting for the cloud (limit {limit}); retry later"),
            )
            .retry_after(30),
            StoreError::OfflineCapExceeded { would_be, cap } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "offline_limit_exceeded",
                format!(
                    "unconfirmed offline card total would be {would_be}, above the store cap of {cap}"
                ),
            )
            .field("payments"),
            StoreError::OfflineCurrency { order, store } => match store {
                Some(store) => ApiError::from(CaptureError::OfflineCurrency { order, store }),
                None => ApiError::from(CaptureError::OfflineUnavailable {
                    field: "payments".into(),
                }),
            },
            StoreError::ReturnRefused(r) => {
                let field = r.field();
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, r.code(), r.to_string())
                    .field(field)
            }
            StoreError::OrderNotFound(id) => {
                ApiError::not_found("order_not_found", format!("no order {id}"))
            }
            StoreError::WriterGone => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the agent is shutting down",
            )
            .retry_after(1),
            other => ApiError::internal("store error", &other),
        }
    }
}

impl From<ReportError> for ApiError {
    fn from(e: ReportError) -> Self {
        ApiError::internal("report error", &e)
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        ApiError::internal("catalog error", &e)
    }
}
