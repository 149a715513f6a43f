//! The sender: takes due messages under a lease, renders and delivers each
//! on its channel, and records the outcome ([`crate::retry`] decides what
//! a failure means).
//!
//! Up to `[notify] concurrency` messages are in flight at once, each on
//! its own task: a slow or failing mail server holds only its own message,
//! and a free slot is filled from the next due messages at once.

use std::sync::Arc;
use std::time::Duration;

use o2c_saga::metrics::{NotifyLabel, SagaMetrics};
use o2c_saga::notice::{EMAIL, WEBHOOK};
use serde_json::json;
use tokio::task::JoinSet;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::mail::Mailer;
use crate::retry::{Decision, Failure, RetryPolicy};
use crate::store::{self, Claimed, StoreError};
use crate::template::{Context, Templates};
use crate::webhook::Webhook;

/// How the sender delivers.
#[derive(Debug)]
pub struct Sender {
    /// E-mail.
    pub mailer: Mailer,
    /// The webhook, if configured.
    pub webhook: Option<Webhook>,
    /// The messages' text.
    pub templates: Templates,
    /// Retries and dead letters.
    pub policy: RetryPolicy,
    /// How long a taken message is held.
    pub lease: Duration,
    /// Messages in flight at once.
    pub concurrency: usize,
    /// Wait between two looks when nothing was due.
    pub poll: Duration,
    /// Where sends are counted (`o2c_saga_notify_sends_total`).
    pub metrics: Arc<SagaMetrics>,
}

impl Sender {
    /// Delivers one message on its channel.
    pub async fn deliver(&self, c: &Claimed) -> Result<(), Failure> {
        let cx = Context::new(
            &c.order_id,
            &c.store_id,
            &c.sales_channel,
            (c.total_minor, &c.currency),
            &c.facts,
        );
        let rendered = self
            .templates
            .render(c.kind, &cx)
            .map_err(|e| Failure::Permanent(e.to_string()))?;
        match c.channel.as_str() {
            EMAIL => {
                let to = c
                    .email
                    .as_deref()
                    .ok_or_else(|| Failure::Permanent("the order has no e-mail address".into()))?;
                let message = self.mailer.message(to, &c.key(), &rendered)?;
                self.mailer.send(message).await
            }
            WEBHOOK => {
                let Some(hook) = &self.webhook else {
                    return Err(Failure::Permanent("no [notify] webhook_url is set".into()));
                };
                let body = json!({
                    "key": c.key(),
                    "kind": c.kind.as_str(),
                    "order_id": c.order_id,
                    "store_id": c.store_id,
                    "channel": c.sales_channel,
                    "customer_id": c.customer_id,
                    "email": c.email,
                    "event_id": c.event_id,
                    "facts": c.facts,
                    "subject": rendered.subject,
                    "text": rendered.body,
                });
                let now = o2c_runtime::clock::wall()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                hook.send(&c.key(), body.to_string().into_bytes(), now)
                    .await
            }
            other => Err(Failure::Permanent(format!("unknown channel {other:?}"))),
        }
    }

    /// Records `outcome` of message `c`.
    async fn record(
        &self,
        client: &Client,
        c: &Claimed,
        outcome: Result<(), Failure>,
    ) -> Result<(), StoreError> {
        let count = |outcome: &'static str| {
            let channel = if c.channel == WEBHOOK { WEBHOOK } else { EMAIL };
            self.metrics
                .notify_sends
                .get_or_create(&NotifyLabel { channel, outcome })
                .inc();
        };
        match outcome {
            Ok(()) => {
                count("sent");
                tracing::debug!(order = %c.order_id, kind = c.kind.as_str(), channel = %c.channel, "sent");
                store::sent(client, c.id).await
            }
            Err(failure) => match self.policy.decide(c.attempts, &failure) {
                Decision::RetryAfter(after) => {
                    count("retried");
                    tracing::info!(order = %c.order_id, kind = c.kind.as_str(), channel = %c.channel,
                        attempts = c.attempts, ?after, reason = failure.reason(), "send failed; retrying");
                    store::retry(client, c.id, after, failure.reason()).await
                }
                Decision::Dead => {
                    count("dead");
                    tracing::warn!(order = %c.order_id, kind = c.kind.as_str(), channel = %c.channel,
                        attempts = c.attempts, reason = failure.reason(), "message dead-lettered");
                    store::dead(client, c.id, failure.reason()).await
                }
            },
        }
    }
}

/// Sends until `cancel`, reconnecting to PostgreSQL after errors.
pub async fn run(sender: Arc<Sender>, pg_url: String, cancel: CancellationToken) {
    let mut backoff = Duration::from_millis(200);
    while !cancel.is_cancelled() {
        match o2c_saga::db::connect(&pg_url).await {
            Ok(client) => {
                backoff = Duration::from_millis(200);
                if let Err(e) = send_loop(&sender, Arc::new(client), &cancel).await {
                    tracing::warn!(error = %e, "notification sender: reconnecting");
                }
            }
            Err(e) => tracing::warn!(error = %e, "notification sender: cannot connect"),
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn send_loop(
    sender: &Arc<Sender>,
    client: Arc<Client>,
    cancel: &CancellationToken,
) -> Result<(), StoreError> {
    let mut inflight: JoinSet<Result<(), StoreError>> = JoinSet::new();
    let result = loop {
        if cancel.is_cancelled() {
            break Ok(());
        }
        let free = sender.concurrency.saturating_sub(inflight.len());
        // Take messages in batches, once half the slots are free, not one
        // per finished send: each take is a query over the due messages.
        if free > 0 && inflight.len() <= sender.concurrency / 2 {
            let claimed =
                match store::claim(&client, i64::try_from(free).unwrap_or(1), sender.lease).await {
                    Ok(c) => c,
                    Err(e) => break Err(e),
                };
            for c in claimed {
                let (sender, client) = (sender.clone(), client.clone());
                inflight.spawn(async move {
                    let outcome = sender.deliver(&c).await;
                    sender.record(&client, &c, outcome).await
                });
            }
        }
        tokio::select! {
            () = cancel.cancelled() => break Ok(()),
            Some(done) = inflight.join_next() => match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => break Err(e),
                Err(e) => tracing::warn!(error = %e, "a send task ended abnormally"),
            },
            () = tokio::time::sleep(sender.poll) => {}
        }
    };
    // What is in flight finishes (or its lease runs out if we are killed).
    while let Some(done) = inflight.join_next().await {
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %e, "recording a send's outcome failed; its lease will run out and it is sent again");
        }
    }
    result
}
