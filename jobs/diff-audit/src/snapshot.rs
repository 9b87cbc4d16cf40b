//! Snapshot compare of two copies of a table: every row's key and the
//! digest of its compared columns (see `canonical.rs`) on each side,
//! sorted by key and merged. A key on one side only is `missing` (on the
//! other side), a key on both with different digests is `mismatch`, and a
//! key held by more than one row of a side is `duplicate` — reported, never
//! merged into one row.

use std::cmp::Ordering;
use std::path::Path;

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::canonical::{digest, Encoder};

/// Why a key is in the diffs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// On one side only (`side` names the side without it).
    Missing,
    /// On both, with different values.
    Mismatch,
    /// Held by more than one row of `side`.
    Duplicate,
    /// On one side only, and that side is outside the tenant's home region
    /// (`side`: the copy that holds it; see `residency.rs`).
    CrossRegionWrite,
    /// CDC: the other side's matching change came after `lag_window`.
    Late,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Mismatch => "mismatch",
            Reason::Duplicate => "duplicate",
            Reason::CrossRegionWrite => "cross-region-write",
            Reason::Late => "late",
        }
    }
}

/// Which copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Left,
    Right,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Left => "left",
            Side::Right => "right",
        }
    }
}

/// One differing key.
#[derive(Debug, Clone, PartialEq)]
pub struct Diff {
    /// `(column, value)` in key order.
    pub key: Vec<(String, serde_json::Value)>,
    pub reason: Reason,
    /// Missing: the side without the row; duplicate: the side with several.
    pub side: Option<Side>,
    pub lhs_sha256: Option<String>,
    pub rhs_sha256: Option<String>,
    /// Duplicate: how many rows hold the key.
    pub rows: Option<usize>,
    /// Cross-region write: (the holding copy's region, the tenant's home).
    pub regions: Option<(String, String)>,
    /// CDC: verdict time − the change's source `ts_ms` (late: how late the
    /// other side's change came).
    pub lag_ms: Option<i64>,
}

impl Diff {
    /// The seed's diff line (`tenant`, `id`, `kind`, `lhs_sha256`,
    /// `rhs_sha256`, `reason`, `ts`) plus `table`, `key`, and `side` /
    /// `rows` where they apply.
    pub fn to_json(&self, table: &str, ts: &str) -> serde_json::Value {
        let mut line = serde_json::Map::new();
        for field in ["tenant", "id"] {
            if let Some((_, value)) = self.key.iter().find(|(name, _)| name == field) {
                line.insert(field.into(), value.clone());
            }
        }
        line.insert("kind".into(), table.into());
        line.insert("lhs_sha256".into(), self.lhs_sha256.clone().into());
        line.insert("rhs_sha256".into(), self.rhs_sha256.clone().into());
        line.insert("reason".into(), self.reason.as_str().into());
        line.insert("ts".into(), ts.into());
        line.insert("table".into(), table.into());
        let key: serde_json::Map<String, serde_json::Value> = self.key.iter().cloned().collect();
        line.insert("key".into(), key.into());
        if let Some(side) = self.side {
            line.insert("side".into(), side.as_str().into());
        }
        if let Some(rows) = self.rows {
            line.insert("rows".into(), rows.into());
        }
        if let Some(lag) = self.lag_ms {
            line.insert("lag_ms".into(), lag.into());
        }
        if let Some((region, home)) = &self.regions {
            line.insert("region".into(), region.as_str().into());
            line.insert("home_region".into(), home.as_str().into());
        }
        line.into()
    }

