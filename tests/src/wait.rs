//! Polling helpers with a deadline: the only way harness code waits.
//!
//! Deadlines use the wall clock (`std::time::Instant`) because they wait for real
//! processes and sockets, so they stay correct even in a test that paused tokio time.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::HarnessError;

/// First poll interval; doubles up to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(5);
/// Longest pause between two polls.
const MAX_POLL: Duration = Duration::from_millis(100);

/// Polls `cond` until it returns true or `timeout` passes.
///
/// `cond` is called at least once, even with a zero timeout.
pub async fn wait_until<F, Fut>(cond: F, timeout: Duration) -> Result<(), HarnessError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_until_named("condition", cond, timeout).await
}

/// Like [`wait_until`], naming what is awaited in the timeout error.
pub async fn wait_until_named<F, Fut>(
    what: &str,
    mut cond: F,
    timeout: Duration,
) -> Result<(), HarnessError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = FIRST_POLL;
    loop {
        if cond().await {
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(HarnessError::Timeout {
                what: what.to_owned(),
                timeout,
            });
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(MAX_POLL);
    }
}

/// Polls `probe` until it returns `Some` or `timeout` passes; on timeout the
/// error names `what` and the last value seen (`None` if none was read).
pub async fn wait_for_value<T, F, Fut>(
    what: &str,
    mut probe: F,
    timeout: Duration,
) -> Result<T, (HarnessError, Option<T>)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = (bool, T)>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = FIRST_POLL;
    loop {
        let (done, value) = probe().await;
        if done {
            return Ok(value);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err((
                HarnessError::Timeout {
                    what: what.to_owned(),
                    timeout,
                },
                Some(value),
            ));
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(MAX_POLL);
    }
}

/// Waits until `path` exists (as a file or directory).
pub async fn wait_for_file(path: impl AsRef<Path>, timeout: Duration) -> Result<(), HarnessError> {
    let path = path.as_ref();
    wait_until_named(
        &format!("file {}", path.display()),
        || async { tokio::fs::try_exists(path).await.unwrap_or(false) },
        timeout,
    )
    .await
}

/// Polls `url` until it answers 2xx (60 s), naming `what` and adding the
/// tail of `log` to the error.
pub(crate) async fn wait_http_ok(what: &str, url: &str, log: &Path) -> Result<(), HarnessError> {
    let client = reqwest::Client::new();
    wait_until_named(
        what,
        || {
            let c = client.clone();
            async move {
                c.get(url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        },
        Duration::from_secs(60),
    )
    .await
    .map_err(|e| {
        HarnessError::Pipeline(format!(
            "{e}; log:\n{}",
            crate::process::log_tail(log, 4000)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn wait_until_returns_once_the_condition_holds() {
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        wait_until(
            move || {
                let c = c.clone();
                async move { c.fetch_add(1, Ordering::SeqCst) >= 3 }
            },
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn wait_until_times_out_with_the_name() {
        let err = wait_until_named("never", || async { false }, Duration::from_millis(30))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("never"), "{err}");
    }

    #[tokio::test]
    async fn wait_for_file_sees_a_file_created_later() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ready");
        let p = path.clone();
        let writer = tokio::spawn(async move {
            tokio::task::yield_now().await;
            tokio::fs::write(&p, b"x").await.unwrap();
        });
        wait_for_file(&path, Duration::from_secs(5)).await.unwrap();
        writer.await.unwrap();
    }
}
