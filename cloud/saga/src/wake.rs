//! In-process wake-ups of the outbox relays.
//!
//! A transaction that writes outbox rows wakes the relays of that outbox
//! after it commits ([`crate::db::Tx::wake_relay_at_commit`]). Each relay
//! holds a [`RelayWake`] registered under its outbox's schema, and every
//! relay of that schema in this process gets a stored permit, so a wake
//! that lands while a relay is publishing is not lost.
//!
//! This replaces PostgreSQL's `NOTIFY`, which serialises the commits of
//! every notifying transaction of the whole server: PostgreSQL takes one
//! lock on the notification queue at commit and holds it until the commit
//! is on disk. At saturation a quarter of the sampled backends were
//! waiting on that lock (`Lock:object` on `COMMIT`), and each hop's relay
//! started tens of milliseconds after the step's commit. A row written by
//! another process (a CLI, a second saga process) is found by the relay's
//! poll (`saga.outbox_poll_ms`): every process that writes to an outbox
//! runs that outbox's relay itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use tokio::sync::Notify;

type Registry = Mutex<HashMap<String, Vec<Weak<Notify>>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// One relay's wake-up: registered while it lives.
#[derive(Debug)]
pub(crate) struct RelayWake {
    notify: Arc<Notify>,
}

impl RelayWake {
    /// Registers a relay of the outbox in `schema`.
    pub(crate) fn register(schema: &str) -> Self {
        let notify = Arc::new(Notify::new());
        let mut reg = registry().lock().unwrap_or_else(|p| p.into_inner());
        let relays = reg.entry(schema.to_owned()).or_default();
        relays.retain(|w| w.strong_count() > 0);
        relays.push(Arc::downgrade(&notify));
        Self { notify }
    }

    /// Resolves once a commit wrote to this outbox since the last call
    /// (at once if one did meanwhile).
    pub(crate) async fn woken(&self) {
        self.notify.notified().await;
    }
}

/// Wakes every relay of the outbox in `schema` in this process.
pub(crate) fn wake(schema: &str) {
    let reg = registry().lock().unwrap_or_else(|p| p.into_inner());
    for relay in reg.get(schema).into_iter().flatten() {
        if let Some(n) = relay.upgrade() {
            n.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[test]
    fn a_wake_before_the_wait_is_kept_and_reaches_every_relay_of_the_schema() {
        let (a, b) = (
            RelayWake::register("wake_test_a"),
            RelayWake::register("wake_test_a"),
        );
        let other = RelayWake::register("wake_test_b");
        assert!(a.woken().now_or_never().is_none(), "no wake yet");
        wake("wake_test_a");
        // Both relays of the schema hold a permit, taken without waiting.
        assert!(a.woken().now_or_never().is_some(), "relay a woken");
        assert!(b.woken().now_or_never().is_some(), "relay b woken");
        // One permit each: the next wait needs a new wake.
        assert!(
            a.woken().now_or_never().is_none(),
            "a second wait needs a second wake"
        );
        assert!(
            other.woken().now_or_never().is_none(),
            "another schema's relay is not woken"
        );
    }

    #[test]
    fn a_dropped_relay_is_forgotten() {
        let gone = RelayWake::register("wake_test_c");
        drop(gone);
        let live = RelayWake::register("wake_test_c");
        let reg = registry().lock().unwrap_or_else(|p| p.into_inner());
        assert_eq!(reg["wake_test_c"].len(), 1);
        drop(reg);
        drop(live);
    }
}
