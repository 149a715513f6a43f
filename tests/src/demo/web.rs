//! The demo's web shop: `o2c-cloud api` beside the demo's saga (same
//! database, same Kafka prefix), a catalog of what it sells in CAD, and a
//! few customers placing web orders through it, each with its own
//! `Idempotency-Key`: carry-out (collect in store) and ship-to-home, paid
//! by a card authorised online, one in 20 with a card the processor
//! simulator declines (`tok_decline…`, as the tills' declined cards), one
//! in 10 sent twice as a client's retry (the second answer must be the
//! first, replayed). Every order gives an e-mail address of its own (its
//! customer's name and its key), for the demo's mail check
//! ([`super::mail`]). One customer cancels one order once it is paid.
//!
//! [`WebShop::sell`] places the orders; [`WebShop::print_row`] is the web
//! row of the demo's cloud table (statuses read from the API, as the
//! customers read them: `GET /v1/customers/me/orders`), and cancels the
//! order due once it shows paid; [`WebShop::check`] is the final check,
//! on [`web_records`] (read while the demo checks the stores).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use o2c_protocol::SalesChannel;
use reqwest::Method;
use serde_json::{Value, json};

use super::mail::DOMAIN;
use super::{FINAL, PAID, lock, print_cloud_row, some, tally};
use crate::HarnessError;
use crate::api::{Answer, ApiProc, product_line, token, web_order};
use crate::pipeline::KafkaView;
use crate::saga::SagaSettings;

/// What the web shop sells: SKU and price in CAD minor units.
pub const CATALOG: [(&str, i64); 4] = [
    ("WEB-TEE", 2499),
    ("WEB-HOODIE", 5999),
    ("WEB-MUG", 1499),
    ("WEB-CAP", 1999),
];

/// The demo's web customers (their tokens' subjects).
pub const CUSTOMERS: [&str; 4] = ["c-ada", "c-bruno", "c-chloe", "c-dev"];

/// The order (by its number in the shop's sequence) its customer cancels
/// once it is paid. Not a declined card (those are `n % 20 == 7`).
const CANCEL_NO: u64 = 3;

/// Tries of one creation when the API answers 429 or 503 or cannot be
/// reached (the client retries with the same key).
const TRIES: u32 = 3;

/// One web order a customer got an order id for (201, or 200 to a retry
/// whose first try got no answer).
#[derive(Debug, Clone)]
struct WebOrder {
    /// Index into the shop's customers.
    customer: usize,
    /// Paid with a card the simulator declines.
    declined: bool,
    /// Its e-mail address.
    email: String,
    /// Shipped to home.
    ship: bool,
}

/// The web shop: the API and what its customers saw.
#[derive(Debug)]
pub struct WebShop {
    api: ApiProc,
    /// `(customer id, bearer token)`.
    customers: Vec<(String, String)>,
    /// Order id → the order, for every order created.
    orders: Mutex<BTreeMap<String, WebOrder>>,
    /// Retries answered with the first answer.
    replays: AtomicU64,
    failed: AtomicU64,
    /// Failed creations' errors (the first few).
    errors: Mutex<Vec<String>>,
    /// The order to cancel once it shows paid.
    to_cancel: Mutex<Option<String>>,
    /// The order cancelled after payment.
    cancelled: Mutex<Option<String>>,
}

impl WebShop {
    /// Starts `o2c-cloud api` on the saga's settings (selling in CAD only)
    /// and imports the shop's catalog into its database.
    pub async fn start(dir: &Path, settings: &SagaSettings) -> anyhow::Result<Self> {
        let api = ApiProc::start(dir, settings, "currencies = [\"CAD\"]")
            .await
            .context("start the order API (o2c-cloud api)")?;
        let catalog: Vec<String> = CATALOG
            .iter()
            .map(|(sku, minor)| product_line(sku, *minor))
            .collect();
        api.try_import_catalog(dir, &catalog.join("\n"))
            .context("import the web shop's catalog")?;
        Ok(WebShop {
            api,
            customers: CUSTOMERS
                .iter()
                .map(|c| ((*c).to_owned(), token(c)))
                .collect(),
            orders: Mutex::new(BTreeMap::new()),
            replays: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            errors: Mutex::new(Vec::new()),
            to_cancel: Mutex::new(None),
            cancelled: Mutex::new(None),
        })
    }

