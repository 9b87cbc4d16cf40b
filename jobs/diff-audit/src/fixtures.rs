//! The shipped fixtures (`fixtures/diff-audit/`): the `audit` table's EU
//! and US copies as Parquet, with one planted difference of each kind the
//! snapshot compare tells apart, and `truth.json` listing them (the tests
//! and the shipped schedule's first run are checked against it). The
//! tenants' home regions are [`HOMES`], as in
//! `policies/diff-audit/tenants.yaml`.
//! Deterministic: `gen-diff-audit-fixtures DIR` writes the same bytes.

use std::path::Path;

use polars::prelude::*;
use serde::Serialize;

/// One planted difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Planted {
    pub tenant: String,
    pub id: i64,
    pub reason: &'static str,
    /// Missing: the copy without the row; duplicate: the copy with two.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub side: Option<&'static str>,
    pub what: &'static str,
}

/// One row: tenant, id, action, note, amount, at (µs since the epoch).
type Row = (String, i64, String, Option<String>, i64, i64);

const TENANTS: [&str; 3] = ["acme", "globex", "initech"];
/// Each tenant's home region (the shipped tenants file says the same).
pub const HOMES: [(&str, &str); 3] = [("acme", "EU"), ("globex", "US"), ("initech", "EU")];
const ACTIONS: [&str; 4] = ["export", "login", "read", "write"];
/// 2026-11-02T00:00:00Z in µs.
const START: i64 = 1_793_577_600_000_000;

fn rows() -> Vec<Row> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..2_000)
        .map(|i| {
            let tenant = TENANTS[(next() % 3) as usize].to_string();
            let action = ACTIONS[(next() % 4) as usize].to_string();
            // Microsecond timestamps, so a copy that keeps milliseconds shows.
            let at = START + i * 61_000_123 + (next() % 1000) as i64;
            (
                tenant,
                10_000 + i,
                action,
                Some("ok".into()),
                (next() % 5_000) as i64,
                at,
            )
        })
        .collect()
}

/// Both copies and what differs between them.
pub fn copies() -> (Vec<Row>, Vec<Row>, Vec<Planted>) {
    let mut eu = rows();
    let mut us = eu.clone();
    let mut planted = Vec::new();
    let mut plant = |row: &Row, reason, side, what| {
        planted.push(Planted {
            tenant: row.0.clone(),
            id: row.1,
            reason,
            side,
            what,
        });
    };
    us[100].4 += 1;
    plant(&us[100], "mismatch", None, "amount changed");
    us[200].3 = Some(String::new());
    eu[200].3 = None;
    plant(&us[200], "mismatch", None, "NULL in eu, empty string in us");
    us[300].5 = us[300].5 / 1000 * 1000;
    plant(
        &us[300],
        "mismatch",
        None,
        "timestamp truncated to milliseconds in us",
    );
    eu[400].3 = Some("caf\u{e9}".into());
    us[400].3 = Some("cafe\u{301}".into());
    plant(&us[400], "mismatch", None, "note NFC in eu, NFD in us");
    plant(&us[500], "missing", Some("us"), "deleted in us");
    plant(&us[600], "missing", Some("us"), "deleted in us");
    // In the US copy only: for an EU tenant a write in the wrong region,
    // for a US tenant replication that has not reached the EU yet.
    let first_of = |rows: &[Row], from: usize, tenant: &str| {
        (from..rows.len())
            .find(|&i| rows[i].0 == tenant)
            .unwrap_or(from)
    };
    let foreign = first_of(&eu, 700, "acme");
    plant(
        &eu[foreign],
        "cross-region-write",
        Some("us"),
        "acme (EU) written in us only",
    );
    let lagging = first_of(&eu, 900, "globex");
    plant(
        &eu[lagging],
        "missing",
        Some("eu"),
        "globex (US) not yet in eu",
    );
    plant(&us[800], "duplicate", Some("us"), "written twice in us");
    let duplicate = us[800].clone();
    us.push(duplicate);
    let (foreign_id, lagging_id) = (eu[foreign].1, eu[lagging].1);
    eu.retain(|r| r.1 != foreign_id && r.1 != lagging_id);
    us.retain(|r| r.1 != 10_500 && r.1 != 10_600);
    planted.sort_by(|a, b| (&a.tenant, a.id).cmp(&(&b.tenant, b.id)));
    (eu, us, planted)
}

