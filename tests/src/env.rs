//! [`TestEnv`]: one test's temp dir, unique name prefix and the shared services.

use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;
use tempfile::TempDir;
use tokio_postgres::NoTls;

use crate::HarnessError;
use crate::kafka::kafka_answers;
use crate::mqtt::mqtt_answers;

/// Default MQTT broker (the machine's Mosquitto).
pub const DEFAULT_MQTT_URL: &str = "mqtt://127.0.0.1:1883";
/// Default Kafka bootstrap servers (the dev Tansu).
pub const DEFAULT_KAFKA: &str = "127.0.0.1:9092";
/// Default PostgreSQL connection (tokio-postgres key=value form).
pub const DEFAULT_PG: &str = "host=127.0.0.1 user=postgres";

/// How long a `require_*` probe may take before the test fails.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
const START_HINT: &str = "start the dev services with `deploy/dev/services.sh up`";

/// One test's private world: a temp dir, a unique prefix for every name it
/// creates on shared services, and the service endpoints.
///
/// Endpoints come from `O2C_TEST_MQTT_URL`, `O2C_TEST_KAFKA` and `O2C_TEST_PG`,
/// falling back to [`DEFAULT_MQTT_URL`], [`DEFAULT_KAFKA`] and [`DEFAULT_PG`].
/// `O2C_TEST_PG` uses tokio-postgres's `key=value` form (not a URL), so that
/// `dbname=...` can be appended to it.
/// Databases made with [`TestEnv::create_database`] are dropped with the env
/// (unless [`KEEP_DATABASES_ENV`] is set).
#[derive(Debug)]
pub struct TestEnv {
    dir: TempDir,
    prefix: String,
    mqtt_url: String,
    kafka: String,
    pg: String,
    databases: Mutex<Vec<String>>,
}

impl TestEnv {
    /// A fresh env. Panics only if no temp dir can be created.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("o2c-test-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
        Self {
            dir,
            prefix: random_prefix(),
            mqtt_url: env_or("O2C_TEST_MQTT_URL", DEFAULT_MQTT_URL),
            kafka: env_or("O2C_TEST_KAFKA", DEFAULT_KAFKA),
            pg: env_or("O2C_TEST_PG", DEFAULT_PG),
            databases: Mutex::new(Vec::new()),
        }
    }

    /// This test's temp dir, removed when the env drops.
    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The unique prefix: `t` and 10 random lowercase letters or digits.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A unique Kafka topic name: `{prefix}.{name}`.
    pub fn topic(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }

    /// A unique store id (for MQTT topics and client ids): `{prefix}-{name}`.
    pub fn store_id(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// A unique PostgreSQL database name: `{prefix}_{name}`.
    pub fn db_name(&self, name: &str) -> String {
        format!("{}_{name}", self.prefix)
    }

    /// The shared MQTT broker URL, e.g. `mqtt://127.0.0.1:1883`.
    pub fn mqtt_url(&self) -> &str {
        &self.mqtt_url
    }

    /// The shared Kafka bootstrap servers, e.g. `127.0.0.1:9092`.
    pub fn kafka_brokers(&self) -> &str {
        &self.kafka
    }

    /// The shared PostgreSQL connection string, without a database.
    pub fn pg_config(&self) -> &str {
        &self.pg
    }

    /// Checks that the shared MQTT broker answers an MQTT CONNECT; panics
    /// with instructions otherwise. Returns the broker URL.
    pub async fn require_mqtt(&self) -> &str {
        if let Err(e) = mqtt_answers(&self.mqtt_url, PROBE_TIMEOUT).await {
            panic!(
                "MQTT broker {} does not answer: {e}; {START_HINT}",
                self.mqtt_url
            );
        }
        &self.mqtt_url
    }

    /// Checks that the shared Kafka broker answers a metadata request; panics
    /// with instructions otherwise. Returns the bootstrap servers.
    pub async fn require_kafka(&self) -> &str {
        if let Err(e) = kafka_answers(&self.kafka, PROBE_TIMEOUT).await {
            panic!(
                "Kafka broker {} does not answer: {e}; {START_HINT}",
                self.kafka
            );
        }
        &self.kafka
    }

    /// Checks that PostgreSQL answers `SELECT 1`; panics with instructions
    /// otherwise. Returns the connection string.
    pub async fn require_postgres(&self) -> &str {
        if let Err(e) = pg_select_one(&self.pg).await {
            panic!(
                "PostgreSQL ({}) does not answer: {e}; {START_HINT}",
                self.pg
            );
        }
        &self.pg
    }

    /// Creates the database [`TestEnv::db_name`]`(name)` and returns a
    /// connection string for it. The database is dropped with the env.
    pub async fn create_database(&self, name: &str) -> Result<String, HarnessError> {
        let db = self.db_name(name);
        check_identifier(&db)?;
        let client = pg_connect(&self.pg).await?;
        client
            .batch_execute(&format!("CREATE DATABASE \"{db}\""))
            .await
            .map_err(|source| HarnessError::Postgres {
                what: format!("CREATE DATABASE {db}"),
                source,
            })?;
        self.databases
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(db.clone());
        Ok(format!("{} dbname={db}", self.pg))
    }
}