    /// `tenant=acme,id=42` for samples in findings.
    pub fn key_text(&self) -> String {
        self.key
            .iter()
            .map(|(name, value)| match value {
                serde_json::Value::String(text) => format!("{name}={text}"),
                other => format!("{name}={other}"),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// What to compare.
#[derive(Debug, Clone)]
pub struct CompareSpec {
    pub key: Vec<String>,
    /// Compared columns; `None`: every column both sides have but the key,
    /// sorted by name.
    pub columns: Option<Vec<String>>,
}

/// The outcome of one compare.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub left_rows: usize,
    pub right_rows: usize,
    /// Keys on both sides with equal digests.
    pub equal: usize,
    pub missing: usize,
    pub mismatch: usize,
    pub duplicate: usize,
    /// Keys on one side only that sit outside their tenant's home region
    /// (counted here, not in `missing`; see `residency.rs`).
    pub cross_region_write: usize,
    /// The columns compared, in digest order.
    pub columns: Vec<String>,
    /// Columns one side has and the other lacks (not compared).
    pub only_left: Vec<String>,
    pub only_right: Vec<String>,
    /// SHA-256 commitments to what was compared, of what `commitment_of`
    /// says (`proof.rs`): here of each copy's rows in key order
    /// (length-prefixed key bytes, then the row digest).
    pub left_commitment: String,
    pub right_commitment: String,
    pub commitment_of: &'static str,
}

impl Summary {
    pub fn differences(&self) -> usize {
        self.missing + self.mismatch + self.duplicate + self.cross_region_write
    }
}

/// Reads a table file whole: Parquet, CSV (with a header) or NDJSON (the
/// formats of `stream::scan`).
pub fn read_table(path: &Path) -> Result<DataFrame, String> {
    crate::stream::scan(path)?
        .collect()
        .map_err(|err| format!("{}: {err}", path.display()))
}

/// One side, encoded: per row its key bytes, and the encoders to show keys.
struct Encoded {
    /// (key bytes, row digest, row index), sorted by key.
    rows: Vec<(Vec<u8>, [u8; 32], usize)>,
    keys: Vec<Encoder>,
}

/// Compares `left` with `right`; `names` label the sides in errors.
pub fn compare(
    left: &DataFrame,
    right: &DataFrame,
    spec: &CompareSpec,
    names: (&str, &str),
) -> Result<(Vec<Diff>, Summary), String> {
    let (left_names, right_names) = (column_names(left), column_names(right));
    let resolved = resolve_columns(&left_names, &right_names, spec, names)?;
    let Resolved {
        columns,
        only_left,
        only_right,
    } = resolved;
    let side_encoders = |frame: &DataFrame, side: &str| -> Result<_, String> {
        Ok((
            encoders(frame, &spec.key, side)?,
            encoders(frame, &columns, side)?,
        ))
    };
    let (left_keys, left_values) = side_encoders(left, names.0)?;
    let (right_keys, right_values) = side_encoders(right, names.1)?;
    // A number on one side and text on the other would make every row a
    // mismatch: refuse before reading a row.
    let pairs = spec
        .key
        .iter()
        .zip(left_keys.iter().zip(&right_keys))
        .chain(columns.iter().zip(left_values.iter().zip(&right_values)));
    for (column, (a, b)) in pairs {
        if a.family() != b.family() {
            return Err(type_clash(column, names, (a.family(), b.family())));
        }
    }
    let left_enc = encode_rows(left.height(), left_keys, &left_values);
    let right_enc = encode_rows(right.height(), right_keys, &right_values);
    let mut summary = Summary {
        left_commitment: commitment(&left_enc),
        right_commitment: commitment(&right_enc),
        commitment_of: "rows",
        left_rows: left.height(),
        right_rows: right.height(),
        columns,
        only_left,
        only_right,
        ..Summary::default()
    };
    let diffs = merge(&left_enc, &right_enc, &spec.key, &mut summary);
    Ok((diffs, summary))
}

/// Why a column holding numbers on one side and text on the other is not
/// compared (every row would be a mismatch).
pub fn type_clash(column: &str, names: (&str, &str), families: (&str, &str)) -> String {
    format!(
        "column `{column}`: {} holds {}, {} holds {}: they cannot be compared (cast one side)",
        names.0, families.0, names.1, families.1
    )
}

/// The columns a compare digests, and those one side lacks.
pub struct Resolved {
    pub columns: Vec<String>,
    pub only_left: Vec<String>,
    pub only_right: Vec<String>,
}

/// Checks both sides have the key and the asked-for columns, and picks the
/// compared columns (given, or every column both have but the key, sorted).
pub fn resolve_columns(
    left_names: &[String],
    right_names: &[String],
    spec: &CompareSpec,
    names: (&str, &str),
) -> Result<Resolved, String> {
    for (have, side) in [(left_names, names.0), (right_names, names.1)] {
        for key in &spec.key {
            if !have.contains(key) {
                return Err(format!(
                    "{side}: no key column `{key}` (columns: {})",
                    have.join(", ")
                ));
            }
        }
    }
    let not_key = |c: &&String| !spec.key.contains(c);
    let only = |mine: &[String], other: &[String]| -> Vec<String> {
        mine.iter()
            .filter(not_key)
            .filter(|c| !other.contains(c))
            .cloned()
            .collect()
    };
    let columns = match &spec.columns {
        Some(columns) => {
            for column in columns {
                for (have, side) in [(left_names, names.0), (right_names, names.1)] {
                    if !have.contains(column) {
                        return Err(format!("{side}: no column `{column}` to compare"));
                    }
                }
            }
            columns.clone()
        }
        None => {
            let mut common: Vec<String> = left_names
                .iter()
                .filter(not_key)
                .filter(|c| right_names.contains(c))
                .cloned()
                .collect();
            common.sort();
            common
        }
    };
    Ok(Resolved {
        columns,
        only_left: only(left_names, right_names),
        only_right: only(right_names, left_names),
    })
}

fn column_names(frame: &DataFrame) -> Vec<String> {
    frame
        .get_column_names()
        .iter()
        .map(|c| c.to_string())
        .collect()
}

/// The encoders of `names` in `frame`.
fn encoders(frame: &DataFrame, names: &[String], side: &str) -> Result<Vec<Encoder>, String> {
    names
        .iter()
        .map(|name| {
            let column = frame.column(name).map_err(|err| format!("{side}: {err}"))?;
            Encoder::of(column).map_err(|err| format!("{side}: {err}"))
        })
        .collect()
}

/// Key bytes and row digests of every row, sorted by key (then row).
fn encode_rows(height: usize, keys: Vec<Encoder>, values: &[Encoder]) -> Encoded {
    let mut rows = Vec::with_capacity(height);
    let mut buffer = Vec::new();
    for row in 0..height {
        let mut key = Vec::new();
        for encoder in &keys {
            encoder.encode(row, &mut key);
        }
        buffer.clear();
        for encoder in values {
            encoder.encode(row, &mut buffer);
        }
        rows.push((key, digest(&buffer), row));
    }
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.2.cmp(&b.2)));
    Encoded { rows, keys }
}

/// The SHA-256 of a side's rows in key order.
fn commitment(side: &Encoded) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for (key, digest, _) in &side.rows {
        hash.update((key.len() as u64).to_le_bytes());
        hash.update(key);
        hash.update(digest);
    }
    hex::encode(hash.finalize())
}

