//! Kafka plumbing: the idempotent producer and rdkafka's
//! logs bridged into `tracing`; [`scan`] reads a topic back for the tools.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

pub mod scan;

/// Why a Kafka operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaOpError {
    /// Client creation or a request failed.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
}

/// Routes librdkafka's log and error callbacks to `tracing`.
#[derive(Debug, Clone, Default)]
pub struct TracingContext;

impl ConsumerContext for TracingContext {
    /// An async commit that fails is logged: a group whose commits keep
    /// failing re-reads its records after every restart.
    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        _offsets: &rdkafka::TopicPartitionList,
    ) {
        if let Err(e) = result {
            tracing::warn!(target: "librdkafka", error = %e, "offset commit failed");
        }
    }
}

impl ClientContext for TracingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", fac, "{log_message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{log_message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", fac, "{log_message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, "{reason}");
    }
}

/// The producer type used everywhere.
pub type Producer_ = FutureProducer<TracingContext>;

/// An idempotent producer: `acks=all`, `enable.idempotence=true`, explicit
/// `linger.ms`, and no message timeout. A timeout would make librdkafka
/// bump its producer epoch, which Tansu's SQLite storage does not survive;
/// the ingest applies backpressure itself instead (it stops acking).
pub fn producer(brokers: &str, linger_ms: u32) -> Result<Producer_, KafkaOpError> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", linger_ms.to_string())
        .set("message.timeout.ms", "0")
        .set("message.max.bytes", "4000000")
        .set("client.id", "o2c-cloud")
        .create_with_context(TracingContext)?)
}

/// Asks the cluster for metadata: a real round trip, unlike a TCP connect.
pub async fn probe(producer: &Producer_, timeout: Duration) -> Result<(), KafkaOpError> {
    let p = producer.clone();
    tokio::task::spawn_blocking(move || p.client().fetch_metadata(None, timeout).map(|_| ()))
        .await
        .map_err(|_| KafkaOpError::Kafka(KafkaError::Canceled))??;
    Ok(())
}

/// The producer's fatal error, if it has one. With `enable.idempotence`
/// librdkafka raises one when it can no longer keep its ordering and
/// exactly-once promises (an out-of-order sequence, say); every later
/// produce fails, so the process must start a fresh producer.
pub fn fatal_error(producer: &Producer_) -> Option<String> {
    producer
        .client()
        .fatal_error()
        .map(|(code, reason)| format!("{code:?}: {reason}"))
}

/// Produces one record and waits until Kafka has it (`acks=all`).
pub async fn send(
    producer: &Producer_,
    topic: &str,
    key: &str,
    headers: &[(&str, String)],
    value: &[u8],
) -> Result<(), KafkaError> {
    let mut h = OwnedHeaders::new_with_capacity(headers.len());
    for (k, v) in headers {
        h = h.insert(Header {
            key: k,
            value: Some(v.as_str()),
        });
    }
    let record = FutureRecord::to(topic).key(key).payload(value).headers(h);
    producer
        .send(record, Timeout::Never)
        .await
        .map(|_| ())
        .map_err(|(e, _)| e)
}

/// A record's headers as `(name, value)` text pairs (values read as UTF-8,
/// lossily; a header without a value is empty).
pub fn header_pairs(m: &impl rdkafka::message::Message) -> Vec<(String, String)> {
    m.headers()
        .map(|h| {
            h.iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The last header named `name` of a record, when it is UTF-8.
pub fn header<'m>(m: &'m impl rdkafka::message::Message, name: &str) -> Option<&'m str> {
    let headers = m.headers()?;
    headers
        .iter()
        .filter(|h| h.key == name)
        .last()
        .and_then(|h| std::str::from_utf8(h.value?).ok())
}

/// A record's key as text (lossily; empty without a key).
pub fn key_text(m: &impl rdkafka::message::Message) -> String {
    m.key()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .unwrap_or_default()
}

/// The wait before each retry of a failed produce: 200 ms, doubling, at
/// most 10 s. A produce is never given up: the record is durable or the
/// process is stopped.
#[derive(Debug, Clone)]
pub struct RetryBackoff {
    next: Duration,
}

impl RetryBackoff {
    const FIRST: Duration = Duration::from_millis(200);
    const MAX: Duration = Duration::from_secs(10);

    /// The wait before the next retry (and the one after it doubles).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        d
    }
}

impl Default for RetryBackoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

/// [`send`] until Kafka has the record, waiting [`RetryBackoff`] between
/// tries; `on_error` sees every failure (logs, metrics). The one "produce
/// until durable" loop of the ingest's and the saga's dead-letter paths.
pub async fn send_until_stored(
    producer: &Producer_,
    topic: &str,
    key: &str,
    headers: &[(&str, String)],
    value: &[u8],
    mut on_error: impl FnMut(&KafkaError),
) {
    let mut backoff = RetryBackoff::default();
    while let Err(e) = send(producer, topic, key, headers, value).await {
        on_error(&e);
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Produces `m` to the dead-letter topic `dlq` with its original headers,
/// the reason (`reason`, `reason_detail`) and where it came from
/// (`source_topic`, `source_group`); retries until Kafka has it.
pub async fn dead_letter(
    producer: &Producer_,
    dlq: &str,
    group: &str,
    m: &rdkafka::message::OwnedMessage,
    code: &str,
    detail: &str,
) {
    use rdkafka::message::Message as _;
    let mut headers: Vec<(&str, String)> = Vec::new();
    let original = header_pairs(m);
    for (k, v) in &original {
        if !matches!(
            k.as_str(),
            "reason" | "reason_detail" | "source_topic" | "source_group"
        ) {
            headers.push((k.as_str(), v.clone()));
        }
    }
    headers.push(("reason", code.to_owned()));
    headers.push(("reason_detail", detail.chars().take(500).collect()));
    headers.push(("source_topic", m.topic().to_owned()));
    headers.push(("source_group", group.to_owned()));
    let key = key_text(m);
    let value = m.payload().unwrap_or_default();
    send_until_stored(producer, dlq, &key, &headers, value, |e| {
        tracing::warn!(error = %e, "dead-letter produce failed; retrying");
    })
    .await;
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    use super::*;

    #[test]
    fn retries_wait_longer_each_time_up_to_ten_seconds() {
        let mut b = RetryBackoff::default();
        let waits: Vec<u128> = (0..9).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(
            waits,
            [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]
        );
    }

    /// librdkafka's mock cluster refuses the idempotent producer its id:
    /// a fatal error, which [`fatal_error`] must report.
    #[tokio::test]
    async fn a_fatal_producer_error_is_reported() {
        let mock = MockCluster::new(1).expect("mock cluster");
        mock.request_errors(
            RDKafkaApiKey::InitProducerId,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED],
        );
        let p = producer(&mock.bootstrap_servers(), 1).expect("producer");
        let deadline = Instant::now() + Duration::from_secs(20);
        let reason = loop {
            if let Some(reason) = fatal_error(&p) {
                break reason;
            }
            assert!(Instant::now() < deadline, "no fatal error reported");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(reason.contains("Authorization"), "{reason}");
    }
}
