//! Simulated tills. [`plan_orders`] is pure and seeded: which agent sells
//! what, when, how it is paid and fulfilled, which orders are voided later
//! and which have goods returned ([`ReturnPlan`]). [`run_till`] plays one
//! agent's plan against its HTTP API, retrying each capture (and each void
//! and return) with the same idempotency key while the agent is down,
//! exactly as a real till would.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::checker::Pay;
use super::schedule::SplitMix64;
use crate::pipeline::TERMINAL_TOKEN;
use crate::saga::returns::{card_refund, return_body};

/// Unit price of every SKU, minor units (CAD).
pub const UNIT_MINOR: i64 = 1000;
/// The SKUs the tills sell.
pub const SKUS: [&str; 4] = ["SKU-A", "SKU-B", "SKU-C", "SKU-D"];
/// How long a till keeps retrying one capture, void or return before
/// giving up.
const GIVE_UP: Duration = Duration::from_secs(120);

/// Goods a till takes back from one of its orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReturnPlan {
    /// Request it this long after the order's capture was answered (a few
    /// seconds: many returns reach the cloud before their order settles,
    /// and are held).
    pub after_ms: u64,
    /// Units given back (at most the order's quantity).
    pub units: i64,
    /// Refunded to the order's card; else in cash.
    pub card: bool,
}

/// One order a till will ring up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPlan {
    /// Agent index.
    pub agent: usize,
    /// The idempotency key (unique in the run).
    pub key: String,
    /// When to ring it up, ms from the run's start.
    pub at_ms: u64,
    /// Tender.
    pub pay: Pay,
    /// SKU.
    pub sku: &'static str,
    /// Units (1 to 3).
    pub qty: i64,
    /// Ship-to-home instead of carry-out.
    pub ship: bool,
    /// Void it this long after its capture, if at all.
    pub void_after_ms: Option<u64>,
    /// Goods returned after its capture, if any (never for a voided order).
    pub ret: Option<ReturnPlan>,
}

impl OrderPlan {
    /// The card part, minor units.
    pub fn card_minor(&self) -> i64 {
        match self.pay {
            Pay::Cash => 0,
            Pay::Split => UNIT_MINOR / 2,
            Pay::Card | Pay::Declined => UNIT_MINOR * self.qty,
        }
    }

    /// The token of its card (the processor declines `tok_decline…`).
    pub fn card_token(&self) -> String {
        match self.pay {
            Pay::Declined => format!("tok_decline_{}", self.key),
            _ => format!("tok_chaos_{}", self.key),
        }
    }

    /// The idempotency key of its return (unique in the run).
    pub fn return_key(&self) -> String {
        format!("{}-ret", self.key)
    }

    /// The return request body of `r`: its units of the order's SKU, to the
    /// order's own card or in cash.
    pub fn return_body(&self, r: &ReturnPlan) -> Value {
        let refund = if r.card {
            card_refund(&self.card_token())
        } else {
            json!({"method": "cash"})
        };
        return_body(&[(self.sku, r.units)], refund)
    }

    /// The capture request body.
    pub fn body(&self) -> Value {
        let total = UNIT_MINOR * self.qty;
        let card = |amount: i64, token: String| {
            json!({"method": "card", "amount_minor": amount, "token": token,
                   "brand": "visa", "last4": "4242", "authorization": "online"})
        };
        let payments = match self.pay {
            Pay::Cash => vec![json!({"method": "cash", "amount_minor": total})],
            Pay::Card | Pay::Declined => vec![card(total, self.card_token())],
            Pay::Split => vec![
                card(self.card_minor(), self.card_token()),
                json!({"method": "cash", "amount_minor": total - self.card_minor()}),
            ],
        };
        let fulfillment = if self.ship {
            json!({"type": "ship_to_home", "address": {
                "name": "A. Customer", "line1": "1 Main St", "city": "Montreal",
                "postal_code": "H2X 1Y4", "country": "CA"}})
        } else {
            json!({"type": "carry_out"})
        };
        json!({
            "terminal_id": "T1", "currency": "CAD",
            "lines": [{"sku": self.sku, "quantity": self.qty, "unit_price_minor": UNIT_MINOR}],
            "payments": payments,
            "fulfillment": fulfillment
        })
    }
}

