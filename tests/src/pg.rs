//! [`PrivatePostgres`]: a PostgreSQL cluster of one test's own (initdb into
//! a temp dir, `pg_ctl` on a free loopback port), so a fault test can stop
//! it in immediate mode without disturbing the shared server other tests
//! use.
//!
//! initdb refuses to run as root, so when the harness runs as root (CI
//! does) every server command runs as the `postgres` user through
//! `runuser`, in a directory that user owns.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use tempfile::TempDir;
use tokio_postgres::NoTls;

use crate::HarnessError;
use crate::process::{free_port, log_tail};

/// Where Debian puts the server binaries: `/usr/lib/postgresql/{major}/bin`.
const PG_LIB: &str = "/usr/lib/postgresql";
/// The user the server runs as when the harness is root.
const SERVER_USER: &str = "postgres";
/// The database the saga uses.
pub const DB_NAME: &str = "o2c";

/// A private cluster. Dropping it stops the server (immediate mode) and
/// removes its files.
#[derive(Debug)]
pub struct PrivatePostgres {
    bin: PathBuf,
    dir: TempDir,
    port: u16,
    as_user: Option<&'static str>,
}

fn pg_err(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Postgres { what, source }
}

/// The newest `/usr/lib/postgresql/*/bin` holding `initdb`.
pub fn pg_bin_dir() -> Result<PathBuf, HarnessError> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(PG_LIB)
        .map_err(|e| HarnessError::io(format!("listing {PG_LIB}"), e))?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, bin)| bin)
        .ok_or(HarnessError::ProgramNotFound {
            name: "initdb".into(),
            hint: "apt-get install postgresql",
        })
}

impl PrivatePostgres {
    /// initdb (trust auth, user `postgres`), start on a free port, and
    /// create [`DB_NAME`].
    pub async fn start() -> Result<Self, HarnessError> {
        let bin = pg_bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("o2c-pg-")
            .tempdir()
            .map_err(|e| HarnessError::io("creating the PostgreSQL dir", e))?;
        let root = std::fs::metadata("/proc/self")
            .map_err(|e| HarnessError::io("reading /proc/self", e))?
            .uid()
            == 0;
        let as_user = root.then_some(SERVER_USER);
        if root {
            // The server user must reach and own its directory.
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .map_err(|e| HarnessError::io("chmod the PostgreSQL dir", e))?;
            let (uid, gid) = user_ids(SERVER_USER)?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| HarnessError::io("chown the PostgreSQL dir", e))?;
        }
        let me = Self {
            bin,
            dir,
            port: free_port()?,
            as_user,
        };
        let data = me.data_dir();
        me.run(
            "initdb",
            &[
                "-D",
                &data.display().to_string(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        me.start_server()?;
        let admin = me.connect("postgres").await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {DB_NAME}"))
            .await
            .map_err(pg_err("CREATE DATABASE"))?;
        Ok(me)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A tokio-postgres connection string for [`DB_NAME`].
    pub fn conn_str(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={DB_NAME}",
            self.port
        )
    }

    /// Connects to `db`.
    pub async fn connect(&self, db: &str) -> Result<tokio_postgres::Client, HarnessError> {
        let conf = format!(
            "host=127.0.0.1 port={} user=postgres dbname={db}",
            self.port
        );
        let (client, conn) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_postgres::connect(&conf, NoTls),
        )
        .await
        .map_err(|_| HarnessError::Timeout {
            what: format!("connecting to the private PostgreSQL ({conf})"),
            timeout: Duration::from_secs(10),
        })?
        .map_err(pg_err(format!("connecting with {conf}")))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    /// Stops in immediate mode (no shutdown checkpoint: the next start
    /// runs crash recovery, as after a power loss).
    pub fn stop_immediate(&self) -> Result<(), HarnessError> {
        self.pg_ctl(&["stop", "-m", "immediate", "-w"])
    }

    /// Starts the server again on the same port with the same data.
    pub fn start_server(&self) -> Result<(), HarnessError> {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        self.pg_ctl(&[
            "start",
            "-w",
            "-t",
            "60",
            "-l",
            &self.log_path().display().to_string(),
            "-o",
            &opts,
        ])
    }

    /// [`Self::stop_immediate`] then [`Self::start_server`].
    pub fn restart_immediate(&self) -> Result<(), HarnessError> {
        self.stop_immediate()?;
        self.start_server()
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), HarnessError> {
        let data = self.data_dir().display().to_string();
        let mut all = vec!["-D", data.as_str()];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all)
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<(), HarnessError> {
        let path = self.bin.join(program);
        let mut cmd = match self.as_user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.arg("-u").arg(user).arg("--").arg(&path);
                c
            }
            None => Command::new(&path),
        };
        let out: Output = cmd
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .map_err(|e| HarnessError::io(format!("running {program}"), e))?;
        if out.status.success() {
            return Ok(());
        }
        Err(HarnessError::Pipeline(format!(
            "{program} {args:?} failed ({}): {}{}\n--- server log ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            log_tail(&self.log_path(), 3000)
        )))
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        // Best effort: the server may already be down.
        let _ = self.stop_immediate();
    }
}

/// `(uid, gid)` of `user` from /etc/passwd.
fn user_ids(user: &str) -> Result<(u32, u32), HarnessError> {
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|e| HarnessError::io("reading /etc/passwd", e))?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&user))
        .and_then(|f| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))
        .ok_or_else(|| {
            HarnessError::Pipeline(format!(
                "user `{user}` not found: initdb will not run as root, and the harness runs the server as `{user}`"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_postgres_user_is_found() {
        let (uid, _) = user_ids("root").unwrap();
        assert_eq!(uid, 0);
        assert!(user_ids("no-such-user-o2c").is_err());
    }
}
