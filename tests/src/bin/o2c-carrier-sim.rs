//! `o2c-carrier-sim`: the carrier simulator (`o2c_tests::carrier_sim`), a
//! test double for the shipping suites, the benchmarks, the chaos runner
//! and the demo. Not part of the cloud's release.
//!
//! ```text
//! o2c-carrier-sim --listen 127.0.0.1:9500 --dispatch-after-ms 200 --deliver-after-ms 500
//! ```

use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use o2c_tests::carrier_sim::SimConfig;

#[derive(Debug, Parser)]
#[command(
    name = "o2c-carrier-sim",
    about = "Deterministic carrier simulator (a test double)"
)]
struct Args {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:9500")]
    listen: std::net::SocketAddr,
    /// Milliseconds from booking to pick-up (`in_transit`).
    #[arg(long, default_value_t = 200)]
    dispatch_after_ms: u64,
    /// Milliseconds from pick-up to `delivered`.
    #[arg(long, default_value_t = 500)]
    deliver_after_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    o2c_runtime::telemetry::Telemetry::default().init()?;
    let cfg = SimConfig {
        dispatch_after: Duration::from_millis(args.dispatch_after_ms),
        deliver_after: Duration::from_millis(args.deliver_after_ms),
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("bind {}", args.listen))?;
    tracing::info!(
        addr = %listener.local_addr()?,
        dispatch_after_ms = args.dispatch_after_ms,
        deliver_after_ms = args.deliver_after_ms,
        "carrier simulator listening"
    );
    o2c_tests::carrier_sim::serve(listener, cfg, o2c_runtime::shutdown_signal()).await?;
    Ok(())
}
