//! [`PrivateTansu`]: a dedicated Tansu (Kafka-protocol broker, SQLite storage)
//! on a free loopback port, so a fault test can stop or kill its Kafka.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::HarnessError;
use crate::broker::BrokerProcess;
use crate::env::dev_state_dir;
use crate::kafka::kafka_answers;
use crate::process::free_port;
use crate::proxy::LinkProxy;

/// How long a fresh Tansu may take to answer a metadata request.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The SQLite file Tansu writes in its directory (a relative URL: Tansu
/// resolves absolute `sqlite:///` paths wrongly).
const DB_FILE: &str = "tansu.db";

/// The index Tansu 0.6's SQLite storage lacks; without it fetches from big
/// topics get very slow. Apply it only while Tansu is stopped.
pub const HEADER_INDEX_SQL: &str =
    "CREATE INDEX IF NOT EXISTS header_topition_offset_id ON header(topition, offset_id);";

/// A Tansu process of this test's own, with its data in its own directory.
/// Dropping it kills the broker and removes the data.
#[derive(Debug)]
pub struct PrivateTansu {
    process: BrokerProcess,
    dir: TempDir,
    /// The address it advertises, when not its own (a proxy in front).
    advertised: Option<SocketAddr>,
}

/// Finds the `tansu` binary: `$O2C_TANSU_BIN`, else the build with o2c's
/// fetch patch that `deploy/dev/services.sh up` makes in the dev state dir
/// (`tansu-o2c/bin/tansu`). A `tansu` on `PATH` is not used: Tansu 0.6.0 as
/// published sleeps out every fetch's max wait (`deploy/dev/tansu/`).
pub fn tansu_program() -> Result<PathBuf, HarnessError> {
    if let Some(path) = std::env::var_os("O2C_TANSU_BIN") {
        return Ok(PathBuf::from(path));
    }
    let patched = dev_state_dir().join("tansu-o2c/bin/tansu");
    if patched.is_file() {
        Ok(patched)
    } else {
        Err(HarnessError::ProgramNotFound {
            name: "tansu".to_owned(),
            hint: "`deploy/dev/services.sh up` builds Tansu 0.6.0 with o2c's fetch patch",
        })
    }
}

/// Where a [`PrivateTansu`] keeps its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TansuStorage {
    /// SQLite in the broker's directory: survives kill -9 (fault tests).
    Sqlite,
    /// In memory: several times faster, keeps nothing across a restart
    /// (benchmarks).
    Memory,
}

impl PrivateTansu {
    /// Starts Tansu with SQLite storage on a free port and waits until it
    /// answers a metadata request.
    pub async fn start() -> Result<Self, HarnessError> {
        Self::start_with(TansuStorage::Sqlite).await
    }

    /// Starts Tansu with the given storage on a free port and waits until it
    /// answers a metadata request.
    pub async fn start_with(storage: TansuStorage) -> Result<Self, HarnessError> {
        Self::start_advertising(storage, free_port()?, None, None).await
    }

    /// Starts Tansu with SQLite storage whose maintenance (retention and
    /// compaction passes; every 10 minutes by default) runs every
    /// `interval`.
    pub async fn start_with_maintenance(interval: Duration) -> Result<Self, HarnessError> {
        Self::start_advertising(TansuStorage::Sqlite, free_port()?, None, Some(interval)).await
    }

