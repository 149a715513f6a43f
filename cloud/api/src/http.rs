//! The HTTP layer: routes, authentication and quotas, and each handler.
//!
//! Every route but `/openapi.json` needs a customer's bearer token. A valid
//! token charges its customer's quota; a request without one charges its
//! client IP's, then gets 401. Over a quota the answer is 429 with
//! `Retry-After`. Errors have the agent's shape (`o2c_order_http::ApiError`):
//! `{"error": {"code", "message", "field"}}`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use o2c_order_http::{ApiError, BodyError};
use o2c_protocol::{CustomerId, OrderId, StoreId};

use crate::auth::{AuthError, Verifier};
use crate::build::BuildError;
use crate::quota::{Quotas, RetryAfter};
use crate::stock::StockCheck as Checker;
use crate::store::{Store, StoreError};
use crate::{orders, products};

/// The largest body taken.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Why the customer cancelled, on the `OrderCancelled` event.
pub const CANCEL_REASON: &str = "customer_cancel";

/// What the handlers share.
#[derive(Debug)]
pub struct Api {
    /// The store that sells web and mobile orders.
    pub store: StoreId,
    /// Token checks.
    pub verifier: Verifier,
    /// Request quotas.
    pub quotas: Quotas,
    /// PostgreSQL.
    pub db: Store,
    /// Ship-to-home stock checks.
    pub stock: Checker,
    /// Take the client IP from `X-Forwarded-For`.
    pub trust_forwarded_for: bool,
    /// The currencies sold in; empty: any.
    pub currencies: Vec<o2c_protocol::Currency>,
    /// The OpenAPI document served (for those currencies).
    pub document: String,
}

pub(crate) type Shared = State<Arc<Api>>;

/// The router.
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/v1/orders", post(orders::create))
        .route("/v1/orders/{order_id}", get(orders::get_order))
        .route("/v1/orders/{order_id}/cancel", post(orders::cancel))
        .route("/v1/customers/me/orders", get(orders::my_orders))
        .route("/v1/products", get(products::list))
        .route("/openapi.json", get(openapi))
        .fallback(|| async { ApiError::not_found("not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(api)
}

impl Api {
    fn client_ip(&self, headers: &HeaderMap, peer: SocketAddr) -> IpAddr {
        let forwarded = self
            .trust_forwarded_for
            .then(|| headers.get("x-forwarded-for")?.to_str().ok())
            .flatten()
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok());
        forwarded.unwrap_or(peer.ip())
    }

    /// The request's customer, charged to their quota; or the answer.
    pub(crate) fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: SocketAddr,
    ) -> Result<CustomerId, ApiError> {
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match self.verifier.customer(auth) {
            Ok(customer) => {
                self.quotas.customer(&customer).map_err(too_many)?;
                Ok(customer)
            }
            Err(e) => {
                self.quotas
                    .anonymous(self.client_ip(headers, peer))
                    .map_err(too_many)?;
                Err(unauthorized(&e))
            }
        }
    }
}

pub(crate) fn too_many(r: RetryAfter) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many requests; retry in {} s", r.0),
    )
    .retry_after(u32::try_from(r.0).unwrap_or(u32::MAX))
}

fn unauthorized(e: &AuthError) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string()).challenge(format!(
        "Bearer error=\"{}\", error_description=\"{}\"",
        e.challenge(),
        match e {
            AuthError::Missing => "a bearer token is required",
            AuthError::Expired => "the token has expired",
            AuthError::BadSignature => "the signature does not verify",
            AuthError::BadSubject(_) => "the subject is not a customer id",
            AuthError::Invalid(_) => "the token is invalid",
        }
    ))
}

pub(crate) fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Db(_) | StoreError::Postgres(_) | StoreError::Catalog(_) => {
            tracing::warn!(error = %e, "order store unavailable");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the order store is unavailable; nothing was written",
            )
            .retry_after(1)
        }
        other => ApiError::internal("order store", &other),
    }
}

pub(crate) fn build_error(e: BuildError) -> ApiError {
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    match e {
        BuildError::Invalid {
            field,
            rule,
            message,
        } => ApiError::invalid_order(field, &rule, &message),
        BuildError::UnknownSku { field } => ApiError::new(
            unprocessable,
            "unknown_sku",
            "the SKU is not an active product of the catalog",
        )
        .field(field),
        BuildError::PriceChanged { field, catalog } => ApiError::new(
            unprocessable,
            "price_changed",
            format!("the unit price is now {catalog}; show the customer the new price"),
        )
        .field(field),
        BuildError::CardData { field } => {
            ApiError::from(BodyError::CardData { field: Some(field) })
        }
    }
}

/// A bad query string: 400 `invalid_query`.
pub(crate) fn bad_query(e: &axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::bad_request("invalid_query", e.body_text())
}

/// A list's `limit`: 1-100, 20 when absent.
pub(crate) fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(20);
    if (1..=100).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::bad_request("invalid_query", "limit must be 1-100").field("limit"))
    }
}

/// Whether `sku` could be a catalog SKU (1-64 characters, no NUL, which
/// PostgreSQL text cannot hold): only such strings are looked up.
pub(crate) fn sku_shaped(sku: &str) -> bool {
    !sku.is_empty()
        && sku.chars().count() <= o2c_protocol::validate::MAX_SKU_LEN
        && !sku.contains('\0')
}

pub(crate) fn order_id_of(raw: &str) -> Result<OrderId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::not_found("order_not_found", format!("no order {raw}")))
}

/// This document. No token needed (the anonymous quota applies).
#[utoipa::path(
    get, path = "/openapi.json", tag = "ops", operation_id = "openapi",
    responses(
        (status = 200, description = "The OpenAPI document", content_type = "application/json"),
        (status = 429, response = inline(crate::openapi::TooMany)),
    )
)]
pub(crate) async fn openapi(
    State(api): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    api.quotas
        .anonymous(api.client_ip(&headers, peer))
        .map_err(too_many)?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        api.document.clone(),
    )
        .into_response())
}
