//! A Confluent-compatible schema registry (Karapace): the subjects of
//! o2c's Kafka topics, registering and checking their schemas, and the ids
//! producers stamp in the [`SCHEMA_ID_HEADER`] header.
//!
//! Subjects follow the topic name strategy: `{topic}-value` for each event
//! type's topic and for `orders.state`. (`orders.events` carries every
//! type: its records carry the id of their own type's subject.) The schema
//! registered is the writer's form of the contract's
//! (`o2c_protocol::schema::writer_form`), for the reason given there.

use std::collections::HashMap;
use std::sync::Arc;

use o2c_cloud_common::config::KafkaConfig;
use o2c_protocol::order_state::ORDER_STATE_TYPE;
use o2c_protocol::schema::{schemas, writer_form};
use o2c_protocol::{EventType, KafkaTopics};
use serde_json::{Value, json};

/// The header that carries a record's value schema id.
pub const SCHEMA_ID_HEADER: &str = "o2c-schema-id";

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Why a registry call failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No answer.
    #[error("schema registry {url}: {source}")]
    Http {
        /// The registry.
        url: String,
        /// What failed.
        source: reqwest::Error,
    },
    /// An answer that is not the one expected.
    #[error("schema registry: {what} answered {status}: {body}")]
    Answer {
        /// The call.
        what: String,
        /// HTTP status.
        status: u16,
        /// The body.
        body: String,
    },
    /// A subject the producers need is not registered.
    #[error(
        "schema registry {url} has no subject {subject}: register the schemas first \
         (o2c-cloud schemas register --registry {url} --topic-prefix PREFIX)"
    )]
    Missing {
        /// The registry.
        url: String,
        /// The subject.
        subject: String,
    },
}

/// One subject: its name, the value type it describes (an event type's
/// name, or `OrderState`) and its schema in writer form.
#[derive(Debug, Clone, PartialEq)]
pub struct Subject {
    /// `{topic}-value`.
    pub name: String,
    /// `OrderCreated`, ..., `OrderState`.
    pub value_type: &'static str,
    /// The schema to register.
    pub schema: Value,
}

/// The subjects of every Kafka topic with one value type.
pub fn subjects(topics: &KafkaTopics) -> Vec<Subject> {
    let by_file: HashMap<String, Value> = schemas().into_iter().collect();
    let mut out: Vec<Subject> = EventType::ALL
        .into_iter()
        .filter_map(|t| {
            Some(Subject {
                name: format!("{}-value", topics.for_event(t)),
                value_type: t.as_str(),
                schema: writer_form(by_file.get(&format!("{t}.json"))?),
            })
        })
        .collect();
    if let Some(s) = by_file.get("DayClosed.json") {
        out.push(Subject {
            name: format!("{}-value", topics.days()),
            value_type: o2c_protocol::day::DAY_CLOSED,
            schema: writer_form(s),
        });
    }
    if let Some(s) = by_file.get("OrderState.json") {
        out.push(Subject {
            name: format!("{}-value", topics.state()),
            value_type: ORDER_STATE_TYPE,
            schema: writer_form(s),
        });
    }
    out
}

/// What registering a schema gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// Its id (the same schema registered before keeps its id).
    Id(i64),
    /// Refused as incompatible with the subject's earlier versions.
    Refused(String),
}

/// A registry client.
#[derive(Debug, Clone)]
pub struct Registry {
    url: String,
    client: reqwest::Client,
}

