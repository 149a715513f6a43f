//! The read side over HTTP, next to `/healthz`, `/readyz` and `/metrics`:
//!
//! - `GET /v1/analytics/live`: this hour's and today's figures from the
//!   Redis counters (fleet, per store, channel and category), the last 24
//!   hours, and the late arrivals of this hour;
//! - `GET /v1/analytics/daily?from=YYYY-MM-DD&to=YYYY-MM-DD&by=store|category`:
//!   the daily views in ClickHouse;
//! - `GET /sales`: the live sales page, which polls `/v1/analytics/live`.
//!
//! Errors have the agent's shape: `{"error": {"code", "message", "field"}}`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use o2c_cloud_common::config::RedisConfig;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use tokio::sync::OnceCell;

use crate::counters::Counters;
use crate::facts::Facts;
use crate::fold::{self, Settings};
use crate::live::Scoped;
use crate::metrics::Metrics;

/// What the read routes need.
#[derive(Debug, Clone)]
pub struct Reads {
    facts: Facts,
    settings: Settings,
    redis: RedisConfig,
    counters: Arc<OnceCell<Counters>>,
}

impl Reads {
    /// Reads over `facts` and the counters of `redis` (connected on first use).
    pub fn new(facts: Facts, settings: Settings, redis: RedisConfig) -> Self {
        Self {
            facts,
            settings,
            redis,
            counters: Arc::new(OnceCell::new()),
        }
    }

    async fn counters(&self) -> Result<&Counters, ApiError> {
        self.counters
            .get_or_try_init(|| Counters::connect(&self.redis))
            .await
            .map_err(|e| ApiError::unavailable(format!("redis: {e}")))
    }

    /// The live figures at `now`.
    pub async fn live(&self, now: OffsetDateTime) -> Result<Live, ApiError> {
        let hour = fold::hour_key(now);
        let today = fold::day_key(now.to_offset(self.settings.offset).date());
        let hours: Vec<String> = (0..24)
            .rev()
            .map(|i| fold::hour_key(now - Duration::hours(i)))
            .collect();
        let mut keys = vec![format!("d:{today}"), format!("arr:{hour}")];
        keys.extend(hours.iter().map(|h| format!("h:{h}")));
        let mut read = self
            .counters()
            .await?
            .read(&keys)
            .await
            .map_err(|e| ApiError::unavailable(e.to_string()))?
            .into_iter();
        let today_fields = read.next().unwrap_or_default();
        let arrivals = read.next().unwrap_or_default();
        let hourly: Vec<Scoped> = read.map(|f| Scoped::from_fields(&f)).collect();
        let this_hour = hourly.last().cloned().unwrap_or_default();
        Ok(Live {
            hour,
            business_date: now.to_offset(self.settings.offset).date().to_string(),
            this_hour,
            today: Scoped::from_fields(&today_fields),
            late_arrivals_this_hour: arrivals.get("late").copied().unwrap_or(0),
            hourly: hours
                .into_iter()
                .zip(hourly)
                .map(|(hour, s)| HourPoint {
                    hour,
                    orders: s.fleet.orders,
                    net_orders: s.fleet.net_orders,
                    net: s.fleet.net,
                })
                .collect(),
        })
    }
}

/// `GET /v1/analytics/live`.
#[derive(Debug, Clone, Serialize)]
pub struct Live {
    /// This hour (UTC), `YYYYMMDDHH`.
    pub hour: String,
    /// Today's business date.
    pub business_date: String,
    /// This hour's figures (by capture time).
    pub this_hour: Scoped,
    /// Today's figures (by capture time).
    pub today: Scoped,
    /// Orders captured offline that reached the cloud this hour.
    pub late_arrivals_this_hour: i64,
    /// The last 24 hours, oldest first.
    pub hourly: Vec<HourPoint>,
}

/// One hour of the chart.
#[derive(Debug, Clone, Serialize)]
pub struct HourPoint {
    /// `YYYYMMDDHH`.
    pub hour: String,
    /// Orders captured.
    pub orders: i64,
    /// Orders not voided.
    pub net_orders: i64,
    /// Net revenue per currency.
    pub net: crate::live::ByCurrency,
}

