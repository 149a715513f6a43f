//! [`ApiError`]: every failure an order API reports, as a status and the
//! stable body `{"error": {"code", "message", "field"}}`. Internal details
//! are logged, never sent, and no message carries a card number.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::body::{ErrorBody, ErrorDetail};
use crate::parse::BodyError;

/// The error code of a response, left in its extensions for the metrics.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

/// An API failure.
#[derive(Debug, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// Stable machine code.
    pub code: &'static str,
    /// Human explanation.
    pub message: String,
    /// The request field at fault.
    pub field: Option<String>,
    /// `Retry-After`, seconds.
    pub retry_after_secs: Option<u32>,
    /// `WWW-Authenticate`, for a 401.
    pub challenge: Option<String>,
}

impl ApiError {
    /// An error; a card number in `message` is redacted.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
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
            challenge: None,
        }
    }

    /// Names the request field at fault (none when empty).
    pub fn field(mut self, field: impl Into<String>) -> Self {
        let f = field.into();
        self.field = (!f.is_empty()).then_some(f);
        self
    }

    /// Sets `Retry-After`.
    pub fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// Sets `WWW-Authenticate`.
    pub fn challenge(mut self, challenge: impl Into<String>) -> Self {
        self.challenge = Some(challenge.into());
        self
    }

    /// 400.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 422 `invalid_order`: the order breaks `rule` at `field` (the
    /// message ends with the rule, e.g. `(payment_total_mismatch)`).
    pub fn invalid_order(field: String, rule: &str, message: &str) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_order",
            format!("{message} ({rule})"),
        )
        .field(field)
    }

    /// 404.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 413.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body must be at most {limit} bytes"),
        )
    }

    /// 500; `e` is logged, not sent.
    pub fn internal(what: &str, e: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %e, "{what}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the request was not applied",
        )
    }
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
        match e {
            BodyError::Malformed(m) => ApiError::bad_request("malformed_json", m),
            BodyError::UnknownField { field } => {
                ApiError::bad_request("unknown_field", format!("unknown field `{field}`"))
                    .field(field)
            }
            BodyError::Shape { field, message } => {
                ApiError::new(unprocessable, "invalid_field", message).field(field)
            }
            BodyError::CardData { field } => {
                let mut e = ApiError::new(
                    unprocessable,
                    "card_data_rejected",
                    "the request contains what looks like a card number; send a payment token",
                );
                e.field = field;
                e
            }
            BodyError::MissingKey => ApiError::bad_request(
                "missing_idempotency_key",
                "the Idempotency-Key header is required",
            ),
            BodyError::BadKey => ApiError::bad_request(
                "invalid_idempotency_key",
                "the Idempotency-Key must be 1-128 visible ASCII characters",
            ),
        }
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
        if let Some(c) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, c);
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
