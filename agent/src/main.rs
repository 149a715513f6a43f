//! `o2c-agent`: the CLI. Thin: parse, load config (exit 64 on a bad one),
//! bind, write `data_dir/http.addr`, run until SIGTERM/SIGINT. The operator
//! commands (`terminal`, `status`, `outbox`, `backup`, `report`) live in
//! `o2c_agent::admin`; this file only prints their output.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use o2c_agent::admin::{self, AdminError};
use o2c_agent::catalog::Catalog;
use o2c_agent::config::{Config, ConfigError};
use o2c_agent::store::OutboxState;
use o2c_runtime::telemetry::Telemetry;
use o2c_runtime::trace::TraceConfig;

/// The `service.name` of the agent's spans (unless `[telemetry]` names
/// another).
const SERVICE: &str = "o2c-agent";

/// Exit code for a bad configuration (EX_CONFIG).
const EXIT_CONFIG: u8 = 64;
/// Exit code for bad input data (EX_DATAERR).
const EXIT_DATA: u8 = 65;

#[derive(Debug, Parser)]
#[command(name = "o2c-agent", version, about = "o2c in-store agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the local API until SIGTERM or SIGINT.
    Run {
        /// Config file (TOML); O2C_AGENT__* variables override its keys.
        #[arg(long, env = "O2C_AGENT_CONFIG")]
        config: PathBuf,
    },
    /// Validate the config and print the effective result.
    CheckConfig {
        /// Config file (TOML).
        #[arg(long, env = "O2C_AGENT_CONFIG")]
        config: PathBuf,
    },
    /// Terminals allowed to call the API (safe while the agent runs).
    Terminal {
        #[command(subcommand)]
        command: TerminalCommand,
    },
    /// Cloud link, pending events, oldest pending age, last ack, rejected
    /// count: from the running agent, or with --offline from the database.
    Status {
        /// Config file (TOML).
        #[arg(long, env = "O2C_AGENT_CONFIG")]
        config: PathBuf,
        /// Read the database directly (read-only) instead of asking the agent.
        #[arg(long)]
        offline: bool,
    },
    /// The outbox (read-only).
    Outbox {
        #[command(subcommand)]
        command: OutboxCommand,
    },
    /// Consistent online copy of the database (SQLite backup API); safe
    /// while the agent runs. Refuses to overwrite FILE.
    Backup {
        /// Config file (TOML).
        #[arg(long, env = "O2C_AGENT_CONFIG")]
        config: PathBuf,
        /// Where to write the copy (must not exist).
        file: PathBuf,
    },
    /// End-of-day reports, read from the database (read-only; safe while
    /// the agent runs).
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// Catalog cache maintenance (run while the agent is stopped).
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ReportCommand {
    /// The Z-report of a business date, per terminal and for the store:
    /// orders, voids, gross and net per currency, tenders, returns and
    /// refunds, the cash left in the drawer, offline card money not yet
    /// confirmed, rejections, and the sync state of the day's events.
    Z {
        /// Config file (TOML): data_dir, [store] timezone, [business_day].
        #[arg(long, env = "O2C_AGENT_CONFIG")]
        config: PathBuf,
        /// The store's business date, YYYY-MM-DD.
        #[arg(long)]
        date: String,
        /// Print the JSON of `GET /v1/reports/z` instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum CatalogCommand {
    /// Load products from a JSON-lines file (upsert by SKU).
    Import {
        /// Config file (TOML), for data_dir.
        #[arg(long, env = "O2C_AGENT_CONFIG")]
        config: PathBuf,
        /// `{"sku","name","price_minor","currency","category","stock_on_hand"}` per line.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum TerminalCommand {
    /// Issue a new token for a terminal; prints it once (only its SHA-256 is
    /// stored). The running agent accepts it within a second.
    Add {
        /// Config file (TOML), for data_dir and the config-file terminals.
        #[arg(long, env = "O2C_AGENT_CONFIG")]
        config: PathBuf,
        /// The terminal id (as sent in `terminal_id`).
        id: String,
    },
    /// List terminals: config-file and CLI-managed, with created and revoked
    /// times and a token fingerprint.
    List {
        /// Config file (TOML).
        #[arg(long, env = "O2C_AGENT_CONFIG")]
        config: PathBuf,
    },
    /// Revoke a CLI-managed terminal; the running agent refuses its token
    /// within a second. Config-file terminals are removed by editing the file.
    Revoke {
        /// Config file (TOML).
        #[arg(long, env = "O2C_AGENT_CONFIG")]
        config: PathBuf,
        /// The terminal id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum OutboxCommand {
    /// List outbox events in one state (read-only): pending and rejected
    /// oldest first, acked newest first.
    List {
        /// Config file (TOML).
        #[arg(long, env = "O2C_AGENT_CONFIG")]
        config: PathBuf,
        /// Which events.
        #[arg(long, value_enum)]
        state: StateArg,
        /// At most this many rows.
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum StateArg {
    Pending,
    Rejected,
    Acked,
}

impl From<StateArg> for OutboxState {
    fn from(s: StateArg) -> Self {
        match s {
            StateArg::Pending => OutboxState::Pending,
            StateArg::Rejected => OutboxState::Rejected,
            StateArg::Acked => OutboxState::Acked,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One crypto provider for every TLS connection (ring, the only one
    // compiled in).
    o2c_runtime::mqtt::install_crypto_provider();
    let config_path = match &cli.command {
        Command::Run { config }
        | Command::CheckConfig { config }
        | Command::Catalog {
            command: CatalogCommand::Import { config, .. },
        }
        | Command::Terminal {
            command:
                TerminalCommand::Add { config, .. }
                | TerminalCommand::List { config }
                | TerminalCommand::Revoke { config, .. },
        }
        | Command::Status { config, .. }
        | Command::Outbox {
            command: OutboxCommand::List { config, .. },
        }
        | Command::Backup { config, .. }
        | Command::Report {
            command: ReportCommand::Z { config, .. },
        } => config.clone(),
    };
    // Logs while the config loads (it warns of deprecated keys); the
    // process's own subscriber, with the trace export `run` configures,
    // once it has loaded.
    let loaded = match Telemetry::default().subscriber(&TraceConfig::default(), SERVICE) {
        Ok((logs, _)) => tracing::subscriber::with_default(logs, || load_config(&config_path)),
        Err(e) => {
            eprintln!("o2c-agent: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("o2c-agent: invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let traces = match cli.command {
        Command::Run { .. } => config.telemetry.trace.clone(),
        _ => TraceConfig::default(),
    };
    let _traces = match Telemetry::default().init_with_traces(&traces, SERVICE) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("o2c-agent: {e}");
            return ExitCode::FAILURE;
        }
    };
    // `run` and `check-config` also load the TLS files now, so a bad one is
    // a config error before anything binds, not a sync task that gives up.
    if matches!(
        cli.command,
        Command::Run { .. } | Command::CheckConfig { .. }
    ) && let Err(e) = o2c_runtime::mqtt::check(&config.mqtt.url, config.mqtt.tls.as_ref())
    {
        eprintln!("o2c-agent: invalid configuration: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let result = match cli.command {
        Command::CheckConfig { .. } => {
            print!("{}", config.to_toml());
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { .. } => serve(config).map(|()| ExitCode::SUCCESS),
        Command::Catalog {
            command: CatalogCommand::Import { file, .. },
        } => import(&config, &file),
        Command::Terminal { command } => {
            return admin_output(match command {
                TerminalCommand::Add { id, .. } => admin::terminal_add(&config, &config_path, &id)
                    .map(|t| {
                        format!(
                            "terminal {id} added. Its bearer token (shown only this once; \
                             only its SHA-256 is stored):\n{token}\n",
                            id = t.id.as_str(),
                            token = t.token
                        )
                    }),
                TerminalCommand::List { .. } => admin::terminal_list(&config),
                TerminalCommand::Revoke { id, .. } => {
                    admin::terminal_revoke(&config, &config_path, &id)
                }
            });
        }
        Command::Status { offline, .. } => {
            return admin_output(admin::status(&config, offline, admin::STATUS_TIMEOUT));
        }
        Command::Outbox {
            command: OutboxCommand::List { state, limit, .. },
        } => return admin_output(admin::outbox_list(&config, state.into(), limit)),
        Command::Backup { file, .. } => return admin_output(admin::backup(&config, &file)),
        Command::Report {
            command: ReportCommand::Z { date, json, .. },
        } => return admin_output(admin::report_z(&config, &date, json)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("o2c-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints an operator command's output, or its error with its exit code.
fn admin_output(result: Result<String, AdminError>) -> ExitCode {
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("o2c-agent: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn load_config(path: &Path) -> Result<Config, ConfigError> {
    Config::load(path)
}

fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the tokio runtime")?;
    runtime.block_on(async move {
        let addr_file = config.http_addr_path();
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("create data_dir {}", config.data_dir.display()))?;
        // A stale file must not point a waiting client at a dead port.
        let _ = std::fs::remove_file(&addr_file);
        let agent = o2c_agent::Agent::open(config)?;
        let listen = agent.config().http.listen;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("bind http.listen {listen}"))?;
        let bound = listener.local_addr().context("local_addr")?;
        write_atomically(&addr_file, &format!("{bound}\n"))
            .with_context(|| format!("write {}", addr_file.display()))?;
        tracing::info!(addr = %bound, "listening");
        agent
            .serve(listener, o2c_runtime::shutdown_signal())
            .await?;
        tracing::info!("stopped cleanly");
        Ok(())
    })
}

fn write_atomically(path: &Path, contents: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn import(config: &Config, file: &Path) -> anyhow::Result<ExitCode> {
    let input = std::fs::File::open(file).with_context(|| format!("open {}", file.display()))?;
    let catalog = Catalog::open_sized(
        &config.catalog_path(),
        config.catalog.cache_bytes,
        config.catalog.price_cache_skus,
    )
    .context("open the catalog (is the agent running? stop it first)")?;
    let report = catalog.import_jsonl(std::io::BufReader::new(input))?;
    for (line, message) in &report.errors {
        eprintln!("{}:{line}: {message}", file.display());
    }
    println!(
        "imported {} products ({} bad lines); catalog holds {}",
        report.imported,
        report.errors.len(),
        catalog.len()
    );
    Ok(if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DATA)
    })
}