    /// Starts Tansu (SQLite storage) behind a [`LinkProxy`] of its own: it
    /// advertises the proxy, so every Kafka client's every connection
    /// crosses it (bootstrap and partition leaders alike), and a fault test
    /// can cut, silence or slow the link to Kafka.
    pub async fn start_proxied() -> Result<(Self, LinkProxy), HarnessError> {
        let port = free_port()?;
        let proxy = LinkProxy::start(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        let tansu =
            Self::start_advertising(TansuStorage::Sqlite, port, Some(proxy.addr()), None).await?;
        Ok((tansu, proxy))
    }

    async fn start_advertising(
        storage: TansuStorage,
        port: u16,
        advertised: Option<SocketAddr>,
        maintenance: Option<Duration>,
    ) -> Result<Self, HarnessError> {
        let program = tansu_program()?;
        let dir = tempfile::Builder::new()
            .prefix("o2c-tansu-")
            .tempdir()
            .map_err(|e| HarnessError::io("creating the Tansu dir", e))?;
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised_url = advertised.map_or_else(|| url.clone(), |a| format!("tcp://{a}"));
        let process = BrokerProcess {
            service: "tansu",
            program,
            args: vec![
                "broker".to_owned(),
                "--listener-url".to_owned(),
                url.clone(),
                "--advertised-listener-url".to_owned(),
                advertised_url,
                "--storage-engine".to_owned(),
                match storage {
                    TansuStorage::Sqlite => match maintenance {
                        Some(i) => format!(
                            "sqlite://{DB_FILE}?maintenance_interval={}ms",
                            i.as_millis()
                        ),
                        None => format!("sqlite://{DB_FILE}"),
                    },
                    TansuStorage::Memory => "memory://tansu/".to_owned(),
                },
            ],
            cwd: dir.path().to_path_buf(),
            log: dir.path().join("tansu.log"),
            port,
            stop_signal: Signal::SIGTERM,
            child: None,
        };
        let mut broker = Self {
            process,
            dir,
            advertised,
        };
        broker.start_and_wait().await?;
        Ok(broker)
    }

    /// The broker's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.process.port
    }

    /// Bootstrap servers for rdkafka: `127.0.0.1:PORT`, or the proxy's
    /// address for [`PrivateTansu::start_proxied`].
    pub fn brokers(&self) -> String {
        match self.advertised {
            Some(a) => a.to_string(),
            None => format!("127.0.0.1:{}", self.process.port),
        }
    }

    /// The broker's directory (holds `tansu.db` and `tansu.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The broker's log file.
    pub fn log_path(&self) -> &Path {
        &self.process.log
    }

    /// How many records of `topic` Tansu's SQLite storage holds now, read
    /// from its database (its watermarks do not move when its retention
    /// pass deletes records, so only the table tells).
    pub fn stored_records(&self, topic: &str) -> Result<i64, HarnessError> {
        let db = self.dir.path().join(DB_FILE);
        let what = format!("counting the records of {topic} in {}", db.display());
        let sqlite = |source| HarnessError::Sqlite {
            what: what.clone(),
            source,
        };
        let conn =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .map_err(sqlite)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(sqlite)?;
        conn.query_row(
            "SELECT count(*) FROM record r JOIN topition tp ON tp.id = r.topition \
             JOIN topic t ON t.id = tp.topic WHERE t.name = ?1",
            [topic],
            |row| row.get(0),
        )
        .map_err(sqlite)
    }

    /// True while the broker process runs.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Graceful stop (SIGTERM, SIGKILL after a grace period). Data stays.
    pub async fn stop(&mut self) -> Result<(), HarnessError> {
        self.process.stop().await
    }

    /// Hard stop: SIGKILL. Data stays.
    pub fn kill(&mut self) -> Result<(), HarnessError> {
        self.process.kill()
    }

    /// Stops the broker if it runs, adds the header index to its database,
    /// and starts it again on the same port with the same data.
    pub async fn restart(&mut self) -> Result<(), HarnessError> {
        self.process.stop().await?;
        let db = self.dir.path().join(DB_FILE);
        if db.exists() {
            apply_header_index(&db)?;
        }
        self.start_and_wait().await
    }

    async fn start_and_wait(&mut self) -> Result<(), HarnessError> {
        self.process.spawn()?;
        // Asked directly, not through a proxy that may be faulted.
        let brokers = format!("127.0.0.1:{}", self.process.port);
        self.process
            .wait_ready(READY_TIMEOUT, || {
                kafka_answers(&brokers, Duration::from_secs(2))
            })
            .await
    }
}

/// Adds [`HEADER_INDEX_SQL`] to a Tansu SQLite database. Tansu must be stopped.
pub fn apply_header_index(db: &Path) -> Result<(), HarnessError> {
    let conn = rusqlite::Connection::open(db).map_err(|source| HarnessError::Sqlite {
        what: format!("opening {}", db.display()),
        source,
    })?;
    conn.execute_batch(HEADER_INDEX_SQL)
        .map_err(|source| HarnessError::Sqlite {
            what: format!("creating the header index in {}", db.display()),
            source,
        })
}
