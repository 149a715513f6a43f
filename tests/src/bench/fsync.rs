//! `fsync`: what one durable SQLite commit costs on this disk.
//!
//! The agent's outbox commits each captured order before it answers the till,
//! so this is the floor under capture latency. Measured, in a temp dir on the
//! same disk as `--dir` (default: the current directory):
//! - `single_*`: `--n` (default 2000) transactions of one 512-byte row each,
//!   rusqlite in WAL mode with `synchronous=FULL` (one WAL fsync per commit);
//! - `batched_*`: 20 transactions of `--batch` (default 1000) rows each, the
//!   group-commit ceiling;
//! - baseline `raw_*`: `--n` appends of 512 bytes to a plain file, each followed
//!   by `fdatasync`: the disk's own floor, without SQLite.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rusqlite::{Connection, TransactionBehavior};

use super::{BenchArgs, BenchError, Measurement, Scenario};

/// The registry entry.
pub const SCENARIO: Scenario = Scenario {
    name: "fsync",
    about: "SQLite WAL synchronous=FULL commit rate and latency on this disk",
    run,
};

const DEFAULT_N: u64 = 2000;
const DEFAULT_BATCH: u64 = 1000;
const BATCHES: u64 = 20;
const WARMUP: u64 = 20;
const ROW_BYTES: usize = 512;

fn run(args: &BenchArgs) -> Result<Measurement, BenchError> {
    let n = args.n.unwrap_or(DEFAULT_N);
    let batch = args.batch.unwrap_or(DEFAULT_BATCH);
    if n == 0 || batch == 0 {
        return Err(BenchError::Invalid(
            "--n and --batch must be positive".into(),
        ));
    }
    let (base, tmp) = args.scratch("o2c-bench-fsync-")?;

    let mut m = Measurement::default();
    m.param("n", n);
    m.param("batch_rows", batch);
    m.param("batches", BATCHES);
    m.param("row_bytes", ROW_BYTES as u64);
    m.param("dir", base.display().to_string());

    let conn = open_db(&tmp.path().join("bench.db"))?;
    let (single, elapsed) = single_row_commits(&conn, n)?;
    m.metric("single_tx_per_s", per_second(n, elapsed));
    push_latencies(&mut m, "single", &single, Measurement::metric);

    let (batched, elapsed) = batched_commits(&conn, batch)?;
    m.metric("batched_rows_per_s", per_second(batch * BATCHES, elapsed));
    m.metric("batched_tx_p50_ms", ms(batched.value_at_quantile(0.5)));
    m.metric("batched_tx_max_ms", ms(batched.max()));

    let (raw, elapsed) = raw_fdatasync(&tmp.path().join("raw.log"), n)?;
    m.baseline("raw_fdatasync_per_s", per_second(n, elapsed));
    push_latencies(&mut m, "raw", &raw, Measurement::baseline);
    Ok(m)
}

