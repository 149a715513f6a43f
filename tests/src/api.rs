//! [`ApiProc`]: a running `o2c-cloud api` (the order API for web and
//! mobile customers and its saga side) beside a [`crate::saga::SagaWorld`],
//! with the catalog it prices from and the customers' tokens.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use crate::saga::{SagaSettings, cloud_command, spawn_cloud};
use crate::wait::wait_http_ok;
use crate::{ChildGuard, HarnessError, TestEnv, free_port};

/// The HS256 secret of the test API (at least 32 bytes).
pub const SECRET: &str = "o2c-test-secret-o2c-test-secret-0123";

/// The store that sells the API's orders in tests.
pub const WEB_STORE: &str = "WEB";

/// A running order API.
#[derive(Debug)]
pub struct ApiProc {
    guard: ChildGuard,
    config: PathBuf,
    log: PathBuf,
    listen: SocketAddr,
    admin: SocketAddr,
}

/// One HTTP answer: status, headers we look at, JSON body (or `Null`).
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// `Retry-After`, if sent.
    pub retry_after: Option<String>,
    /// `WWW-Authenticate`, if sent.
    pub challenge: Option<String>,
    /// `Idempotent-Replayed`, if sent.
    pub replayed: bool,
    /// The body as text.
    pub text: String,
    /// The body as JSON (`Null` if it is not).
    pub json: Value,
}

impl ApiProc {
    /// Writes `api.toml` in `dir` from the world's settings and starts the
    /// API; `extra` is appended to `[api]`. Waits until its saga side's
    /// `/readyz` is 200.
    pub async fn start(dir: &Path, s: &SagaSettings, extra: &str) -> Result<Self, HarnessError> {
        let listen = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let config = dir.join("api.toml");
        let text = format!(
            "[mqtt]\nurl = \"{}\"\n\
             [kafka]\nbrokers = \"{}\"\ntopic_prefix = \"{}.\"\n{}\n\
             [postgres]\nurl = \"{}\"\n\
             [saga]\ngroup_prefix = \"{}\"\nauto_stock = {}\n{}\n\
             {}\n\
             [api]\nlisten = \"{listen}\"\nadmin_listen = \"{admin}\"\nstore = \"{WEB_STORE}\"\n{extra}\n\
             [api.jwt]\nsecret = \"{SECRET}\"\n",
            s.mqtt_url,
            s.brokers,
            s.prefix,
            s.extra_kafka,
            s.pg,
            s.prefix,
            crate::saga::AUTO_STOCK,
            s.extra_saga,
            s.extra_tables,
        );
        std::fs::write(&config, text).map_err(|e| HarnessError::io("write api.toml", e))?;
        let log = dir.join("api.log");
        let guard = spawn_cloud(&["api"], &config, &[], &log)?;
        let me = ApiProc {
            guard,
            config,
            log,
            listen,
            admin,
        };
        wait_http_ok(
            "api /readyz",
            &format!("http://{}/readyz", me.admin),
            &me.log,
        )
        .await?;
        wait_http_ok(
            "api /openapi.json",
            &format!("http://{}/openapi.json", me.listen),
            &me.log,
        )
        .await?;
        Ok(me)
    }

    /// The API alone, for what needs no saga (tokens, quotas, refusals,
    /// the document): its saga side on the shared Kafka, its own database
    /// in `env`.
    pub async fn alone(env: &TestEnv, extra: &str) -> Result<Self, HarnessError> {
        Self::alone_on(env, None, extra).await
    }

    /// As [`ApiProc::alone`], on `brokers` when given (a benchmark's
    /// private Tansu) instead of the shared Kafka.
    pub async fn alone_on(
        env: &TestEnv,
        brokers: Option<&str>,
        extra: &str,
    ) -> Result<Self, HarnessError> {
        let brokers = match brokers {
            Some(b) => b.to_owned(),
            None => env.require_kafka().await.to_owned(),
        };
        env.require_postgres().await;
        let pg = env.create_database("api").await?;
        let settings = SagaSettings {
            prefix: env.prefix().to_owned(),
            // Required by the config's layout; the API never connects.
            mqtt_url: "mqtt://127.0.0.1:1".into(),
            brokers,
            pg,
            psp_url: "http://127.0.0.1:1".into(),
            carrier_url: String::new(),
            extra_saga: String::new(),
            extra_tables: String::new(),
            extra_psp: String::new(),
            extra_kafka: String::new(),
        };
        Self::start(env.path(), &settings, extra).await
    }

