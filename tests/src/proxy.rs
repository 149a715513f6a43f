//! A TCP relay that can cut a link: stands between one agent and the MQTT
//! broker so a demo or test can take one store offline while the others
//! keep selling.
//!
//! Two faults, as [`LinkMode`]s:
//! - [`LinkMode::Cut`] drops every relayed connection (both ends see the
//!   close at once) and refuses new ones until the link is restored;
//! - [`LinkMode::Blackhole`] is a silent partition: every socket stays
//!   open, nothing is forwarded either way, nobody is told. A connection
//!   that lived through a blackhole stays silent for good, even after the
//!   link is back (as a real TCP connection stays stuck in its retransmit
//!   backoff for long after a partition heals); connections made after the
//!   heal are relayed normally. Connections accepted during the blackhole
//!   are held open and silent too.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::HarnessError;

/// The state of a [`LinkProxy`]'s link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    /// Relaying.
    Up,
    /// Cut: connections closed, new ones refused.
    Cut,
    /// Silent partition: sockets open, nothing forwarded.
    Blackhole,
}

/// A cuttable TCP relay on a loopback port.
#[derive(Debug)]
pub struct LinkProxy {
    addr: SocketAddr,
    mode: Arc<watch::Sender<LinkMode>>,
    task: tokio::task::JoinHandle<()>,
}

impl LinkProxy {
    /// Relays `127.0.0.1:{free port}` to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Result<Self, HarnessError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| HarnessError::io("bind proxy", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| HarnessError::io("proxy addr", e))?;
        let (mode, _) = watch::channel(LinkMode::Up);
        let mode = Arc::new(mode);
        let task = tokio::spawn(accept_loop(listener, upstream, Arc::clone(&mode)));
        Ok(LinkProxy { addr, mode, task })
    }

    /// The address agents connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts (`false`) or restores (`true`) the link.
    pub fn set_up(&self, up: bool) {
        self.set_mode(if up { LinkMode::Up } else { LinkMode::Cut });
    }

    /// Puts the link in `mode`.
    pub fn set_mode(&self, mode: LinkMode) {
        self.mode.send_replace(mode);
    }

    /// The link's mode.
    pub fn mode(&self) -> LinkMode {
        *self.mode.borrow()
    }

    /// Whether the link is up.
    pub fn is_up(&self) -> bool {
        self.mode() == LinkMode::Up
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.task.abort();
        // Ends every connection task (each waits on this channel).
        self.mode.send_replace(LinkMode::Cut);
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    mode: Arc<watch::Sender<LinkMode>>,
) {
    while let Ok((client, _)) = listener.accept().await {
        let rx = mode.subscribe();
        let now = *rx.borrow();
        match now {
            LinkMode::Cut => continue, // refused: dropping the socket closes it
            LinkMode::Blackhole => {
                tokio::spawn(hold_silent(rx, client, None));
            }
            LinkMode::Up => {
                tokio::spawn(relay(rx, client, upstream));
            }
        }
    }
}

async fn relay(mut rx: watch::Receiver<LinkMode>, mut client: TcpStream, upstream: SocketAddr) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    // A relay must not add Nagle delays of its own.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let blackholed = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
        m = rx.wait_for(|m| *m != LinkMode::Up) => m.is_ok_and(|m| *m == LinkMode::Blackhole),
    };
    if blackholed {
        // Whatever the copy had read and not written is lost, as packets
        // are in a partition; the connection never carries a byte again.
        hold_silent(rx, client, Some(server)).await;
    }
}

/// Keeps the sockets open and silent until the link is cut (or the proxy
/// dropped), never reading or writing.
async fn hold_silent(
    mut rx: watch::Receiver<LinkMode>,
    client: TcpStream,
    server: Option<TcpStream>,
) {
    let _ = rx.wait_for(|m| *m == LinkMode::Cut).await;
    drop((client, server));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn echoes(s: &mut TcpStream) -> bool {
        if s.write_all(b"ping").await.is_err() {
            return false;
        }
        let mut buf = [0u8; 4];
        matches!(
            tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut buf)).await,
            Ok(Ok(_))
        )
    }

    /// A blackholed connection stays open and silent, also after the heal;
    /// a connection made after the heal works.
    #[tokio::test]
    async fn a_blackhole_silences_old_connections_for_good() {
        let proxy = LinkProxy::start(echo_server().await).await.unwrap();
        let mut before = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(echoes(&mut before).await);
        proxy.set_mode(LinkMode::Blackhole);
        assert!(!echoes(&mut before).await, "nothing comes back");
        let mut during = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(!echoes(&mut during).await, "a new connection is silent too");
        proxy.set_mode(LinkMode::Up);
        assert!(!echoes(&mut before).await, "still silent after the heal");
        let mut after = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(echoes(&mut after).await);
        // Open all along: no close was ever seen.
        let mut buf = [0u8; 1];
        assert!(
            tokio::time::timeout(Duration::from_millis(100), before.read(&mut buf))
                .await
                .is_err()
        );
    }
}
