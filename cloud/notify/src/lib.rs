//! # o2c-notify: customer notifications (`o2c-cloud notify`)
//!
//! A stateless service, as the architecture has it: it reads the saga's
//! events and tells the customer about each step. Its state is two tables in
//! PostgreSQL (schema `o2c_notify`); any number of replicas may run.
//!
//! ```text
//! orders.events ─► notice step (o2c_saga::notice) ─► o2c_notify.messages
//!                    one row per order, kind, channel    │
//!                                                        ▼
//!                    sender ─► SMTP relay (lettre)  and/or  webhook (HMAC-signed)
//!                      └ sent | retry later (backoff) | dead (reason)
//! ```
//!
//! - Exactly one message per order and kind: the message's row is its
//!   idempotency record, so a replayed or re-read event adds nothing; a
//!   sender takes a message under a lease and records it sent as soon as
//!   the server accepted it; a sender killed mid-send leaves the lease to
//!   run out and the message is sent then. Every message carries a stable
//!   `Message-ID` (`Idempotency-Key` for webhooks), which is what a
//!   receiver sees if a crash falls between the server's acceptance and
//!   its record.
//! - A compensation is a new message: a confirmed order that is then
//!   cancelled gets a cancellation; nothing is taken back.
//! - A failing server or webhook is retried with a doubling wait, then the
//!   message is dead-lettered with its reason (`o2c-cloud notify dead`).
//!   Each message is its own task: a failing one never holds the others.
//!
//! Layout:
//! - [`template`]: the plain-text templates (`cloud/notify/templates/`),
//!   MiniJinja, and amounts from integer minor units.
//! - [`mail`] (SMTP with `lettre`) and [`webhook`] (reqwest, signed).
//! - [`retry`]: a failure's consequence (pure; `o2c_protocol::retry`).
//! - [`store`]: taking, recording and listing messages.
//! - [`sender`]: the delivery loop.
//!
//! The events' side, which decides which message each event calls for and
//! records it, is the saga's [`o2c_saga::Service::Notify`]
//! ([`o2c_saga::notice`]), which [`run`] starts in the same process.

pub mod mail;
pub use o2c_protocol::retry;
pub mod sender;
pub mod store;
pub mod template;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use o2c_cloud_common::config::Config;
use o2c_saga::Service;
use o2c_saga::runner::Selection;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Why the service stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// `[notify]` settings that cannot work.
    #[error(transparent)]
    Config(#[from] o2c_runtime::config::ConfigError),
    /// The templates.
    #[error(transparent)]
    Template(#[from] template::TemplateError),
    /// The mail transport.
    #[error(transparent)]
    Mail(#[from] mail::MailError),
    /// The webhook client.
    #[error(transparent)]
    Webhook(#[from] webhook::WebhookError),
    /// PostgreSQL at start.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The events' side.
    #[error(transparent)]
    Saga(#[from] o2c_saga::SagaError),
}

/// Checks `[notify]`, the templates, the mail settings and the webhook key
/// without connecting anywhere (nor needing a runtime): what `o2c-cloud
/// notify` checks before it starts, exiting 64 on an error.
pub fn check(cfg: &Config) -> Result<(), RunError> {
    let n = &cfg.notify;
    n.validate()?;
    template::Templates::load(n.templates_dir.as_deref())?;
    mail::Mailer::check(&n.smtp_url, &n.from)?;
    if let Some(secret) = &n.webhook_secret {
        webhook::key(secret.as_bytes())?;
    }
    Ok(())
}

/// The sender of `cfg` (checks `[notify]` and compiles the templates).
pub fn sender(cfg: &Config) -> Result<sender::Sender, RunError> {
    let n = &cfg.notify;
    n.validate()?;
    let timeout = Duration::from_millis(n.timeout_ms);
    let webhook = match (&n.webhook_url, &n.webhook_secret) {
        (Some(url), Some(secret)) => Some(webhook::Webhook::new(url, secret, timeout)?),
        _ => None,
    };
    Ok(sender::Sender {
        mailer: mail::Mailer::new(&n.smtp_url, &n.from, timeout)?,
        webhook,
        templates: template::Templates::load(n.templates_dir.as_deref())?,
        policy: retry::RetryPolicy {
            max_attempts: n.max_attempts,
            base: Duration::from_millis(n.retry_base_ms),
            max: Duration::from_secs(n.retry_max_secs),
        },
        lease: Duration::from_secs(n.lease_secs),
        metrics: Arc::default(),
        concurrency: n.concurrency,
        poll: Duration::from_millis(n.poll_ms),
    })
}

/// Runs the service (health and metrics of its events' side on `admin`)
/// until `shutdown`.
pub async fn run(
    cfg: Config,
    admin: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let metrics = Arc::new(o2c_saga::metrics::SagaMetrics::default());
    let sender = Arc::new(sender::Sender {
        metrics: metrics.clone(),
        ..sender(&cfg)?
    });
    // The sender's tables exist before it looks at them.
    let mut client = o2c_saga::db::connect(&cfg.postgres.url)
        .await
        .map_err(store::StoreError::from)?;
    o2c_saga::db::migrate(&mut client, Service::Notify)
        .await
        .map_err(store::StoreError::from)?;
    drop(client);
    let cancel = CancellationToken::new();
    let mut saga = tokio::spawn(o2c_saga::runner::run_with(
        cfg.clone(),
        Selection {
            services: vec![Service::Notify],
            status: false,
        },
        admin,
        metrics,
        cancel.clone().cancelled_owned(),
    ));
    let mut sending = tokio::spawn(sender::run(
        sender,
        cfg.postgres.url.clone(),
        cancel.clone(),
    ));
    tracing::info!("notification service started");
    let result = tokio::select! {
        () = shutdown => Ok(()),
        r = &mut saga => match r {
            Ok(r) => r.map_err(RunError::from),
            Err(_) => Err(RunError::Saga(o2c_saga::SagaError::Closed("notification events"))),
        },
        _ = &mut sending => Err(RunError::Saga(o2c_saga::SagaError::Closed("notification sender"))),
    };
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), async {
        let _ = sending.await;
        let _ = saga.await;
    })
    .await;
    result
}
