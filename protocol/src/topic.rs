//! MQTT topic builders and parsers, and Kafka topic names.
//!
//! MQTT, per agent:
//! - up:   `o2c/v1/stores/{store_id}/agents/{agent_id}/events`
//! - up:   `.../resync` (the agent asks again for its open orders' status)
//! - down: `o2c/v1/stores/{store_id}/agents/{agent_id}/acks` and `.../status`
//! - up:   `.../health` (retained: the agent's heartbeat and, as its MQTT
//!   last will, its offline mark; `crate::health`)

use crate::event::EventType;
use crate::ids::{AgentId, IdError, StoreId};

const ROOT: &str = "o2c/v1/stores";

/// Fleet-wide: a status publisher announces here (QoS 0, empty body) each
/// time it has (re)subscribed to resync requests, so agents whose request
/// went out while none was listening (both reconnecting after a broker
/// crash) ask again (`crate::resync`).
pub const FLEET_RESYNC_TOPIC: &str = "o2c/v1/fleet/resync";

/// Why a topic or prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Not of the form `o2c/v1/stores/{store}/agents/{agent}/{kind}`.
    #[error("not an o2c agent topic: {0:?}")]
    Shape(String),
    /// The store or agent segment is not a valid id.
    #[error("bad id in topic: {0}")]
    Id(#[from] IdError),
    /// A Kafka topic prefix or shared-subscription group with bad characters.
    #[error("invalid name {0:?}: use 1-100 of A-Z a-z 0-9 . _ -")]
    Name(String),
}

/// Which per-agent channel a topic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Agent → cloud batches.
    Events,
    /// Cloud → agent acks.
    Acks,
    /// Cloud → agent order status.
    Status,
    /// Agent → cloud status resync requests (`crate::resync`).
    Resync,
    /// Agent → cloud health, retained (`crate::health`): the fleet view.
    /// Not `Status`, which is the cloud's order status *to* the agent.
    Health,
}

impl Channel {
    /// The last topic segment.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Events => "events",
            Channel::Acks => "acks",
            Channel::Status => "status",
            Channel::Resync => "resync",
            Channel::Health => "health",
        }
    }
}

/// The MQTT topic of one agent's channel.
pub fn agent_topic(store: &StoreId, agent: &AgentId, channel: Channel) -> String {
    format!("{ROOT}/{store}/agents/{agent}/{}", channel.as_str())
}

/// Parses an agent topic into its store, agent and channel.
pub fn parse_agent_topic(topic: &str) -> Result<(StoreId, AgentId, Channel), TopicError> {
    let shape = || TopicError::Shape(topic.chars().take(200).collect());
    let rest = topic
        .strip_prefix(ROOT)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or_else(shape)?;
    let parts: Vec<&str> = rest.split('/').collect();
    let [store, "agents", agent, channel] = parts.as_slice() else {
        return Err(shape());
    };
    let channel = match *channel {
        "events" => Channel::Events,
        "acks" => Channel::Acks,
        "status" => Channel::Status,
        "resync" => Channel::Resync,
        "health" => Channel::Health,
        _ => return Err(shape()),
    };
    Ok((StoreId::new(*store)?, AgentId::new(*agent)?, channel))
}

fn check_name(s: &str, allow_empty: bool) -> Result<(), TopicError> {
    let ok = (allow_empty || !s.is_empty())
        && s.len() <= 100
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(TopicError::Name(s.chars().take(100).collect()))
    }
}

/// The shared subscription every ingest replica uses:
/// `$share/{group}/o2c/v1/stores/+/agents/+/events`.
pub fn shared_events_filter(group: &str) -> Result<String, TopicError> {
    shared_filter(group, Channel::Events)
}

/// The shared subscription of every agent's `channel`:
/// `$share/{group}/o2c/v1/stores/+/agents/+/{channel}`.
pub fn shared_filter(group: &str, channel: Channel) -> Result<String, TopicError> {
    check_name(group, false)?;
    Ok(format!(
        "$share/{group}/{ROOT}/+/agents/+/{}",
        channel.as_str()
    ))
}

/// The plain (not shared) subscription of every agent's health:
/// `o2c/v1/stores/+/agents/+/health`. Plain on purpose: each fleet view
/// needs every agent, and a shared subscription gets no retained messages.
pub fn health_filter() -> String {
    format!("{ROOT}/+/agents/+/{}", Channel::Health.as_str())
}

/// Kafka topic names, with an optional prefix (e.g. `prod.`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KafkaTopics {
    prefix: String,
}

impl KafkaTopics {
    /// The dead-letter topic, without prefix.
    pub const DLQ: &'static str = "o2c.dlq";
    /// Every event of every order, whatever its type and source, keyed by
    /// order id and kept forever: the order history (without prefix).
    pub const HISTORY: &'static str = "orders.events";
    /// Each order's latest state, keyed by order id, compacted: the read
    /// model (without prefix; values are `order_state::OrderStateRecord`).
    pub const STATE: &'static str = "orders.state";

    /// Uses `prefix` (may be empty) before every name.
    pub fn new(prefix: impl Into<String>) -> Result<Self, TopicError> {
        let prefix = prefix.into();
        check_name(&prefix, true)?;
        Ok(Self { prefix })
    }

    /// The topic for an event type.
    pub fn for_event(&self, t: EventType) -> String {
        format!("{}{}", self.prefix, t.kafka_topic())
    }

    /// The dead-letter topic.
    pub fn dlq(&self) -> String {
        format!("{}{}", self.prefix, Self::DLQ)
    }

    /// The order history topic.
    pub fn history(&self) -> String {
        format!("{}{}", self.prefix, Self::HISTORY)
    }

