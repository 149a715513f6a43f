//! `o2c-cloud reconcile`: a store's (or every store's) business day
//! proved against Kafka (`o2c_reconcile`). Exit 0 when every store is
//! complete, 3 when some are only pending, 2 when any is incomplete or
//! missing.

use std::path::PathBuf;

use anyhow::Context;
use o2c_cloud_common::config::Config;
use o2c_protocol::StoreId;
use o2c_protocol::day::BusinessDate;
use o2c_reconcile::{Scope, reconcile, render};

/// The command's arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct ReconcileArgs {
    /// Path of cloud.toml (its `[kafka]`).
    #[arg(long, env = "O2C_CLOUD_CONFIG")]
    pub(crate) config: PathBuf,
    /// The store to reconcile.
    #[arg(long, conflicts_with = "all", required_unless_present = "all")]
    store: Option<String>,
    /// Every store that sent a manifest for the date, or should have.
    #[arg(long)]
    all: bool,
    /// The business date, YYYY-MM-DD, or `yesterday` / `today` (UTC).
    #[arg(long)]
    date: String,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// Also write the result in Prometheus text format to this file (for
    /// node_exporter's textfile collector; written atomically).
    #[arg(long)]
    metrics_file: Option<PathBuf>,
}

/// Runs it; the exit code per `render::exit_code`.
#[tokio::main]
pub(crate) async fn run(cfg: Config, args: ReconcileArgs) -> anyhow::Result<u8> {
    let today = time::OffsetDateTime::now_utc().date();
    let date = match args.date.as_str() {
        "today" => BusinessDate(today),
        "yesterday" => BusinessDate(today.previous_day().context("--date yesterday")?),
        d => BusinessDate::parse(d).context("--date")?,
    };
    let scope = match &args.store {
        Some(s) => Scope::Store(StoreId::new(s.as_str()).context("--store")?),
        None => Scope::All,
    };
    let days = reconcile(&cfg, scope, date).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&render::json(date, &days))?
        );
    } else {
        print!("{}", render::table(&days));
    }
    if let Some(path) = &args.metrics_file {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, render::prometheus(date, &days, now))
            .with_context(|| format!("write {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))?;
    }
    Ok(render::exit_code(&days))
}
