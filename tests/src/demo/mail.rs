//! The demo's customer mail: `o2c-cloud notify` beside the demo's saga
//! (its settings, its consumer-group prefix), sending to an SMTP server of
//! the demo's own ([`SmtpServer`]: aiosmtpd, which writes every message it
//! accepts to `smtp/messages.jsonl` in the demo's dir).
//!
//! A share of the orders carries a customer e-mail address, unique per
//! order ([`with_email`]); [`Mail::expect`] records which. The final check
//! ([`Mail::check`]) reads back what the server received, by `Message-ID`
//! (`<{order_id}.{kind}@shop.test>`): every order with an address got
//! exactly the messages its final status calls for, each once, at its own
//! address, and no order without one got any. What the saga's notice step
//! (`o2c_saga::notice`) sends on:
//!
//! - `order_confirmed` on `PaymentCaptured` (cash orders too: the payment
//!   service captures them `in_store`);
//! - `order_cancelled` on `OrderCancelled`;
//! - `shipment_dispatched` on `ShipmentDispatched` (the carrier picked the
//!   parcel up), which follows the booking, which follows the stock
//!   confirmation, which follows the capture;
//! - `shipment_delivered` on `ShipmentDelivered`;
//! - `refund_issued` on `RefundIssued`.
//!
//! So a completed order gets a confirmation (and, if it ships to home, the
//! dispatch and delivery notices: such an order completes at delivery); a declined card's order, cancelled, gets only the
//! cancellation (the payment service emits `PaymentFailed`, never
//! `PaymentCaptured`, so no stock is confirmed and nothing ships; the
//! cancellation finds the payment failed and refunds nothing); a refunded
//! order (a void or a customer's cancellation after payment) gets the
//! confirmation, the cancellation and the refund, and, if it ships to
//! home, maybe the dispatch and delivery notices (only if the carrier had
//! picked the parcel up before the cancellation reached it: then the
//! parcel is followed to the door).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use o2c_saga::notice::Kind;
use serde_json::{Value, json};

use super::web::WebShop;
use super::{lock, some};
use crate::notify::{FROM, NotifyProc};
use crate::pipeline::AgentProc;
use crate::saga::SagaSettings;
use crate::smtp::{ReceivedMail, SmtpServer};

/// The customers' addresses' domain.
pub const DOMAIN: &str = "demo.test";

/// The domain of the `Message-ID`s: that of [`FROM`].
const ID_DOMAIN: &str = "shop.test";

/// Sets `body`'s customer e-mail address to one unique to `key` (the
/// order's idempotency key) and returns it.
pub fn with_email(body: &mut Value, key: &str) -> String {
    let email = format!("customer-{key}@{DOMAIN}");
    body["customer"] = json!({ "email": email });
    email
}

/// Who an order's messages go to.
#[derive(Debug, Clone)]
struct Addressee {
    email: String,
    /// Ship-to-home: a completed order's shipment is told too.
    ship: bool,
}

/// The notification service, its SMTP server, and the orders that gave an
/// address.
#[derive(Debug)]
pub struct Mail {
    smtp: SmtpServer,
    _notify: NotifyProc,
    log: PathBuf,
    pg: String,
    /// Order id → its address.
    addressed: Mutex<BTreeMap<String, Addressee>>,
}

impl Mail {
    /// Starts the SMTP server (in `dir/smtp`), then `o2c-cloud notify` on
    /// the saga's settings and consumer-group prefix.
    pub async fn start(dir: &Path, settings: &SagaSettings) -> anyhow::Result<Self> {
        let smtp = SmtpServer::start(&dir.join("smtp"))
            .await
            .context("start the demo's SMTP server (aiosmtpd)")?;
        let notify = NotifyProc::start(
            dir,
            "demo",
            settings,
            &settings.prefix,
            &smtp.url(),
            "poll_ms = 20",
        )
        .await
        .context("start the notification service (o2c-cloud notify)")?;
        Ok(Mail {
            smtp,
            _notify: notify,
            log: dir.join("notify-demo.log"),
            pg: settings.pg.clone(),
            addressed: Mutex::new(BTreeMap::new()),
        })
    }

