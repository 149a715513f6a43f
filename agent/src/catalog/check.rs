//! The ship-to-home stock check: before a ship-to-home sale is answered,
//! the cloud reserves its units (`POST /v1/stores/{store}/reservations`
//! on the catalog service). The call goes through a circuit breaker
//! (`o2c_protocol::breaker`): `[fulfillment] breaker_failures` consecutive
//! failures (default 5) open it for `breaker_open_secs` (30), then one
//! half-open trial; each call times out after `check_timeout_ms` (2000).
//!
//! When the store is offline or the breaker is open, the sale is not
//! checked and `[fulfillment] ship_to_home_when_unverified` decides:
//! `accept` (the default, the degraded mode: the order carries
//! `stock_check: "unverified"` and the saga's inventory step confirms or
//! compensates) or `refuse`. Carry-out sales never call this.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use o2c_protocol::breaker::{Breaker, BreakerState};
use o2c_protocol::catalog::{OutOfStock, ReservationLine, ReservationRequest};
use o2c_protocol::{OrderId, StoreId};
use reqwest::StatusCode;

use crate::config::{FulfillmentConfig, UnverifiedPolicy};
use crate::metrics::CatalogMetrics;

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The cloud holds the units.
    Verified,
    /// The cloud has not enough of this SKU; nothing is held.
    OutOfStock {
        /// The SKU short.
        sku: String,
    },
    /// Not checked (offline, breaker open, the call failed); the policy
    /// says whether to sell.
    Unverified {
        /// Why, for logs and metrics.
        why: &'static str,
        /// Sell anyway (`accept`) or not (`refuse`).
        accept: bool,
    },
}

/// The checker; one per agent.
#[derive(Debug)]
pub struct StockChecker {
    client: reqwest::Client,
    base: String,
    store: StoreId,
    timeout: Duration,
    ttl_secs: u64,
    accept: bool,
    breaker: Mutex<Breaker>,
    connected: Arc<AtomicBool>,
    metrics: CatalogMetrics,
}

impl StockChecker {
    /// A checker calling `base` with `client` (the catalog pull's).
    pub fn new(
        client: reqwest::Client,
        base: &str,
        store: StoreId,
        cfg: &FulfillmentConfig,
        connected: Arc<AtomicBool>,
        metrics: CatalogMetrics,
    ) -> Self {
        Self {
            client,
            base: base.to_owned(),
            store,
            timeout: Duration::from_millis(cfg.check_timeout_ms),
            ttl_secs: cfg.reservation_ttl_secs,
            accept: cfg.ship_to_home_when_unverified == UnverifiedPolicy::Accept,
            breaker: Mutex::new(Breaker::new(
                cfg.breaker_failures,
                Duration::from_secs(cfg.breaker_open_secs),
            )),
            connected,
            metrics,
        }
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The breaker's state now.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker().state(o2c_runtime::clock::now())
    }

    fn unverified(&self, why: &'static str) -> Check {
        self.count(why);
        Check::Unverified {
            why,
            accept: self.accept,
        }
    }

    fn count(&self, result: &'static str) {
        self.metrics.stock_check(result);
        self.metrics.breaker_state.set(self.breaker_state().code());
    }

    /// Reserves `lines` for `order_id`.
    pub async fn reserve(&self, order_id: OrderId, lines: &[(String, i64)]) -> Check {
        if !self.connected.load(Ordering::Acquire) {
            return self.unverified("offline");
        }
        if self.breaker().acquire(o2c_runtime::clock::now()).is_err() {
            return self.unverified("breaker_open");
        }
        let req = ReservationRequest {
            order_id,
            lines: lines
                .iter()
                .map(|(sku, quantity)| ReservationLine {
                    sku: sku.clone(),
                    quantity: *quantity,
                })
                .collect(),
            ttl_secs: Some(self.ttl_secs),
        };
        let url = format!("{}/v1/stores/{}/reservations", self.base, self.store);
        let sent = self
            .client
            .post(url)
            .json(&req)
            .timeout(self.timeout)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(%order_id, error = %e, "ship-to-home stock check failed");
                self.breaker().on_failure(o2c_runtime::clock::now());
                return self.unverified("unavailable");
            }
        };
        let status = resp.status();
        if status.is_server_error() {
            tracing::warn!(%order_id, %status, "ship-to-home stock check failed");
            self.breaker().on_failure(o2c_runtime::clock::now());
            return self.unverified("unavailable");
        }
        // The service answered: the breaker closes, whatever the answer.
        self.breaker().on_success();
        match status {
            StatusCode::OK | StatusCode::CREATED => {
                self.count("verified");
                Check::Verified
            }
            StatusCode::UNPROCESSABLE_ENTITY => match resp.json::<OutOfStock>().await {
                Ok(o) => {
                    self.count("out_of_stock");
                    Check::OutOfStock { sku: o.sku }
                }
                Err(_) => self.unverified("bad_answer"),
            },
            other => {
                let body = resp.text().await.unwrap_or_default();
                tracing::warn!(%order_id, status = %other, body = %body.chars().take(200).collect::<String>(), "ship-to-home stock check refused");
                self.unverified("refused")
            }
        }
    }

    /// Gives a voided order's held units back (best effort: a reservation
    /// the order already took over is released by the saga, one never
    /// claimed by its TTL).
    pub async fn release(&self, order_id: OrderId) {
        if !self.connected.load(Ordering::Acquire) {
            return;
        }
        let url = format!(
            "{}/v1/stores/{}/reservations/{order_id}",
            self.base, self.store
        );
        match self.client.delete(url).timeout(self.timeout).send().await {
            Ok(r) if r.status().is_success() || r.status() == StatusCode::NOT_FOUND => {}
            Ok(r) => {
                tracing::warn!(%order_id, status = %r.status(), "releasing the reservation was refused")
            }
            Err(e) => tracing::warn!(%order_id, error = %e, "releasing the reservation failed"),
        }
    }
}
