//! `cloud/api/openapi.json` must be exactly what the code generates: web
//! and app teams generate their clients from the checked-in file.
//!
//! Regenerate after an API change with:
//! `O2C_UPDATE_OPENAPI=1 cargo test -p o2c-api --test openapi`

use std::path::Path;

#[test]
fn openapi_json_is_current() {
    let generated = o2c_api::openapi::openapi_json();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    if std::env::var_os("O2C_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).expect("write openapi.json");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "cloud/api/openapi.json differs from the generated document; regenerate it with \
         `O2C_UPDATE_OPENAPI=1 cargo test -p o2c-api --test openapi` and commit it"
    );
}

#[test]
fn the_document_states_every_route_its_errors_and_its_links() {
    let doc: serde_json::Value =
        serde_json::from_str(&o2c_api::openapi::openapi_json()).expect("json");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let paths = &doc["paths"];
    for (path, method) in [
        ("/v1/orders", "post"),
        ("/v1/orders/{order_id}", "get"),
        ("/v1/orders/{order_id}/cancel", "post"),
        ("/v1/customers/me/orders", "get"),
        ("/openapi.json", "get"),
    ] {
        assert!(paths[path][method].is_object(), "{method} {path} missing");
    }
    let create = &paths["/v1/orders"]["post"]["responses"];
    for status in [
        "200", "201", "400", "401", "409", "413", "422", "429", "503",
    ] {
        assert!(
            create[status].is_object(),
            "POST /v1/orders {status} missing"
        );
    }
    let links = &paths["/v1/orders"]["post"]["responses"]["201"]["links"];
    assert_eq!(links["getOrder"]["operationId"], "getOrder", "{links}");
    assert_eq!(
        links["cancelOrder"]["operationId"], "cancelOrder",
        "{links}"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["bearerFormat"],
        "JWT"
    );
    // A web order's tenders: no cash, cards online only.
    let schemas = &doc["components"]["schemas"];
    let tenders = &schemas["RemotePayment"]["discriminator"]["mapping"];
    assert!(tenders["cash"].is_null(), "{tenders}");
    assert_eq!(
        schemas["OnlineCardPayment"]["properties"]["authorization"]["enum"],
        serde_json::json!(["online"])
    );
}
