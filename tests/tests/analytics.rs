//! Sales analytics (issue 16) against the real Redis, ClickHouse and
//! Kafka: the counters and facts match the orders (split tenders, voids,
//! refunds, categories from the catalog at capture); a kill -9 mid-stream
//! and a replay of every topic change nothing; orders captured offline
//! three days back land in that day; a malformed event is dead-lettered
//! and the stream goes on; the `/sales` page in headless Chromium follows
//! a new order.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use o2c_analytics::facts::OrderFact;
use o2c_analytics::fold;
use o2c_analytics::live::Scoped;
use o2c_runtime::kafka::scan::{ScanFrom, scan};
use o2c_tests::analytics::AnalyticsProc;
use o2c_tests::pipeline::AgentProc;
use o2c_tests::saga::{SagaWorld, capture, cloud_command, cloud_status};
use o2c_tests::wait::wait_for_value;
use o2c_tests::wait_until_named;
use serde_json::{Value, json};
use time::OffsetDateTime;

const SAGA: Duration = Duration::from_secs(120);
const CATALOG: &str = "{\"sku\":\"SKU-T\",\"name\":\"Toy\",\"price_minor\":1000,\"currency\":\"CAD\",\"category\":\"Toys\",\"stock_on_hand\":100}\n\
{\"sku\":\"SKU-G\",\"name\":\"Rake\",\"price_minor\":1500,\"currency\":\"CAD\",\"category\":\"Garden\",\"stock_on_hand\":100}\n";

/// A capture priced by the catalog: `lines` of (sku, qty), `payments` as
/// (method, amount, token).
fn body(lines: &[(&str, i64)], payments: &[(&str, i64, &str)], ship: bool) -> Value {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(sku, q)| json!({"sku": sku, "quantity": q}))
        .collect();
    let payments: Vec<Value> = payments
        .iter()
        .map(|(m, amount, token)| match *m {
            "card" => json!({"method": "card", "amount_minor": amount, "token": token,
                             "brand": "visa", "last4": "4242", "authorization": "online"}),
            _ => json!({"method": "cash", "amount_minor": amount}),
        })
        .collect();
    let fulfillment = if ship {
        json!({"type": "ship_to_home", "address": {"name": "A. Customer", "line1": "1 Main St",
               "city": "Montreal", "postal_code": "H2X 1Y4", "country": "CA"}})
    } else {
        json!({"type": "carry_out"})
    };
    json!({"terminal_id": "T1", "currency": "CAD", "lines": lines, "payments": payments,
           "fulfillment": fulfillment, "customer": {"email": "ann@example.com"}})
}

async fn wait_final(a: &AgentProc, id: &str, statuses: &[&str]) -> String {
    wait_for_value(
        &format!("order {id} reaches one of {statuses:?}"),
        || async {
            let s = cloud_status(a, id).await.ok().and_then(|(s, _)| s);
            (s.as_deref().is_some_and(|s| statuses.contains(&s)), s)
        },
        SAGA,
    )
    .await
    .unwrap_or_else(|(e, last)| panic!("{e}: last {last:?}"))
    .unwrap_or_default()
}

async fn day_counters(an: &AnalyticsProc, day: &str) -> HashMap<String, i64> {
    an.counters()
        .await
        .read(&[format!("d:{day}")])
        .await
        .expect("read counters")
        .pop()
        .unwrap_or_default()
}

fn today_key() -> String {
    fold::day_key(OffsetDateTime::now_utc().date())
}

async fn wait_counters(
    an: &AnalyticsProc,
    day: &str,
    what: &str,
    ok: impl Fn(&Scoped) -> bool,
) -> Scoped {
    let r = wait_for_value(
        what,
        || async {
            let seen = Scoped::from_fields(&day_counters(an, day).await);
            (ok(&seen), seen)
        },
        SAGA,
    )
    .await;
    r.unwrap_or_else(|(e, seen)| panic!("{e}: counters {seen:#?}\n{}", an.log_tail()))
}

async fn facts_of_day(an: &AnalyticsProc, day: &str) -> Vec<OrderFact> {
    let d = time::Date::parse(
        day,
        &time::macros::format_description!("[year][month][day]"),
    )
    .unwrap();
    an.facts()
        .orders_of_day(fold::day_number(d).unwrap())
        .await
        .expect("fact_orders")
}

