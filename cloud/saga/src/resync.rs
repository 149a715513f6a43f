//! Status resync, the cloud side (the protocol is `o2c_protocol::resync`).
//!
//! A QoS 1 PUBACK from Mosquitto means the update is queued in the
//! broker's memory, not that it is safe: a broker killed before its next
//! save loses what it held for agents that were away or slow (chaos seed
//! 3001, bug 8 in RELIABILITY.md: 61 completed orders stayed `paid` at a
//! store). So the status publisher records, before it publishes, the latest
//! update of every order in its own schema ([`Latest::record`]), and
//! answers an agent's [`StatusResync`](o2c_protocol::resync::StatusResync)
//! with what it recorded for the orders named, of that agent only
//! ([`Latest::lookup`]). A return's latest status (contract 1.7) is kept
//! in the same table under the return's id, and answered for the returns
//! a request names. [`newest_per_order`] is the pure part.
//!
//! Rows older than [`KEEP`] are swept ([`Latest::sweep`]): agents ask only
//! about orders of the last week.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use o2c_runtime::kafka::RetryBackoff;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use o2c_protocol::resync::StatusResync;
use o2c_protocol::topic::{Channel, TopicError, parse_agent_topic};
use o2c_protocol::{AgentId, FrameError, StatusUpdate, StoreId};

use crate::db::DbError;
use crate::db::STATUS_SCHEMA;
use crate::metrics::SagaMetrics;
use crate::pool::Pg;

/// How long an order's latest update is kept after it was sent (twice the
/// agents' resync horizon).
pub const KEEP: Duration = Duration::from_secs(14 * 24 * 3600);

/// Most rows one sweep deletes (a sweep runs again until none are left).
const SWEEP_BATCH: i64 = 10_000;

/// Why a resync request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ResyncError {
    /// Not an agent topic.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// An agent topic, but not its resync channel.
    #[error("not a resync topic: {0}")]
    NotResync(String),
    /// The body is not a resync request.
    #[error("bad resync request: {0}")]
    Body(#[from] FrameError),
}

/// A resync request: whose, and for which orders. The store and agent come
/// from the topic, which the broker's ACL lets only that agent's
/// certificate write.
pub fn parse_request(
    topic: &str,
    payload: &[u8],
) -> Result<(StoreId, AgentId, StatusResync), ResyncError> {
    let (store, agent, channel) = parse_agent_topic(topic)?;
    if channel != Channel::Resync {
        return Err(ResyncError::NotResync(topic.chars().take(200).collect()));
    }
    Ok((store, agent, StatusResync::decode(payload)?))
}

/// An update as sent to an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Its order.
    pub order_id: String,
    /// The order's store.
    pub store: String,
    /// The agent that captured it (the status topic's).
    pub agent: String,
    /// Its per-order sequence.
    pub seq: u64,
    /// The update's JSON (`StatusUpdate::encode`).
    pub body: String,
}

/// Of several updates of one order, the one with the greatest sequence
/// (the first of equals); orders in order of first appearance.
pub fn newest_per_order(sent: Vec<Sent>) -> Vec<Sent> {
    let mut at: HashMap<String, usize> = HashMap::new();
    let mut out: Vec<Sent> = Vec::new();
    for s in sent {
        match at.get(&s.order_id) {
            Some(&i) if out[i].seq < s.seq => out[i] = s,
            Some(_) => {}
            None => {
                at.insert(s.order_id.clone(), out.len());
                out.push(s);
            }
        }
    }
    out
}

/// The latest update sent per order, in PostgreSQL.
#[derive(Debug)]
pub(crate) struct Latest {
    pg: Pg,
}

impl Latest {
    /// One connection to `url` (migrated by `db::migrate_status`).
    pub(crate) fn new(url: &str) -> Self {
        Self {
            pg: Pg::new(url, 1),
        }
    }

