//! The in-process API harness: the real router, store and catalog in a
//! temp dir, called with `oneshot` (no socket).

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use o2c_agent::{Agent, Config};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{TOKEN_T1, config_toml};

/// An agent opened from [`config_toml`] with `extra`, and its router.
pub struct Harness {
    _dir: tempfile::TempDir,
    pub agent: Agent,
    pub router: Router,
}

impl Harness {
    pub fn new(extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let text = config_toml(dir.path(), extra);
        let config = Config::from_toml_with_env(&text, Vec::new()).unwrap();
        let agent = Agent::open(config).unwrap();
        let router = agent.router();
        Harness {
            _dir: dir,
            agent,
            router,
        }
    }

    pub async fn send(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, headers, json)
    }

    pub async fn post_order(&self, key: &str, body: &Value) -> (StatusCode, HeaderMap, Value) {
        let auth = format!("Bearer {TOKEN_T1}");
        self.send(
            "POST",
            "/v1/orders",
            &[("authorization", &auth), ("idempotency-key", key)],
            serde_json::to_vec(body).unwrap(),
        )
        .await
    }

    pub async fn get(&self, uri: &str) -> (StatusCode, HeaderMap, Value) {
        let auth = format!("Bearer {TOKEN_T1}");
        self.send("GET", uri, &[("authorization", &auth)], Vec::new())
            .await
    }

    pub async fn close(self) {
        self.agent.shutdown().await.unwrap();
    }
}

/// The error code of an error body.
pub fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<none>")
}

/// The field an error body names.
pub fn field(v: &Value) -> &str {
    v["error"]["field"].as_str().unwrap_or("<none>")
}

/// Nothing of a refused request may be written.
pub async fn assert_nothing_written(h: &Harness) {
    assert_eq!(h.agent.store().last_seq(), 0, "an outbox row was written");
    let (s, _, page) = h.get("/v1/orders").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(page["orders"], json!([]), "an order was written");
}
