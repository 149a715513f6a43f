//! Returns in the Z-report, taken through the real router and answered
//! through the store's status path: refunds by tender, the cash drawer,
//! refused and unpriced returns, a currency with returns and no sales, and
//! the `ReturnRequested` events (left out of the order's day).

use axum::http::StatusCode;
use o2c_protocol::{
    Ack, CloudStatus, Currency, EventId, Money, OrderId, ReturnId, ReturnStatus, Seq, StatusUpdate,
};
use serde_json::{Value, json};

use super::common::{TOKEN_T1, TOKEN_T2};
use super::{Day, check_currency, sales, send};

/// An order of `terminal`: two SKU-1 at `unit`, paid by `payment`.
fn two_units(terminal: &str, unit: i64, payment: Value) -> Value {
    json!({
        "terminal_id": terminal,
        "currency": "CAD",
        "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price_minor": unit}],
        "payments": [payment],
        "fulfillment": {"type": "carry_out"}
    })
}

fn card_refund(token: &str) -> Value {
    json!({"method": "card", "token": token, "brand": "visa", "last4": "4242"})
}

/// Returns one SKU-1 of `order_id` at `terminal`; the return's id.
async fn give_back(d: &Day, terminal: &str, order_id: &str, refund: Value) -> ReturnId {
    let token = if terminal == "T1" { TOKEN_T1 } else { TOKEN_T2 };
    let body = json!({
        "terminal_id": terminal,
        "lines": [{"sku": "SKU-1", "quantity": 1}],
        "refund": refund,
        "reason": "damaged"
    });
    let uri = format!("/v1/orders/{order_id}/returns");
    let (s, v) = send(&d.router, "POST", &uri, token, Some(&body)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["return_id"].as_str().unwrap().parse().unwrap()
}

/// The cloud's `status` of return `rid` of `order_id`, with `amount`.
fn answer(
    order_id: &str,
    rid: ReturnId,
    status: CloudStatus,
    amount: Option<(i64, &str)>,
) -> StatusUpdate {
    let refused = status == CloudStatus::ReturnRefused;
    StatusUpdate {
        order_id: order_id.parse().unwrap(),
        status,
        reason: refused.then(|| "over_return".to_owned()),
        ret: Some(ReturnStatus {
            return_id: rid,
            amount: amount.map(|(m, c)| Money::new(m, Currency::from_code(c).unwrap())),
            sku: refused.then(|| "SKU-1".to_owned()),
        }),
        event_id: EventId::from_uuid(uuid::Uuid::now_v7()).unwrap(),
        occurred_at: time::OffsetDateTime::now_utc(),
        seq: None,
    }
}

/// `sales(..)` of a currency with `returns` priced returns refunding
/// `[card, cash, gift_card]`.
fn with_returns(mut want: Value, returns: u64, refunds: [i64; 3]) -> Value {
    let returned: i64 = refunds.iter().sum();
    let w = want.as_object_mut().unwrap();
    let net = w["net_minor"].as_i64().unwrap();
    let cash = w["tenders"]["cash_minor"].as_i64().unwrap();
    w.insert("returns".into(), json!(returns));
    w.insert(
        "refunds".into(),
        json!({"card_minor": refunds[0], "cash_minor": refunds[1],
               "gift_card_minor": refunds[2]}),
    );
    w.insert("returned_minor".into(), json!(returned));
    w.insert("net_after_returns_minor".into(), json!(net - returned));
    w.insert("cash_in_drawer_minor".into(), json!(cash - refunds[1]));
    want
}

fn counts(figures: &Value) -> (u64, u64, u64) {
    let n = |k: &str| figures[k].as_u64().unwrap();
    (n("returns"), n("returns_refused"), n("returns_unpriced"))
}

/// T1 sells 2 × 1500 on a card (seq 2), T2 2 × 1000 in cash (3). Then:
/// T1 gives cash back for one unit of the card sale (4: 1500 out of the
/// drawer); T2 gives one unit of the card sale back to its card (5: the
/// agent says 1500, the cloud 1400); T2 takes a gift card return of an
/// order not known here (6: unpriced); T1 a cash return of the cash sale
/// the cloud refuses (7); T1 a gift card return of the day before's 777
/// order (8: it counts today, when it was taken); T2 a card return of a
/// web order the cloud prices in EUR (9: no EUR sales). The cloud acks
/// through 5.
#[tokio::test]
async fn z_report_shows_the_days_returns_and_the_cash_drawer() {
    let d = Day::new().await;
    let (today, before) = d.dates();
    let (_, page) = d.get("/v1/orders").await;
    let yesterday = page["orders"][0]["order_id"].as_str().unwrap().to_owned();
    let card_sale = d
        .capture(TOKEN_T1, two_units("T1", 1500, super::card(3000, "online")))
        .await;
    let card_sale = card_sale["order_id"].as_str().unwrap();
    let cash = json!({"method": "cash", "amount_minor": 2000});
    let cash_sale = d.capture(TOKEN_T2, two_units("T2", 1000, cash)).await;
    let cash_sale = cash_sale["order_id"].as_str().unwrap();
    let unknown = || {
        OrderId::from_uuid(uuid::Uuid::now_v7())
            .unwrap()
            .to_string()
    };
    let (web, web_eur) = (unknown(), unknown());

    give_back(&d, "T1", card_sale, json!({"method": "cash"})).await;
    let repriced = give_back(&d, "T2", card_sale, card_refund("tok_x")).await;
    let gift = json!({"method": "gift_card", "token": "gc_9"});
    give_back(&d, "T2", &web, gift.clone()).await;
    let refused = give_back(&d, "T1", cash_sale, json!({"method": "cash"})).await;
    give_back(&d, "T1", &yesterday, gift).await;
    let eur = give_back(&d, "T2", &web_eur, card_refund("tok_web")).await;
    assert_eq!(d.store().last_seq(), 9);
    let ack = Ack {
        through_seq: Seq::new(5).unwrap(),
        rejected: Vec::new(),
    };
    d.store()
        .apply_ack(&ack, o2c_agent::store::now_ms())
        .await
        .unwrap();
    let answers = vec![
        answer(
            card_sale,
            repriced,
            CloudStatus::ReturnAccepted,
            Some((1400, "CAD")),
        ),
        answer(cash_sale, refused, CloudStatus::ReturnRefused, None),
        answer(
            &web_eur,
            eur,
            CloudStatus::ReturnRefunded,
            Some((900, "EUR")),
        ),
    ];
    d.store()
        .apply_statuses(answers, o2c_agent::store::now_ms())
        .await
        .unwrap();

    let (s, z) = d.get(&format!("/v1/reports/z?date={today}")).await;
    assert_eq!(s, StatusCode::OK, "{z}");
    let terminals = z["terminals"].as_array().unwrap();
    assert_eq!(terminals.len(), 2);
    let (f1, f2) = (&terminals[0]["figures"], &terminals[1]["figures"]);
    // T1: 3000 card in; 1500 cash and 777 gift card back; the refused one
    // in no amount.
    assert_eq!(f1["currencies"].as_array().unwrap().len(), 1);
    let t1_cad = sales(1, 0, 3000, 0, [3000, 0, 0, 0], (0, 0));
    check_currency(f1, "CAD", with_returns(t1_cad, 2, [0, 1500, 777]));
    assert_eq!(f1["currencies"][0]["net_after_returns_minor"], 723);
    assert_eq!(f1["currencies"][0]["cash_in_drawer_minor"], -1500);
    assert_eq!(counts(f1), (2, 1, 0));
    // The card sale's own events only; the return events by the returns.
    assert_eq!(
        f1["events"],
        json!({"synced": 2, "pending": 2, "rejected": 0, "pruned": 0})
    );
    // T2: 2000 cash in; the cloud's 1400 back on a card; EUR with returns
    // and no sales; the unpriced one in no amount.
    let t2_cad = sales(1, 0, 2000, 0, [0, 0, 2000, 0], (0, 0));
    check_currency(f2, "CAD", with_returns(t2_cad, 1, [1400, 0, 0]));
    let no_sales = sales(0, 0, 0, 0, [0, 0, 0, 0], (0, 0));
    check_currency(f2, "EUR", with_returns(no_sales.clone(), 1, [900, 0, 0]));
    assert_eq!(counts(f2), (3, 0, 1));
    assert_eq!(
        f2["events"],
        json!({"synced": 2, "pending": 2, "rejected": 0, "pruned": 0})
    );
    let total = &z["total"];
    let cad = sales(2, 0, 5000, 0, [3000, 0, 2000, 0], (0, 0));
    check_currency(total, "CAD", with_returns(cad, 3, [1400, 1500, 777]));
    assert_eq!(total["currencies"][0]["net_after_returns_minor"], 1323);
    assert_eq!(total["currencies"][0]["cash_in_drawer_minor"], 500);
    check_currency(total, "EUR", with_returns(no_sales, 1, [900, 0, 0]));
    assert_eq!(counts(total), (5, 1, 1));
    assert_eq!(
        total["events"],
        json!({"synced": 4, "pending": 4, "rejected": 0, "pruned": 0})
    );
    assert_eq!(z["events_complete"], true);

    // The day before: its order, not today's return of it, nor its event.
    let (_, y) = d.get(&format!("/v1/reports/z?date={before}")).await;
    assert_eq!(counts(&y["total"]), (0, 0, 0));
    check_currency(
        &y["total"],
        "CAD",
        sales(1, 0, 777, 0, [0, 0, 777, 0], (0, 0)),
    );
    assert_eq!(
        y["total"]["events"],
        json!({"synced": 1, "pending": 0, "rejected": 0, "pruned": 0})
    );

    // The table (as `o2c-agent report z` prints it) while the agent runs.
    let text = o2c_agent::admin::report_z(&d.config, &today, false).unwrap();
    let drawer = &text[text.find("\nCASH DRAWER").unwrap()..];
    let total_cad: Vec<&str> = drawer
        .lines()
        .find(|l| l.starts_with("TOTAL") && l.contains(" CAD "))
        .unwrap_or_else(|| panic!("no TOTAL CAD drawer line in\n{text}"))
        .split_whitespace()
        .collect();
    assert_eq!(total_cad, ["TOTAL", "CAD", "20.00", "15.00", "5.00"]);

    // Pruned acked rows (two sales, two returns) still count as synced.
    let db = rusqlite::Connection::open(d.config.db_path()).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    let pruned = db
        .execute("DELETE FROM outbox WHERE state = 'acked' AND seq > 1", [])
        .unwrap();
    assert_eq!(pruned, 4);
    drop(db);
    let (_, z) = d.get(&format!("/v1/reports/z?date={today}")).await;
    assert_eq!(z["events_complete"], false);
    assert_eq!(
        z["total"]["events"],
        json!({"synced": 4, "pending": 4, "rejected": 0, "pruned": 4})
    );
    d.close().await;
}