/// Set (to anything) to keep a test's or benchmark's databases for
/// inspection instead of dropping them.
pub const KEEP_DATABASES_ENV: &str = "O2C_TEST_KEEP_DATABASES";

impl Drop for TestEnv {
    fn drop(&mut self) {
        let databases = std::mem::take(
            self.databases
                .get_mut()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        if databases.is_empty() {
            return;
        }
        if std::env::var_os(KEEP_DATABASES_ENV).is_some() {
            eprintln!("{KEEP_DATABASES_ENV} is set: keeping databases {databases:?}");
            return;
        }
        // Drop may run inside a tokio runtime, so clean up on a thread of our own.
        let pg = self.pg.clone();
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(client) = pg_connect(&pg).await else {
                    return;
                };
                for db in databases {
                    let sql = format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)");
                    let _ = client.batch_execute(&sql).await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// `t` followed by 10 random lowercase letters or digits.
fn random_prefix() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let mut prefix = String::with_capacity(11);
    prefix.push('t');
    for _ in 0..10 {
        prefix.push(char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]));
    }
    prefix
}

/// Accepts only names that need no escaping: lowercase, digits, `_`, at most 63 bytes.
fn check_identifier(name: &str) -> Result<(), HarnessError> {
    let why = if name.is_empty() || name.len() > 63 {
        Some("must be 1 to 63 bytes")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        Some("only a-z, 0-9 and _ are allowed")
    } else {
        None
    };
    match why {
        Some(why) => Err(HarnessError::InvalidName {
            name: name.to_owned(),
            why,
        }),
        None => Ok(()),
    }
}

async fn pg_connect(config: &str) -> Result<tokio_postgres::Client, HarnessError> {
    let connect = tokio_postgres::connect(config, NoTls);
    let (client, connection) = tokio::time::timeout(PROBE_TIMEOUT, connect)
        .await
        .map_err(|_| HarnessError::Timeout {
            what: format!("PostgreSQL connection ({config})"),
            timeout: PROBE_TIMEOUT,
        })?
        .map_err(|source| HarnessError::Postgres {
            what: format!("connecting with {config:?}"),
            source,
        })?;
    tokio::spawn(async move {
        // The connection ends with an error when the server goes away; the
        // client's next call reports it, so nothing is lost here.
        let _ = connection.await;
    });
    Ok(client)
}

async fn pg_select_one(config: &str) -> Result<(), HarnessError> {
    let client = pg_connect(config).await?;
    client
        .simple_query("SELECT 1")
        .await
        .map_err(|source| HarnessError::Postgres {
            what: "SELECT 1".to_owned(),
            source,
        })?;
    Ok(())
}

/// Where `deploy/dev/` keeps its state and the tools it installs (the
/// Schemathesis and aiosmtpd venvs): `${O2C_DEV_DIR:-$HOME/.local/state/o2c-dev}`.
pub fn dev_state_dir() -> std::path::PathBuf {
    std::env::var_os("O2C_DEV_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_default();
            std::path::PathBuf::from(home).join(".local/state/o2c-dev")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_unique_and_well_formed() {
        let a = TestEnv::new();
        let b = TestEnv::new();
        assert_ne!(a.prefix(), b.prefix());
        assert_eq!(a.prefix().len(), 11);
        assert!(a.prefix().starts_with('t'));
        check_identifier(&a.db_name("orders")).unwrap();
        assert!(a.topic("orders").starts_with(a.prefix()));
        assert_ne!(a.path(), b.path());
    }

    #[test]
    fn identifiers_that_need_quoting_are_refused() {
        assert!(check_identifier("ok_name_1").is_ok());
        assert!(check_identifier("Bad").is_err());
        assert!(check_identifier("x\"; DROP").is_err());
        assert!(check_identifier("").is_err());
    }
}
