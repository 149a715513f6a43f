//! The MQTT driver: the one task that polls the agent's rumqttc event loop
//! ([`drive`]), and the messages it exchanges with the sync loop ([`Link`],
//! [`Command`]).

use rumqttc::v5::{Event, EventLoop};
use tokio::sync::mpsc;

/// What the MQTT driver reports to the sync loop.
#[derive(Debug)]
pub(super) enum Link {
    /// An event of the connection (boxed: a publish is large).
    Event(Box<Event>),
    /// The connection failed or was dropped; the driver waits for
    /// [`Command::Reconnect`].
    Down(String),
}

/// What the sync loop asks of the MQTT driver.
#[derive(Debug)]
pub(super) enum Command {
    /// Drop the connection (or the attempt): it is judged dead.
    Drop,
    /// Connect again (after a [`Link::Down`]).
    Reconnect,
    /// Use this last will from the next connect on.
    Will(Box<rumqttc::v5::mqttbytes::v5::LastWill>),
}

/// Owns the MQTT event loop: polls it without interruption (a connection
/// attempt is never cancelled half-way by the sync loop's timers), forwards
/// its events, and after each failure or requested drop waits until told to
/// reconnect, so the sync loop's backoff decides when that happens.
pub(super) async fn drive(
    mut eventloop: EventLoop,
    link: mpsc::Sender<Link>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    loop {
        let reason = loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(Command::Drop) => {
                        // Unacknowledged publishes are kept for the next
                        // connection of the session.
                        eventloop.clean();
                        break "dropped: the broker did not answer in time".to_owned();
                    }
                    Some(Command::Reconnect) => {}
                    Some(Command::Will(w)) => {
                        eventloop.options.set_last_will(*w);
                    }
                    None => return,
                },
                ev = eventloop.poll() => match ev {
                    Ok(ev) => {
                        if link.send(Link::Event(Box::new(ev))).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => break e.to_string(),
                },
            }
        };
        if link.send(Link::Down(reason)).await.is_err() {
            return;
        }
        loop {
            match commands.recv().await {
                Some(Command::Reconnect) => break,
                Some(Command::Drop) => {}
                Some(Command::Will(w)) => {
                    eventloop.options.set_last_will(*w);
                }
                None => return,
            }
        }
    }
}
