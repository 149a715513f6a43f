//! The operations routes every binary serves: `/healthz` (the process
//! answers), `/readyz` (its [`Probes`] say it can do its job) and
//! `/metrics` (the OpenMetrics text of its prometheus-client registry).
//!
//! [`router`] is generic over the router state, so a binary merges it into
//! its own router (and its own layers and fallback apply to these routes
//! too) or serves it alone.

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

/// The `Content-Type` of `/metrics`.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether a process can do its job, and what it looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Serve `/readyz` with 200 (else 503).
    pub ready: bool,
    /// What was checked, e.g. `mqtt=true kafka=false`; left out of the
    /// body when `None`.
    pub detail: Option<String>,
}

impl Readiness {
    /// Ready, nothing more to say.
    pub fn ready() -> Self {
        Self {
            ready: true,
            detail: None,
        }
    }

    /// Ready when `ready`, without detail.
    pub fn from_bool(ready: bool) -> Self {
        Self {
            ready,
            detail: None,
        }
    }
}

/// What the operations routes ask the process.
pub trait Probes: Send + Sync + 'static {
    /// For `/readyz`.
    fn readiness(&self) -> Readiness;

    /// For `/metrics`: refresh gauges sampled on demand, then render the
    /// registry as OpenMetrics text.
    fn metrics_text(&self) -> String;
}

/// The body of `/healthz` and `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthBody {
    /// `ok` or `unavailable`.
    pub status: &'static str,
    /// What was checked (see [`Readiness::detail`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `/healthz`, `/readyz` and `/metrics` over `probes`.
pub fn router<S>(probes: Arc<dyn Probes>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let ready = Arc::clone(&probes);
    Router::new()
        .route("/healthz", get(healthz))
        .route(
            "/readyz",
            get(move || {
                let r = ready.readiness();
                async move { readyz(r) }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let text = probes.metrics_text();
                async move { metrics(text) }
            }),
        )
}

async fn healthz() -> Response {
    axum::Json(HealthBody {
        status: "ok",
        detail: None,
    })
    .into_response()
}

fn readyz(r: Readiness) -> Response {
    let (code, status) = if r.ready {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    (
        code,
        axum::Json(HealthBody {
            status,
            detail: r.detail,
        }),
    )
        .into_response()
}

fn metrics(text: String) -> Response {
    ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], text).into_response()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    #[derive(Debug, Default)]
    struct Flags {
        up: AtomicBool,
    }

    impl Probes for Flags {
        fn readiness(&self) -> Readiness {
            let up = self.up.load(Ordering::Relaxed);
            Readiness {
                ready: up,
                detail: (!up).then(|| "mqtt=false".to_owned()),
            }
        }

        fn metrics_text(&self) -> String {
            format!("up {}\n# EOF\n", u8::from(self.up.load(Ordering::Relaxed)))
        }
    }

    async fn fetch(app: Router, path: &str) -> (StatusCode, String, Option<String>) {
        let resp = app
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let ctype = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap(), ctype)
    }

    #[tokio::test]
    async fn healthz_is_always_ok() {
        let app = router(Arc::new(Flags::default()));
        let (code, body, _) = fetch(app, "/healthz").await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(body, r#"{"status":"ok"}"#);
    }

    #[tokio::test]
    async fn readyz_follows_the_probe() {
        let flags = Arc::new(Flags::default());
        let app: Router = router(flags.clone());
        let (code, body, _) = fetch(app.clone(), "/readyz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, r#"{"status":"unavailable","detail":"mqtt=false"}"#);
        flags.up.store(true, Ordering::Relaxed);
        let (code, body, _) = fetch(app, "/readyz").await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(body, r#"{"status":"ok"}"#);
    }

    #[tokio::test]
    async fn metrics_are_openmetrics_text_rendered_per_request() {
        let flags = Arc::new(Flags::default());
        let app: Router = router(flags.clone());
        let (code, body, ctype) = fetch(app.clone(), "/metrics").await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(ctype.as_deref(), Some(OPENMETRICS_CONTENT_TYPE));
        assert_eq!(body, "up 0\n# EOF\n");
        flags.up.store(true, Ordering::Relaxed);
        assert_eq!(fetch(app, "/metrics").await.1, "up 1\n# EOF\n");
    }

    #[tokio::test]
    async fn merges_into_a_router_with_state() {
        let app: Router = Router::new()
            .route("/v1/x", get(|axum::extract::State(n): axum::extract::State<u8>| async move { n.to_string() }))
            .merge(router(Arc::new(Flags::default())))
            .with_state(7u8);
        assert_eq!(fetch(app.clone(), "/v1/x").await.1, "7");
        assert_eq!(fetch(app, "/healthz").await.0, StatusCode::OK);
    }
}