/// The router: the read routes, the page and the probes.
pub fn router(reads: Reads, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/v1/analytics/live", get(live))
        .route("/v1/analytics/daily", get(daily))
        .route("/sales", get(sales_page))
        .with_state(reads)
        .merge(o2c_runtime::http::router::<()>(metrics))
}

async fn live(State(r): State<Reads>) -> Response {
    match r
        .live(OffsetDateTime::from(o2c_runtime::clock::wall()))
        .await
    {
        Ok(l) => axum::Json(l).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `daily`'s query.
#[derive(Debug, Deserialize)]
struct DailyQuery {
    from: Option<String>,
    to: Option<String>,
    by: Option<String>,
}

/// One row of `GET /v1/analytics/daily`.
#[derive(Debug, Serialize)]
struct DailyRow {
    business_date: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    store_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    category: Option<String>,
    currency: String,
    orders: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    voids: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    units: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gross_minor: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refunded_minor: Option<i64>,
    net_minor: i64,
}

async fn daily(State(r): State<Reads>, Query(q): Query<DailyQuery>) -> Response {
    match daily_rows(&r, q).await {
        Ok(rows) => axum::Json(serde_json::json!({ "rows": rows })).into_response(),
        Err(e) => e.into_response(),
    }
}

fn parse_day(field: &str, v: Option<&str>) -> Result<u16, ApiError> {
    let v = v.ok_or_else(|| ApiError::bad(field, format!("{field} is required (YYYY-MM-DD)")))?;
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(v, &fmt)
        .map_err(|_| ApiError::bad(field, format!("{field} must be a date, YYYY-MM-DD")))?;
    fold::day_number(d).ok_or_else(|| ApiError::bad(field, format!("{field} is out of range")))
}

fn day_text(n: u16) -> String {
    fold::date_of_day_number(n).map_or_else(String::new, |d| d.to_string())
}

async fn daily_rows(r: &Reads, q: DailyQuery) -> Result<Vec<DailyRow>, ApiError> {
    let from = parse_day("from", q.from.as_deref())?;
    let to = parse_day("to", q.to.as_deref())?;
    if to < from {
        return Err(ApiError::bad("to", "to must not be before from"));
    }
    if u32::from(to - from) > 366 {
        return Err(ApiError::bad("to", "at most 366 days at once"));
    }
    let unavailable = |e: crate::facts::FactsError| ApiError::unavailable(e.to_string());
    match q.by.as_deref().unwrap_or("store") {
        "store" => Ok(r
            .facts
            .daily_by_store(from, to)
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(|x| DailyRow {
                business_date: day_text(x.business_date),
                store_id: Some(x.store_id),
                category: None,
                currency: x.currency,
                orders: x.orders,
                voids: Some(x.voids),
                units: None,
                gross_minor: Some(x.gross_minor),
                refunded_minor: Some(x.refunded_minor),
                net_minor: x.net_minor,
            })
            .collect()),
        "category" => Ok(r
            .facts
            .daily_by_category(from, to)
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(|x| DailyRow {
                business_date: day_text(x.business_date),
                store_id: None,
                category: Some(x.category),
                currency: x.currency,
                orders: x.orders,
                voids: None,
                units: Some(x.units),
                gross_minor: None,
                refunded_minor: None,
                net_minor: x.net_minor,
            })
            .collect()),
        _ => Err(ApiError::bad("by", "by must be store or category")),
    }
}

async fn sales_page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        include_str!("sales.html"),
    )
        .into_response()
}

/// A failed read.
#[derive(Debug, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
}

impl ApiError {
    fn bad(field: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_query",
            message: message.into(),
            field: Some(field.to_owned()),
        }
    }

    fn unavailable(message: String) -> Self {
        tracing::warn!(%message, "analytics read failed");
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "unavailable",
            message: "the analytics store is unavailable; try again".into(),
            field: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": { "code": self.code, "message": self.message, "field": self.field }
        });
        (self.status, axum::Json(body)).into_response()
    }
}
