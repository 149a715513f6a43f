//! The Z-report (`GET /v1/reports/z`, `o2c-agent report z`) and the
//! `captured_from`/`captured_to` filter of `GET /v1/orders`, checked
//! against the orders captured through the real router and store.
//!
//! The store's day closes twelve hours away from now in its zone, so the
//! orders a test captures now all fall in the middle of one business date
//! whatever time the test runs; one order is captured by a store whose
//! clock is a day behind (the `clock_skew_secs` of `StoreOptions`), so it
//! belongs to the business date before.
// Tests read the wall clock to place the business day around now.
#![allow(clippy::disallowed_methods)]

mod common;
#[path = "z_report/returns.rs"]
mod returns;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use o2c_agent::api::{self, AppState};
use o2c_agent::business_day::{BusinessDay, ClosingTime};
use o2c_agent::catalog::Catalog;
use o2c_agent::metrics::{Metrics, StoreMetrics};
use o2c_agent::store::{Store, StoreOptions};
use o2c_agent::{Agent, Config};
use o2c_protocol::{Ack, Seq};
use serde_json::{Value, json};
use tower::ServiceExt;

use common::{TOKEN_T1, TOKEN_T2, config_toml};

const ZONE: &str = "America/Toronto";

struct Day {
    dir: tempfile::TempDir,
    config_path: PathBuf,
    config: Config,
    agent: Option<Agent>,
    router: Router,
}

/// A config whose business day closes twelve hours from the current wall
/// clock hour in [`ZONE`].
fn config_text(dir: &Path) -> String {
    // Hours since local midnight (a DST day is off by one: harmless).
    let calendar = BusinessDay::new(ZONE.parse().unwrap(), ClosingTime::MIDNIGHT);
    let now = o2c_agent::store::now_ms();
    let (midnight, _) = calendar.window(calendar.date_of(now).unwrap()).unwrap();
    let closes = ((now - midnight) / 3_600_000 + 12) % 24;
    config_toml(
        dir,
        &format!(
            "[store]\ncurrency = \"CAD\"\ntimezone = \"{ZONE}\"\n\
             [business_day]\ncloses_at = \"{closes:02}:00\"\n"
        ),
    )
}

async fn send(
    router: &Router,
    method: &str,
    uri: &str,
    token: &str,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"));
    if body.is_some() {
        // Short keys: a random UUID's digit groups can read as a card
        // number, which the agent refuses in any field.
        static NEXT_KEY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT_KEY.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        req = req.header("idempotency-key", format!("z-{n}"));
    }
    let body = body.map_or_else(Vec::new, |b| serde_json::to_vec(b).unwrap());
    let resp = router
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// An order of `terminal` for `total` minor units paid by `payments`.
fn order(terminal: &str, currency: &str, total: i64, payments: Value) -> Value {
    json!({
        "terminal_id": terminal,
        "currency": currency,
        "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price_minor": total}],
        "payments": payments,
        "fulfillment": {"type": "carry_out"}
    })
}

fn card(amount: i64, authorization: &str) -> Value {
    json!({"method": "card", "amount_minor": amount, "token": "tok_x", "brand": "visa",
           "last4": "4242", "authorization": authorization})
}

impl Day {
    /// Captures one cash order of 777 on T1 with the store clock a day
    /// behind, then opens the agent on the same database.
    async fn new() -> Day {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let text = config_text(&data);
        let config_path = dir.path().join("agent.toml");
        std::fs::write(&config_path, &text).unwrap();
        let config = Config::from_toml_with_env(&text, Vec::new()).unwrap();
        {
            let mut opts = StoreOptions::new(
                config.db_path(),
                config.store_id.clone(),
                config.agent_id.clone(),
            );
            opts.offline_currency = config.store.currency;
            opts.clock_skew_secs = -86_400;
            let store = Store::open(opts, StoreMetrics::default()).unwrap();
            let catalog =
                Catalog::open(&config.catalog_path(), config.catalog.cache_bytes).unwrap();
            let router = api::router(AppState::new(
                &config,
                store.clone(),
                catalog,
                Arc::new(Metrics::new()),
                Arc::new(AtomicBool::new(false)),
                None,
            ));
            let cash = json!([{"method": "cash", "amount_minor": 777}]);
            let (s, v) = send(
                &router,
                "POST",
                "/v1/orders",
                TOKEN_T1,
                Some(&order("T1", "CAD", 777, cash)),
            )
            .await;
            assert_eq!(s, StatusCode::CREATED, "{v}");
            drop(router);
            store.close().await.unwrap();
        }
        let agent = Agent::open(config.clone()).unwrap();
        let router = agent.router();
        Day {
            dir,
            config_path,
            config,
            agent: Some(agent),
            router,
        }
    }

