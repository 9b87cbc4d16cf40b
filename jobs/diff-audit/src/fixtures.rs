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
