//! `o2c-cloud`: the cloud processes of o2c, a thin clap shell over the
//! crates that hold them: `o2c-ingest` (`ingest`), `o2c-saga` (`saga`,
//! `dlq list|replay`, `order history`) and `o2c-cloud-common` (`check-config`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use o2c_cloud_common::config::Config;
use o2c_runtime::shutdown_signal;
use o2c_runtime::telemetry::{LogTarget, Telemetry};
use o2c_runtime::trace::TraceGuard;
use o2c_saga::runner::Selection;

mod fleet;
mod reconcile;
mod schemas;

#[derive(Debug, Parser)]
#[command(
    name = "o2c-cloud",
    version,
    about = "o2c cloud side: MQTT ingest into Kafka, the Order-to-Cash saga, status back to stores"
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
    /// Run the saga services (all in one process, or one with --service).
    Saga {
        /// Path of cloud.toml.
        #[arg(long, env = "O2C_CLOUD_CONFIG")]
        config: PathBuf,
        /// `order`, `payment`, `inventory`, `shipping`, `state`, `status` or
        /// `all`.
        #[arg(long, default_value = "all")]
        service: String,
    },
    /// Inspect or replay the dead-letter topic.
    Dlq {
        /// Path of cloud.toml.
        #[arg(long, env = "O2C_CLOUD_CONFIG")]
        config: PathBuf,
        #[command(subcommand)]
        action: DlqAction,
    },
    /// The Kafka topology (`deploy/cloud/topics.toml`) against the cluster.
    Topics {
        /// Path of cloud.toml.
        #[arg(long, env = "O2C_CLOUD_CONFIG")]
        config: PathBuf,
        #[command(subcommand)]
        action: TopicsAction,
    },
    /// Read an order's past from the order history (`orders.events`).
    Order {
        /// Path of cloud.toml.
        #[arg(long, env = "O2C_CLOUD_CONFIG")]
        config: PathBuf,
        #[command(subcommand)]
        action: OrderAction,
    },
    /// The catalog service: the store API over HTTPS (`[catalog]`) and the
    /// change hints over MQTT; or, with `import`, the master data import.
    Catalog {
        /// Path of cloud.toml (its `[catalog]`, `[postgres]`, `[mqtt]`);
        /// before `import`.
        #[arg(long, env = "O2C_CLOUD_CONFIG")]
        config: PathBuf,
        #[command(subcommand)]
        action: Option<CatalogAction>,
    },
    /// The sales analytics service (`[analytics]`): Redis live counters
    /// and ClickHouse fact tables, the read API and the `/sales` page; or,
    /// with `report`, one business date's sales.
    Analytics {
        /// Path of cloud.toml (its `[analytics]`, `[kafka]`); before `report`.
        #[arg(long, env = "O2C_CLOUD_CONFIG")]
        config: PathBuf,
        #[command(subcommand)]
        action: Option<AnalyticsAction>,
    },
    /// The order API for web and mobile customers (`[api]`): orders into
    /// the saga with JWT customers, quotas and idempotency.
    Api {
        /// Path of cloud.toml (its `[api]`, `[postgres]`, `[kafka]`).
        #[arg(long, env = "O2C_CLOUD_CONFIG")]
        config: PathBuf,
    },
    /// Customer notifications (`[notify]`): one e-mail and one signed
    /// webhook per order and step; with `dead`, list the dead letters.
    Notify {
        /// Path of cloud.toml (its `[notify]`, `[postgres]`, `[kafka]`).
        #[arg(long, env = "O2C_CLOUD_CONFIG")]
        config: PathBuf,
        #[command(subcommand)]
        action: Option<NotifyAction>,
    },
    /// End-of-day reconciliation: each agent's day manifest against what
    /// Kafka holds (`--store S` or `--all`, `--date D`).
    Reconcile(reconcile::ReconcileArgs),
    /// The fleet view: `serve` runs it (`[fleet]`); without it, print
    /// every agent online/stale/offline, worst first (`--json`).
    Fleet(fleet::FleetArgs),
    /// The wire contract: kept schema versions, and a schema registry.
    Schemas {
        #[command(subcommand)]
        action: SchemasAction,
    },
    /// Validate the config and print the effective values.
    CheckConfig {
        /// Path of cloud.toml.
        #[arg(long, env = "O2C_CLOUD_CONFIG")]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum TopicsAction {
    /// Print the difference between the topology file and the live cluster
    /// (exit 0 when they match, 2 when they differ).
    Plan,
    /// Create the missing topics, grow partitions and set configs; exit 2
    /// if differences no admin call can fix remain (printed).
    Apply,
}

