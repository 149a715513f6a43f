//! The versions behind the `ETag`s and the hints: the catalog version and
//! each store's stock version, read from PostgreSQL every `refresh_ms`, and
//! the retained MQTT hint ([`o2c_protocol::catalog::CatalogHint`]) sent to
//! a store when either of its versions moves, and to every known store
//! after each (re)connect, so the retained copy is never stale.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use o2c_cloud_common::config::{CatalogConfig, MqttConfig};
use o2c_protocol::StoreId;
use o2c_protocol::catalog::{CatalogHint, CatalogVersion, hint_topic};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, Incoming};
use tokio_util::sync::CancellationToken;

use super::Pg;
use crate::db::CatalogError;
use crate::metrics::Metrics;
use crate::pages;

/// The versions, shared by the handlers and the hint task.
#[derive(Debug)]
pub(crate) struct Versions {
    cfg: CatalogConfig,
    catalog: AtomicU64,
    /// The stock sequence's value at the last refresh.
    stock_seq: AtomicU64,
    /// Stock version per store that has one.
    stock: Mutex<HashMap<String, CatalogVersion>>,
    /// Stores to hint.
    known: Mutex<HashSet<String>>,
    /// Stores whose hint is due.
    dirty: Mutex<HashSet<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Versions {
    /// Empty; [`Versions::refresh`] fills it.
    pub(crate) fn new(cfg: CatalogConfig) -> Self {
        let known = cfg.stores.iter().cloned().collect();
        Self {
            cfg,
            catalog: AtomicU64::new(0),
            stock_seq: AtomicU64::new(0),
            stock: Mutex::default(),
            known: Mutex::new(known),
            dirty: Mutex::default(),
        }
    }

    /// The catalog version at the last refresh.
    pub(crate) fn catalog(&self) -> CatalogVersion {
        CatalogVersion(self.catalog.load(Ordering::Acquire))
    }

    pub(crate) fn inventory_schema(&self) -> &str {
        &self.cfg.inventory_schema
    }

    /// `store`'s stock version (read once from PostgreSQL, then kept
    /// current by [`Versions::refresh`]).
    pub(crate) async fn stock(&self, pg: &Pg, store: &str) -> Result<CatalogVersion, CatalogError> {
        if let Some(v) = lock(&self.stock).get(store) {
            return Ok(*v);
        }
        let v = pages::store_stock_version(&*pg.get().await?, &self.cfg.inventory_schema, store)
            .await?;
        Ok(*lock(&self.stock).entry(store.to_owned()).or_insert(v))
    }

    /// Notes a store that called the API (kept in PostgreSQL, so hints
    /// reach it after a restart too).
    pub(crate) async fn seen(&self, pg: &Pg, store: &str) {
        if lock(&self.known).contains(store) {
            return;
        }
        match pg.get().await {
            Ok(c) => match pages::remember_store(&c, store).await {
                Ok(()) => {
                    lock(&self.known).insert(store.to_owned());
                    lock(&self.dirty).insert(store.to_owned());
                }
                Err(e) => tracing::warn!(store, error = %e, "catalog: cannot record the store"),
            },
            Err(e) => tracing::warn!(store, error = %e, "catalog: cannot record the store"),
        }
    }

    /// Reads the versions; marks the stores whose hint is due.
    pub(crate) async fn refresh(&self, pg: &Pg) -> Result<(), CatalogError> {
        let client = pg.get().await?;
        if lock(&self.known).len() == self.cfg.stores.len() {
            let stores = pages::known_stores(&client).await?;
            lock(&self.known).extend(stores);
        }
        let (catalog, seq) = pages::versions(&client, &self.cfg.inventory_schema).await?;
        let before = CatalogVersion(self.stock_seq.load(Ordering::Acquire));
        if seq > before {
            let moved = pages::stock_moved(&client, &self.cfg.inventory_schema, before).await?;
            let mut stock = lock(&self.stock);
            let known = lock(&self.known);
            let mut dirty = lock(&self.dirty);
            for (store, v) in moved {
                if stock.contains_key(&store) || known.contains(&store) {
                    stock.insert(store.clone(), v);
                    dirty.insert(store);
                }
            }
            self.stock_seq.store(seq.0, Ordering::Release);
        }
        if self.catalog.swap(catalog.0, Ordering::AcqRel) != catalog.0 {
            let known = lock(&self.known);
            lock(&self.dirty).extend(known.iter().cloned());
        }
        Ok(())
    }

    /// Takes the stores whose hint is due, with their hint.
    fn take_due(&self) -> Vec<(String, CatalogHint)> {
        let due: Vec<String> = lock(&self.dirty).drain().collect();
        let stock = lock(&self.stock);
        due.into_iter()
            .map(|s| {
                let hint = CatalogHint {
                    catalog_version: self.catalog(),
                    stock_version: stock.get(&s).copied().unwrap_or_default(),
                };
                (s, hint)
            })
            .collect()
    }

    fn mark_all(&self) {
        let known = lock(&self.known);
        lock(&self.dirty).extend(known.iter().cloned());
    }
}

/// Refreshes the versions and sends the hints until `cancel`.
pub(crate) async fn run(
    versions: Arc<Versions>,
    pg: Arc<Pg>,
    mqtt: MqttConfig,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    let client_id = format!("o2c-catalog-{:08x}", rand::random::<u32>());
    let opts = match o2c_cloud_common::mqtt::options(&mqtt, &client_id) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "catalog: MQTT settings unusable; no hints will be sent");
            cancel.cancelled().await;
            return;
        }
    };
    let (client, mut eventloop) = AsyncClient::new(opts, 1024);
    let refresh = Duration::from_millis(versions.cfg.refresh_ms.max(10));
    let mut tick = tokio::time::interval(refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut connected = false;
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = tick.tick() => {
                match versions.refresh(&pg).await {
                    Ok(()) => metrics.set_version(versions.catalog()),
                    Err(e) => tracing::warn!(error = %e, "catalog: cannot read the versions"),
                }
                if connected {
                    publish(&client, &versions, &metrics);
                }
            }
            event = eventloop.poll() => match event {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                    tracing::info!("catalog: connected to the broker; sending every store's hint");
                    connected = true;
                    versions.mark_all();
                    publish(&client, &versions, &metrics);
                }
                Ok(_) => {}
                Err(e) => {
                    if connected {
                        tracing::warn!(error = %e, "catalog: broker connection lost");
                    }
                    connected = false;
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            },
        }
    }
    let _ = client.try_disconnect();
}

fn publish(client: &AsyncClient, versions: &Versions, metrics: &Metrics) {
    for (store, hint) in versions.take_due() {
        let Ok(id) = StoreId::new(store.as_str()) else {
            continue; // a warehouse that is not a store (the central one)
        };
        let body = match serde_json::to_vec(&hint) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "catalog: cannot encode a hint");
                continue;
            }
        };
        match client.try_publish(hint_topic(&id), QoS::AtLeastOnce, true, body) {
            Ok(()) => metrics.hint_sent(),
            Err(e) => {
                tracing::warn!(store, error = %e, "catalog: hint not queued; retrying");
                lock(&versions.dirty).insert(store);
            }
        }
    }
}