    /// Records `sent`: a row whose stored sequence is lower is replaced.
    pub(crate) async fn record(&self, sent: Vec<Sent>) -> Result<(), DbError> {
        let sent = newest_per_order(sent);
        if sent.is_empty() {
            return Ok(());
        }
        let mut cols: [Vec<&str>; 4] = Default::default();
        let mut seqs: Vec<i64> = Vec::with_capacity(sent.len());
        for s in &sent {
            cols[0].push(&s.order_id);
            cols[1].push(&s.store);
            cols[2].push(&s.agent);
            cols[3].push(&s.body);
            // Below 2^53 (status_seq); saturate rather than wrap.
            seqs.push(i64::try_from(s.seq).unwrap_or(i64::MAX));
        }
        let sql = format!(
            "INSERT INTO {STATUS_SCHEMA}.latest AS l (order_id, store_id, agent_id, body, seq) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[]) \
             ON CONFLICT (order_id) DO UPDATE SET store_id = EXCLUDED.store_id, \
             agent_id = EXCLUDED.agent_id, body = EXCLUDED.body, seq = EXCLUDED.seq, \
             updated_at = now() WHERE l.seq < EXCLUDED.seq"
        );
        let mut lane = self.pg.lane(0).await?;
        let tx = lane.begin().await?;
        tx.execute(&sql, &[&cols[0], &cols[1], &cols[2], &cols[3], &seqs])
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The latest update recorded for each of `orders` that belongs to
    /// `agent` of `store` (others' orders are never answered).
    pub(crate) async fn lookup(
        &self,
        store: &StoreId,
        agent: &AgentId,
        request: &StatusResync,
    ) -> Result<Vec<StatusUpdate>, DbError> {
        // A return's latest status is kept under its return id (see
        // `status::build`).
        let ids: Vec<String> = request
            .orders
            .iter()
            .map(ToString::to_string)
            .chain(request.returns.iter().map(ToString::to_string))
            .collect();
        let sql = format!(
            "SELECT seq, body FROM {STATUS_SCHEMA}.latest \
             WHERE order_id = ANY($1) AND store_id = $2 AND agent_id = $3 ORDER BY order_id"
        );
        let mut lane = self.pg.lane(0).await?;
        let tx = lane.begin().await?;
        let rows = tx
            .query(&sql, &[&ids, &store.as_str(), &agent.as_str()])
            .await?;
        tx.commit().await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let body: String = r.get(1);
            match StatusUpdate::decode(body.as_bytes()) {
                Ok(mut u) => {
                    u.seq = u64::try_from(r.get::<_, i64>(0)).ok();
                    out.push(u);
                }
                // Written by this code; a row that no longer decodes is
                // reported, not sent.
                Err(e) => tracing::error!(error = %e, "unreadable row in {STATUS_SCHEMA}.latest"),
            }
        }
        Ok(out)
    }

    /// Deletes rows not updated for [`KEEP`]; returns how many.
    pub(crate) async fn sweep(&self) -> Result<u64, DbError> {
        let sql = format!(
            "DELETE FROM {STATUS_SCHEMA}.latest WHERE order_id IN (SELECT order_id FROM \
             {STATUS_SCHEMA}.latest WHERE updated_at < now() - make_interval(secs => $1) \
             LIMIT $2)"
        );
        let keep = KEEP.as_secs_f64();
        let mut total = 0;
        loop {
            let mut lane = self.pg.lane(0).await?;
            let tx = lane.begin().await?;
            let n = tx.execute(&sql, &[&keep, &SWEEP_BATCH]).await?;
            tx.commit().await?;
            total += n;
            if n < SWEEP_BATCH.unsigned_abs() {
                return Ok(total);
            }
        }
    }
}

/// How often rows past [`KEEP`] are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// The answer to a resync request, to publish.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) store: StoreId,
    pub(crate) agent: AgentId,
    pub(crate) updates: Vec<StatusUpdate>,
}