#[derive(Debug, Subcommand)]
enum CatalogAction {
    /// Import products from JSON Lines, or CSV when FILE ends in `.csv`.
    /// Idempotent: a file already applied changes nothing. A file with a
    /// bad line is refused whole, each bad line named (exit 2).
    Import {
        /// The file.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AnalyticsAction {
    /// Print a business date's sales by store and by category from the
    /// ClickHouse views, checked against a direct sum over `fact_orders`
    /// (exit 2 if they differ).
    Report {
        /// The business date, YYYY-MM-DD.
        #[arg(long)]
        date: String,
    },
}

#[derive(Debug, Subcommand)]
enum NotifyAction {
    /// List the messages given up on, with why (newest first).
    Dead {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

#[derive(Debug, Subcommand)]
enum SchemasAction {
    /// Check this build against the kept contract versions (exit 2 on an
    /// incompatible change); with --registry, also against every version
    /// of each Kafka subject in a Confluent-compatible registry.
    Check {
        /// The kept versions (`protocol/schemas` of the repository).
        #[arg(long, default_value = "protocol/schemas")]
        dir: PathBuf,
        /// Schema registry URL, e.g. `http://127.0.0.1:8081`.
        #[arg(long)]
        registry: Option<String>,
        /// `[kafka] topic_prefix` of the deployment (subjects are
        /// `{topic}-value`).
        #[arg(long, default_value = "")]
        topic_prefix: String,
    },
    /// Register each Kafka subject's schema with BACKWARD_TRANSITIVE
    /// (exit 2 if the registry refuses one as incompatible).
    Register {
        /// Schema registry URL.
        #[arg(long)]
        registry: String,
        /// `[kafka] topic_prefix` of the deployment.
        #[arg(long, default_value = "")]
        topic_prefix: String,
    },
}

#[derive(Debug, Subcommand)]
enum OrderAction {
    /// Print the order's timeline: each event's time and type, the service
    /// that wrote it, what it decided and its trace id (exit 3 when the
    /// history has no event of the order).
    History {
        /// The order id (a UUIDv7).
        order_id: String,
        /// One JSON object per event instead of a table.
        #[arg(long)]
        json: bool,
        /// Read from this many hours before the order's capture time (a
        /// till's clock may run ahead); the whole partition with
        /// --from-beginning.
        #[arg(long, default_value_t = 24)]
        slack_hours: u64,
        /// Read the order's partition from its first record.
        #[arg(long)]
        from_beginning: bool,
    },
}

#[derive(Debug, Subcommand)]
enum DlqAction {
    /// Print every dead letter (one JSON object per line).
    List,
    /// Re-inject a dead letter into its original topic.
    Replay {
        /// The event id (or `partition:offset` in the DLQ).
        #[arg(long)]
        id: String,
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

/// What `ingest` and `saga` will load besides the file: the TLS files.
fn check_tls(cfg: Config) -> Result<Config, ExitCode> {
    match o2c_runtime::mqtt::check(&cfg.mqtt.url, cfg.mqtt.tls.as_ref()) {
        Ok(()) => Ok(cfg),
        Err(e) => {
            eprintln!("o2c-cloud: {e}");
            Err(ExitCode::from(EXIT_CONFIG))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One crypto provider for every TLS connection (ring, the only one
    // compiled in); Err means it is already installed.
    o2c_runtime::mqtt::install_crypto_provider();
    match cli.command {
        Command::CheckConfig { config } => match load(&config).and_then(check_tls) {
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
        Command::Ingest { config } => match load(&config) {
            Ok(cfg) => finish(ingest(cfg)),
            Err(code) => code,
        },
        Command::Saga { config, service } => {
            let selection = match service.parse::<Selection>() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("o2c-cloud: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            match load(&config) {
                Ok(cfg) => finish(saga(cfg, selection)),
                Err(code) => code,
            }
        }
        Command::Dlq { config, action } => match load(&config) {
            Ok(cfg) => finish(dlq(cfg, action)),
            Err(code) => code,
        },
        Command::Catalog {
            config,
            action: None,
        } => match load(&config) {
            Ok(cfg) => finish(catalog_service(cfg)),
            Err(code) => code,
        },
        Command::Catalog {
            config,
            action: Some(action),
        } => match load(&config) {
            Ok(cfg) => match catalog(cfg, action) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(2),
                Err(e) => finish(Err(e)),
            },
            Err(code) => code,
        },
        Command::Analytics {
            config,
            action: None,
        } => match load(&config) {
            Ok(cfg) => finish(analytics_service(cfg)),
            Err(code) => code,
        },
        Command::Analytics {
            config,
            action: Some(AnalyticsAction::Report { date }),
        } => match load(&config) {
            Ok(cfg) => match analytics_report(cfg, &date) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(2),
                Err(e) => finish(Err(e)),
            },
            Err(code) => code,
        },
        Command::Api { config } => match load(&config) {
            // A key that cannot be read is a config error too (exit 64: a
            // restart will not fix it).
            Ok(cfg) => match o2c_api::auth::Verifier::from_config(&cfg.api.jwt) {
                Ok(_) => finish(api_service(cfg)),
                Err(e) => {
                    eprintln!("o2c-cloud: {e}");
                    ExitCode::from(EXIT_CONFIG)
                }
            },
            Err(code) => code,
        },
        Command::Notify { config, action } => match load(&config) {
            // Bad templates or mail settings are config errors (exit 64).
            Ok(cfg) => match action {
                Some(NotifyAction::Dead { limit }) => finish(notify_dead(cfg, limit)),
                None => match o2c_notify::check(&cfg) {
                    Ok(()) => finish(notify_service(cfg)),
                    Err(e) => {
                        eprintln!("o2c-cloud: {e}");
                        ExitCode::from(EXIT_CONFIG)
                    }
                },
            },
            Err(code) => code,
        },
        Command::Reconcile(args) => match load(&args.config) {
            Ok(cfg) => match reconcile::run(cfg, args) {
                Ok(code) => ExitCode::from(code),
                Err(e) => finish(Err(e)),
            },
            Err(code) => code,
        },
        Command::Fleet(args) => fleet::main(args),
        Command::Schemas { action } => match schemas_cmd(action) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(2),
            Err(e) => finish(Err(e)),
        },
        Command::Order { config, action } => match load(&config) {
            Ok(cfg) => match order(cfg, action) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(3),
                Err(e) => finish(Err(e)),
            },
            Err(code) => code,
        },
        Command::Topics { config, action } => match load(&config) {
            Ok(cfg) => match topics(cfg, action) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(2),
                Err(e) => finish(Err(e)),
            },
            Err(code) => code,
        },
    }
}

fn finish(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("o2c-cloud: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn saga(cfg: Config, selection: Selection) -> anyhow::Result<()> {
    let _traces = init_tracing(&cfg, "o2c-saga");
    let listener = tokio::net::TcpListener::bind(cfg.saga.http_listen)
        .await
        .with_context(|| format!("bind saga.http_listen {}", cfg.saga.http_listen))?;
    tracing::info!(addr = %listener.local_addr()?, ?selection, "saga health and metrics listening");
    o2c_saga::run(cfg, selection, listener, shutdown_signal()).await?;
    Ok(())
}

/// `topics plan|apply`; true if the cluster matches the file at the end.
#[tokio::main]
async fn topics(cfg: Config, action: TopicsAction) -> anyhow::Result<bool> {
    let desired = o2c_topology::desired_for(&cfg.kafka)?;
    let brokers = &cfg.kafka.brokers;
    let plan = o2c_topology::plan_live(brokers, &desired).await?;
    match action {
        TopicsAction::Plan => {
            print!("{plan}");
            Ok(plan.is_empty())
        }
        TopicsAction::Apply => {
            for line in o2c_topology::apply(brokers, &plan, &desired).await? {
                println!("{line}");
            }
            let after = o2c_topology::plan_live(brokers, &desired).await?;
            print!("{after}");
            Ok(after.is_empty())
        }
    }
}

/// `catalog`: the catalog service, until SIGTERM.
#[tokio::main]
async fn catalog_service(cfg: Config) -> anyhow::Result<()> {
    let _traces = init_tracing(&cfg, "o2c-catalog");
    o2c_runtime::mqtt::install_crypto_provider();
    o2c_catalog::service::check(&cfg)?;
    let bind = |addr: std::net::SocketAddr, key: &'static str| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("bind {key} {addr}"))
    };
    let listen = bind(cfg.catalog.listen, "catalog.listen").await?;
    let http = bind(cfg.catalog.http_listen, "catalog.http_listen").await?;
    tracing::info!(addr = %http.local_addr()?, "catalog health and metrics listening");
    let cancel = tokio_util::sync::CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        stop.cancel();
    });
    o2c_catalog::service::run(cfg, listen, http, cancel).await?;
    Ok(())
}

/// `api`: the order API and its saga side, until SIGTERM.
#[tokio::main]
async fn api_service(cfg: Config) -> anyhow::Result<()> {
    let _traces = init_tracing(&cfg, "o2c-api");
    let bind = |addr: std::net::SocketAddr, key: &'static str| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("bind {key} {addr}"))
    };
    let listen = bind(cfg.api.listen, "api.listen").await?;
    let admin = bind(cfg.api.admin_listen, "api.admin_listen").await?;
    tracing::info!(addr = %admin.local_addr()?, "order API health and metrics listening");
    o2c_api::run(cfg, listen, admin, shutdown_signal()).await?;
    Ok(())
}

/// `notify`: the notification service, until SIGTERM.
#[tokio::main]
async fn notify_service(cfg: Config) -> anyhow::Result<()> {
    let _traces = init_tracing(&cfg, "o2c-notify");
    let addr = cfg.notify.admin_listen;
    let admin = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind notify.admin_listen {addr}"))?;
    tracing::info!(addr = %admin.local_addr()?, "notify health and metrics listening");
    o2c_notify::run(cfg, admin, shutdown_signal()).await?;
    Ok(())
}

/// `notify dead`: the dead letters, newest first.
#[tokio::main]
async fn notify_dead(cfg: Config, limit: i64) -> anyhow::Result<()> {
    let client = o2c_saga::db::connect(&cfg.postgres.url).await?;
    let dead = o2c_notify::store::dead_letters(&client, limit).await?;
    if dead.is_empty() {
        println!("no dead letters");
    }
    for d in dead {
        println!(
            "{}\t{}\t{}\tattempts={}\t{}",
            d.order_id, d.kind, d.channel, d.attempts, d.reason
        );
    }
    Ok(())
}

/// `analytics`: the analytics service, until SIGTERM.
#[tokio::main]
async fn analytics_service(cfg: Config) -> anyhow::Result<()> {
    let _traces = init_tracing(&cfg, "o2c-analytics");
    let addr = cfg.analytics.http_listen;
    let http = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind analytics.http_listen {addr}"))?;
    tracing::info!(addr = %http.local_addr()?, "analytics HTTP (reads, /sales, health, metrics) listening");
    let cancel = tokio_util::sync::CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        stop.cancel();
    });
    o2c_analytics::service::run(cfg, http, cancel).await?;
    Ok(())
}