    /// The day manifests' topic (`crate::day`), keyed by store.
    pub fn days(&self) -> String {
        format!("{}{}", self.prefix, crate::day::DAYS_TOPIC)
    }

    /// The order-state topic.
    pub fn state(&self) -> String {
        format!("{}{}", self.prefix, Self::STATE)
    }

    /// Whether `topic` is the order history topic.
    pub fn is_history(&self, topic: &str) -> bool {
        topic.strip_prefix(&self.prefix) == Some(Self::HISTORY)
    }

    /// Every topic o2c uses, for creating them up front.
    pub fn all(&self) -> Vec<String> {
        EventType::ALL
            .into_iter()
            .map(|t| self.for_event(t))
            .chain([self.history(), self.state(), self.days(), self.dlq()])
            .collect()
    }

    /// The event type a topic carries, if any.
    pub fn event_type_of(&self, topic: &str) -> Option<EventType> {
        let rest = topic.strip_prefix(&self.prefix)?;
        EventType::ALL.into_iter().find(|t| t.kafka_topic() == rest)
    }
}

/// An MQTT broker address: `mqtt://host[:port]` or `mqtts://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttUrl {
    /// `mqtts://`.
    pub tls: bool,
    /// Host name or address.
    pub host: String,
    /// Port (default 1883, or 8883 with TLS).
    pub port: u16,
}

/// A broker URL that is not `mqtt[s]://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected mqtt://host:port or mqtts://host:port, got {0:?}")]
pub struct MqttUrlError(pub String);

impl std::str::FromStr for MqttUrl {
    type Err = MqttUrlError;
    fn from_str(url: &str) -> Result<Self, MqttUrlError> {
        let bad = || MqttUrlError(url.chars().take(200).collect());
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else {
            return Err(bad());
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| bad())?),
            None => (rest, if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() || host.contains('/') {
            return Err(bad());
        }
        Ok(MqttUrl {
            tls,
            host: host.to_owned(),
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqtt_urls() {
        let u: MqttUrl = "mqtt://127.0.0.1:1883".parse().unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port), (false, "127.0.0.1", 1883));
        let u: MqttUrl = "mqtts://broker".parse().unwrap();
        assert_eq!((u.tls, u.port), (true, 8883));
        for bad in [
            "http://x:1",
            "mqtt://:1",
            "mqtt://h:notaport",
            "mqtt://h:1/x",
        ] {
            assert!(bad.parse::<MqttUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn agent_topics_round_trip() {
        let s = StoreId::new("S001").unwrap();
        let a = AgentId::new("S001-A1").unwrap();
        let t = agent_topic(&s, &a, Channel::Events);
        assert_eq!(t, "o2c/v1/stores/S001/agents/S001-A1/events");
        assert_eq!(
            parse_agent_topic(&t).unwrap(),
            (s.clone(), a.clone(), Channel::Events)
        );
        let acks = agent_topic(&s, &a, Channel::Acks);
        assert_eq!(parse_agent_topic(&acks).unwrap().2, Channel::Acks);
        assert_eq!(
            parse_agent_topic(&agent_topic(&s, &a, Channel::Status))
                .unwrap()
                .2,
            Channel::Status
        );
        for c in [
            Channel::Events,
            Channel::Acks,
            Channel::Status,
            Channel::Resync,
            Channel::Health,
        ] {
            assert_eq!(parse_agent_topic(&agent_topic(&s, &a, c)).unwrap().2, c);
        }
        assert_eq!(
            agent_topic(&s, &a, Channel::Health),
            "o2c/v1/stores/S001/agents/S001-A1/health"
        );
        assert_eq!(health_filter(), "o2c/v1/stores/+/agents/+/health");
        assert_eq!(
            shared_filter("o2c-status", Channel::Resync).unwrap(),
            "$share/o2c-status/o2c/v1/stores/+/agents/+/resync"
        );
    }

    #[test]
    fn bad_topics_are_errors() {
        for t in [
            "",
            "o2c/v1/stores",
            "o2c/v1/stores/S1/agents/A1",
            "o2c/v1/stores/S1/agents/A1/events/x",
            "o2c/v1/stores/S1/agent/A1/events",
            "o2c/v2/stores/S1/agents/A1/events",
            "o2c/v1/stores/S1/agents/A1/other",
            "o2c/v1/stores//agents/A1/events",
        ] {
            assert!(parse_agent_topic(t).is_err(), "{t:?} accepted");
        }
        assert!(matches!(
            parse_agent_topic("o2c/v1/stores/S 1/agents/A1/events"),
            Err(TopicError::Id(_))
        ));
    }

    #[test]
    fn kafka_topics() {
        let k = KafkaTopics::new("t1.").unwrap();
        assert_eq!(k.for_event(EventType::OrderCreated), "t1.orders.created");
        assert_eq!(k.dlq(), "t1.o2c.dlq");
        assert_eq!(k.all().len(), 20);
        assert_eq!(k.days(), "t1.stores.days");
        assert_eq!(k.history(), "t1.orders.events");
        assert!(k.is_history("t1.orders.events"));
        assert!(!k.is_history("orders.events"));
        assert_eq!(k.state(), "t1.orders.state");
        assert_eq!(k.event_type_of("t1.orders.events"), None);
        assert_eq!(
            k.event_type_of("t1.refunds.issued"),
            Some(EventType::RefundIssued)
        );
        assert_eq!(k.event_type_of("refunds.issued"), None);
        assert!(KafkaTopics::new("a/b").is_err());
        assert_eq!(KafkaTopics::default().dlq(), "o2c.dlq");
        assert_eq!(
            shared_events_filter("ingest").unwrap(),
            "$share/ingest/o2c/v1/stores/+/agents/+/events"
        );
        assert!(shared_events_filter("").is_err());
        assert!(shared_events_filter("a/#").is_err());
    }
}
