//! A consumer-group member and its watchdog: the I/O shell around
//! [`super::watch`].
//!
//! [`Member`] owns the group consumer of one saga loop. Every
//! [`GroupCheck::interval`] it takes a [`Snapshot`] of the group on a
//! blocking thread (its assignment, the member count, each subscribed
//! partition's end offset and the group's committed offset), asks the pure
//! [`GroupWatch`] for a verdict, and publishes it:
//! - the metrics `o2c_saga_consumer_lag{service,topic}`,
//!   `o2c_saga_consumer_unowned_partitions{service}` and
//!   `o2c_saga_consumer_stalled_partitions{service}`;
//! - the group's health, which `/readyz` reports.
//!
//! When the verdict says a subscribed partition has no owner, the loop
//! calls [`Member::rejoin`]: the consumer leaves the group and a new one
//! joins, so the coordinator hands out the whole subscription again.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::consumer::{LoopConfig, consumer};
use super::watch::{GroupWatch, PartitionView, Snapshot, Verdict, WatchConfig, parse_assignment};
use crate::metrics::{SagaMetrics, TopicLabel};
use o2c_cloud_common::config::SagaConfig;
use o2c_runtime::kafka::TracingContext;

/// Why a member could not join or rejoin its group.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    /// The consumer could not be created or subscribed.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The old consumer's close did not finish.
    #[error("{0} closed")]
    Closed(&'static str),
}

/// How often and how strictly a group is checked (`[saga]` `group_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCheck {
    /// Time between two snapshots.
    pub interval: Duration,
    /// Thresholds of the verdict.
    pub watch: WatchConfig,
}

impl GroupCheck {
    /// The watchdog's settings from `[saga]`.
    pub fn from_config(cfg: &SagaConfig) -> Self {
        Self {
            interval: Duration::from_millis(cfg.group_check_ms.max(100)),
            watch: WatchConfig {
                unowned_after: Duration::from_millis(cfg.group_unowned_after_ms),
                stall_after: Duration::from_millis(cfg.group_stall_after_ms),
                behind_after: Duration::from_millis(cfg.group_behind_after_ms),
                idle_rejoin_after: Duration::from_millis(cfg.group_idle_rejoin_after_ms),
                orphan_after: Duration::from_millis(cfg.group_orphan_after_ms),
            },
        }
    }
}

impl Default for GroupCheck {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            watch: WatchConfig::default(),
        }
    }
}