/// `analytics report`; false when the view disagrees with the facts.
#[tokio::main]
async fn analytics_report(cfg: Config, date: &str) -> anyhow::Result<bool> {
    let facts = o2c_analytics::facts::Facts::new(&cfg.analytics.clickhouse);
    let (text, agree) = o2c_analytics::report::report(&facts, date).await?;
    print!("{text}");
    Ok(agree)
}

/// `catalog import`; false when the file has bad lines (nothing applied).
#[tokio::main]
async fn catalog(cfg: Config, action: CatalogAction) -> anyhow::Result<bool> {
    let CatalogAction::Import { file } = action;
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("read {}", file.display()))?;
    let products = match o2c_catalog::import::parse(&file.to_string_lossy(), &text) {
        Ok(p) => p,
        Err(errors) => {
            for e in &errors {
                eprintln!("{}: {e}", file.display());
            }
            eprintln!(
                "o2c-cloud: {} bad line(s); nothing from {} was applied",
                errors.len(),
                file.display()
            );
            return Ok(false);
        }
    };
    let (mut client, conn) = tokio_postgres::connect(&cfg.postgres.url, tokio_postgres::NoTls)
        .await
        .context("connect to postgres")?;
    tokio::spawn(conn);
    o2c_catalog::db::migrate(&client).await?;
    let o = o2c_catalog::db::import(&mut client, &products).await?;
    println!(
        "catalog version {}: {} product(s) changed, {} unchanged",
        o.version, o.changed, o.unchanged
    );
    Ok(true)
}

