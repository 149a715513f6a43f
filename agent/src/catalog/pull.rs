//! The down-sync task: pulls the catalog and this store's stock from the
//! cloud's catalog service with reqwest (rustls, the `[mqtt.tls]` client
//! certificate) and applies each walk atomically (see `apply`). Each page
//! is inflated, parsed and written on the catalog thread (`worker`), below
//! capture's priority, and waits first for the tills to pause (`pace`, at
//! most `[catalog] yield_per_page_ms`); the async task only moves bytes.
//!
//! It pulls at start, when the sync task reconnects or receives a change
//! hint ([`Puller::trigger`]), and every `[catalog] poll_interval_secs`
//! with up to 10% jitter; after a failure it backs off (1 s doubling to
//! 60 s, jittered). A page that fails its checks (bad JSON, a negative
//! price, an unknown currency, a version that goes backwards) refuses the
//! whole walk: the previous catalog keeps serving and the error shows in
//! `GET /v1/catalog/status` and the metrics. Capture never waits on this.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use o2c_protocol::StoreId;
use o2c_protocol::catalog::{CatalogPage, CatalogVersion, PageError, StockPage};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT_ENCODING, CONTENT_ENCODING, ETAG, IF_NONE_MATCH};
use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::worker::{Worker, WorkerError};
use super::{Catalog, CatalogError, Kind};
use crate::metrics::CatalogMetrics;

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The client could not be built from `[mqtt.tls]`.
    #[error("catalog client: {0}")]
    Setup(String),
    /// Network, TLS or timeout.
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The service answered with an error.
    #[error("the catalog service answered {status}: {body}")]
    Status {
        /// The HTTP status.
        status: StatusCode,
        /// The start of the body.
        body: String,
    },
    /// A page failed its checks; nothing of the walk was applied.
    #[error("refused: {0}")]
    Refused(#[from] PageError),
    /// The walk's pages do not agree with each other.
    #[error("refused: {0}")]
    Inconsistent(String),
    /// The local cache failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The catalog thread failed.
    #[error(transparent)]
    Worker(#[from] WorkerError),
    /// A gzip body did not inflate, or inflated past [`MAX_PAGE_BYTES`].
    #[error("refused: {0}")]
    Body(String),
}

/// What `GET /v1/catalog/status` shows.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct PullStatus {
    /// The catalog version held; absent before the first pull.
    pub version: Option<u64>,
    /// The stock version held.
    pub stock_version: Option<u64>,
    /// Whether a catalog service is configured.
    pub configured: bool,
    /// When the last pull succeeded (RFC 3339).
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>)]
    pub last_success: Option<OffsetDateTime>,
    /// Seconds since then.
    pub age_secs: Option<i64>,
    /// The last failure, cleared by the next success.
    pub last_error: Option<String>,
    /// The ship-to-home stock check's breaker: `closed`, `open` or
    /// `half_open` (absent without a catalog service).
    pub stock_check_breaker: Option<String>,
}

/// The HTTPS client of the catalog service and its base URL, when
/// `[catalog] url` is set: rustls with `[mqtt.tls]`'s CA as the only trust
/// root and its client certificate, `[catalog] timeout_ms`. The pull and
/// the stock check share it (one connection pool). The pull asks for gzip
/// itself and inflates on the catalog thread (reqwest would inflate on
/// tokio's workers, beside capture).
pub fn http_client(
    cfg: &crate::config::Config,
) -> Result<Option<(reqwest::Client, String)>, PullError> {
    let Some(url) = cfg.catalog.url.as_deref() else {
        return Ok(None);
    };
    let tls = cfg
        .mqtt
        .tls
        .as_ref()
        .ok_or_else(|| PullError::Setup("catalog.url needs [mqtt.tls]".into()))?;
    let identity = match (&tls.cert_file, &tls.key_file) {
        (Some(c), Some(k)) => Some((
            ("mqtt.tls.cert_file", c.as_path()),
            ("mqtt.tls.key_file", k.as_path()),
        )),
        _ => None,
    };
    let rustls = o2c_runtime::tls::client_config(o2c_runtime::tls::Files {
        ca: ("mqtt.tls.ca_file", &tls.ca_file),
        identity,
    })
    .map_err(|e| PullError::Setup(e.to_string()))?;
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(rustls)
        .timeout(Duration::from_millis(cfg.catalog.timeout_ms))
        .connect_timeout(Duration::from_millis(cfg.catalog.timeout_ms))
        // reqwest would otherwise ask for gzip on every request and
        // inflate on tokio's workers (its `gzip` feature turns it on).
        .no_gzip()
        .build()
        .map_err(|e| PullError::Setup(e.to_string()))?;
    Ok(Some((client, url.trim_end_matches('/').to_owned())))
}

