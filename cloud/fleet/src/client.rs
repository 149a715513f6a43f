//! `o2c-cloud fleet [--json]`: asks the running fleet service
//! (`[fleet] url`, default `http://` + `[fleet] http_listen`) for its view.
//!
//! Why ask the service rather than read the retained messages from the
//! broker: the service is the one source of truth the page, the JSON and
//! the alerts share. It knows what a one-shot reader cannot: when an agent
//! went offline (the broker keeps no time with a retained will), and which
//! agents went silent (stale) since their last heartbeat. It also needs no
//! broker identity on the operator's machine, and answers from memory
//! instead of pulling every agent's message over TLS for each call.

use std::time::Duration;

use crate::view::FleetView;

/// Why the view could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No answer, or an answer that is not a view.
    #[error("fleet service at {url}: {message}")]
    Service {
        /// The URL asked.
        url: String,
        /// What went wrong.
        message: String,
    },
}

/// `GET {base}/v1/fleet`.
pub async fn fetch(base: &str, timeout: Duration) -> Result<FleetView, ClientError> {
    let url = format!("{}/v1/fleet", base.trim_end_matches('/'));
    let fail = |message: String| ClientError::Service {
        url: url.clone(),
        message,
    };
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let resp = client
        .get(&url)
        .send()
        .await
        .map_err(|e| fail(format!("{e} (is `o2c-cloud fleet serve` running?)")))?;
    if !resp.status().is_success() {
        return Err(fail(format!("HTTP {}", resp.status())));
    }
    resp.json::<FleetView>()
        .await
        .map_err(|e| fail(format!("not a fleet view: {e}")))
}
