//! `o2c-cloud fleet`: the fleet view. `fleet serve` runs the service
//! (`o2c-fleet`: every agent's retained health over MQTT, `/v1/fleet`, the
//! `/fleet` page, the metrics); `fleet [--json]` prints the running
//! service's view, one line per agent, worst first (see
//! `o2c_fleet::client` for why it asks the service).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use o2c_cloud_common::config::Config;

/// `o2c-cloud fleet`.
#[derive(Debug, clap::Args)]
pub(crate) struct FleetArgs {
    /// Path of cloud.toml (its `[fleet]` and, for `serve`, `[mqtt]`).
    #[arg(long, env = "O2C_CLOUD_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Print the view as JSON (what `GET /v1/fleet` answers).
    #[arg(long)]
    json: bool,
    /// The running service's base URL (default: `[fleet] url`, else
    /// `http://` + `[fleet] http_listen`).
    #[arg(long)]
    url: Option<String>,
    #[command(subcommand)]
    action: Option<FleetAction>,
}

#[derive(Debug, clap::Subcommand)]
enum FleetAction {
    /// Run the fleet service until SIGTERM.
    Serve,
}

/// Runs `fleet` or `fleet serve`.
pub(crate) fn main(args: FleetArgs) -> ExitCode {
    let Some(path) = &args.config else {
        eprintln!("o2c-cloud: fleet needs --config cloud.toml (or O2C_CLOUD_CONFIG)");
        return ExitCode::from(crate::EXIT_CONFIG);
    };
    let cfg = match crate::load(path) {
        Ok(cfg) => cfg,
        Err(code) => return code,
    };
    match args.action {
        Some(FleetAction::Serve) => {
            if let Err(e) = o2c_fleet::service::check(&cfg) {
                eprintln!("o2c-cloud: {e}");
                return ExitCode::from(crate::EXIT_CONFIG);
            }
            crate::finish(serve(cfg))
        }
        None => crate::finish(print(cfg, args.json, args.url)),
    }
}

#[tokio::main]
async fn serve(cfg: Config) -> anyhow::Result<()> {
    let _traces = crate::init_tracing(&cfg, "o2c-fleet");
    let addr = cfg.fleet.http_listen;
    let http = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind fleet.http_listen {addr}"))?;
    tracing::info!(addr = %http.local_addr()?, "fleet HTTP (/v1/fleet, /fleet, health, metrics) listening");
    let cancel = tokio_util::sync::CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        o2c_runtime::shutdown_signal().await;
        stop.cancel();
    });
    o2c_fleet::service::run(cfg, http, cancel).await?;
    Ok(())
}

#[tokio::main]
async fn print(cfg: Config, json: bool, url: Option<String>) -> anyhow::Result<()> {
    let base = url.unwrap_or_else(|| cfg.fleet.base_url());
    let view = o2c_fleet::client::fetch(&base, Duration::from_secs(10)).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print!("{}", o2c_fleet::view::render_text(&view));
    }
    Ok(())
}
