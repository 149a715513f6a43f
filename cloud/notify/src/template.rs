//! The messages' text: one plain-text template per [`Kind`], a file in
//! `cloud/notify/templates/` (`order_confirmed.txt`, ...) built into the
//! binary, each replaceable at run time from `[notify] templates_dir`.
//!
//! A template's first line is `Subject: ...`, then a blank line, then the
//! body. Both are MiniJinja templates over [`Context`]. Every template is
//! compiled at start, so a broken one stops the service before it sends
//! anything; a message that still fails to render is dead-lettered.

use std::path::Path;

use minijinja::Environment;
use o2c_protocol::Currency;
use o2c_saga::notice::{Facts, Kind};
use serde::Serialize;

/// Why the templates cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// An override file could not be read.
    #[error("template {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A template without its `Subject:` line and blank line.
    #[error("template {kind}: {message}")]
    Layout {
        /// The kind.
        kind: &'static str,
        /// What is wrong.
        message: &'static str,
    },
    /// MiniJinja refused a template, or could not render one.
    #[error("template {kind}: {source}")]
    Jinja {
        /// The kind.
        kind: &'static str,
        /// Why.
        source: minijinja::Error,
    },
}

/// The built-in template of `kind`.
fn built_in(kind: Kind) -> &'static str {
    match kind {
        Kind::OrderConfirmed => include_str!("../templates/order_confirmed.txt"),
        Kind::OrderCancelled => include_str!("../templates/order_cancelled.txt"),
        Kind::ShipmentDispatched => include_str!("../templates/shipment_dispatched.txt"),
        Kind::ShipmentDelivered => include_str!("../templates/shipment_delivered.txt"),
        Kind::RefundIssued => include_str!("../templates/refund_issued.txt"),
        Kind::ReturnRefunded => include_str!("../templates/return_refunded.txt"),
    }
}

/// What a template may use.
#[derive(Debug, Clone, Serialize)]
pub struct Context {
    /// The order.
    pub order_id: String,
    /// Its store.
    pub store_id: String,
    /// `pos`, `web` or `mobile`.
    pub channel: String,
    /// Its total, formatted (`12.50 EUR`).
    pub total: String,
    /// An amount captured or refunded, formatted.
    pub amount: Option<String>,
    /// Why an order was cancelled.
    pub reason: Option<String>,
    /// The carrier's tracking number.
    pub tracking: Option<String>,
    /// The carrier's name.
    pub carrier: Option<String>,
    /// How a return's money went back (`card`, `cash`, `gift_card`).
    pub refund_method: Option<String>,
}

impl Context {
    /// The context of a message about order `order_id`.
    pub fn new(
        order_id: &str,
        store_id: &str,
        channel: &str,
        (total_minor, currency): (i64, &str),
        facts: &Facts,
    ) -> Self {
        Context {
            order_id: order_id.to_owned(),
            store_id: store_id.to_owned(),
            channel: channel.to_owned(),
            total: amount(total_minor, currency),
            amount: facts
                .amount_minor
                .map(|m| amount(m, facts.currency.as_deref().unwrap_or(currency))),
            reason: facts.reason.clone(),
            tracking: facts.tracking.clone(),
            carrier: facts.carrier.clone(),
            refund_method: facts.refund_method.clone(),
        }
    }
}

/// `minor` units of `currency` as a person reads them: `1250` EUR is
/// `12.50 EUR`, `500` JPY is `500 JPY`. Integers only.
pub fn amount(minor: i64, currency: &str) -> String {
    let exponent = Currency::from_code(currency)
        .ok()
        .and_then(|c| c.exponent())
        .unwrap_or(0);
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    if exponent == 0 {
        return format!("{sign}{abs} {currency}");
    }
    let unit = 10u64.pow(u32::from(exponent));
    let width = usize::from(exponent);
    format!("{sign}{}.{:0width$} {currency}", abs / unit, abs % unit)
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub body: String,
}

/// Every kind's template, compiled.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
}

fn key(kind: Kind, part: &str) -> String {
    format!("{}.{part}", kind.as_str())
}

impl Templates {
    /// The built-in templates, each replaced by `dir/{kind}.txt` where
    /// that file exists.
    pub fn load(dir: Option<&Path>) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_keep_trailing_newline(true);
        for kind in Kind::ALL {
            let text = match dir.map(|d| d.join(format!("{}.txt", kind.as_str()))) {
                Some(path) if path.exists() => {
                    std::fs::read_to_string(&path).map_err(|source| TemplateError::Read {
                        path: path.display().to_string(),
                        source,
                    })?
                }
                _ => built_in(kind).to_owned(),
            };
            let (subject, body) = split(kind, &text)?;
            let jinja = |source| TemplateError::Jinja {
                kind: kind.as_str(),
                source,
            };
            env.add_template_owned(key(kind, "subject"), subject)
                .map_err(jinja)?;
            env.add_template_owned(key(kind, "body"), body)
                .map_err(jinja)?;
        }
        Ok(Templates { env })
    }

    /// `kind`'s message for `cx`.
    pub fn render(&self, kind: Kind, cx: &Context) -> Result<Rendered, TemplateError> {
        let jinja = |source| TemplateError::Jinja {
            kind: kind.as_str(),
            source,
        };
        let part = |name: &str| -> Result<String, TemplateError> {
            self.env
                .get_template(&key(kind, name))
                .and_then(|t| t.render(cx))
                .map_err(jinja)
        };
        let subject = part("subject")?;
        Ok(Rendered {
            // One line, whatever a value held.
            subject: subject.replace(['\r', '\n'], " ").trim().to_owned(),
            body: part("body")?,
        })
    }
}