/// Shared between the puller and the API.
pub type StatusCell = Arc<Mutex<PullStatus>>;

/// The down-sync task.
#[derive(Debug)]
pub struct Puller {
    catalog: Catalog,
    client: reqwest::Client,
    base: String,
    store: StoreId,
    poll: Duration,
    /// Most a page waits for the tills to pause (see `pace`).
    yield_per_page: Duration,
    metrics: CatalogMetrics,
    trigger: Arc<Notify>,
    etags: Mutex<[Option<(CatalogVersion, String)>; 2]>,
    worker: Worker,
}

fn index(kind: Kind) -> usize {
    match kind {
        Kind::Catalog => 0,
        Kind::Stock => 1,
    }
}

/// Longest error body kept.
const BODY_SNIPPET: usize = 300;

/// The largest page accepted, inflated (a page of 5,000 products is about
/// 1 MiB): a bigger one is refused, not held.
pub const MAX_PAGE_BYTES: u64 = 64 << 20;

/// A response body as it came: gzip or plain.
struct Body {
    bytes: bytes::Bytes,
    gzip: bool,
}

impl Body {
    /// The body, inflated if it is gzip (bounded by [`MAX_PAGE_BYTES`]).
    fn inflate(self) -> Result<Vec<u8>, PullError> {
        if !self.gzip {
            return Ok(self.bytes.to_vec());
        }
        use std::io::Read as _;
        let mut out = Vec::with_capacity(self.bytes.len().saturating_mul(8));
        flate2::read::MultiGzDecoder::new(&self.bytes[..])
            .take(MAX_PAGE_BYTES + 1)
            .read_to_end(&mut out)
            .map_err(|e| PullError::Body(format!("gzip: {e}")))?;
        if out.len() as u64 > MAX_PAGE_BYTES {
            return Err(PullError::Body(format!(
                "a page inflates past {MAX_PAGE_BYTES} bytes"
            )));
        }
        Ok(out)
    }
}

impl Puller {
    /// The puller over `client` (see [`http_client`]), working on the
    /// catalog thread `worker` (the one that opened `catalog`).
    pub fn new(
        catalog: Catalog,
        worker: Worker,
        client: reqwest::Client,
        base: &str,
        cfg: &crate::config::Config,
        metrics: CatalogMetrics,
    ) -> Puller {
        catalog.status_mut(|s| s.configured = true);
        Puller {
            catalog,
            client,
            base: base.to_owned(),
            store: cfg.store_id.clone(),
            poll: Duration::from_secs(cfg.catalog.poll_interval_secs),
            yield_per_page: Duration::from_millis(cfg.catalog.yield_per_page_ms),
            metrics,
            trigger: Arc::new(Notify::new()),
            etags: Mutex::default(),
            worker,
        }
    }

    /// Wakes the task for a pull now (a hint, a reconnect).
    pub fn trigger(&self) -> Arc<Notify> {
        Arc::clone(&self.trigger)
    }