    fn store(&self) -> &Store {
        self.agent.as_ref().unwrap().store()
    }

    async fn capture(&self, token: &str, body: Value) -> Value {
        let (s, v) = send(&self.router, "POST", "/v1/orders", token, Some(&body)).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        send(&self.router, "GET", uri, TOKEN_T1, None).await
    }

    /// Today's business date (the day the orders captured now belong to)
    /// and the one before.
    fn dates(&self) -> (String, String) {
        let day = self.config.business_day();
        let today = day.date_of(o2c_agent::store::now_ms()).unwrap();
        let fmt = o2c_agent::report::format_date;
        (fmt(today), fmt(today.previous_day().unwrap()))
    }

    async fn close(mut self) {
        drop(self.router);
        self.agent.take().unwrap().shutdown().await.unwrap();
        drop(self.dir);
    }
}

/// seq 1 is the order of the day before; then, today:
/// T1 a split card+cash sale (2), a cash sale later voided (3), T2 a gift
/// card sale (4); the cloud acks through 4 and rejects 4; then T1 an
/// offline card sale (5), T2 a EUR card sale (6) and the void (7).
async fn capture_the_day(d: &Day) -> Vec<String> {
    let split = d
        .capture(
            TOKEN_T1,
            order(
                "T1",
                "CAD",
                2998,
                json!([card(1500, "online"), {"method": "cash", "amount_minor": 1498}]),
            ),
        )
        .await;
    let cash = json!([{"method": "cash", "amount_minor": 1000}]);
    let voided = d.capture(TOKEN_T1, order("T1", "CAD", 1000, cash)).await;
    let gift = json!([{"method": "gift_card", "amount_minor": 2500, "token": "gc_1"}]);
    let gift = d.capture(TOKEN_T2, order("T2", "CAD", 2500, gift)).await;
    let ack = Ack {
        through_seq: Seq::new(4).unwrap(),
        rejected: vec![o2c_protocol::frame::Rejection {
            seq: Seq::new(4).unwrap(),
            event_id: None,
            code: "invalid_order".into(),
            reason: "gift card unknown".into(),
        }],
    };
    let out = d
        .store()
        .apply_ack(&ack, o2c_agent::store::now_ms())
        .await
        .unwrap();
    assert_eq!((out.acked, out.rejected), (3, 1));
    let offline = d
        .capture(
            TOKEN_T1,
            order("T1", "CAD", 2998, json!([card(2998, "offline")])),
        )
        .await;
    let eur = d
        .capture(
            TOKEN_T2,
            order("T2", "EUR", 4000, json!([card(4000, "online")])),
        )
        .await;
    let id = voided["order_id"].as_str().unwrap();
    let (s, v) = send(
        &d.router,
        "POST",
        &format!("/v1/orders/{id}/cancel"),
        TOKEN_T1,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(d.store().last_seq(), 7);
    [split, voided, gift, offline, eur]
        .iter()
        .map(|v| v["order_id"].as_str().unwrap().to_owned())
        .collect()
}

fn rfc(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn currency<'a>(figures: &'a Value, code: &str) -> &'a Value {
    figures["currencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["currency"] == code)
        .unwrap_or_else(|| panic!("no {code} in {figures}"))
}

fn sales(
    orders: u64,
    voids: u64,
    gross: i64,
    voided: i64,
    tenders: [i64; 4],
    offline: (u64, i64),
) -> Value {
    json!({
        "orders": orders, "voids": voids, "gross_minor": gross, "voided_minor": voided,
        "net_minor": gross - voided,
        "tenders": {"card_online_minor": tenders[0], "card_offline_minor": tenders[1],
                    "cash_minor": tenders[2], "gift_card_minor": tenders[3]},
        "offline_unconfirmed_orders": offline.0, "offline_unconfirmed_minor": offline.1,
        "returns": 0,
        "refunds": {"card_minor": 0, "cash_minor": 0, "gift_card_minor": 0},
        "returned_minor": 0, "net_after_returns_minor": gross - voided,
        "cash_in_drawer_minor": tenders[2]
    })
}

fn check_currency(figures: &Value, code: &str, want: Value) {
    let mut got = currency(figures, code).clone();
    got.as_object_mut().unwrap().remove("currency");
    assert_eq!(got, want, "{code} of {figures}");
}

#[tokio::test]
async fn z_report_checks_every_figure_of_the_day() {
    let d = Day::new().await;
    let ids = capture_the_day(&d).await;
    let (today, before) = d.dates();
    let (s, z) = d.get(&format!("/v1/reports/z?date={today}")).await;
    assert_eq!(s, StatusCode::OK, "{z}");
    assert_eq!(z["store_id"], "S001");
    assert_eq!(z["business_date"], today.as_str());
    assert_eq!(z["timezone"], ZONE);
    assert_eq!(z["day_closed"], false);
    assert_eq!(z["outbox_retention_days"], 7);
    let window = d
        .config
        .business_day()
        .window(o2c_agent::business_day::parse_date(&today).unwrap())
        .unwrap();
    assert_eq!(z["window_start"], rfc(window.0));
    assert_eq!(z["window_end"], rfc(window.1));

    let terminals = z["terminals"].as_array().unwrap();
    assert_eq!(terminals.len(), 2);
    let (t1, t2) = (&terminals[0], &terminals[1]);
    assert_eq!(
        (&t1["terminal_id"], &t2["terminal_id"]),
        (&json!("T1"), &json!("T2"))
    );
    // T1: split 1500 card + 1498 cash, 2998 offline card, 1000 cash voided;
    // the day before's 777 is not here.
    let f1 = &t1["figures"];
    assert_eq!(f1["currencies"].as_array().unwrap().len(), 1);
    check_currency(
        f1,
        "CAD",
        sales(3, 1, 6996, 1000, [1500, 2998, 1498, 0], (1, 2998)),
    );
    assert_eq!(f1["rejected_orders"], 0);
    assert_eq!(
        f1["events"],
        json!({"synced": 2, "pending": 2, "rejected": 0, "pruned": 0})
    );
    let f2 = &t2["figures"];
    check_currency(f2, "CAD", sales(1, 0, 2500, 0, [0, 0, 0, 2500], (0, 0)));
    check_currency(f2, "EUR", sales(1, 0, 4000, 0, [4000, 0, 0, 0], (0, 0)));
    assert_eq!(f2["rejected_orders"], 1);
    assert_eq!(
        f2["events"],
        json!({"synced": 0, "pending": 1, "rejected": 1, "pruned": 0})
    );
    let total = &z["total"];
    check_currency(
        total,
        "CAD",
        sales(4, 1, 9496, 1000, [1500, 2998, 1498, 2500], (1, 2998)),
    );
    check_currency(total, "EUR", sales(1, 0, 4000, 0, [4000, 0, 0, 0], (0, 0)));
    assert_eq!(total["rejected_orders"], 1);
    assert_eq!(
        (
            &total["returns"],
            &total["returns_refused"],
            &total["returns_unpriced"]
        ),
        (&json!(0), &json!(0), &json!(0))
    );
    assert_eq!(
        total["events"],
        json!({"synced": 2, "pending": 3, "rejected": 1, "pruned": 0})
    );
    assert_eq!(z["events_complete"], true);
    assert_eq!(
        z["rejections"],
        json!([{"order_id": ids[2], "terminal_id": "T2", "currency": "CAD",
                "total_minor": 2500, "code": "invalid_order", "reason": "gift card unknown"}])
    );

    // The day before holds only its own order, synced.
    let (s, y) = d.get(&format!("/v1/reports/z?date={before}")).await;
    assert_eq!(s, StatusCode::OK, "{y}");
    assert_eq!(y["day_closed"], true);
    assert_eq!(y["terminals"].as_array().unwrap().len(), 1);
    check_currency(
        &y["total"],
        "CAD",
        sales(1, 0, 777, 0, [0, 0, 777, 0], (0, 0)),
    );
    assert_eq!(y["total"]["events"]["synced"], 1);

    // Retention prunes acked rows (done here as `prune` does, without
    // waiting for a closed day): still counted as synced, and flagged.
    let db = rusqlite::Connection::open(d.config.db_path()).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    let pruned = db
        .execute("DELETE FROM outbox WHERE state = 'acked'", [])
        .unwrap();
    assert_eq!(pruned, 3);
    drop(db);
    let (_, z) = d.get(&format!("/v1/reports/z?date={today}")).await;
    assert_eq!(z["events_complete"], false);
    assert_eq!(
        z["total"]["events"],
        json!({"synced": 2, "pending": 3, "rejected": 1, "pruned": 2})
    );
    d.close().await;
}

#[tokio::test]
async fn a_bad_or_missing_date_gets_400_naming_it() {
    let d = Day::new().await;
    for uri in [
        "/v1/reports/z",
        "/v1/reports/z?date=",
        "/v1/reports/z?date=2026-13-01",
        "/v1/reports/z?date=03/12/2026",
        "/v1/reports/z?date=-9999-01-01",
    ] {
        let (s, v) = d.get(uri).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}: {v}");
        assert_eq!(v["error"]["code"], "invalid_query", "{uri}");
        assert_eq!(v["error"]["field"], "date", "{uri}: {v}");
    }
    let (s, v) = d.get("/v1/reports/z?date=2026-12-03&colour=red").await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_query"))
    );
    let (s, _) = send(
        &d.router,
        "GET",
        "/v1/reports/z?date=2026-12-03",
        "nope",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    d.close().await;
}