/// `schemas check|register`; false on an incompatible change.
#[tokio::main]
async fn schemas_cmd(action: SchemasAction) -> anyhow::Result<bool> {
    let topics = |prefix: &str| {
        o2c_protocol::KafkaTopics::new(prefix).with_context(|| format!("topic prefix {prefix:?}"))
    };
    match action {
        SchemasAction::Check {
            dir,
            registry,
            topic_prefix,
        } => {
            let mut ok = schemas::check_local(&dir)?;
            if let Some(url) = registry {
                ok &= schemas::check_registry(&url, &topics(&topic_prefix)?).await?;
            }
            Ok(ok)
        }
        SchemasAction::Register {
            registry,
            topic_prefix,
        } => schemas::register(&registry, &topics(&topic_prefix)?).await,
    }
}

/// `order history`; false when the history has no event of the order.
#[tokio::main]
async fn order(cfg: Config, action: OrderAction) -> anyhow::Result<bool> {
    let OrderAction::History {
        order_id,
        json,
        slack_hours,
        from_beginning,
    } = action;
    let id: o2c_protocol::OrderId = order_id
        .parse()
        .with_context(|| format!("order id {order_id:?}"))?;
    let slack =
        (!from_beginning).then(|| std::time::Duration::from_secs(slack_hours.saturating_mul(3600)));
    let entries = o2c_saga::history::read(&cfg, id, slack).await?;
    if json {
        for e in &entries {
            println!("{}", serde_json::to_string(e)?);
        }
    } else {
        print!("{}", o2c_saga::history::render(id, &entries));
    }
    if entries.is_empty() {
        eprintln!(
            "o2c-cloud: no event of order {id} in {}",
            cfg.topics().history()
        );
    }
    Ok(!entries.is_empty())
}

