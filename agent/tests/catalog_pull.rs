//! The catalog pull against a scripted catalog service (plain HTTP on port
//! 0, one canned answer per request): a page that fails its checks refuses
//! the whole pull and the previous catalog keeps serving, as it does after
//! a 5xx or a walk whose pages disagree. The service gzips its answers
//! (as the cloud's does) and counts requests that did not ask for gzip:
//! the agent asks, and inflates on its catalog thread.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::header::ACCEPT_ENCODING;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use o2c_agent::Config;
use o2c_agent::catalog::pull::{PullError, Puller};
use o2c_agent::catalog::worker::{NICENESS_STEP, Worker};
use o2c_agent::catalog::{Catalog, Kind};
use o2c_agent::metrics::CatalogMetrics;
use o2c_protocol::Currency;
use o2c_protocol::catalog::CatalogVersion;

type Script = Arc<Mutex<VecDeque<(u16, String)>>>;

async fn service(script: Script, plain: Arc<AtomicUsize>) -> String {
    let app = Router::new()
        .fallback(move |headers: HeaderMap| {
            let script = Arc::clone(&script);
            let gzip = headers
                .get(ACCEPT_ENCODING)
                .is_some_and(|v| v.to_str().is_ok_and(|v| v.contains("gzip")));
            if !gzip {
                plain.fetch_add(1, Ordering::Relaxed);
            }
            async move {
                let (status, body) = script
                    .lock()
                    .unwrap()
                    .pop_front()
                    .unwrap_or((500, "script exhausted".into()));
                (StatusCode::from_u16(status).unwrap(), body).into_response()
            }
        })
        .layer(tower_http::compression::CompressionLayer::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn page(version: u64, since: Option<u64>, products: &str, next: Option<&str>) -> String {
    let since = since.map_or(String::new(), |s| format!(r#""since":{s},"#));
    let next = next.map_or(String::new(), |n| format!(r#","next_after":"{n}""#));
    format!(
        r#"{{"version":{version},{since}"full":{},"products":[{products}]{next}}}"#,
        since.is_empty()
    )
}

fn product(sku: &str, minor: i64) -> String {
    format!(r#"{{"sku":"{sku}","name":"{sku}","prices":[{{"currency":"CAD","minor":{minor}}}]}}"#)
}

const NO_STOCK: &str = r#"{"version":0,"levels":[]}"#;

#[tokio::test]
async fn a_bad_or_inconsistent_pull_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_toml_with_env(
        &format!(
            "store_id = \"S001\"\nagent_id = \"S001-A1\"\ndata_dir = \"{}\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:1\"\n\
             [[terminals]]\nid = \"T1\"\ntoken_sha256 = \"{}\"\n",
            dir.path().display(),
            "0".repeat(64)
        ),
        std::iter::empty(),
    )
    .unwrap();
    let catalog = Catalog::open(&dir.path().join("catalog"), 1 << 20).unwrap();
    let script: Script = Arc::default();
    let plain = Arc::new(AtomicUsize::new(0));
    let base = service(Arc::clone(&script), Arc::clone(&plain)).await;
    let puller = Puller::new(
        catalog.clone(),
        Worker::start(NICENESS_STEP).unwrap(),
        // As `http_client` builds it: reqwest neither asks for gzip nor
        // inflates, so a gzipped page parses only if the pull inflates it.
        reqwest::Client::builder().no_gzip().build().unwrap(),
        &base,
        &config,
        CatalogMetrics::default(),
    );
    let cad = Currency::from_code("CAD").unwrap();
    let now = time::OffsetDateTime::now_utc();
    let push = |answers: &[(u16, String)]| script.lock().unwrap().extend(answers.iter().cloned());

    // A snapshot over two pages, then the stock.
    push(&[
        (200, page(1, None, &product("A", 100), Some("A"))),
        (200, page(1, None, &product("B", 200), None)),
        (200, NO_STOCK.into()),
    ]);
    puller.pull_all().await.unwrap();
    assert_eq!(
        catalog.version(Kind::Catalog).unwrap(),
        Some(CatalogVersion(1))
    );
    assert_eq!(catalog.price("B", cad, now).unwrap(), Some((200, cad)));

    let unchanged = |e: PullError, want: &str| {
        assert!(e.to_string().contains(want), "{e}");
        assert_eq!(
            catalog.version(Kind::Catalog).unwrap(),
            Some(CatalogVersion(1))
        );
        assert_eq!(catalog.price("A", cad, now).unwrap(), Some((100, cad)));
        assert_eq!(catalog.price("B", cad, now).unwrap(), Some((200, cad)));
        assert!(catalog.get("C").unwrap().is_none());
    };
    // A negative price on the second page: nothing of the first applies.
    push(&[
        (200, page(2, Some(1), &product("A", 111), Some("A"))),
        (200, page(2, Some(1), &product("B", -5), None)),
    ]);
    unchanged(puller.pull_all().await.unwrap_err(), "must not be negative");
    // An unknown currency, bad JSON, a version that goes backwards.
    push(&[(
        200,
        page(2, Some(1), &product("C", 1).replace("CAD", "ZZZ"), None),
    )]);
    unchanged(puller.pull_all().await.unwrap_err(), "not a catalog page");
    push(&[(200, "{not json".into())]);
    unchanged(puller.pull_all().await.unwrap_err(), "not a catalog page");
    push(&[(200, page(0, None, &product("C", 1), None))]);
    unchanged(puller.pull_all().await.unwrap_err(), "older than");
    // Pages of one walk that disagree on the version.
    push(&[
        (200, page(2, Some(1), &product("A", 111), Some("A"))),
        (200, page(3, Some(1), &product("C", 1), None)),
    ]);
    unchanged(puller.pull_all().await.unwrap_err(), "is for version 3");
    // The service failing.
    // Its error body comes gzipped too, and shows inflated.
    push(&[(503, "busy ".repeat(20))]);
    unchanged(
        puller.pull_all().await.unwrap_err(),
        "answered 503 Service Unavailable: busy busy",
    );

    // And then a good delta applies.
    push(&[
        (200, page(2, Some(1), &product("C", 300), None)),
        (200, NO_STOCK.into()),
    ]);
    puller.pull_all().await.unwrap();
    assert_eq!(
        catalog.version(Kind::Catalog).unwrap(),
        Some(CatalogVersion(2))
    );
    assert_eq!(catalog.price("C", cad, now).unwrap(), Some((300, cad)));
    // Nothing staged by the refused pulls leaked into it.
    assert_eq!(catalog.price("A", cad, now).unwrap(), Some((100, cad)));
    assert_eq!(plain.load(Ordering::Relaxed), 0, "every pull asks for gzip");
}