#[tokio::test]
async fn orders_list_filters_by_capture_time() {
    let d = Day::new().await;
    let mut ids = capture_the_day(&d).await;
    ids.sort();
    let (today, _) = d.dates();
    let day = d.config.business_day();
    let (start, end) = day
        .window(o2c_agent::business_day::parse_date(&today).unwrap())
        .unwrap();
    let (from, to) = (rfc(start), rfc(end));
    // Paged two by two through the day: exactly its orders, by id.
    let mut seen = Vec::new();
    let mut uri = format!("/v1/orders?limit=2&captured_from={from}&captured_to={to}");
    loop {
        let (s, page) = d.get(&uri).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        for o in page["orders"].as_array().unwrap() {
            seen.push(o["order_id"].as_str().unwrap().to_owned());
        }
        match page["next_after"].as_str() {
            Some(after) => {
                uri = format!(
                    "/v1/orders?limit=2&captured_from={from}&captured_to={to}&after={after}"
                );
            }
            None => break,
        }
    }
    assert_eq!(seen, ids);
    // Half-open: the day before ends where today starts.
    let (_, page) = d.get(&format!("/v1/orders?captured_to={from}")).await;
    let before = page["orders"].as_array().unwrap();
    assert_eq!(before.len(), 1, "{page}");
    assert_eq!(before[0]["total_minor"], 777);
    let (_, page) = d.get(&format!("/v1/orders?captured_from={to}")).await;
    assert_eq!(page["orders"], json!([]));
    let (_, page) = d.get("/v1/orders").await;
    assert_eq!(
        page["orders"].as_array().unwrap().len(),
        6,
        "unfiltered: all"
    );
    for (uri, field) in [
        ("/v1/orders?captured_from=yesterday", "captured_from"),
        ("/v1/orders?captured_to=2026-12-03", "captured_to"),
        (
            "/v1/orders?captured_from=2026-12-04T00:00:00Z&captured_to=2026-12-03T00:00:00Z",
            "captured_to",
        ),
    ] {
        let (s, v) = d.get(uri).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}: {v}");
        assert_eq!(v["error"]["code"], "invalid_query");
        assert_eq!(v["error"]["field"], field, "{uri}: {v}");
    }
    d.close().await;
}