/// The general mix: `per_agent_per_min` orders a minute at each of `agents`
/// tills over `duration_ms`; about 50% card, 25% cash, 15% split, 10%
/// declined; 30% ship-to-home; 12% voided 0.2 to 8 s after capture; about
/// 13% with a return ([`plan_return`]).
pub fn plan_orders(
    seed: u64,
    agents: usize,
    duration_ms: u64,
    per_agent_per_min: u64,
) -> Vec<OrderPlan> {
    // Another stream than the fault schedule's, from the same seed.
    let mut rng = SplitMix64::new(seed ^ 0x7117_5EED_0000_0001);
    // Returns from a third stream: the orders of a seed stay as they were.
    let mut returns = SplitMix64::new(seed ^ 0x7117_5EED_0000_0002);
    let gap = 60_000 / per_agent_per_min.max(1);
    let mut out = Vec::new();
    for agent in 0..agents {
        let mut at = rng.range(0, gap);
        let mut n = 0;
        while at < duration_ms {
            let pay = match rng.range(0, 99) {
                0..=49 => Pay::Card,
                50..=74 => Pay::Cash,
                75..=89 => Pay::Split,
                _ => Pay::Declined,
            };
            let qty = rng.range(if pay == Pay::Split { 2 } else { 1 }, 3) as i64;
            let sku = SKUS[rng.range(0, SKUS.len() as u64 - 1) as usize];
            let ship = rng.chance(30);
            let void_after_ms = rng.chance(12).then(|| rng.range(200, 8_000));
            let ret = plan_return(&mut returns, pay, void_after_ms.is_some());
            out.push(OrderPlan {
                agent,
                key: format!("a{}-{n}", agent + 1),
                at_ms: at,
                pay,
                sku,
                qty,
                ship,
                void_after_ms,
                ret,
            });
            n += 1;
            at += rng.range(gap / 2, gap * 3 / 2);
        }
    }
    out.sort_by_key(|o| o.at_ms);
    out
}

/// Whether an order paid with `pay` gets a return, and which: none for a
/// voided order; 14% of the others (one unit, 0.5 to 6 s after capture, to
/// the card for a card sale, in cash for cash and split), and 25% of the
/// declined ones (card or cash: the cloud refuses them, `order_cancelled`,
/// or the agent does at the till once it knows).
pub fn plan_return(rng: &mut SplitMix64, pay: Pay, voided: bool) -> Option<ReturnPlan> {
    // Every draw is made for every order, so one order's choice does not
    // shift the next's.
    let (roll, after_ms, coin) = (rng.range(0, 99), rng.range(500, 6_000), rng.chance(50));
    let share = match pay {
        _ if voided => 0,
        Pay::Declined => 25,
        _ => 14,
    };
    (roll < share).then_some(ReturnPlan {
        after_ms,
        units: 1,
        card: match pay {
            Pay::Card => true,
            Pay::Declined => coin,
            Pay::Cash | Pay::Split => false,
        },
    })
}

/// Issue 21's scenario: `n` carry-out card orders spread over the agents,
/// rung up 20 ms apart.
pub fn plan_card_orders(n: usize, agents: usize) -> Vec<OrderPlan> {
    (0..n)
        .map(|i| OrderPlan {
            agent: i % agents.max(1),
            key: format!("card-{i}"),
            at_ms: i as u64 * 20,
            pay: Pay::Card,
            sku: SKUS[i % SKUS.len()],
            qty: 1,
            ship: false,
            void_after_ms: None,
            ret: None,
        })
        .collect()
}

/// What a till saw for one return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnRecord {
    /// When it got its answer (or gave up), ms from the run's start.
    pub requested_ms: u64,
    /// 201, 200 (replay), a 4xx, or 0 when it gave up.
    pub http: u16,
    /// The return id, on a 2xx.
    pub return_id: Option<String>,
    /// The agent's `error.code` on a 4xx, or why the till gave up.
    pub code: Option<String>,
}

