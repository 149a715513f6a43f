//! `o2c-cloud catalog --config cloud.toml`: the catalog service.
//!
//! - [`api`]: the store API (axum): catalog and stock pages for the store
//!   the client certificate names, with `ETag`/`If-None-Match`.
//! - [`serve`]: the HTTPS accept loop (mutual TLS, the fleet CA); each
//!   connection's [`FleetIdentity`] goes to the handlers as an extension.
//! - [`versions`]: the catalog and stock versions, refreshed from
//!   PostgreSQL every `refresh_ms`, and the retained MQTT change hint sent
//!   to each store when one of its versions moves.
//! - the store reservations (`POST`/`DELETE .../reservations`) are
//!   `o2c_saga::store_reservation`'s, in the inventory schema; a task here
//!   releases lapsed ones every second.

mod api;
mod serve;
mod versions;

use std::sync::Arc;

use o2c_cloud_common::config::Config;
use o2c_runtime::tls::FleetIdentity;
use tokio::net::TcpListener;
use tokio_postgres::{Client, NoTls};
use tokio_util::sync::CancellationToken;

use api::router;
use versions::Versions;

use crate::db::CatalogError;

/// Why the service could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The config cannot serve stores.
    #[error("{0}")]
    Config(String),
    /// TLS files.
    #[error(transparent)]
    Tls(#[from] o2c_runtime::tls::TlsError),
    /// MQTT settings.
    #[error(transparent)]
    Mqtt(#[from] o2c_runtime::mqtt::MqttError),
    /// PostgreSQL.
    #[error(transparent)]
    Db(#[from] CatalogError),
    /// Binding or serving.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

/// One PostgreSQL connection (queries pipeline on it), replaced when it
/// breaks.
#[derive(Debug)]
pub(crate) struct Pg {
    url: String,
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
}

impl Pg {
    pub(crate) fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            client: tokio::sync::Mutex::new(None),
        }
    }

    /// The connection, connecting if there is none or it broke.
    pub(crate) async fn get(&self) -> Result<Arc<Client>, CatalogError> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(c));
        }
        let (client, conn) = tokio_postgres::connect(&self.url, NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::warn!(error = %e, "catalog: postgres connection ended");
            }
        });
        // Planned per execution: a delta's `version > $1` is a few rows of
        // a million, which a generic plan (planned for any value) reads by
        // walking the whole SKU index.
        client
            .batch_execute("SET plan_cache_mode = force_custom_plan")
            .await?;
        let client = Arc::new(client);
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }
}

/// Checks `[catalog]` without touching a file: an inventory schema that is
/// an identifier (it is put in SQL text) and TLS files named.
pub fn check(cfg: &Config) -> Result<(), ServiceError> {
    let schema = &cfg.catalog.inventory_schema;
    if schema.is_empty()
        || !schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(ServiceError::Config(format!(
            "catalog.inventory_schema: {schema:?} is not a lower-case identifier"
        )));
    }
    if cfg.catalog.tls.is_none() {
        return Err(ServiceError::Config(
            "catalog.tls: the store API needs client_ca_file, cert_file and key_file \
             (agents are known by their client certificates)"
                .into(),
        ));
    }
    if cfg.catalog.page_size == 0 || cfg.catalog.page_size > 100_000 {
        return Err(ServiceError::Config(
            "catalog.page_size: must be 1 to 100000".into(),
        ));
    }
    Ok(())
}

/// Runs the service until `cancel`: migrates `o2c_catalog`, then serves the
/// store API on `listen` (HTTPS), the operations routes on `http` and the
/// hints.
pub async fn run(
    cfg: Config,
    listen: TcpListener,
    http: TcpListener,
    cancel: CancellationToken,
) -> Result<(), ServiceError> {
    check(&cfg)?;
    let tls = cfg
        .catalog
        .tls
        .as_ref()
        .ok_or_else(|| ServiceError::Config("catalog.tls is required".into()))?;
    let server = o2c_runtime::tls::mtls_server_config(o2c_runtime::tls::Files {
        ca: ("catalog.tls.client_ca_file", &tls.client_ca_file),
        identity: Some((
            ("catalog.tls.cert_file", &tls.cert_file),
            ("catalog.tls.key_file", &tls.key_file),
        )),
    })?;
    let pg = Arc::new(Pg::new(&cfg.postgres.url));
    crate::db::migrate(&*pg.get().await?).await?;
    // The store reservations live in the inventory service's schema.
    let (mut client, conn) = tokio_postgres::connect(&cfg.postgres.url, NoTls)
        .await
        .map_err(CatalogError::from)?;
    tokio::spawn(conn);
    o2c_saga::db::migrate(&mut client, o2c_saga::service::Service::Inventory)
        .await
        .map_err(|e| ServiceError::Config(format!("migrating the inventory schema: {e}")))?;
    drop(client);
    let reservations = Arc::new(o2c_saga::store_reservation::Reservations::new(
        &cfg.postgres.url,
        &cfg.saga.central_warehouse,
        cfg.saga.auto_stock,
    ));
    let versions = Arc::new(Versions::new(cfg.catalog.clone()));
    versions.refresh(&pg).await?;
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let hints = tokio::spawn(versions::run(
        Arc::clone(&versions),
        Arc::clone(&pg),
        cfg.mqtt.clone(),
        Arc::clone(&metrics),
        cancel.clone(),
    ));
    let sweeper = tokio::spawn({
        let (reservations, metrics, cancel) = (
            Arc::clone(&reservations),
            Arc::clone(&metrics),
            cancel.clone(),
        );
        async move {
            reservations
                .sweep_until(SWEEP_EVERY, |n| metrics.expired(n), cancel)
                .await;
        }
    });
    let app = router(api::State {
        pg: Arc::clone(&pg),
        versions: Arc::clone(&versions),
        page_size: cfg.catalog.page_size,
        metrics: Arc::clone(&metrics),
        reservations,
    });
    let ops = o2c_runtime::http::router::<()>(metrics.clone());
    let ops_cancel = cancel.clone();
    let ops_task = tokio::spawn(async move {
        axum::serve(http, ops)
            .with_graceful_shutdown(async move { ops_cancel.cancelled().await })
            .await
    });
    tracing::info!(
        addr = %listen.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        "catalog store API listening (HTTPS, client certificates required)"
    );
    serve::serve(listen, Arc::new(server), app, cancel.clone()).await;
    let _ = ops_task.await;
    let _ = hints.await;
    let _ = sweeper.await;
    Ok(())
}

/// How often lapsed store reservations are released.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The store a request may read: the one its certificate names.
pub(crate) fn store_of(identity: &FleetIdentity) -> Option<&str> {
    match identity {
        FleetIdentity::Agent { store, .. } => Some(store.as_str()),
        FleetIdentity::Other => None,
    }
}