fn cad(m: &BTreeMap<String, i64>) -> i64 {
    m.get("CAD").copied().unwrap_or(0)
}

/// Every record of the analytics service's topics, for the replay check.
async fn records_in(w: &SagaWorld) -> usize {
    let mut n = 0;
    for t in o2c_analytics::service::EVENT_TYPES {
        let topic = o2c_protocol::KafkaTopics::new(format!("{}.", w.env.prefix()))
            .unwrap()
            .for_event(t);
        let brokers = w.brokers.clone();
        n += tokio::task::spawn_blocking(move || {
            scan(
                &brokers,
                &topic,
                None,
                ScanFrom::Beginning,
                Duration::from_secs(20),
            )
        })
        .await
        .unwrap()
        .map(|r| r.len())
        .unwrap_or(0);
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figures_match_the_orders_and_neither_kill_nor_replay_counts_twice() {
    let mut w = SagaWorld::start(&["all"], "", "").await.expect("world");
    w.agent.import_catalog(CATALOG).await.expect("catalog");
    let mut an = AnalyticsProc::start(w.env.path(), &w.settings, "", "")
        .await
        .expect("analytics");
    let a = &w.agent;
    let day = today_key();

    // A cash sale; a split tender; a void at the till; a declined card; a
    // void after completion (refunded); a ship-to-home sale.
    let o1 = capture(
        a,
        "o1",
        &body(&[("SKU-T", 2)], &[("cash", 2000, "")], false),
    )
    .await
    .unwrap();
    let o2 = capture(
        a,
        "o2",
        &body(
            &[("SKU-T", 1), ("SKU-G", 1)],
            &[("card", 1500, "tok_visa_an1"), ("cash", 1000, "")],
            false,
        ),
    )
    .await
    .unwrap();
    let o3 = capture(
        a,
        "o3",
        &body(&[("SKU-G", 1)], &[("cash", 1500, "")], false),
    )
    .await
    .unwrap();
    a.cancel(&o3).await.unwrap();
    let o4 = capture(
        a,
        "o4",
        &body(&[("SKU-T", 1)], &[("card", 1000, "tok_decline_an")], false),
    )
    .await
    .unwrap();
    let o5 = capture(
        a,
        "o5",
        &body(&[("SKU-G", 2)], &[("card", 3000, "tok_visa_an2")], false),
    )
    .await
    .unwrap();
    let o6 = capture(
        a,
        "o6",
        &body(&[("SKU-T", 1)], &[("card", 1000, "tok_visa_an3")], true),
    )
    .await
    .unwrap();
    wait_final(a, &o5, &["completed"]).await;
    a.cancel(&o5).await.unwrap();
    for id in [&o1, &o2, &o6] {
        wait_final(a, id, &["completed"]).await;
    }
    wait_final(a, &o3, &["cancelled", "refunded"]).await;
    wait_final(a, &o4, &["cancelled"]).await;
    wait_final(a, &o5, &["refunded"]).await;

    // What the processor refunded, read from Kafka.
    let refunds_topic = w.env.topic("refunds.issued");
    let brokers = w.brokers.clone();
    let refunded: i64 = tokio::task::spawn_blocking(move || {
        scan(
            &brokers,
            &refunds_topic,
            None,
            ScanFrom::Beginning,
            Duration::from_secs(20),
        )
    })
    .await
    .unwrap()
    .unwrap()
    .iter()
    .filter_map(|r| o2c_protocol::Envelope::decode(&r.value).ok())
    .filter_map(|e| match e.payload {
        o2c_protocol::Event::RefundIssued(r) => Some(r.amount.minor),
        _ => None,
    })
    .sum();
    assert!(refunded >= 3000, "o5's refund is on Kafka: {refunded}");

    let s = wait_counters(
        &an,
        &day,
        "six orders, three voided, refunds counted",
        |s| s.fleet.orders == 6 && s.fleet.voids == 3 && cad(&s.fleet.refund) == refunded,
    )
    .await;
    let f = &s.fleet;
    assert_eq!(f.net_orders, 3);
    assert_eq!(cad(&f.gross), 2000 + 2500 + 1500 + 1000 + 3000 + 1000);
    assert_eq!(cad(&f.void), 1500 + 1000 + 3000);
    // Voided orders are worth nothing, whatever was refunded for them.
    assert_eq!(cad(&f.net), 2000 + 2500 + 1000);
    assert_eq!(cad(&f.tender["cash"]), 2000 + 1000 + 1500);
    assert_eq!(cad(&f.tender["card"]), 1500 + 1000 + 3000 + 1000);
    // Categories from the catalog at capture.
    assert_eq!(cad(&f.by_category["Toys"].gross), 2000 + 1000 + 1000 + 1000);
    assert_eq!(cad(&f.by_category["Toys"].net), 2000 + 1000 + 1000);
    assert_eq!(cad(&f.by_category["Garden"].gross), 1500 + 1500 + 3000);
    assert_eq!(cad(&f.by_category["Garden"].net), 1500);
    let store = &s.by_store[&a.store_id];
    assert_eq!((store.orders, store.net_orders), (6, 3));
    assert_eq!(s.by_channel["pos"].orders, 6);

    // The live API says the same.
    let (code, live) = an.get("/v1/analytics/live").await.unwrap();
    assert_eq!(code, 200, "{live}");
    assert_eq!(live["today"]["orders"], 6);
    assert_eq!(live["today"]["by_store"][&a.store_id]["net"]["CAD"], 5500);

    // Facts: one row per order, in their final state.
    let facts = wait_for_value(
        "fact_orders in their final state",
        || async {
            let facts = facts_of_day(&an, &day).await;
            let done = facts.len() == 6
                && facts.iter().filter(|f| f.status == "cancelled").count() == 3
                && facts.iter().filter(|f| f.status == "completed").count() == 3
                && facts.iter().map(|f| f.refunded_minor).sum::<i64>() == refunded;
            (done, facts)
        },
        SAGA,
    )
    .await
    .unwrap_or_else(|(e, facts)| panic!("{e}: {facts:#?}"));
    let by_id: HashMap<&str, &OrderFact> = facts.iter().map(|f| (f.order_id.as_str(), f)).collect();
    assert_eq!(by_id[o2.as_str()].payment_method, "card+cash");
    assert_eq!(by_id[o2.as_str()].items_count, 2);
    assert_eq!(by_id[o5.as_str()].net_minor, 0);
    assert_eq!(by_id[o5.as_str()].refunded_minor, 3000);
    assert!(by_id[o1.as_str()].processing_ms >= 0);
    assert_eq!(by_id[o4.as_str()].processing_ms, -1);
    assert!(
        facts
            .iter()
            .all(|f| f.customer_key.len() == 64 && f.store_id == a.store_id)
    );
    let shipments = an
        .facts()
        .shipments_of(std::slice::from_ref(&o6))
        .await
        .unwrap();
    assert_eq!(shipments.len(), 1, "{shipments:?}");

    // The daily views equal a direct sum over the facts.
    let (code, daily) = an
        .get(&format!(
            "/v1/analytics/daily?from={0}&to={0}&by=store",
            OffsetDateTime::now_utc().date()
        ))
        .await
        .unwrap();
    assert_eq!(code, 200, "{daily}");
    let row = &daily["rows"][0];
    assert_eq!(row["orders"], 3);
    assert_eq!(row["voids"], 3);
    assert_eq!(
        row["net_minor"],
        facts.iter().map(|f| f.net_minor).sum::<i64>()
    );
    let (code, cats) = an
        .get(&format!(
            "/v1/analytics/daily?from={0}&to={0}&by=category",
            OffsetDateTime::now_utc().date()
        ))
        .await
        .unwrap();
    assert_eq!(code, 200, "{cats}");
    let toys = cats["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["category"] == "Toys")
        .unwrap();
    assert_eq!(
        (toys["units"].as_i64(), toys["net_minor"].as_i64()),
        (Some(4), Some(4000))
    );
    let (code, bad) = an
        .get("/v1/analytics/daily?from=2026-13-01&to=2026-12-01")
        .await
        .unwrap();
    assert_eq!((code, bad["error"]["field"].as_str()), (400, Some("from")));
    let (code, out) = cloud_command(
        an.config_path(),
        &[
            "analytics",
            "report",
            "--date",
            &OffsetDateTime::now_utc().date().to_string(),
        ],
    )
    .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&a.store_id) && out.contains("equal"), "{out}");

    // kill -9 mid-stream: twenty more sales, the service killed while they
    // flow, then restarted.
    let before = an.metric("o2c_analytics_events_total", "applied").await;
    let mut more = Vec::new();
    for i in 0..20 {
        more.push(
            capture(
                a,
                &format!("m{i}"),
                &body(&[("SKU-T", 1)], &[("cash", 1000, "")], false),
            )
            .await
            .unwrap(),
        );
        if i == 8 {
            wait_until_named(
                "some of the new events applied",
                || async { an.metric("o2c_analytics_events_total", "applied").await > before },
                SAGA,
            )
            .await
            .unwrap();
            an.kill().unwrap();
        }
    }
    an.restart().await.unwrap();
    for id in &more {
        wait_final(a, id, &["completed"]).await;
    }
    let s = wait_counters(&an, &day, "26 orders", |s| s.fleet.orders == 26).await;
    assert_eq!(s.fleet.net_orders, 23);
    assert_eq!(cad(&s.fleet.net), 5500 + 20 * 1000);
    assert_eq!(cad(&s.fleet.by_category["Toys"].net), 4000 + 20 * 1000);
    wait_until_named(
        "26 fact rows",
        || async { facts_of_day(&an, &day).await.len() == 26 },
        SAGA,
    )
    .await
    .unwrap();
    // Everything the saga will ever write is on Kafka and handled.
    w.wait_groups_caught_up(SAGA).await.unwrap();
    w.wait_outboxes_published(SAGA).await.unwrap();
    an.wait_caught_up(SAGA).await.unwrap();
    let counters_before = day_counters(&an, &day).await;
    let facts_before = facts_of_day(&an, &day).await;

    // A replay of every topic by a second group, into the same Redis keys
    // and ClickHouse tables: every event is a duplicate, nothing moves.
    let replay = AnalyticsProc::start(w.env.path(), &w.settings, "-replay", "")
        .await
        .expect("replay");
    let total = records_in(&w).await as f64;
    wait_until_named(
        "the replay read every record",
        || async { replay.metric("o2c_analytics_events_total", "").await >= total },
        SAGA,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", replay.log_tail()));
    assert_eq!(
        replay
            .metric("o2c_analytics_events_total", "outcome=\"applied\"")
            .await,
        0.0
    );
    assert_eq!(day_counters(&an, &day).await, counters_before);
    // Give the replay's batched inserts time to land, then compare.
    replay.wait_caught_up(SAGA).await.unwrap();
    assert_eq!(facts_of_day(&an, &day).await, facts_before);
    drop(w);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_orders_land_in_their_day_poison_is_dead_lettered_and_the_page_follows() {
    let mut w = SagaWorld::start(&["all"], "", "").await.expect("world");
    let an = AnalyticsProc::start(w.env.path(), &w.settings, "", "late_after_secs = 60")
        .await
        .expect("analytics");
    let today = today_key();
    let cash = |n: i64| body(&[("SKU-L", n)], &[("cash", 0, "")], false);
    // Priced by the till (no catalog here): 10.00 a unit.
    let priced = |n: i64| {
        let mut b = cash(n);
        b["lines"][0]["unit_price_minor"] = json!(1000);
        b["payments"][0]["amount_minor"] = json!(1000 * n);
        b
    };
    capture(&w.agent, "now1", &priced(1)).await.unwrap();
    let s = wait_counters(&an, &today, "today's first order", |s| s.fleet.orders == 1).await;
    assert_eq!(s.fleet.by_category[fold::UNCATEGORIZED].gross["CAD"], 1000);
    let today_before = day_counters(&an, &today).await;

    // Offline for the whole "three days": the broker is down and the
    // agent's clock says three days ago while it sells.
    w.mosq.stop().await.unwrap();
    w.agent
        .restart_with_env(&[("O2C_AGENT_FAULT_CLOCK_SKEW_SECS", "-259200")])
        .await
        .unwrap();
    let mut late = Vec::new();
    for i in 0..3 {
        late.push(
            capture(&w.agent, &format!("late{i}"), &priced(2))
                .await
                .unwrap(),
        );
    }
    let then = OffsetDateTime::now_utc() - time::Duration::days(3);
    let then_key = fold::day_key(then.date());
    // Back online: the agent syncs three days late.
    w.mosq.restart().await.unwrap();
    let s = wait_counters(&an, &then_key, "the late orders in their own day", |s| {
        s.fleet.orders == 3
    })
    .await;
    assert_eq!(cad(&s.fleet.gross), 3 * 2000);
    assert_eq!(s.fleet.late, 3, "captured offline, arriving late");
    for id in &late {
        wait_final(&w.agent, id, &["completed"]).await;
    }
    // Today's figures did not move.
    assert_eq!(day_counters(&an, &today).await, today_before);
    let (_, live) = an.get("/v1/analytics/live").await.unwrap();
    assert_eq!(live["today"]["orders"], 1, "{live}");
    // Counted as arriving late in the hour they arrived (this one, or the
    // one before if the clock just turned).
    let now = OffsetDateTime::now_utc();
    let arrivals = an
        .counters()
        .await
        .read(&[
            format!("arr:{}", fold::hour_key(now)),
            format!("arr:{}", fold::hour_key(now - time::Duration::hours(1))),
        ])
        .await
        .unwrap();
    let arrived: i64 = arrivals.iter().filter_map(|h| h.get("late")).sum();
    assert_eq!(arrived, 3, "{arrivals:?}");
    // The facts have them on that day, as late.
    let facts = wait_for_value(
        "the late orders' facts, completed",
        || async {
            let f = facts_of_day(&an, &then_key).await;
            (f.len() == 3 && f.iter().all(|o| o.status == "completed"), f)
        },
        SAGA,
    )
    .await
    .unwrap_or_else(|(e, f)| panic!("{e}: {f:#?}"));
    assert!(
        facts
            .iter()
            .all(|f| f.late == 1 && f.business_date == fold::day_number(then.date()).unwrap())
    );
    // Processing time runs from capture: three days.
    assert!(
        facts.iter().all(|f| f.processing_ms >= 259_000_000),
        "{facts:#?}"
    );

    // A malformed event is dead-lettered with its reason, and the stream
    // goes on.
    w.agent.restart().await.unwrap();
    let topics = o2c_protocol::KafkaTopics::new(format!("{}.", w.env.prefix())).unwrap();
    let producer = o2c_runtime::kafka::producer(&w.brokers, 0).unwrap();
    o2c_runtime::kafka::send(
        &producer,
        &topics.for_event(o2c_protocol::EventType::OrderCreated),
        "poison",
        &[],
        b"{not json",
    )
    .await
    .unwrap();
    capture(&w.agent, "after-poison", &priced(1)).await.unwrap();
    wait_counters(&an, &today, "the order after the poison", |s| {
        s.fleet.orders == 2
    })
    .await;
    let dlq = topics.dlq();
    let brokers = w.brokers.clone();
    let group = an.group.clone();
    let dead = wait_for_value(
        "the poison in the DLQ",
        || {
            let (dlq, brokers, group) = (dlq.clone(), brokers.clone(), group.clone());
            async move {
                let recs = tokio::task::spawn_blocking(move || {
                    scan(
                        &brokers,
                        &dlq,
                        None,
                        ScanFrom::Beginning,
                        Duration::from_secs(5),
                    )
                })
                .await
                .unwrap()
                .unwrap_or_default();
                let mine: Vec<_> = recs
                    .into_iter()
                    .filter(|r| r.header("source_group") == Some(group.as_str()))
                    .collect();
                (!mine.is_empty(), mine)
            }
        },
        SAGA,
    )
    .await
    .unwrap_or_else(|(e, _)| panic!("{e}\n{}", an.log_tail()));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].header("reason"), Some("malformed"));
    assert_eq!(dead[0].value, b"{not json");
    assert_eq!(
        an.metric("o2c_analytics_events_total", "dead_lettered")
            .await,
        1.0
    );

    // The live page, in headless Chromium, counts a new order.
    let url = format!("{}/sales", an.base());
    let page = |url: String| async move {
        tokio::task::spawn_blocking(move || o2c_tests::analytics::chromium_dom(&url, 4000))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let dom = page(url.clone()).await;
    assert_eq!(
        o2c_tests::analytics::element_text(&dom, "orders-today").as_deref(),
        Some("2"),
        "{dom}"
    );
    capture(&w.agent, "page", &priced(3)).await.unwrap();
    wait_counters(&an, &today, "the page's order", |s| s.fleet.orders == 3).await;
    let dom = page(url).await;
    assert_eq!(
        o2c_tests::analytics::element_text(&dom, "orders-today").as_deref(),
        Some("3"),
        "{dom}"
    );
    assert!(dom.contains(&w.agent.store_id), "the store's row: {dom}");
}