/// What a till saw for one order.
#[derive(Debug, Clone)]
pub struct TillRecord {
    /// The plan.
    pub plan: OrderPlan,
    /// The order id, once the agent answered 2xx.
    pub order_id: Option<String>,
    /// 201, 200 (replay), or the last status seen when it gave up.
    pub http: u16,
    /// When it got its answer, ms from the run's start.
    pub captured_ms: u64,
    /// When its void was accepted.
    pub voided_ms: Option<u64>,
    /// Its return, once the till had an answer.
    pub ret: Option<ReturnRecord>,
    /// Why the till gave up, if it did.
    pub error: Option<String>,
}

/// Records shared by the tills.
pub type Ledger = Arc<Mutex<Vec<TillRecord>>>;

fn ms_since(t0: Instant) -> u64 {
    t0.elapsed().as_millis() as u64
}

/// The agent's API address, read from its `http.addr` (it changes at every
/// restart).
fn base(data_dir: &Path) -> Option<String> {
    std::fs::read_to_string(data_dir.join("http.addr"))
        .ok()
        .map(|t| format!("http://{}", t.trim()))
}

/// POSTs `body` to `path` until a 2xx, a 4xx (returned too), or
/// [`GIVE_UP`]; connection errors and 5xx are retried every 200 ms.
async fn post_retrying(
    client: &reqwest::Client,
    data_dir: &Path,
    path: &str,
    key: Option<&str>,
    body: &Value,
) -> Result<(u16, Value), String> {
    let deadline = Instant::now() + GIVE_UP;
    let mut last = String::from("no attempt");
    while Instant::now() < deadline {
        if let Some(b) = base(data_dir) {
            let mut req = client
                .post(format!("{b}{path}"))
                .bearer_auth(TERMINAL_TOKEN)
                .json(body);
            if let Some(k) = key {
                req = req.header("Idempotency-Key", k);
            }
            match req.send().await {
                Ok(r) if r.status().is_server_error() => last = format!("HTTP {}", r.status()),
                Ok(r) => {
                    let status = r.status().as_u16();
                    return Ok((status, r.json().await.unwrap_or(Value::Null)));
                }
                Err(e) => last = e.to_string(),
            }
        }
        // A retry interval, as a till's: the agent may be down.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("gave up after {GIVE_UP:?}: {last}"))
}

/// Plays `plans` (one agent's, by time) against the agent whose data dir
/// is `data_dir`, appending to `ledger`. Voids and returns run on their own
/// tasks.
pub async fn run_till(plans: Vec<OrderPlan>, data_dir: PathBuf, t0: Instant, ledger: Ledger) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let mut later = Vec::new();
    for plan in plans {
        let due = t0 + Duration::from_millis(plan.at_ms);
        // The till's own pace: it rings up an order when it is due.
        tokio::time::sleep_until(due.into()).await;
        let answer = post_retrying(
            &client,
            &data_dir,
            "/v1/orders",
            Some(&plan.key),
            &plan.body(),
        )
        .await;
        let captured_ms = ms_since(t0);
        let (order_id, http, error) = match answer {
            Ok((s @ (200 | 201), v)) => (v["order_id"].as_str().map(str::to_owned), s, None),
            Ok((s, v)) => (None, s, Some(format!("refused: {v}"))),
            Err(e) => (None, 0, Some(e)),
        };
        let index = {
            let mut l = ledger.lock().unwrap_or_else(|p| p.into_inner());
            l.push(TillRecord {
                plan: plan.clone(),
                order_id: order_id.clone(),
                http,
                captured_ms,
                voided_ms: None,
                ret: None,
                error,
            });
            l.len() - 1
        };
        if let (Some(id), Some(r)) = (&order_id, plan.ret) {
            let path = format!("/v1/orders/{id}/returns");
            let (key, body) = (plan.return_key(), plan.return_body(&r));
            let (client, data_dir, ledger) =
                (client.clone(), data_dir.clone(), Arc::clone(&ledger));
            later.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(r.after_ms)).await;
                let answer = post_retrying(&client, &data_dir, &path, Some(&key), &body).await;
                let requested_ms = ms_since(t0);
                let record = match answer {
                    Ok((http, v)) => ReturnRecord {
                        requested_ms,
                        http,
                        return_id: v["return_id"].as_str().map(str::to_owned),
                        code: v["error"]["code"].as_str().map(str::to_owned),
                    },
                    Err(e) => ReturnRecord {
                        requested_ms,
                        http: 0,
                        return_id: None,
                        code: Some(e),
                    },
                };
                ledger.lock().unwrap_or_else(|p| p.into_inner())[index].ret = Some(record);
            }));
        }
        if let (Some(id), Some(after)) = (order_id, plan.void_after_ms) {
            let (client, data_dir, ledger) =
                (client.clone(), data_dir.clone(), Arc::clone(&ledger));
            later.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(after)).await;
                let path = format!("/v1/orders/{id}/cancel");
                let r = post_retrying(&client, &data_dir, &path, None, &json!({})).await;
                let mut l = ledger.lock().unwrap_or_else(|p| p.into_inner());
                match r {
                    Ok((200, _)) => l[index].voided_ms = Some(ms_since(t0)),
                    Ok((s, v)) => l[index].error = Some(format!("void refused: {s} {v}")),
                    Err(e) => l[index].error = Some(format!("void: {e}")),
                }
            }));
        }
    }
    for t in later {
        let _ = t.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_orders() {
        let a = plan_orders(5, 3, 120_000, 60);
        assert_eq!(a, plan_orders(5, 3, 120_000, 60));
        assert_ne!(a, plan_orders(6, 3, 120_000, 60));
        // About 60 a minute at each of 3 tills for 2 minutes.
        assert!((250..=470).contains(&a.len()), "{}", a.len());
        for p in [Pay::Card, Pay::Cash, Pay::Split, Pay::Declined] {
            assert!(a.iter().any(|o| o.pay == p), "{p:?}");
        }
        assert!(a.iter().any(|o| o.ship) && a.iter().any(|o| o.void_after_ms.is_some()));
        let keys: std::collections::BTreeSet<_> = a.iter().map(|o| &o.key).collect();
        assert_eq!(keys.len(), a.len(), "keys are unique");
    }

    #[test]
    fn bodies_add_up() {
        for o in plan_orders(9, 2, 60_000, 120) {
            let b = o.body();
            let paid: i64 = b["payments"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["amount_minor"].as_i64().unwrap())
                .sum();
            assert_eq!(paid, UNIT_MINOR * o.qty, "{b}");
            let card: i64 = b["payments"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["method"] == "card")
                .map(|p| p["amount_minor"].as_i64().unwrap())
                .sum();
            assert_eq!(card, o.card_minor());
        }
    }

    #[test]
    fn about_one_order_in_eight_has_a_return_and_none_is_voided() {
        let a = plan_orders(5, 3, 600_000, 60);
        let with: Vec<&OrderPlan> = a.iter().filter(|o| o.ret.is_some()).collect();
        let share = with.len() * 100 / a.len();
        assert!((9..=17).contains(&share), "{share}% of {}", a.len());
        for o in &with {
            let r = o.ret.unwrap();
            assert!(o.void_after_ms.is_none(), "{o:?}");
            assert!((1..=o.qty).contains(&r.units) && (500..=6_000).contains(&r.after_ms));
            match o.pay {
                Pay::Card => assert!(r.card),
                Pay::Cash | Pay::Split => assert!(!r.card),
                Pay::Declined => {}
            }
            let b = o.return_body(&r);
            assert_eq!(b["lines"][0]["sku"], o.sku, "{b}");
            if r.card {
                assert_eq!(b["refund"]["token"], o.card_token(), "{b}");
            } else {
                assert_eq!(b["refund"], json!({"method": "cash"}), "{b}");
            }
        }
        let declined = with.iter().filter(|o| o.pay == Pay::Declined).count();
        assert!(declined > 0 && declined * 4 < with.len(), "{declined}");
    }

    #[test]
    fn the_saga_kill_plan_is_card_only() {
        let p = plan_card_orders(300, 3);
        assert_eq!(p.len(), 300);
        assert!(
            p.iter()
                .all(|o| o.pay == Pay::Card && o.void_after_ms.is_none())
        );
        assert_eq!(p.iter().filter(|o| o.agent == 2).count(), 100);
    }
}
