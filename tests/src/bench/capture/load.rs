//! The two load shapes of the `capture` benchmark.
//!
//! - [`closed_loop`]: one task per terminal, each with its own keep-alive
//!   connection, sends its next order as soon as the previous one is
//!   answered. After a warm-up every task waits at a barrier, so the timed
//!   part starts at once for all. Latency is send to answer.
//! - [`open_loop`]: orders are scheduled at a fixed rate, `start + i/rate`,
//!   and each is sent from its own task on an idle connection of a shared
//!   pool (a new connection is opened when none is idle), so a slow answer
//!   never delays the next send. Latency is measured from the *scheduled*
//!   time, so time spent waiting for the client (tokio's 1 ms timer, a busy
//!   core) counts against the agent: no coordinated omission.
//!
//! Every answer must be `201`; anything else, or an I/O error, is counted and
//! the first one is kept for the error message.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::agent::Terminal;
use super::http::{self, Conn};
use crate::bench::BenchError;

/// Microseconds, 1 µs to 60 s, 3 significant digits.
pub(super) fn histogram() -> Result<Histogram<u64>, BenchError> {
    Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| BenchError::Histogram(e.to_string()))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Answers that were not `201`.
#[derive(Debug, Default)]
pub(super) struct Failures {
    pub(super) count: u64,
    pub(super) first: Option<String>,
}

impl Failures {
    fn add(&mut self, what: impl FnOnce() -> String) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(what());
        }
    }

    fn merge(&mut self, other: Failures) {
        self.count += other.count;
        if self.first.is_none() {
            self.first = other.first;
        }
    }
}

