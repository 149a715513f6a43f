//! [`NotifyProc`]: a running `o2c-cloud notify` (customer notifications,
//! issue 20) beside a [`crate::saga::SagaWorld`], sending to a test's own
//! SMTP server ([`crate::smtp::SmtpServer`]) and, if asked, a webhook.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::saga::{SagaSettings, cloud_command, spawn_cloud};
use crate::wait::wait_http_ok;
use crate::{ChildGuard, HarnessError, free_port};

/// The sender address of the test configs.
pub const FROM: &str = "Shop <orders@shop.test>";

/// A running notification service.
#[derive(Debug)]
pub struct NotifyProc {
    guard: ChildGuard,
    config: PathBuf,
    log: PathBuf,
    admin: SocketAddr,
}

impl NotifyProc {
    /// Writes `notify-{name}.toml` in `dir` from the world's settings, with
    /// consumer groups `{group_prefix}-notify`, sending to `smtp_url`;
    /// `extra` is appended to `[notify]`. Waits until `/readyz` is 200.
    pub async fn start(
        dir: &Path,
        name: &str,
        s: &SagaSettings,
        group_prefix: &str,
        smtp_url: &str,
        extra: &str,
    ) -> Result<Self, HarnessError> {
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let config = dir.join(format!("notify-{name}.toml"));
        let text = format!(
            "[mqtt]\nurl = \"{}\"\n\
             [kafka]\nbrokers = \"{}\"\ntopic_prefix = \"{}.\"\n{}\n\
             [postgres]\nurl = \"{}\"\n\
             [saga]\ngroup_prefix = \"{group_prefix}\"\n{}\n\
             {}\n\
             [notify]\nadmin_listen = \"{admin}\"\nsmtp_url = \"{smtp_url}\"\nfrom = \"{FROM}\"\n{extra}\n",
            s.mqtt_url, s.brokers, s.prefix, s.extra_kafka, s.pg, s.extra_saga, s.extra_tables,
        );
        std::fs::write(&config, text).map_err(|e| HarnessError::io("write notify.toml", e))?;
        let log = dir.join(format!("notify-{name}.log"));
        let guard = spawn_cloud(&["notify"], &config, &[], &log)?;
        let me = NotifyProc {
            guard,
            config,
            log,
            admin,
        };
        me.wait_ready().await?;
        Ok(me)
    }

    async fn wait_ready(&self) -> Result<(), HarnessError> {
        wait_http_ok(
            "notify /readyz",
            &format!("http://{}/readyz", self.admin),
            &self.log,
        )
        .await
    }

    /// SIGKILL.
    pub fn kill(&mut self) -> Result<(), HarnessError> {
        self.guard.kill().map(|_| ())
    }

    /// Starts it again with the same config; waits until ready.
    pub async fn restart(&mut self) -> Result<(), HarnessError> {
        let _ = self.guard.kill();
        self.guard = spawn_cloud(&["notify"], &self.config, &[], &self.log)?;
        self.wait_ready().await
    }

    /// The config file.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The log's tail, for failure messages.
    pub fn log_tail(&self) -> String {
        crate::process::log_tail(&self.log, 4000)
    }

    /// `o2c-cloud notify dead`: its stdout.
    pub fn dead_letters(&self) -> Result<String, HarnessError> {
        let (code, out) = cloud_command(&self.config, &["notify", "dead"])?;
        if code != 0 {
            return Err(HarnessError::Pipeline(format!(
                "o2c-cloud notify dead exited {code}: {out}"
            )));
        }
        Ok(out)
    }
}