fn frame(rows: &[Row]) -> PolarsResult<DataFrame> {
    let at = Series::new("at".into(), rows.iter().map(|r| r.5).collect::<Vec<_>>()).cast(
        &DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)),
    )?;
    DataFrame::new_infer_height(vec![
        Column::new(
            "tenant".into(),
            rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        ),
        Column::new("id".into(), rows.iter().map(|r| r.1).collect::<Vec<_>>()),
        Column::new(
            "action".into(),
            rows.iter().map(|r| r.2.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "note".into(),
            rows.iter().map(|r| r.3.as_deref()).collect::<Vec<_>>(),
        ),
        Column::new(
            "amount".into(),
            rows.iter().map(|r| r.4).collect::<Vec<_>>(),
        ),
        at.into(),
    ])
}

/// Writes `eu/audit.parquet`, `us/audit.parquet` and `truth.json` under
/// `dir`.
pub fn generate(dir: &Path) -> Result<Vec<Planted>, String> {
    let (eu, us, planted) = copies();
    for (side, rows) in [("eu", &eu), ("us", &us)] {
        let folder = dir.join(side);
        std::fs::create_dir_all(&folder).map_err(|err| format!("{}: {err}", folder.display()))?;
        let path = folder.join("audit.parquet");
        let mut frame = frame(rows).map_err(|err| err.to_string())?;
        let file =
            std::fs::File::create(&path).map_err(|err| format!("{}: {err}", path.display()))?;
        ParquetWriter::new(file)
            .finish(&mut frame)
            .map_err(|err| format!("{}: {err}", path.display()))?;
    }
    let truth = serde_json::to_string_pretty(&planted).map_err(|err| err.to_string())?;
    std::fs::write(dir.join("truth.json"), truth + "\n").map_err(|err| err.to_string())?;
    Ok(planted)
}

/// A pair of mirrored Debezium streams to generate: `keys` rows created
/// `step_ms` apart from `start_ms` in their origin copy, each mirrored to
/// the other after `delay_ms(i)`, every `update_every`th (0: none) updated
/// 30 s later (mirrored too), with planted differences. The origin is the
/// left copy, or with `home_first` the tenant's home ([`HOMES`]; left is
/// EU, right US), as tenants write where they live.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    pub table: &'static str,
    pub keys: i64,
    pub start_ms: i64,
    pub step_ms: i64,
    pub delay_ms: fn(i64) -> i64,
    pub update_every: i64,
    pub home_first: bool,
    /// Rows mirrored after this delay instead (late).
    pub late: Vec<(i64, i64)>,
    /// Rows never mirrored.
    pub missing: Vec<i64>,
    /// Rows mirrored with another amount.
    pub mismatch: Vec<i64>,
    /// Rows created in the right copy only (numbered from `keys` on).
    pub right_only: Vec<i64>,
    /// Rows of left-homed tenants created in the right copy first and
    /// mirrored to the left: cross-region writes.
    pub right_first: Vec<i64>,
}

/// Whether `tenant` is homed in the right (US) copy's region.
fn homed_right(tenant: &str) -> bool {
    HOMES
        .iter()
        .any(|(t, region)| *t == tenant && *region == "US")
}

/// One event line and its source time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub ts_ms: i64,
    pub line: String,
}

/// The key of stream row `i`.
pub fn stream_key(i: i64) -> (&'static str, i64) {
    (TENANTS[(i % 3) as usize], 20_000 + i)
}

fn event(table: &str, op: &str, i: i64, amount: i64, ts_ms: i64) -> Event {
    let (tenant, id) = stream_key(i);
    let row = serde_json::json!({"tenant": tenant, "id": id, "action": ACTIONS[(i % 4) as usize], "amount": amount});
    let (before, after) = match op {
        "d" => (row, serde_json::Value::Null),
        _ => (serde_json::Value::Null, row),
    };
    let line = serde_json::json!({
        "before": before,
        "after": after,
        "op": op,
        "source": {"connector": "postgresql", "db": "audit", "schema": "public", "table": table, "ts_ms": ts_ms},
        "ts_ms": ts_ms + 5,
    });
    Event {
        ts_ms,
        line: line.to_string(),
    }
}

