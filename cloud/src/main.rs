//! `o2c-cloud`: the cloud processes of o2c.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use o2c_cloud::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "o2c-cloud",
    version,
    about = "o2c cloud side: MQTT ingest into Kafka"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Take store events from MQTT, write them to Kafka, ack the agents.
    Ingest {
        /// Path of cloud.toml.
        #[arg(long, env = "O2C_CLOUD_CONFIG")]
        config: PathBuf,
    },
    /// Validate the config and print the effective values.
    CheckConfig {
        /// Path of cloud.toml.
        #[arg(long, env = "O2C_CLOUD_CONFIG")]
        config: PathBuf,
    },
}

/// Exit code for a bad configuration (EX_CONFIG's neighbour EX_USAGE, as
/// the rest of the fleet uses).
const EXIT_CONFIG: u8 = 64;

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("o2c-cloud: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => match load(&config) {
            Ok(cfg) => match toml::to_string_pretty(&cfg) {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("o2c-cloud: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(code) => code,
        },
        Command::Ingest { config } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match ingest(cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("o2c-cloud: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}

#[tokio::main]
async fn ingest(cfg: Config) -> anyhow::Result<()> {
    init_tracing();
    let listener = tokio::net::TcpListener::bind(cfg.http.listen)
        .await
        .with_context(|| format!("bind http.listen {}", cfg.http.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "health and metrics listening");
    o2c_cloud::ingest::run(cfg, listener, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