impl Registry {
    /// The registry at `url`.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        what: String,
        req: reqwest::RequestBuilder,
    ) -> Result<(u16, Value, String), RegistryError> {
        let http = |source| RegistryError::Http {
            url: self.url.clone(),
            source,
        };
        let resp = req
            .header("Content-Type", CONTENT_TYPE)
            .send()
            .await
            .map_err(http)?;
        let status = resp.status().as_u16();
        let body = resp.text().await.map_err(http)?;
        let v = serde_json::from_str(&body).unwrap_or(Value::Null);
        if status >= 500 {
            return Err(RegistryError::Answer { what, status, body });
        }
        Ok((status, v, body))
    }

    /// The versions registered for `subject`; `None` if it has none.
    pub async fn versions(&self, subject: &str) -> Result<Option<Vec<i64>>, RegistryError> {
        let what = format!("GET /subjects/{subject}/versions");
        let (status, v, body) = self
            .call(
                what.clone(),
                self.client
                    .get(format!("{}/subjects/{subject}/versions", self.url)),
            )
            .await?;
        match status {
            200 => Ok(Some(serde_json::from_value(v).unwrap_or_default())),
            404 => Ok(None),
            _ => Err(RegistryError::Answer { what, status, body }),
        }
    }

    /// Whether `schema` may follow `version` of `subject` under the
    /// subject's compatibility level: `Err(messages)` when not.
    pub async fn compatible(
        &self,
        subject: &str,
        version: i64,
        schema: &Value,
    ) -> Result<Result<(), String>, RegistryError> {
        let what = format!("POST /compatibility/subjects/{subject}/versions/{version}");
        let (status, v, body) = self
            .call(
                what.clone(),
                self.client
                    .post(format!(
                        "{}/compatibility/subjects/{subject}/versions/{version}?verbose=true",
                        self.url
                    ))
                    .json(&body_of(schema)),
            )
            .await?;
        if status != 200 {
            return Err(RegistryError::Answer { what, status, body });
        }
        Ok(if v["is_compatible"] == true {
            Ok(())
        } else {
            Err(v["messages"].to_string())
        })
    }

    /// Sets `BACKWARD_TRANSITIVE` on `subject` and registers `schema`.
    pub async fn register(
        &self,
        subject: &str,
        schema: &Value,
    ) -> Result<Registered, RegistryError> {
        let what = format!("PUT /config/{subject}");
        let (status, _, body) = self
            .call(
                what.clone(),
                self.client
                    .put(format!("{}/config/{subject}", self.url))
                    .json(&json!({"compatibility": "BACKWARD_TRANSITIVE"})),
            )
            .await?;
        if status != 200 {
            return Err(RegistryError::Answer { what, status, body });
        }
        let what = format!("POST /subjects/{subject}/versions");
        let (status, v, body) = self
            .call(
                what.clone(),
                self.client
                    .post(format!("{}/subjects/{subject}/versions", self.url))
                    .json(&body_of(schema)),
            )
            .await?;
        match (status, v["id"].as_i64()) {
            (200, Some(id)) => Ok(Registered::Id(id)),
            (409, _) => Ok(Registered::Refused(body)),
            _ => Err(RegistryError::Answer { what, status, body }),
        }
    }

    /// The id of the latest version of `subject`; `None` if it has none.
    pub async fn latest_id(&self, subject: &str) -> Result<Option<i64>, RegistryError> {
        let what = format!("GET /subjects/{subject}/versions/latest");
        let (status, v, body) = self
            .call(
                what.clone(),
                self.client
                    .get(format!("{}/subjects/{subject}/versions/latest", self.url)),
            )
            .await?;
        match (status, v["id"].as_i64()) {
            (200, Some(id)) => Ok(Some(id)),
            (404, _) => Ok(None),
            _ => Err(RegistryError::Answer { what, status, body }),
        }
    }
}

fn body_of(schema: &Value) -> Value {
    json!({"schemaType": "JSON", "schema": schema.to_string()})
}

/// The schema ids producers stamp, by value type (`OrderCreated`, ...,
/// `OrderState`); empty when no registry is configured.
#[derive(Debug, Clone, Default)]
pub struct SchemaIds(Arc<HashMap<&'static str, String>>);

impl SchemaIds {
    /// The header for a record whose value is of `value_type`, if an id is
    /// known for it.
    pub fn header(&self, value_type: &str) -> Option<(&'static str, String)> {
        self.0
            .get(value_type)
            .map(|id| (SCHEMA_ID_HEADER, id.clone()))
    }

    /// From `(value type, id)` pairs.
    pub fn from_ids(ids: impl IntoIterator<Item = (&'static str, i64)>) -> Self {
        Self(Arc::new(
            ids.into_iter().map(|(t, id)| (t, id.to_string())).collect(),
        ))
    }
}

/// The ids of every subject's latest version in `[kafka]
/// schema_registry_url`; empty without one. A subject that is not
/// registered stops the service, named: producers never stamp a guess.
pub async fn schema_ids_for(k: &KafkaConfig) -> Result<SchemaIds, RegistryError> {
    let Some(url) = &k.schema_registry_url else {
        return Ok(SchemaIds::default());
    };
    let registry = Registry::new(url);
    let topics = KafkaTopics::new(k.topic_prefix.clone()).unwrap_or_default();
    let mut ids = Vec::new();
    for s in subjects(&topics) {
        match registry.latest_id(&s.name).await? {
            Some(id) => ids.push((s.value_type, id)),
            None => {
                return Err(RegistryError::Missing {
                    url: registry.url.clone(),
                    subject: s.name,
                });
            }
        }
    }
    tracing::info!(%url, subjects = ids.len(), "schema ids loaded from the registry");
    Ok(SchemaIds::from_ids(ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_with_one_value_type_has_a_closed_subject() {
        let topics = KafkaTopics::new("p.").unwrap();
        let s = subjects(&topics);
        // Every event type, then the two records of their own.
        let n = o2c_protocol::EventType::ALL.len();
        assert_eq!(s.len(), n + 2);
        assert_eq!(s[0].name, "p.orders.created-value");
        assert_eq!(s[0].value_type, "OrderCreated");
        assert_eq!(
            (s[n].name.as_str(), s[n].value_type),
            ("p.stores.days-value", "DayClosed")
        );
        assert_eq!(s[n + 1].name, "p.orders.state-value");
        assert!(s.iter().all(|s| s.schema["additionalProperties"] == false));
        let ids = SchemaIds::from_ids([("OrderCreated", 7)]);
        assert_eq!(
            ids.header("OrderCreated"),
            Some((SCHEMA_ID_HEADER, "7".to_owned()))
        );
        assert_eq!(ids.header("OrderState"), None);
        assert_eq!(SchemaIds::default().header("OrderCreated"), None);
    }
}
