//! The local HTTP API (axum): routes, shared state, terminal auth and the
//! error-counting layer. Handlers live in [`orders`](self) (capture, read,
//! list, cancel) and [`misc`](self) (products, sync, health, metrics,
//! OpenAPI); bodies in [`model`]; errors in [`error`](self).

mod error;
pub(crate) mod misc;
pub mod model;
pub(crate) mod orders;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use o2c_protocol::{StoreId, TerminalId};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub(crate) use error::ApiError;
use error::ErrorCode;

use crate::catalog::Catalog;
use crate::config::{Config, TokenHash};
use crate::metrics::Metrics;
use crate::store::Store;

/// Largest accepted request body (larger gets 413 `payload_too_large`).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Everything the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<AppInner>,
}

#[derive(Debug)]
struct AppInner {
    store: Store,
    catalog: Catalog,
    metrics: Arc<Metrics>,
    store_id: StoreId,
    terminals: Vec<(TerminalId, TokenHash)>,
    offline_floor_limit_minor: i64,
    connected: Arc<AtomicBool>,
}

impl AppState {
    /// Builds the state. `connected` is the flag the sync task sets.
    pub fn new(
        config: &Config,
        store: Store,
        catalog: Catalog,
        metrics: Arc<Metrics>,
        connected: Arc<AtomicBool>,
    ) -> Self {
        Self {
            inner: Arc::new(AppInner {
                store,
                catalog,
                metrics,
                store_id: config.store_id.clone(),
                terminals: config
                    .terminals
                    .iter()
                    .map(|t| (t.id.clone(), t.token_sha256))
                    .collect(),
                offline_floor_limit_minor: config.payments.offline_floor_limit_minor,
                connected,
            }),
        }
    }

    /// The terminal whose bearer token the request carries.
    fn authenticate(&self, headers: &HeaderMap) -> Result<&TerminalId, ApiError> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(ApiError::unauthorized)?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Compare against every terminal, in constant time per comparison.
        let mut found = None;
        for (id, hash) in &self.inner.terminals {
            if bool::from(hash.0.ct_eq(&digest)) {
                found = Some(id);
            }
        }
        found.ok_or_else(ApiError::unauthorized)
    }
}

/// The full router, with state applied.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/orders", post(orders::capture).get(orders::list))
        .route("/v1/orders/{order_id}", get(orders::get_one))
        .route("/v1/orders/{order_id}/cancel", post(orders::cancel))
        .route("/v1/products/{sku}", get(misc::product))
        .route("/v1/sync", get(misc::sync))
        .route("/healthz", get(misc::healthz))
        .route("/readyz", get(misc::readyz))
        .route("/metrics", get(misc::metrics))
        .route("/openapi.json", get(misc::openapi))
        .fallback(|| async { ApiError::not_found("not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), count_errors))
        .with_state(state)
}

async fn count_errors(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    if let Some(ErrorCode(code)) = resp.extensions().get::<ErrorCode>() {
        state.inner.metrics.error(code);
    }
    resp
}

/// Unix milliseconds as RFC 3339 (empty if out of range).
pub(crate) fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
