//! Snapshot compare of two Parquet copies with one planted difference of
//! each kind the issue names: NULL vs empty string, a timestamp that lost
//! precision, a deleted row, a duplicate key, Unicode normalisation (NFC vs
//! NFD, compared as bytes), a changed amount; and refusals for a missing key
//! column and types that cannot be compared.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use patrol_job_diff_audit::snapshot::{compare, read_table, CompareSpec, Reason, Side};
use patrol_job_diff_audit::stream;
use polars::prelude::*;

/// One copy of the table: `rows` of (tenant, id, note, amount, at in µs).
fn copy(rows: &[(&str, i64, Option<&str>, i64, i64)]) -> DataFrame {
    let at = Series::new("at".into(), rows.iter().map(|r| r.4).collect::<Vec<_>>())
        .cast(&DataType::Datetime(TimeUnit::Microseconds, None))
        .unwrap();
    DataFrame::new_infer_height(vec![
        Column::new(
            "tenant".into(),
            rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        ),
        Column::new("id".into(), rows.iter().map(|r| r.1).collect::<Vec<_>>()),
        Column::new("note".into(), rows.iter().map(|r| r.2).collect::<Vec<_>>()),
        Column::new(
            "amount".into(),
            rows.iter().map(|r| r.3).collect::<Vec<_>>(),
        ),
        at.into(),
    ])
    .unwrap()
}

fn write(dir: &Path, name: &str, mut frame: DataFrame) -> PathBuf {
    let path = dir.join(name);
    let file = std::fs::File::create(&path).unwrap();
    ParquetWriter::new(file).finish(&mut frame).unwrap();
    path
}

const T: i64 = 1_780_000_000_000_000;

fn spec() -> CompareSpec {
    CompareSpec {
        key: vec!["tenant".into(), "id".into()],
        columns: None,
    }
}

#[test]
fn every_planted_difference_is_named_with_its_reason_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let base: Vec<(&str, i64, Option<&str>, i64, i64)> = (0..50)
        .map(|i| ("acme", i, Some("ok"), 100 + i, T + i * 1_000_123))
        .collect();
    let mut left = base.clone();
    let mut right = base.clone();
    left[3].2 = None; // NULL here, "" there
    right[3].2 = Some("");
    right[7].4 = (T + 7 * 1_000_123) / 1000 * 1000; // precision lost: µs → ms
    right.remove(11); // deleted on the right
    left[20].2 = Some("caf\u{e9}"); // NFC
    right[19].2 = Some("cafe\u{301}"); // NFD (index 19 after the removal)
    right[29].3 += 1; // amount changed (id 30)
    right.push(("acme", 40, Some("ok"), 140, T + 40 * 1_000_123)); // id 40 twice
                                                                   // Same key in another tenant is another row.
    left.push(("globex", 1, Some("ok"), 1, T));
    right.push(("globex", 1, Some("ok"), 1, T));
    let l = write(dir.path(), "eu.parquet", copy(&left));
    let r = write(dir.path(), "us.parquet", copy(&right));
    let (diffs, summary) = compare(
        &read_table(&l).unwrap(),
        &read_table(&r).unwrap(),
        &spec(),
        ("eu", "us"),
    )
    .unwrap();
    let found: Vec<(i64, Reason, Option<Side>)> = diffs
        .iter()
        .map(|d| (d.key[1].1.as_i64().unwrap(), d.reason, d.side))
        .collect();
    assert_eq!(
        found,
        vec![
            (3, Reason::Mismatch, None),
            (7, Reason::Mismatch, None),
            (11, Reason::Missing, Some(Side::Right)),
            (20, Reason::Mismatch, None),
            (30, Reason::Mismatch, None),
            (40, Reason::Duplicate, Some(Side::Right)),
        ]
    );
    assert_eq!(
        (
            summary.equal,
            summary.missing,
            summary.mismatch,
            summary.duplicate
        ),
        (45, 1, 4, 1)
    );
    assert_eq!(summary.columns, vec!["amount", "at", "note"]);
    // The seed's diff line.
    let line = diffs[2].to_json("audit", "2026-12-07T00:00:00Z");
    assert_eq!(line["tenant"], "acme");
    assert_eq!(line["id"], 11);
    assert_eq!(line["kind"], "audit");
    assert_eq!(line["reason"], "missing");
    assert_eq!(line["side"], "right");
    assert_eq!(line["lhs_sha256"].as_str().unwrap().len(), 64);
    assert!(line["rhs_sha256"].is_null());
    assert_eq!(diffs[5].rows, Some(2));

    // Streamed in bounded memory: the same diffs and counts, only the
    // differing buckets' rows read again.
    let (streamed, streamed_summary, stats) =
        stream::compare(&l, &r, &spec(), ("eu", "us")).unwrap();
    assert_eq!(streamed, diffs);
    assert_eq!(
        (
            streamed_summary.equal,
            streamed_summary.missing,
            streamed_summary.mismatch,
            streamed_summary.duplicate
        ),
        (45, 1, 4, 1)
    );
    assert!(stats.fetched_left < 15, "{stats:?}");
}

