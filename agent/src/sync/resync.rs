//! Status resync, the agent side (the protocol is `o2c_protocol::resync`):
//! [`Schedule`] is the pure timer (time passed in, in the sync loop's
//! milliseconds), [`send`] the I/O that asks.
//!
//! A resync goes out after every connect (a broker that crashed dropped
//! the connection, and lost what it held for this store), after a status
//! publisher announced its subscription (`FLEET_RESYNC_TOPIC`: the request
//! may have gone out while none listened), at most once per [`MIN_GAP_MS`]
//! on a flapping link, and then every `sync.status_resync_secs` while
//! connected.

use std::time::Duration;

use o2c_protocol::resync::{MAX_RESYNC_ORDERS, StatusResync};
use o2c_protocol::{OrderId, ReturnId};
use rumqttc::v5::AsyncClient;
use rumqttc::v5::mqttbytes::QoS;

use crate::store::{Store, StoreError, now_ms};

/// Least time between two resyncs, ms.
pub(crate) const MIN_GAP_MS: u64 = 10_000;

/// Orders of the last week are asked about (an agent's broker session
/// lasts a week; the cloud keeps what it sent for two).
const HORIZON: Duration = Duration::from_secs(7 * 24 * 3600);

/// A cancelled order is asked about for a day (its refund may follow).
const CANCELLED_HORIZON: Duration = Duration::from_secs(24 * 3600);

/// Most requests in one resync (4,096 orders); the rest waits for the
/// next one.
const MAX_REQUESTS: usize = 16;

/// When the next resync is due.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    every_ms: Option<u64>,
    last: Option<u64>,
    due: Option<u64>,
}

impl Schedule {
    /// Every `every_secs` while connected (0: after connects only).
    pub(crate) fn new(every_secs: u64) -> Self {
        Self {
            every_ms: (every_secs > 0).then(|| every_secs.saturating_mul(1000)),
            last: None,
            due: None,
        }
    }

    /// Connected (subscribed): a resync is due now, or once the gap since
    /// the last one has passed.
    pub(crate) fn handle_connected(&mut self, now: u64) {
        let earliest = self.last.map_or(now, |l| l.saturating_add(MIN_GAP_MS));
        self.due = Some(now.max(earliest));
    }

    /// A status publisher announced its subscription: a resync is due
    /// after `jitter` ms (random, so a fleet spreads its requests), or once
    /// the gap since the last one has passed.
    pub(crate) fn handle_announced(&mut self, now: u64, jitter: u64) {
        let earliest = self.last.map_or(now, |l| l.saturating_add(MIN_GAP_MS));
        let at = now.saturating_add(jitter).max(earliest);
        self.due = Some(self.due.map_or(at, |d| d.min(at)));
    }

    /// Disconnected: nothing is due until the next connect.
    pub(crate) fn handle_disconnected(&mut self) {
        self.due = None;
    }

    /// When the next resync is due.
    pub(crate) fn poll_deadline(&self) -> Option<u64> {
        self.due
    }

    /// Whether a resync goes now; if so, the next is scheduled.
    pub(crate) fn poll_due(&mut self, now: u64) -> bool {
        match self.due {
            Some(at) if at <= now => {
                self.last = Some(now);
                self.due = self.every_ms.map(|e| now.saturating_add(e));
                true
            }
            _ => false,
        }
    }
}

/// Why a resync could not be sent (it is tried again at the next one).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResyncError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The request could not be queued.
    #[error("mqtt: {0}")]
    Mqtt(String),
    /// The request could not be encoded.
    #[error("encode: {0}")]
    Encode(String),
}

/// The id of the first order captured at `unix_ms` (ids are UUIDv7).
fn first_id_at(unix_ms: i64) -> OrderId {
    OrderId::from_parts(u64::try_from(unix_ms).unwrap_or(0), [0; 10])
}