    /// `http://127.0.0.1:port` of the API.
    pub fn url(&self) -> String {
        format!("http://{}", self.listen)
    }

    /// The config file.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.guard.id()
    }

    /// `o2c-cloud catalog import` of JSON Lines `text` into the API's
    /// database (asserts exit 0).
    pub fn import_catalog(&self, dir: &Path, text: &str) {
        self.try_import_catalog(dir, text).expect("catalog import");
    }

    /// Sends `method path` with `token` (a bearer), `key` (an
    /// `Idempotency-Key`) and a JSON `body`, each if given.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        self.try_call(method, path, token, key, body)
            .await
            .expect("the API answers")
    }
}

/// An HS256 token of `customer` expiring `ttl_secs` from now (negative:
/// expired), signed with `secret`.
pub fn token_with(secret: &str, customer: &str, ttl_secs: i64) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": customer, "exp": now + ttl_secs, "iat": now}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode a token")
}

/// A valid token of `customer` for the test API (one hour).
pub fn token(customer: &str) -> String {
    token_with(SECRET, customer, 3600)
}

/// A web order body of `quantity` × `sku` at `unit` minor units (CAD),
/// paid by a card authorised online; shipped when `ship`.
pub fn web_order(sku: &str, quantity: i64, unit: i64, ship: bool) -> Value {
    let fulfillment = if ship {
        json!({"type": "ship_to_home", "address": {"name": "Ada Tremblay",
            "line1": "123 Rue Sainte-Catherine", "city": "Montréal", "postal_code": "H2X 1Y4",
            "country": "CA"}})
    } else {
        json!({"type": "carry_out"})
    };
    json!({
        "channel": "web",
        "currency": "CAD",
        "lines": [{"sku": sku, "quantity": quantity, "unit_price_minor": unit}],
        "payments": [{"method": "card", "amount_minor": unit * quantity, "token": "tok_web_1",
                      "brand": "visa", "last4": "4242", "authorization": "online"}],
        "fulfillment": fulfillment,
        "customer": {"email": "ada@example.com"}
    })
}

/// A catalog line of `sku` priced `minor` CAD.
pub fn product_line(sku: &str, minor: i64) -> String {
    json!({"sku": sku, "name": format!("{sku} product"), "category": "Apparel",
           "active": true, "prices": [{"currency": "CAD", "minor": minor}]})
    .to_string()
}

impl ApiProc {
    /// [`ApiProc::call`] that hands back a failure to connect instead of
    /// panicking (for `o2c-demo`, which reports and exits 1).
    pub async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Answer, HarnessError> {
        let http = |e: reqwest::Error| HarnessError::Pipeline(format!("api {path}: {e}"));
        let mut req = reqwest::Client::new()
            .request(method, format!("{}{path}", self.url()))
            .timeout(Duration::from_secs(30));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(http)?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (retry_after, challenge) = (header("retry-after"), header("www-authenticate"));
        let replayed = header("idempotent-replayed").as_deref() == Some("true");
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(http)?;
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Answer {
            status,
            retry_after,
            challenge,
            replayed,
            text,
            json,
        })
    }

    /// [`ApiProc::import_catalog`] that hands back a failure instead of
    /// panicking.
    pub fn try_import_catalog(&self, dir: &Path, text: &str) -> Result<(), HarnessError> {
        let file = dir.join("api-catalog.jsonl");
        std::fs::write(&file, text).map_err(|e| HarnessError::io("write the catalog file", e))?;
        match cloud_command(
            &self.config,
            &["catalog", "import", &file.to_string_lossy()],
        )? {
            (0, _) => Ok(()),
            (code, out) => Err(HarnessError::Pipeline(format!(
                "o2c-cloud catalog import exited {code}: {out}"
            ))),
        }
    }

    /// The log's path.
    pub fn log_path(&self) -> &Path {
        &self.log
    }
}