/// Records `sent`, retrying while PostgreSQL is away; false if cancelled
/// first.
pub(crate) async fn record_until_stored(
    latest: &Latest,
    sent: Vec<Sent>,
    cancel: &CancellationToken,
) -> bool {
    let mut backoff = RetryBackoff::default();
    loop {
        match latest.record(sent.clone()).await {
            Ok(()) => return true,
            Err(e) => {
                let wait = backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?wait, "cannot record status updates; retrying");
                tokio::select! {
                    () = cancel.cancelled() => return false,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// Handles a resync request: refused (logged, counted) or looked up on a
/// task of its own, the answer sent to `answers`.
pub(crate) fn on_request(
    latest: &Arc<Latest>,
    metrics: &SagaMetrics,
    topic: &[u8],
    payload: Bytes,
    answers: &mpsc::UnboundedSender<Answer>,
) {
    let topic = String::from_utf8_lossy(topic);
    let (store, agent, request) = match parse_request(&topic, &payload) {
        Ok(r) => r,
        Err(e) => {
            metrics.status_resync_refused.inc();
            tracing::warn!(%topic, error = %e, "resync request refused");
            return;
        }
    };
    metrics.status_resync_requests.inc();
    let (latest, answers) = (latest.clone(), answers.clone());
    tokio::spawn(async move {
        match latest.lookup(&store, &agent, &request).await {
            Ok(updates) if updates.is_empty() => {}
            Ok(updates) => {
                tracing::debug!(%store, %agent, orders = request.orders.len(),
                    returns = request.returns.len(), found = updates.len(), "resync answered");
                let _ = answers.send(Answer {
                    store,
                    agent,
                    updates,
                });
            }
            // The agent asks again at its next resync.
            Err(e) => tracing::warn!(%store, %agent, error = %e, "cannot answer a resync request"),
        }
    });
}

/// Sweeps old rows of `latest` every [`SWEEP_EVERY`].
pub(crate) async fn sweep(latest: Arc<Latest>, cancel: CancellationToken) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(SWEEP_EVERY) => {}
        }
        match latest.sweep().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "status: old latest-update rows swept"),
            Err(e) => tracing::warn!(error = %e, "status: sweep of latest-update rows failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(order: &str, seq: u64) -> Sent {
        Sent {
            order_id: order.into(),
            store: "S1".into(),
            agent: "A1".into(),
            seq,
            body: format!("{order}@{seq}"),
        }
    }

    #[test]
    fn a_request_names_its_agent_by_topic_and_bad_ones_are_refused() {
        let order = o2c_protocol::OrderId::from_parts(1_764_000_000_000, [7; 10]);
        let body = StatusResync {
            orders: vec![order],
            returns: vec![],
        }
        .encode()
        .unwrap();
        let (store, agent, r) =
            parse_request("o2c/v1/stores/S1/agents/S1-A1/resync", &body).unwrap();
        assert_eq!((store.as_str(), agent.as_str()), ("S1", "S1-A1"));
        assert_eq!(r.orders, vec![order]);
        assert!(matches!(
            parse_request("o2c/v1/stores/S1/agents/S1-A1/events", &body),
            Err(ResyncError::NotResync(_))
        ));
        assert!(matches!(
            parse_request("o2c/v1/stores/S 1/agents/A1/resync", &body),
            Err(ResyncError::Topic(_))
        ));
        assert!(matches!(
            parse_request("o2c/v1/stores/S1/agents/S1-A1/resync", b"{}"),
            Err(ResyncError::Body(_))
        ));
    }

    #[test]
    fn keeps_the_greatest_sequence_of_each_order_in_first_seen_order() {
        let out = newest_per_order(vec![
            sent("b", 2),
            sent("a", 5),
            sent("b", 9),
            sent("a", 3),
            sent("b", 9),
            sent("c", 1),
        ]);
        assert_eq!(out, vec![sent("b", 9), sent("a", 5), sent("c", 1)]);
        assert!(newest_per_order(Vec::new()).is_empty());
    }
}