/// Asks the cloud for the status of every open order of the last week
/// (see `Store::resync_candidates`), then of every return of the last week
/// whose status is not final (`Store::resync_returns`),
/// [`MAX_RESYNC_ORDERS`] per request. Returns how many were named.
pub(crate) async fn send(
    store: &Store,
    client: &AsyncClient,
    topic: &str,
) -> Result<usize, ResyncError> {
    let now = now_ms();
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let from = first_id_at(now.saturating_sub(ms(HORIZON)));
    let cancelled_from = first_id_at(now.saturating_sub(ms(CANCELLED_HORIZON)));
    let orders = named_in_pages(
        first_id_at(0),
        |after| store.resync_candidates(after, from, cancelled_from, MAX_RESYNC_ORDERS),
        |orders| StatusResync {
            orders,
            returns: vec![],
        },
        client,
        topic,
    )
    .await?;
    // Returns whose status is not final yet, the same way (by return id,
    // so by the time they were taken).
    let from_ms = now.saturating_sub(ms(HORIZON));
    let returns = named_in_pages(
        ReturnId::from_parts(0, [0; 10]),
        |after| store.resync_returns(after, from_ms, MAX_RESYNC_ORDERS),
        |returns| StatusResync {
            orders: vec![],
            returns,
        },
        client,
        topic,
    )
    .await?;
    Ok(orders + returns)
}

/// Publishes `wrap` of each page `fetch` gives (up to
/// [`MAX_RESYNC_ORDERS`] ids after the last one named), until a short page
/// or [`MAX_REQUESTS`] requests. Returns how many ids were named.
async fn named_in_pages<Id: Copy, F: Future<Output = Result<Vec<Id>, StoreError>>>(
    mut after: Id,
    mut fetch: impl FnMut(Id) -> F,
    wrap: impl Fn(Vec<Id>) -> StatusResync,
    client: &AsyncClient,
    topic: &str,
) -> Result<usize, ResyncError> {
    let mut named = 0;
    for _ in 0..MAX_REQUESTS {
        let ids = fetch(after).await?;
        let Some(last) = ids.last().copied() else {
            break;
        };
        let full = ids.len() == MAX_RESYNC_ORDERS;
        named += ids.len();
        publish(client, topic, wrap(ids)).await?;
        if !full {
            break;
        }
        after = last;
    }
    Ok(named)
}

async fn publish(client: &AsyncClient, topic: &str, r: StatusResync) -> Result<(), ResyncError> {
    let body = r.encode().map_err(|e| ResyncError::Encode(e.to_string()))?;
    client
        .publish(topic, QoS::AtLeastOnce, false, body)
        .await
        .map_err(|e| ResyncError::Mqtt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_at_each_connect_then_periodically_never_twice_within_the_gap() {
        let mut s = Schedule::new(60);
        assert_eq!(s.poll_deadline(), None, "nothing before a connect");
        s.handle_connected(1_000);
        assert!(s.poll_due(1_000));
        assert!(!s.poll_due(1_001));
        assert_eq!(s.poll_deadline(), Some(61_000));
        // A reconnect soon after waits for the gap.
        s.handle_disconnected();
        assert_eq!(s.poll_deadline(), None);
        s.handle_connected(3_000);
        assert_eq!(s.poll_deadline(), Some(1_000 + MIN_GAP_MS));
        assert!(!s.poll_due(10_999));
        assert!(s.poll_due(11_000));
        // Then periodically.
        assert!(!s.poll_due(70_999));
        assert!(s.poll_due(71_000));
        // A reconnect long after is due at once.
        s.handle_disconnected();
        s.handle_connected(500_000);
        assert!(s.poll_due(500_000));
    }

    #[test]
    fn an_announcement_brings_the_next_resync_forward_within_the_gap() {
        let mut s = Schedule::new(300);
        s.handle_connected(1_000);
        assert!(s.poll_due(1_000));
        // Announced 2 s later: due once the gap has passed.
        s.handle_announced(3_000, 500);
        assert_eq!(s.poll_deadline(), Some(1_000 + MIN_GAP_MS));
        assert!(s.poll_due(11_000));
        // Announced much later: after the jitter.
        s.handle_announced(100_000, 4_000);
        assert_eq!(s.poll_deadline(), Some(104_000));
    }

    #[test]
    fn with_no_period_only_connects_trigger() {
        let mut s = Schedule::new(0);
        s.handle_connected(5);
        assert!(s.poll_due(5));
        assert_eq!(s.poll_deadline(), None);
        assert!(!s.poll_due(u64::MAX));
    }
}
