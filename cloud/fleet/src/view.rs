//! The view as served (`GET /v1/fleet`) and printed (`o2c-cloud fleet`):
//! [`FleetView`] is the JSON, [`render_text`] the table. Pure.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::core::{Row, Status, Summary};

/// `GET /v1/fleet`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetView {
    /// When the view was computed (Unix ms, the service's clock).
    pub generated_at_ms: i64,
    /// When the service started (offline marks retained before it have no
    /// exact time).
    pub view_started_at_ms: i64,
    /// Whether the service is subscribed to the broker now (a view whose
    /// service lost the broker is not current).
    pub broker_connected: bool,
    /// Counts.
    pub summary: Summary,
    /// One row per agent, worst first.
    pub agents: Vec<AgentView>,
}

/// One agent: its row and whether its store is open now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentView {
    /// The row.
    #[serde(flatten)]
    pub row: Row,
    /// Whether its store is open now (`[fleet.hours]`, `[fleet.stores]`).
    pub store_open: bool,
    /// Milliseconds offline or silent (0 when online).
    pub down_ms: u64,
}

/// A duration, short: `850ms`, `42s`, `3m12s`, `5h03m`, `2d04h`.
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        _ if ms < 1000 => format!("{ms}ms"),
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

fn when(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .ok()
        .and_then(|t| t.round(jiff::Unit::Second).ok())
        .map_or_else(|| "?".to_owned(), |t| t.to_string())
}

fn bytes(b: u64) -> String {
    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;
    if b >= GIB {
        format!("{:.1}G", b as f64 / GIB as f64)
    } else {
        format!("{}M", b / MIB)
    }
}

/// The table, one line per agent (worst first), then the counts.
pub fn render_text(v: &FleetView) -> String {
    let mut out = String::new();
    let header = [
        "STORE", "AGENT", "STATUS", "SINCE", "BACKLOG", "OLDEST", "LAG", "REJECTED", "DISK",
        "VERSION",
    ];
    let mut lines: Vec<[String; 10]> = vec![header.map(str::to_owned)];
    for a in &v.agents {
        let r = &a.row;
        let status = match (r.status, a.store_open) {
            (Status::Online, _) => "online".to_owned(),
            (s, true) => s.as_str().to_owned(),
            (s, false) => format!("{} (closed)", s.as_str()),
        };
        let since = match r.since_ms {
            Some(t) => format!(
                "{}{} ({} ago)",
                if r.since_exact { "" } else { "before " },
                when(t),
                duration(
                    a.down_ms
                        .max(u64::try_from(v.generated_at_ms - t).unwrap_or(0))
                )
            ),
            None => "-".to_owned(),
        };
        let opt = |x: Option<u64>| x.map_or_else(|| "-".to_owned(), duration);
        lines.push([
            r.store_id.to_string(),
            r.agent_id.to_string(),
            status,
            since,
            r.pending_events.to_string(),
            opt(r.oldest_pending_age_ms),
            opt(r.ingest_lag_ms),
            r.rejected_events.to_string(),
            r.disk_free_bytes.map_or_else(|| "-".to_owned(), bytes),
            r.agent_version.clone(),
        ]);
    }
    let mut widths = [0usize; 10];
    for l in &lines {
        for (w, c) in widths.iter_mut().zip(l) {
            *w = (*w).max(c.chars().count());
        }
    }
    for l in &lines {
        let mut line = String::new();
        for (i, (c, w)) in l.iter().zip(widths).enumerate() {
            if i + 1 == l.len() {
                line.push_str(c);
            } else {
                let _ = write!(line, "{c:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let s = &v.summary;
    let _ = writeln!(
        out,
        "{} agents: {} online, {} stale, {} offline; {} events pending{}",
        s.agents,
        s.online,
        s.stale,
        s.offline,
        s.pending_events,
        if v.broker_connected {
            ""
        } else {
            " (the fleet service is not connected to the broker: figures may be old)"
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::FleetTable;
    use o2c_protocol::health::{AgentState, Health, OfflineReason};
    use o2c_protocol::{AgentId, StoreId};

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(42_000), "42s");
        assert_eq!(duration(192_000), "3m12s");
        assert_eq!(duration(5 * 3_600_000 + 180_000), "5h03m");
        assert_eq!(duration(2 * 86_400_000 + 4 * 3_600_000), "2d04h");
    }

    #[test]
    fn a_table_line_per_agent_worst_first() {
        let t0 = 1_764_000_000_000;
        let mut t = FleetTable::new(3, t0);
        let h = Health {
            schema_version: 1,
            store_id: StoreId::new("S001").unwrap(),
            agent_id: AgentId::new("S001-A1").unwrap(),
            state: AgentState::Online,
            reason: None,
            sent_at_ms: t0,
            agent_version: "0.1.0".into(),
            heartbeat_secs: 30,
            connected_since_ms: Some(t0),
            pending_events: 0,
            oldest_pending_age_ms: None,
            last_acked_seq: 1,
            rejected_events: 0,
            catalog_version: None,
            disk_free_bytes: Some(3 << 30),
            ingest_lag_ms: Some(12),
            last_ack_at_ms: None,
        };
        let topic = |a: &str| format!("o2c/v1/stores/S001/agents/{a}/health");
        t.handle_message(&topic("S001-A1"), &h.encode().unwrap(), false, t0)
            .unwrap();
        let mut b = h.clone();
        b.agent_id = AgentId::new("S001-A2").unwrap();
        let b = b.offline(OfflineReason::Shutdown, t0);
        t.handle_message(&topic("S001-A2"), &b.encode().unwrap(), false, t0)
            .unwrap();
        let now = t0 + 65_000;
        let rows = t.rows(now);
        let v = FleetView {
            generated_at_ms: now,
            view_started_at_ms: t0,
            broker_connected: true,
            summary: Summary::of(&rows),
            agents: rows
                .into_iter()
                .map(|row| AgentView {
                    down_ms: row.down_ms(now),
                    row,
                    store_open: true,
                })
                .collect(),
        };
        let text = render_text(&v);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("STORE"), "{text}");
        assert!(
            lines[1].contains("S001-A2") && lines[1].contains("offline"),
            "{text}"
        );
        assert!(lines[1].contains("(1m05s ago)"), "{text}");
        assert!(
            lines[2].contains("S001-A1") && lines[2].contains("online"),
            "{text}"
        );
        assert!(
            lines[2].contains("12ms") && lines[2].contains("3.0G"),
            "{text}"
        );
        assert_eq!(
            lines[3],
            "2 agents: 1 online, 0 stale, 1 offline; 0 events pending"
        );
        // The JSON reads back.
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(serde_json::from_str::<FleetView>(&json).unwrap(), v);
    }
}