    /// One line for the demo's start: where the mail goes, the logs.
    pub fn describe(&self) -> String {
        format!(
            "customer mail: o2c-cloud notify (log {}) to the SMTP server {} (mail in {})",
            self.log.display(),
            self.smtp.url(),
            self.smtp.dir().display()
        )
    }

    /// Records that order `order_id` was created with address `email`.
    pub fn expect(&self, order_id: &str, email: &str, ship: bool) {
        let email = email.to_owned();
        lock(&self.addressed).insert(order_id.to_owned(), Addressee { email, ship });
    }

    /// The per-second line: messages the SMTP server accepted so far.
    pub fn print_row(&self) {
        match self.smtp.message_count() {
            Ok(n) => println!("         mail     {n} messages sent to customers so far"),
            Err(e) => println!("         mail     cannot read the SMTP server's messages: {e}"),
        }
    }

    /// The final check, once the orders settled: reads every order's final
    /// status (at its store's `agents`, or at the web shop's API), records
    /// the web orders' addresses, then [`Mail::check`], allowing the mail
    /// 30 s to arrive.
    pub async fn check_all<'a>(
        &self,
        web: &WebShop,
        agents: impl IntoIterator<Item = &'a AgentProc>,
    ) -> anyhow::Result<()> {
        let mut finals = web.statuses().await.map_err(anyhow::Error::msg)?;
        for agent in agents {
            let statuses = agent.order_statuses().await?;
            finals.extend(
                statuses
                    .into_iter()
                    .map(|(id, st)| (id, st.unwrap_or_default())),
            );
        }
        for (id, email, ship) in web.addressees() {
            self.expect(&id, &email, ship);
        }
        self.check(&finals, Duration::from_secs(30)).await
    }

    /// The final check, once every order reached its final status
    /// (`finals`: order id → status, every order of the demo): polls the
    /// SMTP server until every order with an address got its messages and
    /// none is pending any more, for at most `wait`, then compares (see the
    /// module's documentation). Stops early on what waiting cannot mend (a
    /// duplicate, an unexpected message).
    pub async fn check(
        &self,
        finals: &BTreeMap<String, String>,
        wait: Duration,
    ) -> anyhow::Result<()> {
        let addressed = lock(&self.addressed).clone();
        let db = self.db().await?;
        let deadline = Instant::now() + wait;
        let (mails, mut verdict, states) = loop {
            let mails = self.smtp.messages()?;
            let verdict = compare(&addressed, finals, &mails);
            let states = message_states(&db).await?;
            let pending = states.get("pending").copied().unwrap_or(0);
            let done = verdict.missing.is_empty() && pending == 0;
            if done || !verdict.wrong.is_empty() || Instant::now() >= deadline {
                break (mails, verdict, states);
            }
            // The sender's pace (it polls every 20 ms); the deadline bounds it.
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let states = states
            .iter()
            .map(|(st, n)| match st.as_str() {
                "skipped" => format!("{n} skipped (the order gave no e-mail)"),
                _ => format!("{n} {st}"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        println!("o2c-cloud notify's record (o2c_notify.messages): {states}");
        // Dead letters: an addressed order's is a failure (its mail is
        // missing too); an unaddressed order's should have been skipped.
        let mut unaddressed_dead: BTreeMap<String, usize> = BTreeMap::new();
        for (order, kind, reason) in dead_letters(&db).await? {
            match addressed.get(&order) {
                Some(a) => verdict.wrong.push(format!(
                    "order {order} ({}): {kind} dead-lettered: {reason}",
                    a.email
                )),
                None => *unaddressed_dead.entry(reason).or_default() += 1,
            }
        }
        for (reason, n) in &unaddressed_dead {
            println!(
                "NOTE: {n} messages of orders without an e-mail were dead-lettered ({reason:?}) \
                 instead of skipped: o2c-cloud notify's sender claimed them before its skip step \
                 saw them (a race in the service; nothing was sent)"
            );
        }
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, kind) in mails.iter().filter_map(|m| parse_id(&m.message_id)) {
            *kinds.entry(kind).or_default() += 1;
        }
        let kinds = kinds
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect::<Vec<_>>()
            .join(", ");
        let problems = [verdict.wrong, verdict.missing].concat();
        if !problems.is_empty() {
            bail!(
                "MAIL MISMATCH: {} problems with the customers' mail ({} messages received: {kinds}; \
                 notify log {}, messages in {}):\n  {}",
                problems.len(),
                mails.len(),
                self.log.display(),
                self.smtp.dir().join("messages.jsonl").display(),
                some(&problems)
            );
        }
        let customers: BTreeSet<&str> = mails
            .iter()
            .flat_map(|m| m.rcpt_tos.iter().map(String::as_str))
            .collect();
        println!(
            "mail: {} messages to {} customers, each exactly once and as expected ({kinds}); \
             the {} orders without an e-mail got none.",
            mails.len(),
            customers.len(),
            finals.len().saturating_sub(addressed.len())
        );
        Ok(())
    }

    async fn db(&self) -> anyhow::Result<tokio_postgres::Client> {
        let (client, conn) = tokio_postgres::connect(&self.pg, tokio_postgres::NoTls)
            .await
            .context("connect to the saga database")?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }
}

/// `o2c_notify.messages`' dead letters: `(order, kind, reason)`.
async fn dead_letters(
    db: &tokio_postgres::Client,
) -> anyhow::Result<Vec<(String, String, String)>> {
    let rows = db
        .query(
            "SELECT order_id, kind, coalesce(last_error, '') FROM o2c_notify.messages \
             WHERE state = 'dead'",
            &[],
        )
        .await
        .context("list o2c_notify.messages' dead letters")?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// `o2c_notify.messages`' rows by state.
async fn message_states(db: &tokio_postgres::Client) -> anyhow::Result<BTreeMap<String, i64>> {
    let rows = db
        .query(
            "SELECT state, count(*) FROM o2c_notify.messages GROUP BY state",
            &[],
        )
        .await
        .context("count o2c_notify.messages")?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// `<{order_id}.{kind}@shop.test>` → `(order_id, kind)`.
fn parse_id(message_id: &str) -> Option<(&str, &str)> {
    let inner = message_id.strip_prefix('<')?.strip_suffix('>')?;
    let (key, domain) = inner.rsplit_once('@')?;
    let (order, kind) = key.rsplit_once('.')?;
    (domain == ID_DOMAIN && Kind::parse(kind).is_some()).then_some((order, kind))
}

/// The kinds an order at final status `status` must get, and those it may
/// get besides; `None` if the status is not final.
fn expected(status: &str, ship: bool) -> Option<(Vec<Kind>, Vec<Kind>)> {
    use Kind::{
        OrderCancelled, OrderConfirmed, RefundIssued, ShipmentDelivered, ShipmentDispatched,
    };
    let shipped = if ship {
        vec![ShipmentDispatched, ShipmentDelivered]
    } else {
        vec![]
    };
    match status {
        "completed" => Some(([vec![OrderConfirmed], shipped].concat(), vec![])),
        // A declined card: never captured, nothing shipped or refunded.
        "cancelled" => Some((vec![OrderCancelled], vec![])),
        // Its shipment was told only if picked up before the cancellation.
        "refunded" => Some((vec![OrderConfirmed, OrderCancelled, RefundIssued], shipped)),
        _ => None,
    }
}

/// What the comparison found: `missing` may still arrive, `wrong` cannot
/// be mended by waiting.
#[derive(Debug, Default)]
struct Verdict {
    missing: Vec<String>,
    wrong: Vec<String>,
}

/// Compares what the server received (`mails`) with what each order of
/// `finals` calls for.
fn compare(
    addressed: &BTreeMap<String, Addressee>,
    finals: &BTreeMap<String, String>,
    mails: &[ReceivedMail],
) -> Verdict {
    let mut v = Verdict::default();
    let from = FROM
        .rsplit_once('<')
        .map_or(FROM, |(_, a)| a.trim_end_matches('>'));
    // Order id → kind → how many.
    let mut got: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
    for m in mails {
        let Some((order, kind)) = parse_id(&m.message_id) else {
            v.wrong.push(format!(
                "a message with Message-ID {:?} (expected <order.kind@{ID_DOMAIN}>) to {:?}",
                m.message_id, m.rcpt_tos
            ));
            continue;
        };
        *got.entry(order).or_default().entry(kind).or_default() += 1;
        let to = addressed.get(order).map(|a| a.email.as_str());
        if m.rcpt_tos.iter().map(String::as_str).ne(to) || m.mail_from != from {
            v.wrong.push(format!(
                "order {order}: {kind} from {} to {:?}, expected from {from} to {}",
                m.mail_from,
                m.rcpt_tos,
                to.unwrap_or("no one (the order gave no e-mail)")
            ));
        }
    }
    for order in got.keys().filter(|o| !finals.contains_key(**o)) {
        v.wrong
            .push(format!("order {order}: mail, but no such order"));
    }
    for (order, status) in finals {
        let kinds = got.get(order.as_str());
        let Some(a) = addressed.get(order) else {
            continue; // its messages, if any, were named above
        };
        let Some((must, may)) = expected(status, a.ship) else {
            v.wrong.push(format!("order {order}: {status}, not final"));
            continue;
        };
        let got_kinds = kinds.cloned().unwrap_or_default();
        let line = |what: String| format!("order {order} ({status}, {}): {what}", a.email);
        for (kind, n) in &got_kinds {
            let allowed = must.iter().chain(&may).any(|k| k.as_str() == *kind);
            if !allowed {
                v.wrong.push(line(format!("{kind}, not expected")));
            } else if *n > 1 {
                v.wrong.push(line(format!("{kind} {n} times")));
            }
        }
        for k in must.iter().filter(|k| !got_kinds.contains_key(k.as_str())) {
            v.missing.push(line(format!("no {}", k.as_str())));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(id: &str, to: &str) -> ReceivedMail {
        ReceivedMail {
            received_ns: 1,
            mail_from: "orders@shop.test".into(),
            rcpt_tos: vec![to.into()],
            message_id: id.into(),
            subject: String::new(),
            headers: BTreeMap::new(),
            body: String::new(),
        }
    }

    #[test]
    fn message_ids_name_order_and_kind() {
        assert_eq!(
            parse_id("<01J.X.order_confirmed@shop.test>"),
            Some(("01J.X", "order_confirmed"))
        );
        assert_eq!(parse_id("<o.order_confirmed@other.test>"), None);
        assert_eq!(parse_id("<o.unsend@shop.test>"), None);
        assert_eq!(parse_id("o.order_confirmed@shop.test"), None);
    }

    #[test]
    fn each_final_status_calls_for_its_messages_once() {
        let addressed = BTreeMap::from([
            (
                "a".to_owned(),
                Addressee {
                    email: "a@d".into(),
                    ship: true,
                },
            ),
            (
                "r".to_owned(),
                Addressee {
                    email: "r@d".into(),
                    ship: true,
                },
            ),
        ]);
        let finals = BTreeMap::from([
            ("a".to_owned(), "completed".to_owned()),
            ("r".to_owned(), "refunded".to_owned()),
            ("n".to_owned(), "completed".to_owned()),
        ]);
        let mut mails = vec![
            mail("<a.order_confirmed@shop.test>", "a@d"),
            mail("<r.order_confirmed@shop.test>", "r@d"),
            mail("<r.order_cancelled@shop.test>", "r@d"),
            mail("<r.refund_issued@shop.test>", "r@d"),
        ];
        let v = compare(&addressed, &finals, &mails);
        assert!(v.wrong.is_empty(), "{:?}", v.wrong);
        assert_eq!(v.missing.len(), 2, "a's shipment: {:?}", v.missing);
        mails.push(mail("<a.shipment_dispatched@shop.test>", "a@d"));
        mails.push(mail("<a.shipment_delivered@shop.test>", "a@d"));
        let v = compare(&addressed, &finals, &mails);
        assert!(v.missing.is_empty() && v.wrong.is_empty(), "{v:?}");
        mails.push(mail("<a.shipment_dispatched@shop.test>", "a@d"));
        mails.push(mail("<n.order_confirmed@shop.test>", "n@d"));
        mails.push(mail("<a.refund_issued@shop.test>", "x@d"));
        let v = compare(&addressed, &finals, &mails);
        // A duplicate, a kind not expected, a wrong recipient, and mail to
        // an order that gave no address.
        assert_eq!(v.wrong.len(), 4, "{:?}", v.wrong);
    }
}