fn split(kind: Kind, text: &str) -> Result<(String, String), TemplateError> {
    let layout = |message| TemplateError::Layout {
        kind: kind.as_str(),
        message,
    };
    let (first, rest) = text
        .split_once('\n')
        .ok_or_else(|| layout("needs a `Subject:` line, a blank line and a body"))?;
    let subject = first
        .strip_prefix("Subject:")
        .ok_or_else(|| layout("its first line must start with `Subject:`"))?;
    let body = rest
        .strip_prefix('\n')
        .or_else(|| rest.strip_prefix("\r\n"))
        .ok_or_else(|| layout("the `Subject:` line must be followed by a blank line"))?;
    Ok((subject.trim().to_owned(), body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx(facts: &Facts) -> Context {
        Context::new("O-1", "S1", "web", (2500, "EUR"), facts)
    }

    #[test]
    fn amounts_are_formatted_from_integers() {
        assert_eq!(amount(1250, "EUR"), "12.50 EUR");
        assert_eq!(amount(5, "EUR"), "0.05 EUR");
        assert_eq!(amount(-1250, "EUR"), "-12.50 EUR");
        assert_eq!(amount(500, "JPY"), "500 JPY");
        assert_eq!(amount(1234, "KWD"), "1.234 KWD");
        assert_eq!(amount(i64::MIN, "EUR"), "-92233720368547758.08 EUR");
    }

    #[test]
    fn every_built_in_template_renders() {
        let t = Templates::load(None).expect("built-in templates compile");
        let facts = Facts {
            amount_minor: Some(2500),
            currency: Some("EUR".into()),
            reason: Some("payment_declined".into()),
            tracking: Some("TRK-1".into()),
            carrier: Some("simpost".into()),
            return_id: Some("R-1".into()),
            refund_method: Some("cash".into()),
        };
        for kind in Kind::ALL {
            let r = t.render(kind, &cx(&facts)).expect("renders");
            assert!(r.subject.contains("O-1"), "{kind:?}: {}", r.subject);
            assert!(!r.body.is_empty());
        }
        let confirmed = t
            .render(Kind::OrderConfirmed, &cx(&facts))
            .expect("renders");
        assert!(confirmed.body.contains("25.00 EUR"), "{}", confirmed.body);
        let declined = t
            .render(Kind::OrderCancelled, &cx(&facts))
            .expect("renders");
        assert!(declined.body.contains("declined"), "{}", declined.body);
        let shipped = t
            .render(Kind::ShipmentDispatched, &cx(&facts))
            .expect("renders");
        assert!(shipped.body.contains("TRK-1"), "{}", shipped.body);
        assert!(shipped.body.contains("simpost"), "{}", shipped.body);
        let delivered = t
            .render(Kind::ShipmentDelivered, &cx(&facts))
            .expect("renders");
        assert!(
            delivered.subject.contains("delivered"),
            "{}",
            delivered.subject
        );
        let returned = t
            .render(Kind::ReturnRefunded, &cx(&facts))
            .expect("renders");
        assert!(
            returned.body.contains("25.00 EUR in cash"),
            "{}",
            returned.body
        );
        let by_card = Facts {
            refund_method: Some("card".into()),
            ..facts
        };
        let returned = t
            .render(Kind::ReturnRefunded, &cx(&by_card))
            .expect("renders");
        assert!(returned.body.contains("to your card"), "{}", returned.body);
    }

    #[test]
    fn an_override_replaces_one_template_and_a_bad_one_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("refund_issued.txt"),
            "Subject: Money back {{ order_id }}\n\nYou get {{ amount }}.\n",
        )
        .expect("write");
        let t = Templates::load(Some(dir.path())).expect("loads");
        let facts = Facts {
            amount_minor: Some(100),
            currency: Some("EUR".into()),
            ..Facts::default()
        };
        let r = t.render(Kind::RefundIssued, &cx(&facts)).expect("renders");
        assert_eq!(r.subject, "Money back O-1");
        assert_eq!(r.body, "You get 1.00 EUR.\n");
        std::fs::write(dir.path().join("order_confirmed.txt"), "Hello\n\nbody").expect("write");
        assert!(matches!(
            Templates::load(Some(dir.path())),
            Err(TemplateError::Layout { .. })
        ));
        std::fs::write(
            dir.path().join("order_confirmed.txt"),
            "Subject: {{ order_id\n\nbody",
        )
        .expect("write");
        assert!(matches!(
            Templates::load(Some(dir.path())),
            Err(TemplateError::Jinja { .. })
        ));
    }
}
