//! The shutdown signal every server waits on.

/// Resolves on SIGTERM or SIGINT (or, when the handlers cannot be
/// installed, on ctrl-c).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: draining"),
                _ = int.recv() => tracing::info!("SIGINT: draining"),
            }
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot install signal handlers; use ctrl-c");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