    /// `http://…` of the API.
    pub fn url(&self) -> String {
        self.api.url()
    }

    /// The API's log.
    pub fn log_path(&self) -> &Path {
        self.api.log_path()
    }

    /// Web orders created.
    pub fn created(&self) -> u64 {
        lock(&self.orders).len() as u64
    }

    /// Every order created: `(order id, e-mail address, ship-to-home)`.
    pub fn addressees(&self) -> Vec<(String, String, bool)> {
        lock(&self.orders)
            .iter()
            .map(|(id, o)| (id.clone(), o.email.clone(), o.ship))
            .collect()
    }

    /// Places `rate` orders a second, customers in turn, until `selling`
    /// has passed since `start`.
    pub async fn sell(&self, rate: u64, start: Instant, selling: Duration) {
        if rate == 0 {
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
        let mut n = 0u64;
        while start.elapsed() < selling {
            // The customers' pace.
            tick.tick().await;
            n += 1;
            if let Err(e) = self.place(n).await {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut errors = lock(&self.errors);
                if errors.len() < 5 {
                    errors.push(e);
                }
            }
        }
    }

    /// Order `n`: a third shipped to home, one in 20 a declined card, one
    /// in 10 sent again with the same key.
    async fn place(&self, n: u64) -> Result<(), String> {
        let customer = (n as usize) % self.customers.len();
        let (name, bearer) = &self.customers[customer];
        let (sku, unit) = CATALOG[(n as usize / 2) % CATALOG.len()];
        let declined = n % 20 == 7;
        let key = format!("web-{n:04}");
        let ship = n.is_multiple_of(3);
        let mut body = web_order(sku, 1 + (n % 2) as i64, unit, ship);
        body["payments"][0]["token"] = if declined {
            json!(format!("tok_decline_{key}"))
        } else {
            json!(format!("tok_{key}"))
        };
        let email = format!("{}-{key}@{DOMAIN}", name.trim_start_matches("c-"));
        body["customer"]["email"] = json!(email);
        let first = self.create(bearer, &key, &body).await?;
        // 200: a try before got no answer, but the API had written it.
        let id = match (first.status, first.json["order_id"].as_str()) {
            (200 | 201, Some(id)) => id.to_owned(),
            _ => return Err(format!("{name} {key}: {} {}", first.status, first.text)),
        };
        let order = WebOrder {
            customer,
            declined,
            email,
            ship,
        };
        lock(&self.orders).insert(id.clone(), order);
        if n == CANCEL_NO {
            *lock(&self.to_cancel) = Some(id.clone());
        }
        if n % 10 == 4 {
            // The client did not see the answer and sends it again.
            let again = self.create(bearer, &key, &body).await?;
            if again.status != 200 || !again.replayed || again.json["order_id"] != id.as_str() {
                return Err(format!(
                    "{name} {key} sent again: {} {} (expected 200, replayed, order {id})",
                    again.status, again.text
                ));
            }
            self.replays.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// `POST /v1/orders`, tried again with the same key on 429, 503 or no
    /// answer.
    async fn create(&self, bearer: &str, key: &str, body: &Value) -> Result<Answer, String> {
        let mut last = String::new();
        for attempt in 1..=TRIES {
            match self
                .api
                .try_call(
                    Method::POST,
                    "/v1/orders",
                    Some(bearer),
                    Some(key),
                    Some(body),
                )
                .await
            {
                Ok(a) if a.status != 429 && a.status != 503 => return Ok(a),
                Ok(a) => last = format!("{} {}", a.status, a.text),
                Err(e) => last = e.to_string(),
            }
            if attempt < TRIES {
                // A client's back-off before its retry.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Err(format!("{key}: {TRIES} tries, last: {last}"))
    }

    /// Every order of every customer, id → status, as the API lists them.
    pub async fn statuses(&self) -> Result<BTreeMap<String, String>, String> {
        let mut out = BTreeMap::new();
        for (name, bearer) in &self.customers {
            let mut path = "/v1/customers/me/orders?limit=100".to_owned();
            loop {
                let a = self
                    .api
                    .try_call(Method::GET, &path, Some(bearer), None, None)
                    .await
                    .map_err(|e| e.to_string())?;
                if a.status != 200 {
                    return Err(format!("{name}'s orders: {} {}", a.status, a.text));
                }
                for o in a.json["orders"].as_array().into_iter().flatten() {
                    if let (Some(id), Some(st)) = (o["order_id"].as_str(), o["status"].as_str()) {
                        out.insert(id.to_owned(), st.to_owned());
                    }
                }
                match a.json["next_before"].as_str() {
                    Some(b) => path = format!("/v1/customers/me/orders?limit=100&before={b}"),
                    None => break,
                }
            }
        }
        Ok(out)
    }

    /// Cancels the order due once the API shows it paid.
    async fn cancel_paid(&self, statuses: &BTreeMap<String, String>) {
        let Some(id) = lock(&self.to_cancel).clone() else {
            return;
        };
        if !statuses
            .get(&id)
            .is_some_and(|st| PAID.contains(&st.as_str()))
        {
            return;
        }
        let Some(customer) = lock(&self.orders).get(&id).map(|o| o.customer) else {
            return;
        };
        let (name, bearer) = &self.customers[customer];
        let path = format!("/v1/orders/{id}/cancel");
        if let Ok(a) = self
            .api
            .try_call(Method::POST, &path, Some(bearer), None, None)
            .await
            && a.status == 202
        {
            println!(">>> web customer {name} cancels paid order {id} (it must end refunded)");
            *lock(&self.to_cancel) = None;
            *lock(&self.cancelled) = Some(id);
        }
    }

    /// Prints the web row of the cloud table (`none`: `received`, not in
    /// the saga yet) and cancels what is due. Returns whether the web
    /// orders settled: every one final, nothing left to cancel.
    pub async fn print_row(&self) -> bool {
        let statuses = match self.statuses().await {
            Ok(s) => s,
            Err(e) => {
                println!("         {:<8} cannot list orders: {e}", "web");
                return false;
            }
        };
        self.cancel_paid(&statuses).await;
        let ids: Vec<String> = lock(&self.orders).keys().cloned().collect();
        let of = |id: &String| statuses.get(id).map(String::as_str);
        let done = usize::from(lock(&self.cancelled).is_some());
        let due = usize::from(lock(&self.to_cancel).is_some());
        print_cloud_row(
            "web",
            ids.iter().map(of),
            &format!("{done} done, {due} due"),
        );
        due == 0
            && ids
                .iter()
                .all(|id| of(id).is_some_and(|st| FINAL.contains(&st)))
    }

    /// The final check of the web orders: none failed; each reached a
    /// final status at the API (declined cards cancelled, the order
    /// cancelled after payment refunded); Kafka's `orders.created` holds
    /// each one's `OrderCreated` exactly once after dedup by `event_id`,
    /// and no other web order. `kafka` is [`web_records`].
    pub async fn check(&self, kafka: (String, KafkaView)) -> anyhow::Result<()> {
        let failed = self.failed.load(Ordering::Relaxed);
        if failed > 0 {
            bail!(
                "web shop: {failed} orders failed:\n  {}",
                some(&lock(&self.errors))
            );
        }
        let statuses = self.statuses().await.map_err(anyhow::Error::msg)?;
        let orders = lock(&self.orders).clone();
        let cancelled = lock(&self.cancelled).clone();
        let (mut not_final, mut wrong) = (Vec::new(), Vec::new());
        for (id, o) in &orders {
            let st = statuses.get(id).map_or("not listed", String::as_str);
            let line = format!("web order {id} of {}: {st}", self.customers[o.customer].0);
            if !FINAL.contains(&st) {
                not_final.push(line);
            } else if cancelled.as_ref() == Some(id) && st != "refunded" {
                wrong.push(format!(
                    "{line} (cancelled after payment: expected refunded)"
                ));
            } else if o.declined && st != "cancelled" {
                wrong.push(format!("{line} (declined card: expected cancelled)"));
            }
        }
        if let Some(id) = lock(&self.to_cancel).as_ref() {
            wrong.push(format!(
                "web order {id}: never seen paid, so never cancelled"
            ));
        }

        let (topic, view) = kafka;
        let mut events: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
        for (event_id, records) in &view.by_event {
            for r in records {
                let order = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default());
                events
                    .entry(order.into_owned())
                    .or_default()
                    .insert(event_id);
            }
        }
        println!(
            "Kafka {topic}: {} distinct event_ids from the web shop, {} raw duplicates removed by dedup",
            view.by_event.len(),
            view.raw_duplicates()
        );
        let mut mismatch = Vec::new();
        for id in orders.keys() {
            match events.get(id).map_or(0, BTreeSet::len) {
                1 => {}
                0 => mismatch.push(format!("web order {id}: no OrderCreated in Kafka")),
                k => mismatch.push(format!("web order {id}: {k} distinct OrderCreated events")),
            }
        }
        for id in events.keys().filter(|id| !orders.contains_key(*id)) {
            mismatch.push(format!(
                "web order {id}: in Kafka, but no customer got its id"
            ));
        }
        println!(
            "orders on the web: {}",
            tally(
                orders
                    .keys()
                    .map(|id| statuses.get(id).map_or("not listed", String::as_str))
            )
        );

        let mut failures = Vec::new();
        if !mismatch.is_empty() {
            failures.push(format!(
                "WEB MISMATCH: {} web orders' OrderCreated not in Kafka exactly once:\n  {}",
                mismatch.len(),
                some(&mismatch)
            ));
        }
        if !not_final.is_empty() {
            failures.push(format!(
                "WEB NOT SETTLED: {} web orders did not reach a final status (completed, cancelled, refunded):\n  {}",
                not_final.len(),
                some(&not_final)
            ));
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "WEB WRONG OUTCOME: {} web orders:\n  {}",
                wrong.len(),
                some(&wrong)
            ));
        }
        if !failures.is_empty() {
            bail!("{}", failures.join("\n"));
        }
        let declined = orders.values().filter(|o| o.declined).count();
        println!(
            "OK: all {} web orders' OrderCreated are in Kafka exactly once after dedup by event_id \
             ({} raw duplicates removed; {} client retries answered with the first answer).",
            orders.len(),
            view.raw_duplicates(),
            self.replays.load(Ordering::Relaxed)
        );
        println!(
            "OK: all {} web orders reached a final status at the API; {declined} declined cards \
             were cancelled and {} cancelled after payment was refunded.",
            orders.len(),
            cancelled.map_or("no order".into(), |id| format!("order {id}"))
        );
        Ok(())
    }
}

/// What the API's relay wrote to `{prefix}.orders.created` for the web
/// channel (agent `channel-web`, keyed by order id), as `(topic, view)`
/// deduplicated by `event_id`.
pub async fn web_records(brokers: &str, prefix: &str) -> Result<(String, KafkaView), HarnessError> {
    let topic = format!("{prefix}.orders.created");
    let web_agent = SalesChannel::Web.cloud_agent().map(|a| a.to_string());
    let all = KafkaView::read(brokers, &topic, Duration::from_secs(60)).await?;
    let view = KafkaView::new(
        all.by_event
            .into_values()
            .flatten()
            .filter(|r| r.header_str("agent_id") == web_agent.as_deref())
            .collect(),
    );
    Ok((topic, view))
}