    /// Pulls until `cancel`.
    pub async fn run(self, cancel: CancellationToken) {
        let mut failures: u32 = 0;
        loop {
            let wait = match self.pull_all().await {
                Ok(()) => {
                    failures = 0;
                    jitter(self.poll, 10)
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    self.metrics.errors.inc();
                    tracing::warn!(error = %e, failures, "catalog pull failed; the previous catalog keeps serving");
                    self.catalog
                        .status_mut(|s| s.last_error = Some(e.to_string()));
                    let base = Duration::from_secs(1u64 << failures.min(6).saturating_sub(1));
                    jitter(base.min(Duration::from_secs(60)), 50)
                }
            };
            tokio::select! {
                () = cancel.cancelled() => break,
                () = self.trigger.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Pulls the catalog, then the stock.
    pub async fn pull_all(&self) -> Result<(), PullError> {
        self.pull(Kind::Catalog).await?;
        self.pull(Kind::Stock).await?;
        let now = o2c_runtime::clock::wall();
        let now = OffsetDateTime::from(now);
        self.metrics.last_success.set(now.unix_timestamp());
        self.catalog.status_mut(|s| {
            s.last_success = Some(now);
            s.last_error = None;
        });
        Ok(())
    }

    fn url(&self, kind: Kind) -> String {
        format!("{}/v1/stores/{}/{}", self.base, self.store, kind.name())
    }

    async fn get(
        &self,
        kind: Kind,
        query: &[(&str, String)],
        etag: Option<&str>,
    ) -> Result<Option<(Body, Option<String>)>, PullError> {
        let mut req = self
            .client
            .get(self.url(kind))
            .query(query)
            .header(ACCEPT_ENCODING, "gzip");
        if let Some(tag) = etag {
            req = req.header(IF_NONE_MATCH, tag);
        }
        let resp = req.send().await?;
        let status = resp.status();
        if status == StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        let tag = resp
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let gzip = resp
            .headers()
            .get(CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        let body = Body {
            bytes: resp.bytes().await?,
            gzip,
        };
        if !status.is_success() {
            // An error body is short: inflated here.
            let text = body
                .inflate()
                .unwrap_or_else(|e| e.to_string().into_bytes());
            let text = String::from_utf8_lossy(&text);
            return Err(PullError::Status {
                status,
                body: text.chars().take(BODY_SNIPPET).collect(),
            });
        }
        Ok(Some((body, tag)))
    }

    /// Inflates and checks a page on the catalog thread.
    async fn parse(
        &self,
        kind: Kind,
        body: Body,
        have: Option<CatalogVersion>,
        after: Option<&str>,
    ) -> Result<Walk, PullError> {
        let after = after.map(str::to_owned);
        self.worker
            .run(move || Ok(Walk::parse(kind, &body.inflate()?, have, after.as_deref())?))
            .await?
    }

    /// One walk of `kind`: nothing (304 or an empty delta), or every page
    /// staged and committed.
    async fn pull(&self, kind: Kind) -> Result<(), PullError> {
        let have = self.catalog.version(kind)?;
        let etag = {
            let tags = self
                .etags
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            tags[index(kind)]
                .as_ref()
                .filter(|(v, _)| Some(*v) == have)
                .map(|(_, t)| t.clone())
        };
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(v) = have {
            query.push(("since", v.to_string()));
        }
        let Some((body, tag)) = self.get(kind, &query, etag.as_deref()).await? else {
            return Ok(());
        };
        let first = self.parse(kind, body, have, None).await?;
        let version = first.version;
        if first.is_empty() && first.next_after.is_none() && Some(version) == have {
            self.remember(kind, version, tag);
            return Ok(());
        }
        let full = first.full;
        let started = o2c_runtime::clock::now();
        self.on_catalog(move |c| c.begin(kind, full)).await?;
        let staged = async {
            let mut page = first;
            loop {
                // Stage this page (on the catalog thread: the API's tasks
                // keep their workers) while the next one downloads.
                let after = page.next_after.clone();
                self.yield_to_tills().await;
                let stage = self.on_catalog(move |c| page.stage(c));
                let fetch = async {
                    match &after {
                        None => Ok(None),
                        Some(after) => self.next_page(kind, &query, after, version, have).await,
                    }
                };
                let (staged, next) = tokio::join!(stage, fetch);
                staged?;
                let Some(next) = next? else {
                    break;
                };
                if next.version != version || next.full != full {
                    return Err(PullError::Inconsistent(format!(
                        "page after {after:?} is for version {} (full: {}), the walk for {version} (full: {full})",
                        next.version, next.full
                    )));
                }
                page = next;
            }
            Ok(())
        }
        .await;
        if let Err(e) = staged {
            self.on_catalog(move |c| c.abandon(kind)).await?;
            return Err(e);
        }
        let staged_at = o2c_runtime::clock::now();
        self.on_catalog(move |c| c.commit(kind, version, full))
            .await?;
        let done = o2c_runtime::clock::now();
        tracing::info!(
            kind = kind.name(),
            %version,
            full,
            fetch_and_stage_ms = (staged_at - started).as_millis() as u64,
            commit_ms = (done - staged_at).as_millis() as u64,
            "catalog pull applied"
        );
        self.remember(kind, version, tag);
        Ok(())
    }

    /// The page after `after` of the walk to `version`.
    async fn next_page(
        &self,
        kind: Kind,
        query: &[(&str, String)],
        after: &str,
        version: CatalogVersion,
        have: Option<CatalogVersion>,
    ) -> Result<Option<Walk>, PullError> {
        let mut q = query.to_vec();
        q.push(("after", after.to_owned()));
        q.push(("upto", version.to_string()));
        let Some((body, _)) = self.get(kind, &q, None).await? else {
            return Err(PullError::Inconsistent(
                "304 for a page after the first".into(),
            ));
        };
        Ok(Some(self.parse(kind, body, have, Some(after)).await?))
    }

    /// Lets the tills go first: waits until they pause (`pace`), at most
    /// `yield_per_page`.
    async fn yield_to_tills(&self) {
        let start = o2c_runtime::clock::now();
        while let Some(wait) = self.catalog.pace().wait(
            o2c_runtime::clock::now(),
            o2c_runtime::clock::now() - start,
            self.yield_per_page,
        ) {
            // Pacing, not synchronisation: the page goes after the wait
            // whatever happens.
            tokio::time::sleep(wait).await;
        }
    }

    /// Runs `f` on the catalog, on the catalog thread (sled does disk I/O).
    async fn on_catalog<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Catalog) -> Result<T, CatalogError> + Send + 'static,
    ) -> Result<T, PullError> {
        let catalog = self.catalog.clone();
        Ok(self.worker.run(move || f(&catalog)).await??)
    }

    fn remember(&self, kind: Kind, version: CatalogVersion, tag: Option<String>) {
        let gauge = match kind {
            Kind::Catalog => &self.metrics.version,
            Kind::Stock => &self.metrics.stock_version,
        };
        gauge.set(i64::try_from(version.0).unwrap_or(i64::MAX));
        let mut tags = self
            .etags
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tags[index(kind)] = tag.map(|t| (version, t));
    }
}

/// One page of either kind.
struct Walk {
    version: CatalogVersion,
    full: bool,
    next_after: Option<String>,
    page: Page,
}

enum Page {
    Catalog(CatalogPage),
    Stock(StockPage),
}

impl Walk {
    fn parse(
        kind: Kind,
        body: &[u8],
        have: Option<CatalogVersion>,
        after: Option<&str>,
    ) -> Result<Walk, PageError> {
        Ok(match kind {
            Kind::Catalog => {
                let p = CatalogPage::parse(body, have, after)?;
                Walk {
                    version: p.version,
                    full: p.full,
                    next_after: p.next_after.clone(),
                    page: Page::Catalog(p),
                }
            }
            Kind::Stock => {
                let p = StockPage::parse(body, have, after)?;
                Walk {
                    version: p.version,
                    full: p.since.is_none(),
                    next_after: p.next_after.clone(),
                    page: Page::Stock(p),
                }
            }
        })
    }

    fn is_empty(&self) -> bool {
        match &self.page {
            Page::Catalog(p) => p.products.is_empty(),
            Page::Stock(p) => p.levels.is_empty(),
        }
    }

    fn stage(&self, catalog: &Catalog) -> Result<(), CatalogError> {
        match &self.page {
            Page::Catalog(p) => catalog.stage_products(&p.products),
            Page::Stock(p) => catalog.stage_stock(&p.levels),
        }
    }
}

/// `d` plus up to `percent`% more, at random.
fn jitter(d: Duration, percent: u64) -> Duration {
    let extra = d.as_millis() as u64 * percent / 100;
    d + Duration::from_millis(if extra == 0 {
        0
    } else {
        rand::random::<u64>() % extra
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn gzip(data: &[u8]) -> bytes::Bytes {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap().into()
    }

    #[test]
    fn a_gzip_page_is_inflated_bounded_and_a_bad_one_refused() {
        let page = br#"{"version":3,"products":[]}"#;
        let plain = Body {
            bytes: bytes::Bytes::from_static(page),
            gzip: false,
        };
        assert_eq!(plain.inflate().unwrap(), page);
        let zipped = Body {
            bytes: gzip(page),
            gzip: true,
        };
        assert_eq!(zipped.inflate().unwrap(), page);

        let garbage = Body {
            bytes: bytes::Bytes::from_static(b"not gzip at all"),
            gzip: true,
        };
        assert!(matches!(garbage.inflate(), Err(PullError::Body(m)) if m.starts_with("gzip")));

        // A bomb: 64 MiB and one byte of zeros, a few dozen KiB on the wire.
        let bomb = Body {
            bytes: gzip(&vec![0u8; MAX_PAGE_BYTES as usize + 1]),
            gzip: true,
        };
        assert!(matches!(bomb.inflate(), Err(PullError::Body(m)) if m.contains("inflates past")));
    }
}
