//! An HTTP service the saga calls out to (the payment processor, the
//! carrier): JSON over HTTP with a per-call timeout, an `Idempotency-Key`
//! on every write, and a circuit breaker (`o2c_protocol::breaker`, a pure
//! state machine) whose state a gauge reports.
//!
//! An answer is classified once, here: 2xx (and the statuses the caller
//! names as answers, such as a processor's 402 decline) is read as JSON;
//! 408, 409, 425 and 429 say "come back later"; any other 4xx refuses the
//! request for good ([`UpstreamError::Rejected`], which does not trip the
//! breaker: the service answered); the rest is a failure worth retrying.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use o2c_protocol::breaker::{Breaker, BreakerState};

/// Why a call failed. [`UpstreamError::Rejected`] is final for that
/// request; the others are transient.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The breaker is open: the call was not made.
    #[error("circuit breaker open")]
    BreakerOpen,
    /// No answer within the timeout.
    #[error("timed out")]
    Timeout,
    /// Connection or protocol trouble.
    #[error("unreachable: {0}")]
    Transport(String),
    /// The service refused the request itself (a 4xx other than the
    /// retryable 408, 409, 425 and 429): sending it again cannot help.
    #[error("rejected the request ({status}): {body}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// Body, shortened.
        body: String,
    },
    /// An unexpected status or answer (retryable).
    #[error("answered {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Body, shortened.
        body: String,
    },
}

/// Breaker settings.
#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    /// Consecutive failures that open it.
    pub failures: u32,
    /// How long it stays open.
    pub open_for: Duration,
    /// Per-call timeout.
    pub timeout: Duration,
}

/// One upstream service's client.
#[derive(Debug, Clone)]
pub struct Upstream {
    http: reqwest::Client,
    base: String,
    breaker: Arc<Mutex<Breaker>>,
    state_gauge: Gauge,
    /// Non-2xx statuses read as answers.
    answers: &'static [u16],
}

impl Upstream {
    /// A client for `base` (e.g. `http://127.0.0.1:9400`); `state_gauge`
    /// reports the breaker state (0 closed, 1 open, 2 half-open);
    /// `answers` are the non-2xx statuses whose body is an answer.
    pub fn new(
        base: &str,
        cfg: BreakerConfig,
        state_gauge: Gauge,
        answers: &'static [u16],
    ) -> Result<Self, UpstreamError> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| UpstreamError::Transport(e.to_string()))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            breaker: Arc::new(Mutex::new(Breaker::new(cfg.failures, cfg.open_for))),
            state_gauge,
            answers,
        })
    }

    /// The breaker's state now.
    pub fn breaker_state(&self) -> BreakerState {
        self.lock().state(Instant::now().into_std())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn report(&self) {
        let s = self.lock().state(Instant::now().into_std());
        self.state_gauge.set(s.code());
    }

    /// `POST {base}{path}` with `Idempotency-Key: key` and a JSON body.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        key: &str,
        body: &B,
    ) -> Result<T, UpstreamError> {
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Idempotency-Key", key)
            .json(body);
        self.guarded(self.answer(req)).await
    }

    /// `GET {base}{path}`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, UpstreamError> {
        let req = self.http.get(format!("{}{path}", self.base));
        self.guarded(self.answer(req)).await
    }

    /// Runs `call` through the breaker.
    async fn guarded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, UpstreamError>>,
    ) -> Result<T, UpstreamError> {
        if self.lock().acquire(Instant::now().into_std()).is_err() {
            self.report();
            return Err(UpstreamError::BreakerOpen);
        }
        let result = call.await;
        {
            let mut b = self.lock();
            match &result {
                Ok(_) | Err(UpstreamError::Rejected { .. }) => b.on_success(),
                Err(_) => b.on_failure(Instant::now().into_std()),
            }
        }
        self.report();
        result
    }

    /// Sends `req` and reads the answer.
    async fn answer<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, UpstreamError> {
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                UpstreamError::Timeout
            } else {
                UpstreamError::Transport(e.to_string())
            }
        };
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(transport)?;
        let body = || text.chars().take(200).collect::<String>();
        match status {
            s if (200..=299).contains(&s) || self.answers.contains(&s) => {
                serde_json::from_str(&text).map_err(|e| UpstreamError::Status {
                    status,
                    body: e.to_string(),
                })
            }
            408 | 409 | 425 | 429 => Err(UpstreamError::Status {
                status,
                body: body(),
            }),
            400..=499 => Err(UpstreamError::Rejected {
                status,
                body: body(),
            }),
            _ => Err(UpstreamError::Status {
                status,
                body: body(),
            }),
        }
    }
}