#[tokio::main]
async fn dlq(cfg: Config, action: DlqAction) -> anyhow::Result<()> {
    match action {
        DlqAction::List => {
            for d in o2c_saga::dlq::list(&cfg).await? {
                let headers: serde_json::Map<String, serde_json::Value> = d
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                    .collect();
                let line = serde_json::json!({
                    "partition": d.partition,
                    "offset": d.offset,
                    "key": d.key,
                    "event_id": d.header("event_id"),
                    "source_topic": d.header("source_topic"),
                    "reason": d.header("reason"),
                    "reason_detail": d.header("reason_detail"),
                    "headers": headers,
                });
                println!("{line}");
            }
        }
        DlqAction::Replay { id } => {
            let topic = o2c_saga::dlq::replay(&cfg, &id).await?;
            println!("replayed {id} into {topic}");
        }
    }
    Ok(())
}

/// Log lines to stdout, as the cloud's processes always wrote them, and the
/// trace export of `[telemetry]` under `service`. Hold the guard until the
/// process ends: dropping it flushes the spans still queued.
fn init_tracing(cfg: &Config, service: &str) -> Option<TraceGuard> {
    let telemetry = Telemetry {
        target: LogTarget::Stdout,
        ..Telemetry::default()
    };
    match telemetry.init_with_traces(&cfg.telemetry, service) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("o2c-cloud: {e}");
            None
        }
    }
}

#[tokio::main]
async fn ingest(cfg: Config) -> anyhow::Result<()> {
    let _traces = init_tracing(&cfg, "o2c-ingest");
    let listener = tokio::net::TcpListener::bind(cfg.http.listen)
        .await
        .with_context(|| format!("bind http.listen {}", cfg.http.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "health and metrics listening");
    o2c_ingest::run(cfg, listener, shutdown_signal()).await?;
    Ok(())
}
