//! `ApiError`: every failure the API reports, as a status and the stable
//! body `{"error": {"code", "message", "field"}}`. Internal details are
//! logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::capture::CaptureError;
use super::model::{ErrorBody, ErrorDetail};
use crate::catalog::CatalogError;
use crate::report::ReportError;
use crate::store::StoreError;

/// The error code of a response, left in its extensions for the metrics.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ErrorCode(pub(crate) &'static str);

/// An API failure.
#[derive(Debug, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) field: Option<String>,
    pub(crate) retry_after_secs: Option<u32>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        let mut message = message.into();
        // Parser errors quote the input; a card number never goes back.
        if o2c_protocol::validate::contains_card_number(&message) {
            message = o2c_protocol::validate::redact_card_numbers(&message).into_owned();
        }
        Self {
            status,
            code,
            message,
            field: None,
            retry_after_secs: None,
        }
    }

    pub(crate) fn field(mut self, field: impl Into<String>) -> Self {
        let f = field.into();
        self.field = (!f.is_empty()).then_some(f);
        self
    }

    fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(crate) fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid `Authorization: Bearer <token>` header is required",
        )
    }

    pub(crate) fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub(crate) fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body must be at most {limit} bytes"),
        )
    }

    fn internal(what: &str, e: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %e, "{what}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the request was not applied",
        )
    }
}

impl From<CaptureError> for ApiError {
    fn from(e: CaptureError) -> Self {
        let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
        match e {
            CaptureError::Malformed(m) => ApiError::bad_request("malformed_json", m),
            CaptureError::UnknownField { field } => {
                ApiError::bad_request("unknown_field", format!("unknown field `{field}`"))
                    .field(field)
            }
            CaptureError::Shape { field, message } => {
                ApiError::new(unprocessable, "invalid_field", message).field(field)
            }
            CaptureError::Invalid {
                field,
                rule,
                message,
            } => ApiError::new(
                unprocessable,
                "invalid_order",
                format!("{message} ({rule})"),
            )
            .field(field),
            CaptureError::UnknownSku { field } => ApiError::new(
                unprocessable,
                "unknown_sku",
                "the SKU is not in the catalog; send unit_price_minor",
            )
            .field(field),
            CaptureError::CardData { field } => {
                let mut e = ApiError::new(
                    unprocessable,
                    "card_data_rejected",
                    "the request contains what looks like a card number; send a payment token",
                );
                e.field = field;
                e
            }
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                field: self.field,
            },
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp.extensions_mut().insert(ErrorCode(self.code));
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_number_in_a_message_is_redacted() {
        let e = ApiError::bad_request(
            "malformed_json",
            "invalid type: integer `4111111111111111`, expected a string",
        );
        assert_eq!(
            e.message,
            "invalid type: integer `[redacted]`, expected a string"
        );
        let e = ApiError::bad_request("malformed_json", "expected `,` at line 1 column 12");
        assert_eq!(e.message, "expected `,` at line 1 column 12");
    }
}