/// Longest wait of one metadata, watermark or offset request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The group consumer of one loop, with its watchdog.
pub(crate) struct Member {
    cfg: Arc<LoopConfig>,
    consumer: Arc<StreamConsumer<TracingContext>>,
    topics: Vec<String>,
    watch: GroupWatch,
    metrics: Arc<SagaMetrics>,
    pending: Option<JoinHandle<Result<Snapshot, KafkaError>>>,
    next_check: Instant,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("group", &self.cfg.group)
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl Member {
    /// Joins `cfg.group`, subscribed to `cfg.subscribe`.
    pub(crate) fn join(
        cfg: Arc<LoopConfig>,
        metrics: Arc<SagaMetrics>,
    ) -> Result<Self, MemberError> {
        let topics = cfg.topic_names();
        metrics.group_health.set(cfg.label.service, true);
        Ok(Self {
            consumer: Arc::new(consumer(&cfg)?),
            watch: GroupWatch::new(cfg.check.watch),
            next_check: Instant::now() + cfg.check.interval,
            cfg,
            topics,
            metrics,
            pending: None,
        })
    }

    /// The group consumer (a new one after [`Member::rejoin`]).
    pub(crate) fn consumer(&self) -> Arc<StreamConsumer<TracingContext>> {
        self.consumer.clone()
    }

    /// Waits for the next check and returns its verdict, after publishing
    /// it (metrics, health). Cancel-safe: a snapshot under way is kept for
    /// the next call.
    pub(crate) async fn checked(&mut self) -> Verdict {
        loop {
            let handle = match &mut self.pending {
                Some(h) => h,
                None => {
                    tokio::time::sleep_until(self.next_check).await;
                    let (c, group, topics) = (
                        self.consumer.clone(),
                        self.cfg.group.clone(),
                        self.topics.clone(),
                    );
                    self.pending.insert(tokio::task::spawn_blocking(move || {
                        snapshot(&c, &group, &topics)
                    }))
                }
            };
            let result = handle.await;
            self.pending = None;
            self.next_check = Instant::now() + self.cfg.check.interval;
            match result {
                Ok(Ok(snap)) => {
                    let verdict = self.watch.observe(Instant::now().into_std(), &snap);
                    self.publish(&verdict);
                    return verdict;
                }
                Ok(Err(e)) => {
                    tracing::warn!(service = self.cfg.label.service, error = %e,
                        "consumer group check failed");
                }
                Err(e) => {
                    tracing::warn!(service = self.cfg.label.service, error = %e,
                        "consumer group check panicked");
                }
            }
        }
    }

    fn publish(&self, v: &Verdict) {
        let service = self.cfg.label.service;
        let m = &self.metrics;
        for (topic, lag) in &v.lag {
            m.consumer_lag
                .get_or_create(&TopicLabel {
                    service,
                    topic: topic.clone(),
                })
                .set(*lag);
        }
        m.consumer_unowned
            .get_or_create(&self.cfg.label)
            .set(v.unowned.len() as i64);
        m.consumer_stalled
            .get_or_create(&self.cfg.label)
            .set(v.stalled.len() as i64);
        let was = m.group_health.set(service, v.healthy());
        if !v.healthy() {
            tracing::error!(service, unowned = ?v.unowned, stalled = ?v.stalled, behind = ?v.behind,
                "consumer group does not consume its whole subscription");
        } else if !was {
            tracing::info!(
                service,
                "consumer group consumes its whole subscription again"
            );
        }
    }

    /// Leaves the group and joins it again with a new consumer, so the
    /// coordinator rebalances and hands out every subscribed partition.
    /// Offsets stored so far are committed first.
    pub(crate) async fn rejoin(&mut self) -> Result<(), MemberError> {
        let service = self.cfg.label.service;
        tracing::warn!(service, "rejoining the consumer group");
        self.metrics
            .consumer_rejoins
            .get_or_create(&self.cfg.label)
            .inc();
        if let Some(h) = self.pending.take() {
            let _ = h.await;
        }
        let old = std::mem::replace(&mut self.consumer, Arc::new(consumer(&self.cfg)?));
        tokio::task::spawn_blocking(move || {
            if let Err(e) = old.commit_consumer_state(CommitMode::Sync) {
                tracing::debug!(error = %e, "commit before rejoining");
            }
            // Unsubscribing leaves the group (dynamic membership); the
            // drop then closes the consumer.
            old.unsubscribe();
        })
        .await
        .map_err(|_| MemberError::Closed("consumer rejoin"))?;
        self.watch.rejoined(Instant::now().into_std());
        Ok(())
    }
}

/// Looks at the group through `c`: its own assignment, the group's member
/// count, and every subscribed partition's end and committed offsets.
/// Blocking (network round trips).
fn snapshot(
    c: &StreamConsumer<TracingContext>,
    group: &str,
    topics: &[String],
) -> Result<Snapshot, KafkaError> {
    let mine: HashSet<(String, i32)> = c
        .assignment()?
        .elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect();
    // Who owns what: with one member, it is this one; with several, the
    // union of their assignments when the broker reports them (Kafka
    // does; Tansu 0.6's DescribeGroups names the members but sends empty
    // assignments, and then ownership stays unknown).
    let owners: Option<HashSet<(String, i32)>> = c
        .fetch_group_list(Some(group), REQUEST_TIMEOUT)
        .ok()
        .and_then(|l| {
            let g = l.groups().first()?;
            match g.members() {
                [_] => Some(mine.clone()),
                members => members
                    .iter()
                    .map(|m| match m.assignment() {
                        Some(b) if !b.is_empty() => parse_assignment(b).ok(),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()
                    .map(|all| all.into_iter().flatten().collect()),
            }
        });
    let mut tpl = TopicPartitionList::new();
    let mut ends = Vec::new();
    for topic in topics {
        let md = c.fetch_metadata(Some(topic), REQUEST_TIMEOUT)?;
        for p in md.topics().iter().flat_map(|t| t.partitions()) {
            let (_, high) = c.fetch_watermarks(topic, p.id(), REQUEST_TIMEOUT)?;
            tpl.add_partition(topic, p.id());
            ends.push((topic.clone(), p.id(), high));
        }
    }
    let committed = c.committed_offsets(tpl, REQUEST_TIMEOUT)?;
    let partitions = ends
        .into_iter()
        .map(|(topic, partition, end)| {
            let committed =
                committed
                    .find_partition(&topic, partition)
                    .and_then(|e| match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    });
            let tp = (topic.clone(), partition);
            let is_mine = mine.contains(&tp);
            let owned = match &owners {
                Some(o) => Some(o.contains(&tp)),
                None if is_mine => Some(true),
                None => None,
            };
            PartitionView {
                topic,
                partition,
                end,
                committed,
                owned,
                mine: is_mine,
            }
        })
        .collect();
    Ok(Snapshot { partitions })
}
