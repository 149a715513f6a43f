//! # o2c-api: the cloud order API for web and mobile (`o2c-cloud api`)
//!
//! The other two channels into the same saga as the stores' tills. A
//! customer of the web shop or the app, authenticated by a JWT, creates an
//! order with an `Idempotency-Key`; it is written to the API's PostgreSQL
//! outbox in the same transaction as its idempotency record and relayed to
//! `orders.created` like a store's, with its channel (`web` | `mobile`) and
//! customer id. The customer can list the products on sale and their
//! prices beforehand. The customer then reads its status and history, lists
//! their orders, and may cancel (an `OrderCancelled`, compensated by the
//! saga like a store's void).
//!
//! Layout:
//! - [`auth`]: bearer JWTs (`jsonwebtoken`; HS256 in development, RS256 or
//!   ES256 with a public key in production).
//! - [`quota`]: 1,000 requests a minute per customer, 100 per anonymous
//!   IP (`governor`), 429 with `Retry-After`.
//! - [`model`]: the JSON bodies; the parts shared with the agent's API
//!   come from `o2c_order_http`.
//! - [`build`]: a request to a validated `Order`, priced from the catalog
//!   (pure).
//! - [`stock`]: the ship-to-home stock check, through a breaker.
//! - [`store`]: PostgreSQL (schema `o2c_api`): idempotent creation,
//!   cancellation, reads of one customer's orders.
//! - [`view`]: stored orders as bodies.
//! - [`http`], [`orders`] and [`products`]: the router, authentication,
//!   and the handlers; `GET /v1/products` lists the catalog priced in a
//!   currency, as `createOrder` prices it.
//! - [`openapi`]: the OpenAPI document, checked in as
//!   `cloud/api/openapi.json`.
//!
//! The saga side (the outbox's relay and the history projection) is the
//! saga's [`o2c_saga::Service::Api`], which [`run`] starts in the same
//! process.

pub mod auth;
pub mod build;
pub mod http;
pub mod model;
pub mod openapi;
pub mod orders;
pub mod products;
pub mod quota;
pub mod stock;
pub mod store;
pub mod view;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use o2c_cloud_common::config::Config;
use o2c_saga::Service;
use o2c_saga::runner::Selection;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Why the API stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// `[api]` settings that cannot work.
    #[error(transparent)]
    Config(#[from] o2c_runtime::config::ConfigError),
    /// The token key.
    #[error(transparent)]
    Key(#[from] auth::KeyError),
    /// PostgreSQL at start.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The HTTP server.
    #[error("http: {0}")]
    Http(#[from] std::io::Error),
    /// The saga side (relay, history projection).
    #[error(transparent)]
    Saga(#[from] o2c_saga::SagaError),
}

/// PostgreSQL connections of the HTTP side.
const LANES: usize = 8;
/// How often the quotas forget idle buckets.
const QUOTA_SWEEP: Duration = Duration::from_secs(60);

/// Runs the API on `listener` and its saga side (health and metrics on
/// `admin`) until `shutdown`.
pub async fn run(
    cfg: Config,
    listener: TcpListener,
    admin: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let api = &cfg.api;
    let verifier = auth::Verifier::from_config(&api.jwt)?;
    let store_id = api.store_id()?;
    let db = store::Store::open(&cfg.postgres.url, LANES, cfg.topics()).await?;
    let currencies: Vec<o2c_protocol::Currency> = api
        .currencies
        .iter()
        .filter_map(|c| o2c_protocol::Currency::from_code(c).ok())
        .collect();
    let state = Arc::new(http::Api {
        store: store_id,
        verifier,
        quotas: quota::Quotas::new(api.customer_per_minute, api.anonymous_per_minute),
        db,
        stock: stock::StockCheck::new(
            &cfg.postgres.url,
            &cfg.saga.central_warehouse,
            cfg.saga.auto_stock,
            Duration::from_secs(api.reservation_ttl_secs),
        ),
        trust_forwarded_for: api.trust_forwarded_for,
        document: openapi::served_json(&currencies),
        currencies,
    });
    let cancel = CancellationToken::new();
    let saga = tokio::spawn(o2c_saga::run(
        cfg.clone(),
        Selection {
            services: vec![Service::Api],
            status: false,
        },
        admin,
        cancel.clone().cancelled_owned(),
    ));
    let sweeper = tokio::spawn({
        let (state, cancel) = (state.clone(), cancel.clone());
        async move {
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(QUOTA_SWEEP) => state.quotas.shrink(),
                }
            }
        }
    });
    let reservations = tokio::spawn({
        let (state, cancel) = (state.clone(), cancel.clone());
        async move { state.stock.sweep_until(cancel).await }
    });
    tracing::info!(addr = ?listener.local_addr().ok(), "order API listening");
    let app = http::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let served = tokio::select! {
        r = axum::serve(listener, app).with_graceful_shutdown(shutdown) => r.map_err(RunError::from),
        r = saga_ended(saga) => r,
    };
    cancel.cancel();
    sweeper.abort();
    let _ = reservations.await;
    served
}

async fn saga_ended(
    saga: tokio::task::JoinHandle<Result<(), o2c_saga::SagaError>>,
) -> Result<(), RunError> {
    match saga.await {
        Ok(r) => r.map_err(RunError::from),
        Err(e) => Err(RunError::Http(std::io::Error::other(format!(
            "the saga side stopped: {e}"
        )))),
    }
}
