//! HTTP, next to `/healthz`, `/readyz` and `/metrics`:
//!
//! - `GET /v1/fleet`: the view ([`FleetView`]) as JSON, worst first;
//!   `?status=offline|stale|online` and `?store=ID` narrow it;
//! - `GET /fleet`: the fleet page, which polls `/v1/fleet` every 2 s and
//!   marks offline and stale agents.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::service::{Fleet, now_ms};

/// The router: the view, the page and the probes.
pub fn router(fleet: Arc<Fleet>) -> Router {
    Router::new()
        .route("/v1/fleet", get(view))
        .route("/fleet", get(page))
        .with_state(Arc::clone(&fleet))
        .merge(o2c_runtime::http::router::<()>(fleet))
}

#[derive(Debug, Deserialize)]
struct Filter {
    status: Option<String>,
    store: Option<String>,
}

async fn view(State(fleet): State<Arc<Fleet>>, Query(f): Query<Filter>) -> Response {
    if let Some(s) = &f.status
        && !matches!(s.as_str(), "online" | "stale" | "offline")
    {
        let body = serde_json::json!({ "error": {
            "code": "invalid_query",
            "message": "status must be online, stale or offline",
            "field": "status",
        }});
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    }
    // The summary counts what is shown.
    let mut v = fleet.view_of(now_ms(), f.store.as_deref());
    if let Some(status) = &f.status {
        v.agents.retain(|a| a.row.status.as_str() == status);
        let rows: Vec<_> = v.agents.iter().map(|a| a.row.clone()).collect();
        v.summary = crate::core::Summary::of(&rows);
    }
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(v)).into_response()
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        include_str!("fleet.html"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::hours::StoreHours;

    #[tokio::test]
    async fn serves_the_view_the_page_and_refuses_a_bad_filter() {
        let cfg = o2c_cloud_common::config::FleetConfig::default();
        let fleet = Arc::new(Fleet::new(3, StoreHours::from_config(&cfg).unwrap(), 0));
        let body = r#"{"schema_version":1,"store_id":"S1","agent_id":"A1","state":"online",
            "sent_at_ms":1,"agent_version":"0.1.0","heartbeat_secs":30,"pending_events":0,
            "last_acked_seq":0,"rejected_events":0}"#;
        fleet.handle_message(
            "o2c/v1/stores/S1/agents/A1/health",
            body.as_bytes(),
            false,
            now_ms(),
        );
        let app = router(fleet);
        let get = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
        let r = app.clone().oneshot(get("/v1/fleet")).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let v: serde_json::Value =
            serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(v["agents"][0]["agent_id"], "A1");
        assert_eq!(v["agents"][0]["status"], "online");
        assert_eq!(v["summary"]["online"], 1);
        let r = app
            .clone()
            .oneshot(get("/v1/fleet?status=offline"))
            .await
            .unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(v["agents"].as_array().unwrap().len(), 0);
        let r = app
            .clone()
            .oneshot(get("/v1/fleet?status=gone"))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let r = app.clone().oneshot(get("/fleet")).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let r = app.oneshot(get("/metrics")).await.unwrap();
        let text =
            String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        assert!(
            text.contains(r#"o2c_fleet_agent_up{store="S1",agent="A1"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("o2c_fleet_messages_total{outcome=\"online\"} 1"),
            "{text}"
        );
    }
}
