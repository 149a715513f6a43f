//! `o2c-psp-sim`: the payment processor simulator (`o2c_tests::psp_sim`), a
//! test double for the saga suites, the benchmarks, the chaos runner and
//! the demo. Not part of the cloud's release.
//!
//! ```text
//! o2c-psp-sim --listen 127.0.0.1:9400
//! ```

use anyhow::Context;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "o2c-psp-sim",
    about = "Deterministic payment processor simulator (a test double)"
)]
struct Args {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:9400")]
    listen: std::net::SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("bind {}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "psp simulator listening");
    o2c_tests::psp_sim::serve(listener, shutdown()).await?;
    Ok(())
}

/// SIGTERM or SIGINT.
async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
