//! The OpenAPI 3 document of the HTTP API, generated from the handlers'
//! annotations. It is checked in as `agent/openapi.json`; the test
//! `openapi_json_is_current` fails when the two drift. Regenerate with
//! `O2C_UPDATE_OPENAPI=1 cargo test -p o2c-agent --test openapi`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api::model;
use crate::store::{CaptureReceipt, LocalStatus, OrderSyncState};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "o2c store agent",
        description = "Offline-first order capture at the store. Every error is \
                       {\"error\": {\"code\", \"message\", \"field\"}}.",
        version = "1"
    ),
    paths(
        crate::api::orders::capture,
        crate::api::orders::list,
        crate::api::orders::get_one,
        crate::api::orders::cancel,
        crate::api::returns::request_return,
        crate::api::returns::get_return,
        crate::api::report::z_report,
        crate::api::misc::product,
        crate::api::misc::catalog_status,
        crate::api::misc::sync,
        crate::api::ops::healthz,
        crate::api::ops::readyz,
        crate::api::ops::metrics,
        crate::api::misc::openapi,
    ),
    components(schemas(
        model::CaptureRequest, model::LineRequest, model::PaymentBody,
        model::CardAuthorizationBody, model::FulfillmentBody, model::AddressBody,
        model::CustomerBody, model::OrderView, model::LineView, model::PaymentView,
        model::SyncError, model::OrderListItem, model::OrderPage, model::CancelRequest,
        model::CancelResponse, model::SyncResponse, model::ErrorBody, model::ErrorDetail,
        model::HealthBody, CaptureReceipt, LocalStatus, OrderSyncState,
        model::ReturnRequest, model::ReturnLineBody, model::RefundBody, model::ReturnView,
        model::ReturnState,
        crate::api::misc::ProductView, crate::catalog::pull::PullStatus,
        crate::report::ZReport, crate::report::TerminalFigures, crate::report::Figures,
        crate::report::CurrencyFigures, crate::report::Tenders, crate::report::Refunds,
        crate::report::EventFigures, crate::report::Rejection
    )),
    modifiers(&Bearer)
)]
struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document, pretty-printed with a trailing newline.
pub fn openapi_json() -> String {
    let mut s = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}
