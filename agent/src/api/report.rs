//! `GET /v1/reports/z`: the Z-report of a business date (`crate::report`
//! builds it from the rows `store::report` reads).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;

use super::model::{ErrorBody, ZReportQuery};
use super::{ApiError, AppState};
use crate::business_day::parse_date;
use crate::report::{self, ZReport};

/// The Z-report of a business date: per terminal and for the store, the
/// orders, voids, gross and net per currency, the tenders, the returns
/// taken (refunds by tender, net after returns, the cash left in the
/// drawer; refused and unpriced ones counted apart), the offline card
/// money the cloud has not confirmed, the rejections and the sync state of
/// the day's events.
#[utoipa::path(
    get, path = "/v1/reports/z", tag = "reports", operation_id = "getZReport",
    params(ZReportQuery),
    responses(
        (status = 200, body = ZReport),
        (status = 400, description = "invalid_query: `date` missing, not YYYY-MM-DD or out of range (field `date`)", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 503, description = "storage_unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn z_report(
    State(st): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ZReportQuery>, QueryRejection>,
) -> Result<Json<ZReport>, ApiError> {
    st.authenticate(&headers).await?;
    let Query(q) = query.map_err(|r| ApiError::bad_request("invalid_query", r.body_text()))?;
    let bad_date = |why: &str| {
        ApiError::bad_request(
            "invalid_query",
            format!("date must be a business date as YYYY-MM-DD: {why}"),
        )
        .field("date")
    };
    let raw = q.date.as_deref().unwrap_or_default();
    if raw.is_empty() {
        return Err(bad_date("missing"));
    }
    let date = parse_date(raw).map_err(|e| bad_date(&e.to_string()))?;
    let inner = &st.inner;
    let meta = report::meta_for(
        inner.store_id.as_str(),
        &inner.business_day,
        date,
        inner.retention_days,
        crate::store::now_ms(),
    )
    .map_err(|e| bad_date(&e.to_string()))?;
    let (start, end) = meta.window_ms;
    let rows = inner.store.z_report_rows(start, end).await?;
    Ok(Json(report::build(&meta, &rows)?))
}
