//! What the simulators (`psp_sim`, `carrier_sim`) share: their state's
//! lock and their JSON error answer.

use std::sync::{Mutex, MutexGuard};

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Locks a simulator's state, taking it as it is if a handler panicked
/// while holding it.
pub(crate) fn lock<T>(s: &Mutex<T>) -> MutexGuard<'_, T> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// `{"error": code}` with `status`.
pub(crate) fn error(status: StatusCode, code: &str) -> Response {
    (status, Json(serde_json::json!({ "error": code }))).into_response()
}
