//! E-mail over SMTP with `lettre`: a pooled async transport to the relay
//! of `[notify] smtp_url`, and one plain-text message per notice.
//!
//! Every message's `Message-ID` is derived from its order and kind, so the
//! same notice always carries the same id: a receiving system can tell a
//! repeat from a new message (a repeat can only come from a crash after
//! the relay accepted a message and before that was recorded).

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::AsyncSmtpTransportBuilder;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::retry::Failure;
use crate::template::Rendered;

/// Why the mailer cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// `[notify] smtp_url`.
    #[error("notify.smtp_url: {0}")]
    Url(lettre::transport::smtp::Error),
    /// `[notify] from`.
    #[error("notify.from {from:?}: {source}")]
    From {
        /// As configured.
        from: String,
        /// Why.
        source: lettre::address::AddressError,
    },
}

/// The SMTP side.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    timeout: Duration,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("from", &self.from).finish()
    }
}

/// SMTP replies that say the relay refuses *us* (authentication), not this
/// message: every message would fail alike until the settings are fixed,
/// so they are retried, never dead-lettered at once.
const SYSTEMIC: std::ops::RangeInclusive<u16> = 530..=538;

fn parse(url: &str, from: &str) -> Result<(AsyncSmtpTransportBuilder, Mailbox), MailError> {
    let from_box: Mailbox = from.parse().map_err(|source| MailError::From {
        from: from.to_owned(),
        source,
    })?;
    let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url).map_err(MailError::Url)?;
    Ok((builder, from_box))
}

impl Mailer {
    /// Checks `url` and `from` without connecting (nor needing a runtime).
    pub fn check(url: &str, from: &str) -> Result<(), MailError> {
        parse(url, from).map(|_| ())
    }

    /// A mailer to `url`, sending as `from`; one message's whole SMTP
    /// transaction (its own connection: see the workspace's note on
    /// lettre's pool) is limited to `timeout`.
    pub fn new(url: &str, from: &str, timeout: Duration) -> Result<Self, MailError> {
        let (builder, from_box) = parse(url, from)?;
        let transport = builder.timeout(Some(timeout)).build();
        Ok(Mailer {
            transport,
            from: from_box,
            timeout,
        })
    }

    /// The message of one notice to `to`; `key` names the notice
    /// (`{order}.{kind}`). An address that cannot be parsed is permanent.
    pub fn message(&self, to: &str, key: &str, rendered: &Rendered) -> Result<Message, Failure> {
        let to: Mailbox = to
            .parse()
            .map_err(|e| Failure::Permanent(format!("invalid address {to:?}: {e}")))?;
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(rendered.subject.as_str())
            .message_id(Some(format!("<{key}@{}>", self.from.email.domain())))
            .header(ContentType::TEXT_PLAIN)
            .body(rendered.body.clone())
            .map_err(|e| Failure::Permanent(format!("cannot build the message: {e}")))
    }

    /// Sends `message`: a 5xx reply is permanent (except an authentication
    /// refusal, [`SYSTEMIC`]); anything else that fails (4xx, connection,
    /// TLS, the timeout) is transient.
    pub async fn send(&self, message: Message) -> Result<(), Failure> {
        // lettre bounds only the connect; this bounds the whole transaction,
        // so a relay that stalls cannot hold a message past its lease. A
        // send cut short drops its connection before the relay's final
        // reply: the relay discards the message, and it is retried.
        match tokio::time::timeout(self.timeout, self.transport.send(message)).await {
            Err(_) => Err(Failure::Transient(format!(
                "smtp: no answer within {:?}",
                self.timeout
            ))),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                let code = e.status().map(u16::from);
                if e.is_permanent() && !code.is_some_and(|c| SYSTEMIC.contains(&c)) {
                    Err(Failure::Permanent(format!("smtp: {e}")))
                } else {
                    Err(Failure::Transient(format!("smtp: {e}")))
                }
            }
        }
    }
}