fn open_db(path: &Path) -> Result<Connection, BenchError> {
    let conn = Connection::open(path).map_err(|e| BenchError::sqlite("opening the db", e))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
        .map_err(|e| BenchError::sqlite("enabling WAL", e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(BenchError::Invalid(format!(
            "journal_mode is {mode}, not wal"
        )));
    }
    conn.execute_batch(
        "PRAGMA synchronous=FULL;
         CREATE TABLE outbox (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL);",
    )
    .map_err(|e| BenchError::sqlite("creating the table", e))?;
    Ok(conn)
}

fn histogram() -> Result<Histogram<u64>, BenchError> {
    // Microseconds, 1 µs to 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| BenchError::Histogram(e.to_string()))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

fn per_second(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
}

fn push_latencies(
    m: &mut Measurement,
    prefix: &str,
    h: &Histogram<u64>,
    push: fn(&mut Measurement, &str, f64),
) {
    for (suffix, quantile) in [("p50", 0.5), ("p99", 0.99), ("p999", 0.999)] {
        push(
            m,
            &format!("{prefix}_{suffix}_ms"),
            ms(h.value_at_quantile(quantile)),
        );
    }
    push(m, &format!("{prefix}_max_ms"), ms(h.max()));
}

/// One row per `BEGIN IMMEDIATE … COMMIT`; returns latencies and total time.
fn single_row_commits(conn: &Connection, n: u64) -> Result<(Histogram<u64>, Duration), BenchError> {
    let payload = vec![0x5a_u8; ROW_BYTES];
    let insert = |conn: &Connection| -> Result<(), BenchError> {
        let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
            .map_err(|e| BenchError::sqlite("BEGIN IMMEDIATE", e))?;
        tx.execute("INSERT INTO outbox (payload) VALUES (?1)", [&payload])
            .map_err(|e| BenchError::sqlite("INSERT", e))?;
        tx.commit().map_err(|e| BenchError::sqlite("COMMIT", e))
    };
    for _ in 0..WARMUP {
        insert(conn)?;
    }
    let mut h = histogram()?;
    let start = Instant::now();
    for _ in 0..n {
        let t0 = Instant::now();
        insert(conn)?;
        h.saturating_record(micros(t0.elapsed()));
    }
    Ok((h, start.elapsed()))
}

/// [`BATCHES`] transactions of `batch` rows; returns per-transaction latencies.
fn batched_commits(
    conn: &Connection,
    batch: u64,
) -> Result<(Histogram<u64>, Duration), BenchError> {
    let payload = vec![0xa5_u8; ROW_BYTES];
    let mut h = histogram()?;
    let start = Instant::now();
    for _ in 0..BATCHES {
        let t0 = Instant::now();
        let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
            .map_err(|e| BenchError::sqlite("BEGIN IMMEDIATE", e))?;
        {
            let mut stmt = tx
                .prepare_cached("INSERT INTO outbox (payload) VALUES (?1)")
                .map_err(|e| BenchError::sqlite("preparing INSERT", e))?;
            for _ in 0..batch {
                stmt.execute([&payload])
                    .map_err(|e| BenchError::sqlite("INSERT", e))?;
            }
        }
        tx.commit().map_err(|e| BenchError::sqlite("COMMIT", e))?;
        h.saturating_record(micros(t0.elapsed()));
    }
    Ok((h, start.elapsed()))
}

/// Appends plus `fdatasync`, without SQLite.
fn raw_fdatasync(path: &Path, n: u64) -> Result<(Histogram<u64>, Duration), BenchError> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| BenchError::io(format!("opening {}", path.display()), e))?;
    let payload = vec![0x3c_u8; ROW_BYTES];
    let mut h = histogram()?;
    let start = Instant::now();
    for _ in 0..n {
        let t0 = Instant::now();
        file.write_all(&payload)
            .map_err(|e| BenchError::io("appending", e))?;
        file.sync_data()
            .map_err(|e| BenchError::io("fdatasync", e))?;
        h.saturating_record(micros(t0.elapsed()));
    }
    Ok((h, start.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_run_reports_every_metric() {
        let dir = tempfile::tempdir().unwrap();
        let args = BenchArgs {
            n: Some(5),
            batch: Some(10),
            dir: Some(dir.path().to_path_buf()),
        };
        let m = run(&args).unwrap();
        let names: Vec<&str> = m.metrics.iter().map(|(n, _)| n.as_str()).collect();
        for expected in [
            "single_tx_per_s",
            "single_p50_ms",
            "single_p99_ms",
            "single_p999_ms",
            "single_max_ms",
            "batched_rows_per_s",
        ] {
            assert!(names.contains(&expected), "missing {expected} in {names:?}");
        }
        assert!(m.metrics.iter().all(|(_, v)| v.is_finite() && *v > 0.0));
        assert!(m.baseline.iter().any(|(n, _)| n == "raw_fdatasync_per_s"));
        // The temp dir inside --dir is cleaned up.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn zero_n_is_refused() {
        let args = BenchArgs {
            n: Some(0),
            ..BenchArgs::default()
        };
        assert!(matches!(run(&args), Err(BenchError::Invalid(_))));
    }
}