/// Both streams in source-time order, and the planted differences.
pub fn mirrored_streams(plan: &StreamPlan) -> (Vec<Event>, Vec<Event>, Vec<Planted>) {
    let (mut left, mut right, mut planted) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..plan.keys {
        let created = plan.start_ms + i * plan.step_ms;
        let amount = 100 + i;
        let (tenant, id) = stream_key(i);
        let mut plant = |reason, side, what| {
            planted.push(Planted {
                tenant: tenant.into(),
                id,
                reason,
                side,
                what,
            })
        };
        let right_first = plan.right_first.contains(&i) || (plan.home_first && homed_right(tenant));
        if plan.right_first.contains(&i) && !homed_right(tenant) {
            plant(
                "cross-region-write",
                Some("us"),
                "written in the US mirror first",
            );
        }
        // (origin, mirror, the mirror's name)
        let (origin, mirror, mirror_name) = match right_first {
            true => (&mut right, &mut left, "eu"),
            false => (&mut left, &mut right, "us"),
        };
        origin.push(event(plan.table, "c", i, amount, created));
        let delay = match plan.late.iter().find(|(k, _)| *k == i) {
            Some((_, delay)) => {
                plant("late", None, "mirrored after the lag window");
                *delay
            }
            None => (plan.delay_ms)(i),
        };
        if plan.missing.contains(&i) {
            plant("missing", Some(mirror_name), "never mirrored");
            continue;
        }
        let mirrored = if plan.mismatch.contains(&i) {
            plant("mismatch", None, "mirrored with another amount");
            amount + 1
        } else {
            amount
        };
        mirror.push(event(plan.table, "c", i, mirrored, created + delay));
        if plan.update_every > 0 && i % plan.update_every == 5 && !plan.mismatch.contains(&i) {
            let updated = created + 30_000;
            origin.push(event(plan.table, "u", i, amount * 2, updated));
            mirror.push(event(
                plan.table,
                "u",
                i,
                amount * 2,
                updated + (plan.delay_ms)(i),
            ));
        }
    }
    for &i in &plan.right_only {
        let (tenant, id) = stream_key(i);
        planted.push(match homed_right(tenant) {
            true => Planted {
                tenant: tenant.into(),
                id,
                reason: "missing",
                side: Some("eu"),
                what: "created in the right mirror only",
            },
            false => Planted {
                tenant: tenant.into(),
                id,
                reason: "cross-region-write",
                side: Some("us"),
                what: "written in the US mirror only",
            },
        });
        // Keys past `keys`, written as early as key `i - keys`.
        let created = plan.start_ms + (i - plan.keys).max(0) * plan.step_ms;
        right.push(event(plan.table, "c", i, 7, created));
    }
    left.sort_by_key(|e| e.ts_ms);
    right.sort_by_key(|e| e.ts_ms);
    planted.sort_by(|a, b| (&a.tenant, a.id, a.reason).cmp(&(&b.tenant, b.id, b.reason)));
    (left, right, planted)
}

/// The shipped streams' plan: 300 rows from 2026-11-02T00:00:00Z, mirrored
/// in 0.5–2.5 s, two late, two missing, one mismatched, two US-only (one
/// of an EU tenant), one of an EU tenant written in the US first.
pub fn shipped_stream_plan() -> StreamPlan {
    StreamPlan {
        table: "audit",
        keys: 300,
        start_ms: START / 1_000,
        step_ms: 1_000,
        delay_ms: |i| 500 + (i * 37) % 2_000,
        update_every: 10,
        home_first: true,
        late: vec![(40, 95_000), (140, 180_000)],
        missing: vec![70, 170],
        mismatch: vec![110],
        right_only: vec![400, 401],
        right_first: vec![200],
    }
}

/// Writes the shipped streams under `dir`: `cdc/eu/audit.ndjson`,
/// `cdc/us/audit.ndjson` (with one malformed line, which a run counts) and
/// `cdc/truth.json`.
pub fn generate_streams(dir: &Path) -> Result<Vec<Planted>, String> {
    let (eu, us, planted) = mirrored_streams(&shipped_stream_plan());
    let cdc = dir.join("cdc");
    for (side, events) in [("eu", &eu), ("us", &us)] {
        let folder = cdc.join(side);
        std::fs::create_dir_all(&folder).map_err(|err| format!("{}: {err}", folder.display()))?;
        let mut text: String = events.iter().map(|e| e.line.clone() + "\n").collect();
        if side == "us" {
            text.push_str(
                "{\"op\":\"c\",\"after\":{\"tenant\":\"acme\"},\"source\":{\"ts_ms\":1}}\n",
            );
        }
        let path = folder.join("audit.ndjson");
        std::fs::write(&path, text).map_err(|err| format!("{}: {err}", path.display()))?;
    }
    let truth = serde_json::to_string_pretty(&planted).map_err(|err| err.to_string())?;
    std::fs::write(cdc.join("truth.json"), truth + "\n").map_err(|err| err.to_string())?;
    Ok(planted)
}
