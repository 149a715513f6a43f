//! The store API's routes:
//! - `GET /v1/stores/{store}/catalog?since=V&after=SKU&upto=V`
//! - `GET /v1/stores/{store}/stock?since=V&after=SKU&upto=V`
//!
//! The store comes from the client certificate; a path naming another
//! store is 403. Each answer carries an `ETag` naming the version it was
//! read at, and a request whose `If-None-Match` names the current one is
//! answered 304 from memory, without touching PostgreSQL. Bodies are
//! gzip-compressed for clients that accept it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Extension, Path, Query};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use o2c_protocol::catalog::CatalogVersion;
use o2c_runtime::tls::FleetIdentity;
use serde::Serialize;

use super::{Pg, Versions, store_of};
use crate::metrics::Metrics;
use crate::pages::{self, PageRequest};
use o2c_protocol::catalog::{OutOfStock, ReservationAnswer, ReservationRequest};
use o2c_protocol::{OrderId, StoreId};
use o2c_saga::store_reservation::{Outcome, Reservations};

/// What the handlers share.
#[derive(Debug, Clone)]
pub(crate) struct State {
    pub(crate) pg: Arc<Pg>,
    pub(crate) versions: Arc<Versions>,
    pub(crate) page_size: u32,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) reservations: Arc<Reservations>,
}

/// The store API router (without TLS: [`super::serve`] adds the identity).
pub(crate) fn router(state: State) -> Router {
    Router::new()
        .route("/v1/stores/{store}/catalog", get(catalog))
        .route("/v1/stores/{store}/stock", get(stock))
        .route("/v1/stores/{store}/reservations", post(reserve))
        .route(
            "/v1/stores/{store}/reservations/{order_id}",
            delete(release),
        )
        .fallback(|| async {
            error(StatusCode::NOT_FOUND, "not_found", "no such route").into_response()
        })
        .layer(tower_http::compression::CompressionLayer::new().gzip(true))
        .with_state(state)
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: String,
}

/// An error answer: status, code and message.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

fn error(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        code,
        message: message.into(),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: self.code,
                message: self.message,
            }),
        )
            .into_response()
    }
}

/// The store the caller may read, or the 403.
fn authorize(identity: &FleetIdentity, store: &str) -> Result<(), ApiError> {
    match store_of(identity) {
        Some(own) if own == store => Ok(()),
        Some(own) => Err(error(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this certificate is store {own}'s; it cannot read store {store}"),
        )),
        None => Err(error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this certificate names no store agent",
        )),
    }
}

/// Parses `since`, `after` and `upto`; anything else is refused.
fn page_request(q: &HashMap<String, String>) -> Result<PageRequest, ApiError> {
    let mut req = PageRequest::default();
    for (k, v) in q {
        let version = || {
            v.parse::<u64>().map(CatalogVersion).map_err(|_| {
                error(
                    StatusCode::BAD_REQUEST,
                    "invalid_query",
                    format!("{k}: {v:?} is not a version (a whole number)"),
                )
            })
        };
        match k.as_str() {
            "since" => req.since = Some(version()?),
            "upto" => req.upto = Some(version()?),
            "after" if !v.is_empty() && v.len() <= o2c_protocol::catalog::MAX_SKU => {
                req.after = Some(v.clone());
            }
            "after" => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "invalid_query",
                    "after: must be a SKU of 1 to 64 bytes",
                ));
            }
            _ => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "invalid_query",
                    format!("unknown parameter {k:?} (since, after, upto)"),
                ));
            }
        }
    }
    Ok(req)
}

fn etag(kind: char, v: CatalogVersion) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{kind}{v}\"")).unwrap_or(HeaderValue::from_static("\"\""))
}

/// Whether `If-None-Match` names `tag` (or is `*`).
fn not_modified(headers: &HeaderMap, tag: &HeaderValue) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || Some(t) == tag.to_str().ok())
}

fn unmodified(tag: HeaderValue) -> Response {
    (StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response()
}

fn with_tag(body: impl Serialize, tag: HeaderValue) -> Response {
    (
        [
            (header::ETAG, tag),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        Json(body),
    )
        .into_response()
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %e, "catalog: database read failed");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the catalog database cannot be read; try again later",
    )
}

/// The start every page route shares: the caller's own store, a valid
/// query, and the store remembered for hints.
async fn page_start(
    st: &State,
    identity: &FleetIdentity,
    store: &str,
    q: &HashMap<String, String>,
) -> Result<PageRequest, ApiError> {
    authorize(identity, store)?;
    let req = page_request(q)?;
    st.versions.seen(&st.pg, store).await;
    Ok(req)
}

/// The answer (or the error's), counted by route and status.
fn answer(st: &State, route: &'static str, r: Result<Response, ApiError>) -> Response {
    let resp = r.unwrap_or_else(IntoResponse::into_response);
    st.metrics.request(route, resp.status());
    resp
}