#[test]
fn a_key_duplicated_alike_in_both_copies_is_still_reported_when_streamed() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows: Vec<(&str, i64, Option<&str>, i64, i64)> =
        (0..100).map(|i| ("acme", i, Some("x"), i, T + i)).collect();
    rows.push(("acme", 42, Some("x"), 42, T + 42));
    let l = write(dir.path(), "a.parquet", copy(&rows));
    let r = write(dir.path(), "b.parquet", copy(&rows));
    let (diffs, summary, stats) = stream::compare(&l, &r, &spec(), ("eu", "us")).unwrap();
    let found: Vec<(i64, Reason, Option<Side>)> = diffs
        .iter()
        .map(|d| (d.key[1].1.as_i64().unwrap(), d.reason, d.side))
        .collect();
    assert_eq!(
        found,
        vec![
            (42, Reason::Duplicate, Some(Side::Left)),
            (42, Reason::Duplicate, Some(Side::Right)),
        ]
    );
    assert_eq!(stats.differing, 0);
    assert_eq!(summary.equal, 99);
    // An empty copy: everything missing on it.
    let empty = write(dir.path(), "empty.parquet", copy(&[]));
    let (diffs, _, _) = stream::compare(&l, &empty, &spec(), ("eu", "us")).unwrap();
    assert_eq!(
        diffs.iter().filter(|d| d.reason == Reason::Missing).count(),
        99
    );
}

#[test]
fn copies_that_store_the_same_values_differently_are_identical() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<(&str, i64, Option<&str>, i64, i64)> =
        (0..20).map(|i| ("acme", i, Some("x"), i, T + i)).collect();
    let l = write(dir.path(), "a.parquet", copy(&rows));
    // Other column order, narrower ints, nanosecond timestamps, CSV-free.
    let mut other = copy(&rows);
    other = other
        .lazy()
        .with_columns([
            col("amount").cast(DataType::Int32),
            col("at").cast(DataType::Datetime(TimeUnit::Nanoseconds, None)),
        ])
        .select([
            col("at"),
            col("note"),
            col("amount"),
            col("id"),
            col("tenant"),
        ])
        .collect()
        .unwrap();
    let r = write(dir.path(), "b.parquet", other);
    let (diffs, summary) = compare(
        &read_table(&l).unwrap(),
        &read_table(&r).unwrap(),
        &spec(),
        ("a", "b"),
    )
    .unwrap();
    assert!(diffs.is_empty(), "{diffs:?}");
    assert_eq!(summary.equal, 20);
    // The streamed checksums agree too: no bucket differs, nothing re-read.
    let (diffs, summary, stats) = stream::compare(&l, &r, &spec(), ("a", "b")).unwrap();
    assert!(diffs.is_empty(), "{diffs:?}");
    assert_eq!(
        (summary.equal, stats.differing, stats.fetched_left),
        (20, 0, 0)
    );
}

#[test]
fn a_missing_key_column_and_types_that_cannot_be_compared_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rows = [("acme", 1, Some("x"), 1, T)];
    let l = read_table(&write(dir.path(), "a.parquet", copy(&rows))).unwrap();
    let wrong_key = CompareSpec {
        key: vec!["tenant".into(), "uuid".into()],
        columns: None,
    };
    let err = compare(&l, &l, &wrong_key, ("eu", "us")).unwrap_err();
    assert!(
        err.starts_with("eu: no key column `uuid` (columns: tenant, id, note, amount, at)"),
        "{err}"
    );
    let text_amount = l
        .clone()
        .lazy()
        .with_column(col("amount").cast(DataType::String))
        .collect()
        .unwrap();
    let err = compare(&l, &text_amount, &spec(), ("eu", "us")).unwrap_err();
    assert_eq!(
        err,
        "column `amount`: eu holds number, us holds text: they cannot be compared (cast one side)"
    );
    let err = read_table(&dir.path().join("nope.parquet")).unwrap_err();
    assert!(err.ends_with("nope.parquet: no such file"), "{err}");
}

#[test]
fn the_committed_fixtures_are_what_the_generator_writes() {
    let dir = tempfile::tempdir().unwrap();
    patrol_job_diff_audit::fixtures::generate(dir.path()).unwrap();
    patrol_job_diff_audit::fixtures::generate_streams(dir.path()).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/diff-audit");
    for file in [
        "eu/audit.parquet",
        "us/audit.parquet",
        "truth.json",
        "cdc/eu/audit.ndjson",
        "cdc/us/audit.ndjson",
        "cdc/truth.json",
    ] {
        let made = std::fs::read(dir.path().join(file)).unwrap();
        let committed = std::fs::read(shipped.join(file)).unwrap();
        assert!(
            made == committed,
            "{file} differs: run gen-diff-audit-fixtures"
        );
    }
}

#[test]
fn an_ndjson_copy_compares_with_a_parquet_one() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<(&str, i64, Option<&str>, i64, i64)> = (0..30)
        .map(|i| ("acme", i, Some("x"), i * 10, T + i))
        .collect();
    let parquet = write(dir.path(), "eu.parquet", copy(&rows));
    let lines: String = rows
        .iter()
        .map(|(tenant, id, note, amount, _)| {
            // Row 5's amount differs, row 9's note is "" instead of "x",
            // row 20 is not there.
            let amount = if *id == 5 { amount + 1 } else { *amount };
            let note = if *id == 9 { Some("") } else { *note };
            if *id == 20 {
                String::new()
            } else {
                format!(
                    "{}\n",
                    serde_json::json!({"tenant": tenant, "id": id, "note": note, "amount": amount})
                )
            }
        })
        .collect();
    let ndjson = dir.path().join("us.ndjson");
    std::fs::write(&ndjson, lines).unwrap();
    let columns = CompareSpec {
        key: vec!["tenant".into(), "id".into()],
        columns: Some(vec!["amount".into(), "note".into()]),
    };
    let (diffs, summary, _) = stream::compare(&parquet, &ndjson, &columns, ("eu", "us")).unwrap();
    let found: Vec<(i64, Reason)> = diffs
        .iter()
        .map(|d| (d.key[1].1.as_i64().unwrap(), d.reason))
        .collect();
    assert_eq!(
        found,
        vec![
            (5, Reason::Mismatch),
            (9, Reason::Mismatch),
            (20, Reason::Missing)
        ]
    );
    assert_eq!(summary.equal, 27);
}
