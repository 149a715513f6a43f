//! A TCP relay that can cut a link: stands between one agent and the MQTT
//! broker so a demo or test can take one store offline while the others
//! keep selling. Cutting drops every relayed connection and refuses new
//! ones until the link is restored.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::HarnessError;

/// A cuttable TCP relay on a loopback port.
#[derive(Debug)]
pub struct LinkProxy {
    addr: SocketAddr,
    up: Arc<watch::Sender<bool>>,
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
        let (up, _) = watch::channel(true);
        let up = Arc::new(up);
        let task = tokio::spawn(accept_loop(listener, upstream, Arc::clone(&up)));
        Ok(LinkProxy { addr, up, task })
    }

    /// The address agents connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts (`false`) or restores (`true`) the link.
    pub fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }

    /// Whether the link is up.
    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, up: Arc<watch::Sender<bool>>) {
    while let Ok((mut client, _)) = listener.accept().await {
        let mut rx = up.subscribe();
        if !*rx.borrow() {
            continue; // refused: dropping the socket closes it
        }
        tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(upstream).await else {
                return;
            };
            // A relay must not add Nagle delays of its own.
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                _ = rx.wait_for(|up| !*up) => {}
            }
        });
    }
}