async fn catalog(
    axum::extract::State(st): axum::extract::State<State>,
    Extension(identity): Extension<FleetIdentity>,
    Path(store): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let r = async {
        let req = page_start(&st, &identity, &store, &q).await?;
        let current = st.versions.catalog();
        let tag = etag('c', current);
        if not_modified(&headers, &tag) {
            return Ok(unmodified(tag));
        }
        let pg = st.pg.get().await.map_err(unavailable)?;
        let page = pages::catalog_page(&pg, &req, current, st.page_size)
            .await
            .map_err(unavailable)?;
        Ok::<_, ApiError>(with_tag(page, tag))
    }
    .await;
    answer(&st, "catalog", r)
}

async fn stock(
    axum::extract::State(st): axum::extract::State<State>,
    Extension(identity): Extension<FleetIdentity>,
    Path(store): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let r = async {
        let req = page_start(&st, &identity, &store, &q).await?;
        let current = st
            .versions
            .stock(&st.pg, &store)
            .await
            .map_err(unavailable)?;
        let tag = etag('s', current);
        if not_modified(&headers, &tag) {
            return Ok(unmodified(tag));
        }
        let pg = st.pg.get().await.map_err(unavailable)?;
        let page = pages::stock_page(
            &pg,
            st.versions.inventory_schema(),
            &store,
            &req,
            current,
            st.page_size,
        )
        .await
        .map_err(unavailable)?;
        Ok::<_, ApiError>(with_tag(page, tag))
    }
    .await;
    answer(&st, "stock", r)
}

/// Default hold of a store reservation.
const DEFAULT_TTL_SECS: u64 = 1800;

async fn reserve(
    axum::extract::State(st): axum::extract::State<State>,
    Extension(identity): Extension<FleetIdentity>,
    Path(store): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let r = async {
        authorize(&identity, &store)?;
        let store_id = StoreId::new(store.as_str())
            .map_err(|e| error(StatusCode::BAD_REQUEST, "invalid_store", e.to_string()))?;
        let req: ReservationRequest = serde_json::from_slice(&body).map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                o2c_protocol::validate::redact_card_numbers(&e.to_string()).into_owned(),
            )
        })?;
        if let Some(p) = req.problem() {
            return Err(error(StatusCode::BAD_REQUEST, "invalid_body", p));
        }
        let wanted: Vec<(String, i64)> = req
            .lines
            .iter()
            .map(|l| (l.sku.clone(), l.quantity))
            .collect();
        let ttl = std::time::Duration::from_secs(req.ttl_secs.unwrap_or(DEFAULT_TTL_SECS));
        let outcome = st
            .reservations
            .reserve(&req.order_id, &store_id, &wanted, ttl)
            .await
            .map_err(unavailable)?;
        Ok::<_, ApiError>(match outcome {
            Outcome::Held {
                lines,
                expires_at,
                state,
                repeat,
            } => {
                st.metrics
                    .reservation(if repeat { "repeat" } else { "held" });
                let code = if repeat {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                };
                let body = ReservationAnswer {
                    order_id: req.order_id,
                    state,
                    reservations: lines,
                    expires_at: Some(expires_at),
                };
                (code, Json(body)).into_response()
            }
            Outcome::OutOfStock { sku } => {
                st.metrics.reservation("out_of_stock");
                let body = OutOfStock {
                    error: "out_of_stock".into(),
                    message: format!("not enough stock of {sku}"),
                    sku,
                };
                (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
            }
            Outcome::Conflict { state } => error(
                StatusCode::CONFLICT,
                "conflict",
                format!(
                    "order {} was reserved before with other lines ({state})",
                    req.order_id
                ),
            )
            .into_response(),
        })
    }
    .await;
    answer(&st, "reservations", r)
}

async fn release(
    axum::extract::State(st): axum::extract::State<State>,
    Extension(identity): Extension<FleetIdentity>,
    Path((store, order_id)): Path<(String, String)>,
) -> Response {
    let r = async {
        authorize(&identity, &store)?;
        let store_id = StoreId::new(store.as_str())
            .map_err(|e| error(StatusCode::BAD_REQUEST, "invalid_store", e.to_string()))?;
        let order_id: OrderId = order_id.parse().map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                "invalid_order_id",
                "not an order id",
            )
        })?;
        match st
            .reservations
            .release(&order_id, &store_id)
            .await
            .map_err(unavailable)?
        {
            None => Err(error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no reservation for this order",
            )),
            Some(state) => {
                if state == "released" {
                    st.metrics.reservation("released");
                }
                Ok(
                    Json(serde_json::json!({ "order_id": order_id, "state": state }))
                        .into_response(),
                )
            }
        }
    }
    .await;
    answer(&st, "reservations", r)
}
