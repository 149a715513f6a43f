//! A simulated agent closer to the real one than [`super::agents`]: its own
//! MQTT connection, one batch in flight, a send schedule (one frame per
//! `interval` at most, 0 for "as fast as acks come"), and a **resend** of
//! the frame in flight after `ack_timeout`, as the real sync window does.
//! The resend matters under a herd: the ingest sheds frames beyond its
//! `max_inflight_frames` without acking them, and only a resend recovers.
//!
//! Used by the `herd` scenario and the quota (`flood`) world.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use o2c_protocol::Ack;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};

use super::agents::AgentError;
use super::workload::AgentLoad;

/// Largest MQTT packet either way.
const MAX_PACKET_BYTES: u32 = 4 * 1024 * 1024;

/// How an agent sends.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pace {
    /// At most one frame per `interval` (zero: next frame at once on ack).
    pub(super) interval: Duration,
    /// Resend the frame in flight after this long without its ack.
    pub(super) ack_timeout: Duration,
}

/// What one agent saw.
#[derive(Debug)]
pub(super) struct AgentRun {
    /// When it was connected and subscribed.
    pub(super) started: Instant,
    /// When its last frame was acked.
    pub(super) finished: Instant,
    /// First publish → ack, per frame, in microseconds.
    pub(super) ack_micros: Vec<u64>,
    /// Events acked.
    pub(super) events_acked: u64,
    /// Frames sent again after `ack_timeout`.
    pub(super) resends: u64,
    /// Acks for frames already acked (ignored).
    pub(super) stale_acks: u64,
    /// Failed connection attempts before the first subscription.
    pub(super) connect_retries: u64,
    /// Connections lost after it.
    pub(super) reconnects: u64,
}

/// Connection retries with the real agent's kind of backoff (100 ms
/// doubling to 5 s), giving up after two minutes of failures.
#[derive(Debug)]
struct Retry {
    count: u64,
    backoff: Duration,
    since: Option<Instant>,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            count: 0,
            backoff: Duration::from_millis(100),
            since: None,
        }
    }
}

impl Retry {
    async fn wait(&mut self, e: rumqttc::v5::ConnectionError) -> Result<(), AgentError> {
        let since = *self.since.get_or_insert_with(Instant::now);
        if since.elapsed() > Duration::from_secs(120) {
            return Err(e.into());
        }
        self.count += 1;
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(Duration::from_secs(5));
        Ok(())
    }
}

/// Connects as agent `idx` of `loads`, subscribes its acks topic, sends
/// `frames` in order with `pace`, and returns once the last one is acked.
pub(super) async fn run_agent(
    addr: (String, u16),
    client_id: String,
    loads: Arc<Vec<AgentLoad>>,
    idx: usize,
    frames: Range<usize>,
    pace: Pace,
) -> Result<AgentRun, AgentError> {
    let a = &loads[idx];
    let mut opts = MqttOptions::new(client_id, addr.0, addr.1);
    opts.set_keep_alive(Duration::from_secs(60));
    opts.set_clean_start(true);
    opts.set_max_packet_size(Some(MAX_PACKET_BYTES));
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    opts.set_network_options(net);
    let (client, mut events) = AsyncClient::new(opts, 16);
    let subscribe = || {
        client
            .try_subscribe(a.acks_topic.clone(), QoS::AtLeastOnce)
            .map_err(|e| AgentError::Client(e.to_string()))
    };
    // Connect as the real agent does: retry with backoff until the broker
    // answers (a herd overflows the broker's listen backlog), and subscribe
    // on every connection (clean start).
    let mut retries = Retry::default();
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => subscribe()?,
            Ok(Event::Incoming(Packet::SubAck(_))) => break,
            Ok(_) => {}
            Err(e) => retries.wait(e).await?,
        }
    }
    let started = Instant::now();
    let mut run = AgentRun {
        started,
        finished: started,
        ack_micros: Vec::with_capacity(frames.len()),
        events_acked: 0,
        resends: 0,
        stale_acks: 0,
        connect_retries: std::mem::take(&mut retries).count,
        reconnects: 0,
    };
    let publish = |i: usize| {
        client
            .try_publish(
                a.events_topic.clone(),
                QoS::AtLeastOnce,
                false,
                a.frames[i].payload.clone(),
            )
            .map_err(|e| AgentError::Client(e.to_string()))
    };
    let bad = |what: String| AgentError::BadAck {
        agent: a.agent.to_string(),
        what,
    };
    let mut next = frames.start;
    // The frame in flight: index, first publish, last publish.
    let mut in_flight: Option<(usize, Instant, Instant)> = None;
    let mut due = started;
    while next < frames.end || in_flight.is_some() {
        let now = Instant::now();
        if in_flight.is_none() && now >= due {
            publish(next)?;
            in_flight = Some((next, now, now));
            due += pace.interval;
            continue;
        }
        let wake = match in_flight {
            Some((_, _, last)) => last + pace.ack_timeout,
            None => due,
        };
        let ev = tokio::select! {
            ev = events.poll() => match ev {
                Ok(ev) => ev,
                Err(e) => {
                    // Reconnects on the next poll; the frame in flight is
                    // resent on its ack timeout.
                    run.reconnects += 1;
                    retries.wait(e).await?;
                    continue;
                }
            },
            () = tokio::time::sleep_until(wake.into()) => {
                if let Some((i, first, last)) = in_flight
                    && Instant::now() >= last + pace.ack_timeout
                {
                    publish(i)?;
                    run.resends += 1;
                    in_flight = Some((i, first, Instant::now()));
                }
                continue;
            }
        };
        let p = match ev {
            Event::Incoming(Packet::Publish(p)) => p,
            Event::Incoming(Packet::ConnAck(_)) => {
                retries = Retry::default();
                subscribe()?;
                continue;
            }
            Event::Incoming(Packet::PubAck(ack)) => match ack.reason {
                PubAckReason::Success | PubAckReason::NoMatchingSubscribers => continue,
                other => return Err(AgentError::Refused(other)),
            },
            _ => continue,
        };
        if p.topic.as_ref() != a.acks_topic.as_bytes() {
            return Err(bad("a message on a topic it did not subscribe".into()));
        }
        let ack = Ack::decode(&p.payload).map_err(|e| bad(format!("undecodable ack: {e}")))?;
        if let Some(r) = ack.rejected.first() {
            return Err(bad(format!("seq {} rejected: {}", r.seq, r.code)));
        }
        let Some((i, first, _)) = in_flight else {
            run.stale_acks += 1;
            continue;
        };
        let frame = &a.frames[i];
        let through = ack.through_seq.get();
        if through < frame.through_seq {
            run.stale_acks += 1;
            continue;
        }
        if through > frame.through_seq {
            return Err(bad(format!(
                "ack through seq {through}, but only {} was sent",
                frame.through_seq
            )));
        }
        let now = Instant::now();
        run.ack_micros
            .push(u64::try_from(now.duration_since(first).as_micros()).unwrap_or(u64::MAX));
        run.events_acked += frame.through_seq - frame.first_seq + 1;
        run.finished = now;
        in_flight = None;
        next += 1;
    }
    let _ = client.try_disconnect();
    Ok(run)
}
