//! The ship-to-home stock check of a web or mobile order: before the 201,
//! its units are reserved through the same path a store's check takes (the
//! inventory service's store reservations, `o2c_saga::store_reservation`),
//! in process, behind a circuit breaker (`o2c_protocol::breaker`): 5
//! consecutive failures or timeouts (2 s) open it for 30 s, then one
//! half-open trial.
//!
//! Out of stock refuses the order. When the check is unavailable (the
//! breaker open, PostgreSQL down or slow) the order is taken unverified,
//! the degraded mode a store has too: it carries `stock_check:
//! "unverified"` and the saga's inventory step confirms it or cancels and
//! refunds it.

use std::sync::Mutex;
use std::time::Duration;

use o2c_protocol::breaker::{Breaker, BreakerState};
use o2c_protocol::{OrderId, StoreId};
use o2c_saga::store_reservation::{Outcome, Reservations};

/// Consecutive failures that open the breaker.
const FAILURES: u32 = 5;
/// How long it stays open.
const OPEN_FOR: Duration = Duration::from_secs(30);
/// One call's limit.
const TIMEOUT: Duration = Duration::from_secs(2);
/// How often lapsed reservations are released.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// The units are held for the order.
    Verified,
    /// Not enough of this SKU; nothing is held.
    OutOfStock {
        /// The SKU short.
        sku: String,
    },
    /// Not checked; the order goes on unverified.
    Unverified {
        /// Why (logs and metrics).
        why: &'static str,
    },
}

/// The checker.
#[derive(Debug)]
pub struct StockCheck {
    reservations: Reservations,
    breaker: Mutex<Breaker>,
    ttl: Duration,
}

impl StockCheck {
    /// Reserves in the inventory schema at `url` (`[saga]`'s central
    /// warehouse and automatic stock apply, as for stores).
    pub fn new(url: &str, central_warehouse: &str, auto_stock: i64, ttl: Duration) -> Self {
        Self {
            reservations: Reservations::new(url, central_warehouse, auto_stock),
            breaker: Mutex::new(Breaker::new(FAILURES, OPEN_FOR)),
            ttl,
        }
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Releases this API's lapsed reservations (those whose order never
    /// committed) every second until `cancel`, as the catalog service does.
    pub async fn sweep_until(&self, cancel: tokio_util::sync::CancellationToken) {
        let released = |n| tracing::info!(released = n, "lapsed stock reservations released");
        self.reservations
            .sweep_until(SWEEP_EVERY, released, cancel)
            .await;
    }

    /// The breaker's state now.
    pub fn state(&self) -> BreakerState {
        self.breaker().state(o2c_runtime::clock::now())
    }

    /// Reserves `lines` (SKU, units) of `store`'s stock for `order`.
    pub async fn reserve(
        &self,
        order: &OrderId,
        store: &StoreId,
        lines: &[(String, i64)],
    ) -> Checked {
        if self.breaker().acquire(o2c_runtime::clock::now()).is_err() {
            return Checked::Unverified {
                why: "breaker_open",
            };
        }
        let call = self.reservations.reserve(order, store, lines, self.ttl);
        let failed = |why| {
            self.breaker().on_failure(o2c_runtime::clock::now());
            Checked::Unverified { why }
        };
        match tokio::time::timeout(TIMEOUT, call).await {
            Err(_) => {
                tracing::warn!(%order, "stock check timed out");
                failed("timeout")
            }
            Ok(Err(e)) => {
                tracing::warn!(%order, error = %e, "stock check failed");
                failed("unavailable")
            }
            Ok(Ok(outcome)) => {
                self.breaker().on_success();
                match outcome {
                    Outcome::Held { .. } => Checked::Verified,
                    Outcome::OutOfStock { sku } => Checked::OutOfStock { sku },
                    // A fresh order id never conflicts; if it did, the
                    // saga's own check decides.
                    Outcome::Conflict { state } => {
                        tracing::warn!(%order, %state, "stock check: reservation conflict");
                        Checked::Unverified { why: "conflict" }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_stock_store_sells_unverified_then_opens_the_breaker() {
        // Nothing listens on port 1: each call fails at once.
        let check = StockCheck::new(
            "host=127.0.0.1 port=1 user=postgres dbname=none connect_timeout=1",
            "CENTRAL",
            0,
            Duration::from_secs(60),
        );
        let order = OrderId::from_parts(1, [1; 10]);
        let store = StoreId::new("WEB").expect("store");
        let lines = [("SKU-1".to_owned(), 1)];
        for _ in 0..FAILURES {
            assert_eq!(
                check.reserve(&order, &store, &lines).await,
                Checked::Unverified { why: "unavailable" }
            );
        }
        assert_eq!(check.state(), BreakerState::Open);
        assert_eq!(
            check.reserve(&order, &store, &lines).await,
            Checked::Unverified {
                why: "breaker_open"
            }
        );
    }
}
