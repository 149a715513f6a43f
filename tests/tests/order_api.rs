//! The cloud order API (issue 19) against the real services: a web order
//! and a store order complete through the same saga; a customer reads and
//! cancels only their own orders; retries are idempotent; tokens and quotas
//! are enforced; bad bodies get the agent's error shape; the product list
//! shows what can be ordered, at the price an order is charged.

use std::time::Duration;

use o2c_tests::TestEnv;
use o2c_tests::api::{ApiProc, product_line, token, token_with, web_order};
use o2c_tests::saga::{SagaWorld, Tender, capture, order_body, wait_status};
use o2c_tests::wait::wait_for_value;
use reqwest::Method;
use serde_json::{Value, json};

const SAGA: Duration = Duration::from_secs(120);

/// Polls `GET /v1/orders/{id}` as `customer` until its status is `status`.
async fn wait_api_status(api: &ApiProc, customer: &str, id: &str, status: &str) -> Value {
    let t = token(customer);
    wait_for_value(
        &format!("order {id} {status} at the API"),
        || {
            let t = t.clone();
            async move {
                let a = api
                    .call(
                        Method::GET,
                        &format!("/v1/orders/{id}"),
                        Some(&t),
                        None,
                        None,
                    )
                    .await;
                (a.json["status"] == status, a.json)
            }
        },
        SAGA,
    )
    .await
    .unwrap_or_else(|(e, last)| panic!("{e}: last {last:?}\n{}", api.log()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_order_and_a_store_order_complete_through_the_same_saga() {
    let w = SagaWorld::start(&["all"], "", "").await.expect("world");
    let api = ApiProc::start(w.env.path(), &w.settings, "")
        .await
        .expect("api");
    api.import_catalog(w.env.path(), &product_line("SKU-W", 1500));

    // A store order and a web order, side by side.
    let store_body = order_body("SKU-S", 1, &Tender::Card("tok_store".into()), true);
    let store_id = capture(&w.agent, "s-1", &store_body)
        .await
        .expect("store capture");
    let body = web_order("SKU-W", 2, 1500, true);
    let ada = token("ada");
    let created = api
        .call(
            Method::POST,
            "/v1/orders",
            Some(&ada),
            Some("w-1"),
            Some(&body),
        )
        .await;
    assert_eq!(created.status, 201, "{}\n{}", created.text, api.log());
    let id = created.json["order_id"]
        .as_str()
        .expect("order_id")
        .to_owned();
    assert_eq!(created.json["status"], "received");
    assert_eq!(created.json["total_minor"], 3000);
    // Ship-to-home: its stock was reserved before the answer.
    assert_eq!(created.json["stock_check"], "verified", "{}", created.text);

    // A retry gets the stored answer, byte for byte; the key with another
    // body is a conflict.
    let again = api
        .call(
            Method::POST,
            "/v1/orders",
            Some(&ada),
            Some("w-1"),
            Some(&body),
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert!(again.replayed);
    assert_eq!(again.text, created.text);
    let other = web_order("SKU-W", 3, 1500, true);
    let clash = api
        .call(
            Method::POST,
            "/v1/orders",
            Some(&ada),
            Some("w-1"),
            Some(&other),
        )
        .await;
    assert_eq!(clash.status, 409, "{}", clash.text);
    assert_eq!(clash.json["error"]["code"], "idempotency_conflict");
    // The same key is another customer's own.
    let bob = token("bob");
    let bobs = api
        .call(
            Method::POST,
            "/v1/orders",
            Some(&bob),
            Some("w-1"),
            Some(&other),
        )
        .await;
    assert_eq!(bobs.status, 201, "{}", bobs.text);

    wait_status(&w.agent, &store_id, "completed", SAGA)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", w.logs()));
    let done = wait_api_status(&api, "ada", &id, "completed").await;
    let types: Vec<&str> = done["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|h| h["event_type"].as_str())
        .collect();
    for t in [
        "OrderCreated",
        "PaymentCaptured",
        "InventoryConfirmed",
        "ShipmentScheduled",
        "ShipmentDispatched",
        "ShipmentDelivered",
        "OrderCompleted",
    ] {
        assert!(types.contains(&t), "{t} missing from {types:?}");
    }
    assert_eq!(done["channel"], "web");
    assert_eq!(done["lines"][0]["unit_price_minor"], 1500);
    // Tokens are never echoed.
    assert!(!done.to_string().contains("tok_web_1"), "{done}");
    // The payment was captured once, through the same payment service.
    assert_eq!(w.psp.captures_of(&id).await.expect("psp"), 1);

    // Only ada sees it.
    let seen = api
        .call(
            Method::GET,
            &format!("/v1/orders/{id}"),
            Some(&bob),
            None,
            None,
        )
        .await;
    assert_eq!(seen.status, 404, "{}", seen.text);
    let mine = api
        .call(
            Method::GET,
            "/v1/customers/me/orders",
            Some(&ada),
            None,
            None,
        )
        .await;
    assert_eq!(mine.status, 200, "{}", mine.text);
    let ids: Vec<&str> = mine.json["orders"]
        .as_array()
        .expect("orders")
        .iter()
        .filter_map(|o| o["order_id"].as_str())
        .collect();
    assert_eq!(ids, [id.as_str()]);
    assert_eq!(mine.json["orders"][0]["status"], "completed");
    let theirs = api
        .call(
            Method::POST,
            &format!("/v1/orders/{id}/cancel"),
            Some(&bob),
            None,
            None,
        )
        .await;
    assert_eq!(theirs.status, 404, "{}", theirs.text);

    // Ada cancels: the saga refunds the capture, once, however often she
    // asks.
    let c1 = api
        .call(
            Method::POST,
            &format!("/v1/orders/{id}/cancel"),
            Some(&ada),
            None,
            None,
        )
        .await;
    assert_eq!(
        (c1.status, c1.json["repeat"].clone()),
        (202, json!(false)),
        "{}",
        c1.text
    );
    let c2 = api
        .call(
            Method::POST,
            &format!("/v1/orders/{id}/cancel"),
            Some(&ada),
            None,
            None,
        )
        .await;
    assert_eq!(
        (c2.status, c2.json["repeat"].clone()),
        (202, json!(true)),
        "{}",
        c2.text
    );
    let refunded = wait_api_status(&api, "ada", &id, "refunded").await;
    assert_eq!(refunded["cancel_requested"], true);
    assert_eq!(w.psp.refunds_of(&id).await.expect("psp"), 1);
    // The store's order was not touched by any of it.
    assert_eq!(w.psp.refunds_of(&store_id).await.expect("psp"), 0);
    // The web store's status never went to an agent: the store's agent
    // only ever heard of its own order.
    let agent_orders = w.agent.get("/v1/orders").await.expect("agent orders");
    assert!(!agent_orders.to_string().contains(&id), "{agent_orders}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_quotas_are_enforced() {
    let env = TestEnv::new();
    let api = ApiProc::alone(
        &env,
        "customer_per_minute = 5\nanonymous_per_minute = 10\ntrust_forwarded_for = true",
    )
    .await
    .expect("api");
    let list = "/v1/customers/me/orders";
    // No token, an expired one, one of another key, a subject that is not
    // a customer id: 401 with a bearer challenge.
    let expired = token_with(o2c_tests::api::SECRET, "ada", -3600);
    let forged = token_with("another secret, another secret, 0123", "ada", 3600);
    let bad_sub = token_with(o2c_tests::api::SECRET, "ada smith", 3600);
    for (what, t) in [
        ("none", None),
        ("expired", Some(expired.as_str())),
        ("wrong key", Some(forged.as_str())),
        ("bad subject", Some(bad_sub.as_str())),
    ] {
        let a = api.call(Method::GET, list, t, None, None).await;
        assert_eq!(a.status, 401, "{what}: {}", a.text);
        assert_eq!(a.json["error"]["code"], "unauthorized", "{what}");
        assert!(
            a.challenge
                .as_deref()
                .is_some_and(|c| c.starts_with("Bearer")),
            "{what}: {:?}",
            a.challenge
        );
    }

    // A customer's quota: 5 a minute, then 429 with Retry-After; another
    // customer is not slowed.
    let ada = token("ada");
    for i in 0..5 {
        let a = api.call(Method::GET, list, Some(&ada), None, None).await;
        assert_eq!(a.status, 200, "request {i}: {}", a.text);
    }
    let over = api.call(Method::GET, list, Some(&ada), None, None).await;
    assert_eq!(over.status, 429, "{}", over.text);
    assert_eq!(over.json["error"]["code"], "rate_limited");
    let secs: u64 = over
        .retry_after
        .as_deref()
        .and_then(|s| s.parse().ok())
        .expect("Retry-After");
    assert!((1..=12).contains(&secs), "{secs}");
    let bob = api
        .call(Method::GET, list, Some(&token("bob")), None, None)
        .await;
    assert_eq!(bob.status, 200, "{}", bob.text);

    // An anonymous IP's quota: 10 a minute (per X-Forwarded-For here; the
    // 401s above were 127.0.0.1's).
    let anon = |ip: &'static str| {
        let url = format!("{}{list}", api.url());
        async move {
            let r = reqwest::Client::new()
                .get(url)
                .header("x-forwarded-for", ip)
                .send()
                .await
                .expect("answer");
            let retry = r.headers().get("retry-after").is_some();
            (r.status().as_u16(), retry)
        }
    };
    for _ in 0..10 {
        assert_eq!(anon("192.0.2.7").await, (401, false));
    }
    assert_eq!(anon("192.0.2.7").await, (429, true));
    assert_eq!(anon("192.0.2.8").await, (401, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_orders_get_the_agents_error_shape_naming_the_field() {
    let env = TestEnv::new();
    let api = ApiProc::alone(&env, "").await.expect("api");
    api.import_catalog(env.path(), &product_line("SKU-W", 1500));
    let ada = token("ada");
    let post = |body: Value, key: &'static str| {
        let (api, ada) = (&api, ada.clone());
        async move {
            api.call(
                Method::POST,
                "/v1/orders",
                Some(&ada),
                Some(key),
                Some(&body),
            )
            .await
        }
    };
    let expect = |a: &o2c_tests::api::Answer, status: u16, code: &str, field: Option<&str>| {
        assert_eq!(a.status, status, "{}", a.text);
        assert_eq!(a.json["error"]["code"], code, "{}", a.text);
        if let Some(f) = field {
            assert_eq!(a.json["error"]["field"], f, "{}", a.text);
        }
    };
    let mut body = web_order("SKU-W", 1, 1500, false);
    body["coupon"] = json!("x");
    expect(
        &post(body, "b1").await,
        400,
        "unknown_field",
        Some("coupon"),
    );
    let mut body = web_order("SKU-W", 1, 1500, false);
    body["payments"][0]["token"] = json!("4111111111111111");
    let a = post(body, "b2").await;
    expect(&a, 422, "card_data_rejected", None);
    assert!(!a.text.contains("4111111111111111"), "{}", a.text);
    let mut body = web_order("SKU-W", 1, 1500, false);
    body["payments"] = json!([{"method": "cash", "amount_minor": 1500}]);
    expect(
        &post(body, "b3").await,
        422,
        "invalid_order",
        Some("payments[0].method"),
    );
    expect(
        &post(web_order("NOPE", 1, 1500, false), "b4").await,
        422,
        "unknown_sku",
        Some("lines[0].sku"),
    );
    expect(
        &post(web_order("SKU-W", 1, 1, false), "b5").await,
        422,
        "price_changed",
        Some("lines[0].unit_price_minor"),
    );
    let mut body = web_order("SKU-W", 2, 1500, false);
    body["payments"][0]["amount_minor"] = json!(1);
    expect(
        &post(body, "b6").await,
        422,
        "invalid_order",
        Some("payments"),
    );
    let missing = api
        .call(
            Method::POST,
            "/v1/orders",
            Some(&ada),
            None,
            Some(&web_order("SKU-W", 1, 1500, false)),
        )
        .await;
    expect(&missing, 400, "missing_idempotency_key", None);
    // Nothing of it was written: the customer has no order.
    let mine = api
        .call(
            Method::GET,
            "/v1/customers/me/orders",
            Some(&ada),
            None,
            None,
        )
        .await;
    assert_eq!(mine.json["orders"], json!([]), "{}", mine.text);

    // Ship-to-home orders hold their stock before the 201 (the warehouses
    // start with `AUTO_STOCK` units): the largest orders exhaust it, and
    // the next is refused as out of stock, naming the line.
    let big = web_order("SKU-W", 1_000_000, 1500, true);
    let mut answers = Vec::new();
    for key in ["s1", "s2", "s3", "s4"] {
        let a = post(big.clone(), key).await;
        let done = a.status != 201;
        answers.push(a);
        if done {
            break;
        }
    }
    let last = answers.last().expect("an answer");
    assert!(
        answers.len() > 1,
        "the first big order was refused: {}",
        last.text
    );
    for a in &answers[..answers.len() - 1] {
        assert_eq!(a.json["stock_check"], "verified", "{}", a.text);
    }
    expect(last, 422, "out_of_stock", Some("lines[0].quantity"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_product_list_shows_what_an_order_can_buy_at_its_price() {
    let env = TestEnv::new();
    let api = ApiProc::alone(&env, "currencies = [\"CAD\", \"EUR\"]")
        .await
        .expect("api");
    let price = |c: &str, minor: i64| json!({"currency": c, "minor": minor});
    let product = |sku: &str, active: bool, prices: Value| {
        json!({"sku": sku, "name": format!("{sku} product"), "active": active, "prices": prices})
            .to_string()
    };
    let later = json!({"currency": "CAD", "minor": 900, "effective_from": "2099-01-01T00:00:00Z"});
    let catalog = [
        product("SKU-A", true, json!([price("CAD", 1000)])),
        product(
            "SKU-B",
            true,
            json!([price("CAD", 2000), price("EUR", 1800)]),
        ),
        product("SKU-C", false, json!([price("CAD", 500)])),
        product("SKU-D", true, json!([price("EUR", 300)])),
        product("SKU-E", true, json!([price("CAD", 700), later.clone()])),
        product("SKU-F", true, json!([later])),
    ]
    .join("\n");
    api.import_catalog(env.path(), &format!("{catalog}\n"));
    let ada = token("ada");
    let get = |path: String| {
        let (api, ada) = (&api, ada.clone());
        async move { api.call(Method::GET, &path, Some(&ada), None, None).await }
    };
    let listed = |a: &o2c_tests::api::Answer| -> Vec<(String, i64)> {
        assert_eq!(a.status, 200, "{}", a.text);
        a.json["products"]
            .as_array()
            .expect("products")
            .iter()
            .map(|p| {
                let minor = p["unit_price_minor"].as_i64().expect("price");
                (p["sku"].as_str().expect("sku").to_owned(), minor)
            })
            .collect()
    };

    // In SKU order, active only, priced now: an inactive SKU, one not sold
    // in CAD and a price not yet in force are left out, and a page may be
    // short while more follow.
    let p1 = get("/v1/products?currency=CAD&limit=2".into()).await;
    assert_eq!(
        listed(&p1),
        [("SKU-A".into(), 1000), ("SKU-B".into(), 2000)]
    );
    assert_eq!(p1.json["currency"], "CAD", "{}", p1.text);
    assert_eq!(p1.json["next_after"], "SKU-B", "{}", p1.text);
    let p2 = get("/v1/products?currency=CAD&limit=2&after=SKU-B".into()).await;
    assert_eq!(listed(&p2), [("SKU-E".into(), 700)]);
    assert_eq!(p2.json["next_after"], "SKU-F", "{}", p2.text);
    let p3 = get("/v1/products?currency=CAD&limit=2&after=SKU-F".into()).await;
    assert_eq!(listed(&p3), []);
    assert!(p3.json.get("next_after").is_none(), "{}", p3.text);
    let eur = get("/v1/products?currency=EUR".into()).await;
    assert_eq!(
        listed(&eur),
        [("SKU-B".into(), 1800), ("SKU-D".into(), 300)]
    );
    assert!(eur.json.get("next_after").is_none(), "{}", eur.text);

    // What is listed can be ordered at the listed price.
    let order = api
        .call(
            Method::POST,
            "/v1/orders",
            Some(&ada),
            Some("p1"),
            Some(&web_order("SKU-E", 2, 700, false)),
        )
        .await;
    assert_eq!(order.status, 201, "{}", order.text);
    assert_eq!(order.json["total_minor"], 1400, "{}", order.text);

    // Bad queries name the parameter; no token is 401.
    for (query, field) in [
        ("currency=USD", Some("currency")),
        ("currency=cad", Some("currency")),
        ("currency=CAD&limit=0", Some("limit")),
        ("currency=CAD&limit=101", Some("limit")),
        (
            &*format!("currency=CAD&after={}", "S".repeat(65)),
            Some("after"),
        ),
        ("", None),
        ("currency=CAD&colour=red", None),
        ("currency=CAD&limit=x", None),
    ] {
        let a = get(format!("/v1/products?{query}")).await;
        assert_eq!(a.status, 400, "{query}: {}", a.text);
        let error = &a.json["error"];
        assert_eq!(error["code"], "invalid_query", "{query}: {}", a.text);
        if let Some(field) = field {
            assert_eq!(error["field"], field, "{query}: {}", a.text);
        }
    }
    let anon = api
        .call(Method::GET, "/v1/products?currency=CAD", None, None, None)
        .await;
    assert_eq!(anon.status, 401, "{}", anon.text);
}
