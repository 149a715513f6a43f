//! A TCP relay that can cut, silence or slow a link: stands between one
//! agent and the MQTT broker (or the cloud and Kafka, or the saga and the
//! processor) so a demo or test can take one store offline while the
//! others keep selling.
//!
//! Three faults, as [`LinkMode`]s:
//! - [`LinkMode::Cut`] drops every relayed connection (both ends see the
//!   close at once) and refuses new ones until the link is restored;
//! - [`LinkMode::Blackhole`] is a silent partition: every socket stays
//!   open, nothing is forwarded either way, nobody is told. A connection
//!   that lived through a blackhole stays silent for good, even after the
//!   link is back (as a real TCP connection stays stuck in its retransmit
//!   backoff for long after a partition heals); connections made after the
//!   heal are relayed normally. Connections accepted during the blackhole
//!   are held open and silent too.
//! - [`LinkMode::Jitter`] delays every chunk read from either side by its
//!   own random delay, `base_ms ± spread_ms`, and delivers the chunks in the
//!   order they were read. That is what an application sees of a network
//!   that delays and reorders packets beneath TCP: a segment that arrives
//!   early waits in the receiver's buffer for the ones before it (head-of-line
//!   blocking), so bytes keep their order and the delays bunch up. This
//!   kernel has no netem, so this is how delay (200 ± 100 ms) and reordering
//!   (0 to 40 ms per segment, each on its own) are made.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

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
    /// Relaying, each chunk delayed by `base_ms ± spread_ms` (uniform), in
    /// order.
    Jitter {
        /// The mean delay.
        base_ms: u32,
        /// How far one chunk's delay may stray from it, either way.
        spread_ms: u32,
    },
}

impl LinkMode {
    /// Delay and reordering as the issue names them: 200 ± 100 ms.
    pub const DELAY: LinkMode = LinkMode::Jitter {
        base_ms: 200,
        spread_ms: 100,
    };
    /// Reordering: each segment on its own delay of 0 to 40 ms.
    pub const REORDER: LinkMode = LinkMode::Jitter {
        base_ms: 20,
        spread_ms: 20,
    };

    /// Whether the link carries bytes.
    fn relays(self) -> bool {
        matches!(self, LinkMode::Up | LinkMode::Jitter { .. })
    }

    /// The delay of one chunk read now.
    fn sample_delay(self) -> Duration {
        match self {
            LinkMode::Jitter { base_ms, spread_ms } => {
                let lo = base_ms.saturating_sub(spread_ms);
                let hi = base_ms.saturating_add(spread_ms);
                Duration::from_millis(u64::from(rand::random_range(lo..=hi)))
            }
            _ => Duration::ZERO,
        }
    }
}

/// A faultable TCP relay on a local port.
#[derive(Debug)]
pub struct LinkProxy {
    addr: SocketAddr,
    mode: Arc<watch::Sender<LinkMode>>,
    task: tokio::task::JoinHandle<()>,
}

impl LinkProxy {
    /// Relays `127.0.0.1:{free port}` to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Result<Self, HarnessError> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), upstream).await
    }

    /// Relays `bind` (port 0: a free one) to `upstream`.
    pub async fn start_on(bind: SocketAddr, upstream: SocketAddr) -> Result<Self, HarnessError> {
        let listener = TcpListener::bind(bind)
            .await
            .map_err(|e| HarnessError::io(format!("bind proxy on {bind}"), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| HarnessError::io("proxy addr", e))?;
        let (mode, _) = watch::channel(LinkMode::Up);
        let mode = Arc::new(mode);
        let task = tokio::spawn(accept_loop(listener, upstream, Arc::clone(&mode)));
        Ok(LinkProxy { addr, mode, task })
    }

    /// The address clients connect to.
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
            LinkMode::Up | LinkMode::Jitter { .. } => {
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
    let blackholed = {
        let (cr, cw) = client.split();
        let (sr, sw) = server.split();
        // Ends at the first error either way, or when both sides closed.
        let (up, down) = (rx.clone(), rx.clone());
        let both = async { tokio::try_join!(pump(cr, sw, up), pump(sr, cw, down)) };
        tokio::select! {
            _ = both => false,
            m = rx.wait_for(|m| !m.relays()) => m.is_ok_and(|m| *m == LinkMode::Blackhole),
        }
    };
    if blackholed {
        // Whatever was read and not written is lost, as packets are in a
        // partition; the connection never carries a byte again.
        hold_silent(rx, client, Some(server)).await;
    }
}

/// Chunks a pump may hold in flight (delayed) before it stops reading.
const IN_FLIGHT: usize = 256;

/// Relays `src` to `dst` until `src` closes (then closes `dst`'s write
/// side) or either fails. Each chunk is due at its read time plus the
/// link's delay then, and never before the chunk read before it.
async fn pump(
    mut src: ReadHalf<'_>,
    mut dst: WriteHalf<'_>,
    mode: watch::Receiver<LinkMode>,
) -> std::io::Result<()> {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT);
    let read = async move {
        let mut last = Instant::now();
        loop {
            let mut buf = vec![0u8; 16 * 1024];
            let n = src.read(&mut buf).await?;
            if n == 0 {
                return Ok::<(), std::io::Error>(());
            }
            buf.truncate(n);
            let due = (Instant::now() + mode.borrow().sample_delay()).max(last);
            last = due;
            if tx.send((due, buf)).await.is_err() {
                return Ok(());
            }
        }
    };
    let write = async move {
        while let Some((due, buf)) = rx.recv().await {
            if due > Instant::now() {
                tokio::time::sleep_until(due).await;
            }
            dst.write_all(&buf).await?;
        }
        dst.shutdown().await
    };
    tokio::try_join!(read, write).map(|_| ())
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

    /// Under jitter every byte still arrives, in order, each chunk no
    /// sooner than the smallest delay allows; back up, no delay is added.
    #[tokio::test]
    async fn jitter_delays_but_keeps_the_byte_order() {
        let proxy = LinkProxy::start(echo_server().await).await.unwrap();
        proxy.set_mode(LinkMode::Jitter {
            base_ms: 30,
            spread_ms: 20,
        });
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        let sent: Vec<u8> = (0..200u16).flat_map(|i| i.to_be_bytes()).collect();
        let t0 = Instant::now();
        for chunk in sent.chunks(8) {
            s.write_all(chunk).await.unwrap();
        }
        let mut got = vec![0u8; sent.len()];
        tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, sent, "every byte, in order");
        // Both ways at least 10 ms each.
        assert!(
            t0.elapsed() >= Duration::from_millis(20),
            "{:?}",
            t0.elapsed()
        );
        proxy.set_mode(LinkMode::Up);
        assert!(echoes(&mut s).await, "the same connection relays on");
    }
}
