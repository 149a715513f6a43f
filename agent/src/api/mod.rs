//! The local HTTP API (axum): routes, shared state, terminal auth and the
//! error-counting layer. Handlers live in [`orders`](self) (capture, read,
//! list, cancel), [`returns`](self) (take a return, read one; and the
//! request → `ReturnRequested` step), [`report`](self) (the Z-report) and
//! [`misc`](self) (products, sync, OpenAPI); the
//! request → validated `Order` translation (over the JSON bodies) in
//! [`capture`]; `/healthz`,
//! `/readyz` and `/metrics` are `o2c_runtime::http`'s, over the agent's
//! probes in [`ops`](self); bodies in [`model`] (the order's parts, their
//! OpenAPI schemas, parsing and the error body are `o2c_order_http`'s,
//! shared with the cloud order API), the links between operations in
//! [`links`](self); errors in
//! [`error`](self); terminal bearer auth (config file and CLI-managed
//! terminals) in [`auth`](self).

mod auth;
pub mod capture;
mod error;
mod links;
pub(crate) mod misc;
pub mod model;
pub(crate) mod ops;
pub(crate) mod orders;
pub(crate) mod report;
pub(crate) mod returns;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use o2c_protocol::{StoreId, TerminalId};

pub(crate) use error::ApiError;
use error::ErrorCode;

use crate::business_day::BusinessDay;
use crate::catalog::Catalog;
use crate::catalog::check::StockChecker;
use crate::config::Config;
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
    auth: auth::TerminalAuth,
    offline: capture::OfflineLimits,
    connected: Arc<AtomicBool>,
    checker: Option<Arc<StockChecker>>,
    /// The store's business day, for the Z-report.
    business_day: BusinessDay,
    /// `[outbox] retention_days`, for the Z-report.
    retention_days: u32,
}

impl AppState {
    /// Builds the state. `connected` is the flag the sync task sets.
    pub fn new(
        config: &Config,
        store: Store,
        catalog: Catalog,
        metrics: Arc<Metrics>,
        connected: Arc<AtomicBool>,
        checker: Option<Arc<StockChecker>>,
    ) -> Self {
        Self {
            inner: Arc::new(AppInner {
                auth: auth::TerminalAuth::new(
                    config
                        .terminals
                        .iter()
                        .map(|t| (t.id.clone(), t.token_sha256.0))
                        .collect(),
                    store.clone(),
                ),
                store,
                catalog,
                metrics,
                store_id: config.store_id.clone(),
                offline: capture::OfflineLimits {
                    currency: config.store.currency,
                    floor_minor: config.payments.offline_floor_limit_minor,
                },
                connected,
                checker,
                business_day: config.business_day(),
                retention_days: config.outbox.retention_days,
            }),
        }
    }

    /// The terminal whose bearer token the request carries (config file
    /// or CLI-managed; see [`auth`](self)).
    async fn authenticate(&self, headers: &HeaderMap) -> Result<TerminalId, ApiError> {
        self.inner.auth.authenticate(headers).await
    }
}

/// The full router, with state applied.
pub fn router(state: AppState) -> Router {
    let probes = Arc::new(ops::AgentProbes {
        store: state.inner.store.clone(),
        metrics: Arc::clone(&state.inner.metrics),
        connected: Arc::clone(&state.inner.connected),
    });
    Router::new()
        .route("/v1/orders", post(orders::capture).get(orders::list))
        .route("/v1/orders/{order_id}", get(orders::get_one))
        .route("/v1/orders/{order_id}/cancel", post(orders::cancel))
        .route(
            "/v1/orders/{order_id}/returns",
            post(returns::request_return),
        )
        .route("/v1/returns/{return_id}", get(returns::get_return))
        .route("/v1/reports/z", get(report::z_report))
        .route("/v1/products/{sku}", get(misc::product))
        .route("/v1/catalog/status", get(misc::catalog_status))
        .route("/v1/sync", get(misc::sync))
        .merge(o2c_runtime::http::router(probes))
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