#[tokio::test]
async fn the_cli_prints_the_same_report_while_the_agent_runs() {
    let d = Day::new().await;
    capture_the_day(&d).await;
    let (today, _) = d.dates();
    let (_, http) = d.get(&format!("/v1/reports/z?date={today}")).await;
    let bin = env!("CARGO_BIN_EXE_o2c-agent");
    let run = |args: &[&str]| {
        std::process::Command::new(bin)
            .args(args)
            .arg("--config")
            .arg(&d.config_path)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    // The agent still holds the database open.
    let out = run(&["report", "z", "--date", &today, "--json"]);
    assert!(out.status.success(), "{out:?}");
    let mut cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut http = http;
    for v in [&mut cli, &mut http] {
        v.as_object_mut().unwrap().remove("generated_at");
    }
    assert_eq!(cli, http);

    let out = run(&["report", "z", "--date", &today]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let line = |prefix: &str, cur: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix) && l.contains(&format!(" {cur} ")))
            .unwrap_or_else(|| panic!("no {prefix} {cur} line in\n{text}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    // SALES comes first: TOTAL CAD orders voids gross voided net.
    assert_eq!(
        line("TOTAL", "CAD"),
        ["TOTAL", "CAD", "4", "1", "94.96", "10.00", "84.96"]
    );
    assert!(text.contains("invalid_order"), "{text}");
    assert!(text.contains("DAY STILL OPEN"), "{text}");

    let out = run(&["report", "z", "--date", "2026-02-30"]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--date"),
        "{out:?}"
    );
    d.close().await;
}