/// Walks both sorted sides at once.
fn merge(left: &Encoded, right: &Encoded, key: &[String], summary: &mut Summary) -> Vec<Diff> {
    let show = |side: &Encoded, row: usize| -> Vec<(String, serde_json::Value)> {
        key.iter()
            .cloned()
            .zip(side.keys.iter().map(|e| e.json(row)))
            .collect()
    };
    let mut diffs = Vec::new();
    let (mut i, mut j) = (0, 0);
    let run = |rows: &[(Vec<u8>, [u8; 32], usize)], at: usize| {
        rows[at..].iter().take_while(|r| r.0 == rows[at].0).count()
    };
    while i < left.rows.len() || j < right.rows.len() {
        let order = match (left.rows.get(i), right.rows.get(j)) {
            (Some(l), Some(r)) => l.0.cmp(&r.0),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        let left_run = if order != Ordering::Greater {
            run(&left.rows, i)
        } else {
            0
        };
        let right_run = if order != Ordering::Less {
            run(&right.rows, j)
        } else {
            0
        };
        let mut duplicate = false;
        for (side, count, rows, at, encoded) in [
            (Side::Left, left_run, &left.rows, i, left),
            (Side::Right, right_run, &right.rows, j, right),
        ] {
            if count > 1 {
                duplicate = true;
                summary.duplicate += 1;
                diffs.push(Diff {
                    key: show(encoded, rows[at].2),
                    reason: Reason::Duplicate,
                    side: Some(side),
                    lhs_sha256: None,
                    rhs_sha256: None,
                    rows: Some(count),
                    regions: None,
                    lag_ms: None,
                });
            }
        }
        if !duplicate {
            match order {
                Ordering::Less => {
                    summary.missing += 1;
                    let (_, sha, row) = &left.rows[i];
                    diffs.push(Diff {
                        key: show(left, *row),
                        reason: Reason::Missing,
                        side: Some(Side::Right),
                        lhs_sha256: Some(hex::encode(sha)),
                        rhs_sha256: None,
                        rows: None,
                        regions: None,
                        lag_ms: None,
                    });
                }
                Ordering::Greater => {
                    summary.missing += 1;
                    let (_, sha, row) = &right.rows[j];
                    diffs.push(Diff {
                        key: show(right, *row),
                        reason: Reason::Missing,
                        side: Some(Side::Left),
                        lhs_sha256: None,
                        rhs_sha256: Some(hex::encode(sha)),
                        rows: None,
                        regions: None,
                        lag_ms: None,
                    });
                }
                Ordering::Equal => {
                    let (l, r) = (&left.rows[i], &right.rows[j]);
                    if l.1 == r.1 {
                        summary.equal += 1;
                    } else {
                        summary.mismatch += 1;
                        diffs.push(Diff {
                            key: show(left, l.2),
                            reason: Reason::Mismatch,
                            side: None,
                            lhs_sha256: Some(hex::encode(l.1)),
                            rhs_sha256: Some(hex::encode(r.1)),
                            rows: None,
                            regions: None,
                            lag_ms: None,
                        });
                    }
                }
            }
        }
        i += left_run;
        j += right_run;
    }
    diffs
}