/// Sends one order; `Ok(())` only for a `201` whose body names the order.
async fn post(conn: &mut Conn, request: io::Result<http::Req>) -> Result<(), String> {
    let request = request.map_err(|e| format!("building the request: {e}"))?;
    match conn.roundtrip(request).await {
        Ok(201) if conn.body().starts_with(b"{") && contains(conn.body(), b"\"order_id\"") => {
            Ok(())
        }
        Ok(status) => Err(format!(
            "{status} {}",
            String::from_utf8_lossy(&conn.body()[..conn.body().len().min(300)])
        )),
        Err(e) => Err(format!("I/O error: {e}")),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// What [`closed_loop`] measured.
#[derive(Debug)]
pub(super) struct ClosedLoop {
    /// Send-to-answer latency of the timed orders, µs.
    pub(super) latency: Histogram<u64>,
    /// `201`s: warm-up and timed.
    pub(super) warm_created: u64,
    pub(super) created: u64,
    pub(super) failures: Failures,
    /// First timed send to last timed answer.
    pub(super) elapsed: Duration,
}

struct ClosedTask {
    latency: Histogram<u64>,
    warm_created: u64,
    created: u64,
    failures: Failures,
}

/// `n` timed orders from `terminals.len()` closed-loop tills, after
/// `warmup_each` untimed orders per till. `at_start` runs once the warm-up
/// is over, just before the timed part (to take CPU and commit readings).
/// Each till numbers its timed orders from `first` (their idempotency
/// keys), so a later loop against the same agent makes new orders.
pub(super) async fn closed_loop<S>(
    addr: SocketAddr,
    terminals: &[Terminal],
    (n, first): (u64, u64),
    warmup_each: u64,
    at_start: impl FnOnce() -> S,
) -> Result<(ClosedLoop, S), BenchError> {
    let count = terminals.len() as u64;
    let barrier = Arc::new(Barrier::new(terminals.len() + 1));
    let mut tasks = JoinSet::new();
    for (i, t) in terminals.iter().enumerate() {
        let share = n / count + u64::from((i as u64) < n % count);
        let (t, barrier) = (t.clone(), Arc::clone(&barrier));
        let mut latency = histogram()?;
        tasks.spawn(async move {
            let mut failures = Failures::default();
            let mut warm_created = 0;
            let mut created = 0;
            let conn = Conn::connect(addr).await;
            if let Err(e) = &conn {
                failures.add(|| format!("connect: {e}"));
            }
            let mut conn = conn.ok();
            if let Some(c) = conn.as_mut() {
                for seq in 0..warmup_each {
                    let body = http::order_body(0, &t.id, t.no, seq);
                    let key = format!("cap-w-{}-{seq}", t.id);
                    let req = http::capture_request(addr, &t.token, &key, body);
                    match post(c, req).await {
                        Ok(()) => warm_created += 1,
                        Err(e) => failures.add(|| format!("warm-up {key}: {e}")),
                    }
                }
            }
            // Always reach the barrier, or the other tills would wait forever.
            barrier.wait().await;
            if let Some(c) = conn.as_mut() {
                for seq in first..first + share {
                    let body = http::order_body(1, &t.id, t.no, seq);
                    let key = format!("cap-a-{}-{seq}", t.id);
                    let req = http::capture_request(addr, &t.token, &key, body);
                    let t0 = Instant::now();
                    match post(c, req).await {
                        Ok(()) => {
                            latency.saturating_record(micros(t0.elapsed()));
                            created += 1;
                        }
                        Err(e) => failures.add(|| format!("{key}: {e}")),
                    }
                }
            }
            ClosedTask {
                latency,
                warm_created,
                created,
                failures,
            }
        });
    }
    barrier.wait().await;
    let reading = at_start();
    let start = Instant::now();
    let mut out = ClosedLoop {
        latency: histogram()?,
        warm_created: 0,
        created: 0,
        failures: Failures::default(),
        elapsed: Duration::ZERO,
    };
    while let Some(done) = tasks.join_next().await {
        let task = done.map_err(|e| BenchError::Invalid(format!("till task failed: {e}")))?;
        out.latency
            .add(&task.latency)
            .map_err(|e| BenchError::Histogram(e.to_string()))?;
        out.warm_created += task.warm_created;
        out.created += task.created;
        out.failures.merge(task.failures);
    }
    out.elapsed = start.elapsed();
    Ok((out, reading))
}

/// What [`open_loop`] measured.
#[derive(Debug)]
pub(super) struct OpenLoop {
    /// Scheduled send time to answer, µs (the latency a till would see).
    pub(super) latency: Histogram<u64>,
    /// Actual send to answer, µs.
    pub(super) service: Histogram<u64>,
    /// How late the client started each send against its schedule, µs.
    pub(super) send_lag: Histogram<u64>,
    pub(super) created: u64,
    pub(super) failures: Failures,
    /// Orders scheduled, and the time from the first to the last send.
    pub(super) offered: u64,
    pub(super) send_span: Duration,
    /// First scheduled send to last answer.
    pub(super) elapsed: Duration,
    /// Connections opened in all (the pool starts with one per terminal).
    pub(super) connections: u64,
}

struct Sample {
    latency: u64,
    service: u64,
    lag: u64,
    result: Result<(), String>,
}

/// `rate` orders per second for `seconds`, round-robin over `terminals`.
pub(super) async fn open_loop(
    addr: SocketAddr,
    terminals: &[Terminal],
    rate: u64,
    seconds: u64,
) -> Result<OpenLoop, BenchError> {
    let mut idle = Vec::with_capacity(terminals.len());
    for _ in terminals {
        idle.push(
            Conn::connect(addr)
                .await
                .map_err(|e| BenchError::io("connecting to the agent", e))?,
        );
    }
    let pool = Arc::new(Mutex::new(idle));
    let opened = Arc::new(AtomicU64::new(terminals.len() as u64));
    let total = rate * seconds;
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now() + Duration::from_millis(20);
    let mut tasks: JoinSet<Sample> = JoinSet::new();
    let mut last_send = start;
    for i in 0..total {
        let scheduled = start + period.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled).await;
        last_send = tokio::time::Instant::now();
        let t = &terminals[(i % terminals.len() as u64) as usize];
        let body = http::order_body(2, &t.id, t.no, i);
        let key = format!("cap-b-{}-{i}", t.id);
        let req = http::capture_request(addr, &t.token, &key, body);
        let (pool, opened) = (Arc::clone(&pool), Arc::clone(&opened));
        let scheduled = scheduled.into_std();
        tasks.spawn(async move {
            let sent = Instant::now();
            let lag = micros(sent.saturating_duration_since(scheduled));
            let taken = pool.lock().map(|mut p| p.pop()).unwrap_or(None);
            let conn = match taken {
                Some(c) => Ok(c),
                None => {
                    opened.fetch_add(1, Ordering::Relaxed);
                    Conn::connect(addr).await
                }
            };
            let result = match conn {
                Ok(mut c) => {
                    let r = post(&mut c, req).await.map_err(|e| format!("{key}: {e}"));
                    if r.is_ok()
                        && let Ok(mut p) = pool.lock()
                    {
                        p.push(c);
                    }
                    r
                }
                Err(e) => Err(format!("connect: {e}")),
            };
            let done = Instant::now();
            Sample {
                latency: micros(done.saturating_duration_since(scheduled)),
                service: micros(done.saturating_duration_since(sent)),
                lag,
                result,
            }
        });
    }
    let mut out = OpenLoop {
        latency: histogram()?,
        service: histogram()?,
        send_lag: histogram()?,
        created: 0,
        failures: Failures::default(),
        offered: total,
        send_span: last_send.saturating_duration_since(start),
        elapsed: Duration::ZERO,
        connections: 0,
    };
    while let Some(done) = tasks.join_next().await {
        let s = done.map_err(|e| BenchError::Invalid(format!("request task failed: {e}")))?;
        out.send_lag.saturating_record(s.lag);
        match s.result {
            Ok(()) => {
                out.created += 1;
                out.latency.saturating_record(s.latency);
                out.service.saturating_record(s.service);
            }
            Err(e) => out.failures.add(|| e),
        }
    }
    out.elapsed = start.elapsed();
    out.connections = opened.load(Ordering::Relaxed);
    Ok(out)
}
