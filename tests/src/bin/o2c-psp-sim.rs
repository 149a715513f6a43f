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
    o2c_runtime::telemetry::Telemetry::default().init()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("bind {}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "psp simulator listening");
    o2c_tests::psp_sim::serve(listener, o2c_runtime::shutdown_signal()).await?;
    Ok(())
}
