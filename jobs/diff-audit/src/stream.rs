//! Two file copies compared in bounded memory: the bisection of `bisect.rs`
//! done in this process over streamed batches.
//!
//! 1. Each side is streamed once (both at the same time, polars' streaming
//!    engine, or Parquet by slices of 1M rows): every value is hashed
//!    column by column (xxh3, 64 bits, seeded at random per compare so no
//!    row can be crafted to collide; agreeing where the canonical form
//!    does: `1` and `1.0`, one instant in µs and ns), the values' hashes
//!    folded in column order into each row's key hash and 128-bit row
//!    hash, and per bucket
//!    `hash(key) mod 2^16` the
//!    row count and the sum of the row hashes are kept, with every key's
//!    64-bit hash (8 bytes a row: the only per-row memory) to find
//!    duplicated keys.
//! 2. Buckets that differ, and those of duplicated keys, are read in a
//!    second stream: only their rows are kept, and compared by the canonical
//!    SHA-256 digests of `snapshot.rs`. So the checksums only choose what
//!    to read, never what differs.
//!
//! Memory: 1.3 MiB of buckets a side, 8 bytes a row for the key hashes, the
//! batches in flight and the rows read in step 2.

use std::hash::{BuildHasher, Hasher};
use std::path::Path;

use polars::prelude::*;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::canonical::Encoder;
use crate::snapshot::{self, resolve_columns, type_clash, CompareSpec, Diff, Summary};

// 2^16 buckets: the checksum arrays (1.3 MiB a side) stay in cache, which
// 2^20 did not (a cache miss a row, 40% of the time at 2M rows).
const BUCKET_BITS: u32 = 16;
const BATCH_ROWS: usize = 1 << 18;
/// Rows a Parquet file is read by: one slice decoded at a time, so memory
/// stays at about one slice whatever the file's size.
const SLICE_ROWS: usize = 1 << 20;

/// What a streaming compare did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StreamStats {
    pub buckets: usize,
    pub differing: usize,
    /// Rows read again and compared row by row, per side.
    pub fetched_left: usize,
    pub fetched_right: usize,
    /// Wall time of the checksum pass and of the second read.
    pub checksum_ms: u128,
    pub read_ms: u128,
}

/// One side's first pass.
struct Checksums {
    rows: usize,
    counts: Vec<u32>,
    sums: Vec<u128>,
    /// Buckets holding a key more than once (by 64-bit key hash).
    duplicated: Vec<usize>,
}

/// A lazy scan of a table file with its own types (CSV types inferred;
/// NDJSON read whole, see `ndjson.rs`).
pub fn scan(path: &Path) -> Result<LazyFrame, String> {
    let name = path.display().to_string();
    let text = path.to_string_lossy();
    let fail = |err: PolarsError| format!("{name}: {err}");
    if !path.is_file() {
        return Err(format!("{name}: no such file"));
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("parquet") => {
            LazyFrame::scan_parquet(PlRefPath::new(text.as_ref()), ScanArgsParquet::default())
                .map_err(fail)
        }
        Some("csv") => LazyCsvReader::new(PlRefPath::new(text.as_ref()))
            .with_has_header(true)
            .with_infer_schema_length(Some(10_000))
            .finish()
            .map_err(fail),
        // Read whole (columns inferred from every line), then streamed.
        Some("ndjson" | "jsonl") => Ok(crate::ndjson::read(path)?.lazy()),
        _ => Err(format!(
            "{name}: a table file is .parquet, .csv, .ndjson or .jsonl"
        )),
    }
}

fn schema_names(plan: &mut LazyFrame, name: &str) -> Result<(Vec<String>, Schema), String> {
    let schema = plan
        .collect_schema()
        .map_err(|err| format!("{name}: {err}"))?;
    let names = schema.iter_names().map(|n| n.to_string()).collect();
    Ok((names, schema.as_ref().clone()))
}

/// Compares two table files (`names` label them in errors).
pub fn compare(
    left: &Path,
    right: &Path,
    spec: &CompareSpec,
    names: (&str, &str),
) -> Result<(Vec<Diff>, Summary, StreamStats), String> {
    let (mut left_plan, mut right_plan) = (scan(left)?, scan(right)?);
    let (left_names, left_schema) = schema_names(&mut left_plan, names.0)?;
    let (right_names, right_schema) = schema_names(&mut right_plan, names.1)?;
    let resolved = resolve_columns(&left_names, &right_names, spec, names)?;
    let mut columns: Vec<String> = spec.key.clone();
    columns.extend(resolved.columns.iter().cloned());
    for column in &columns {
        let family = |schema: &Schema, side: &str| -> Result<&'static str, String> {
            let dtype = schema
                .get(column.as_str())
                .ok_or_else(|| format!("{side}: no column `{column}`"))?;
            let empty = Series::new_empty(column.as_str().into(), dtype);
            Ok(Encoder::of(&Column::from(empty))
                .map_err(|err| format!("{side}: {err}"))?
                .family())
        };
        let (a, b) = (
            family(&left_schema, names.0)?,
            family(&right_schema, names.1)?,
        );
        if a != b {
            return Err(type_clash(column, names, (a, b)));
        }
    }
    let seed = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let select: Vec<Expr> = columns.iter().map(|c| col(c.as_str())).collect();
    let is_parquet = |path: &Path| path.extension().is_some_and(|e| e == "parquet");
    let (left_plan, right_plan) = (
        (left_plan.select(select.clone()), is_parquet(left)),
        (right_plan.select(select), is_parquet(right)),
    );
    let keys = spec.key.len();
    let started = std::time::Instant::now();
    let (l, r) = std::thread::scope(|scope| {
        let l = scope.spawn(|| checksums(names.0, left_plan.clone(), keys, seed));
        let r = checksums(names.1, right_plan.clone(), keys, seed);
        (l.join(), r)
    });
    let l = l.map_err(|_| format!("{}: reading panicked", names.0))??;
    let r = r?;
    let mut read: Vec<bool> = (0..l.counts.len())
        .map(|b| l.counts[b] != r.counts[b] || l.sums[b] != r.sums[b])
        .collect();
    let differing = read.iter().filter(|d| **d).count();
    for &b in l.duplicated.iter().chain(&r.duplicated) {
        read[b] = true;
    }
    let mut stats = StreamStats {
        buckets: l.counts.len(),
        differing,
        checksum_ms: started.elapsed().as_millis(),
        ..StreamStats::default()
    };
    let started = std::time::Instant::now();
    let mut summary = Summary {
        left_rows: l.rows,
        right_rows: r.rows,
        columns: resolved.columns.clone(),
        only_left: resolved.only_left,
        only_right: resolved.only_right,
        ..Summary::default()
    };
    if !read.contains(&true) {
        summary.equal = l.rows;
        return Ok((Vec::new(), summary, stats));
    }
    let (lf, rf) = std::thread::scope(|scope| {
        let lf = scope.spawn(|| rows_in(names.0, left_plan, keys, seed, &read));
        let rf = rows_in(names.1, right_plan, keys, seed, &read);
        (lf.join(), rf)
    });
    let lf = lf.map_err(|_| format!("{}: reading panicked", names.0))??;
    let rf = rf?;
    stats.read_ms = started.elapsed().as_millis();
    stats.fetched_left = lf.height();
    stats.fetched_right = rf.height();
    let rows_spec = CompareSpec {
        key: spec.key.clone(),
        columns: Some(resolved.columns),
    };
    let (diffs, found) = snapshot::compare(&lf, &rf, &rows_spec, names)?;
    summary.equal = found.equal + l.rows.saturating_sub(stats.fetched_left);
    summary.missing = found.missing;
    summary.mismatch = found.mismatch;
    summary.duplicate = found.duplicate;
    Ok((diffs, summary, stats))
}

/// Per row of `frame`: its key hash and its row hash (key and values),
/// folded column by column from the values' hashes (the fast way through
/// polars' arrays: no row is assembled).
fn hash_rows(
    frame: &DataFrame,
    keys: usize,
    seed: u64,
    mut each: impl FnMut(u64, u128),
) -> Result<(), String> {
    let rows = frame.height();
    let mut key = vec![seed; rows];
    let mut low = vec![seed; rows];
    let mut high = vec![!seed; rows];
    for (at, column) in frame.columns().iter().enumerate() {
        let encoder = Encoder::chunked(column)?;
        if at < keys {
            value_hashes(&encoder, seed, |row, hash| {
                key[row] = fold(key[row], hash);
                low[row] = fold(low[row], hash);
                high[row] = fold_high(high[row], hash);
            });
        } else {
            value_hashes(&encoder, seed, |row, hash| {
                low[row] = fold(low[row], hash);
                high[row] = fold_high(high[row], hash);
            });
        }
    }
    for row in 0..rows {
        let row_hash = (u128::from(finish(low[row])) << 64) | u128::from(finish(high[row]));
        each(finish(key[row]), row_hash);
    }
    Ok(())
}

/// Per row, the key hash only.
fn key_hashes(frame: &DataFrame, keys: usize, seed: u64) -> Result<Vec<u64>, String> {
    let mut key = vec![seed; frame.height()];
    for column in &frame.columns()[..keys] {
        value_hashes(&Encoder::chunked(column)?, seed, |row, hash| {
            key[row] = fold(key[row], hash);
        });
    }
    Ok(key.into_iter().map(finish).collect())
}

/// Folds a value's hash into a row's (order matters: `a, b` ≠ `b, a`).
fn fold(acc: u64, hash: u64) -> u64 {
    (acc.rotate_left(23) ^ hash).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// A second, independent fold for the row hash's other 64 bits.
fn fold_high(acc: u64, hash: u64) -> u64 {
    (acc.rotate_left(41) ^ hash.rotate_left(17)).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
}

/// Avalanches a folded hash (the murmur3 finaliser).
fn finish(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^ (h >> 33)
}

/// A 64-bit hash of each value that agrees where the canonical form does:
/// integers of any width and integral floats alike, one instant in any
/// unit alike, NULL apart from every value, text and bytes as bytes.
fn value_hashes(encoder: &Encoder, seed: u64, mut each: impl FnMut(usize, u64)) {
    let tagged = |tag: u8, bits: u64| xxh3_64_with_seed(&bits.to_le_bytes(), seed ^ u64::from(tag));
    let null = tagged(b'N', 0);
    let int = |v: i64| tagged(b'I', v as u64);
    let float = |v: f64| {
        if v.is_nan() {
            tagged(b'F', u64::MAX)
        } else if v == v.trunc() && v.abs() < 9_007_199_254_740_992.0 {
            int(v as i64)
        } else {
            tagged(b'F', v.to_bits())
        }
    };
    let text = |tag: u8, bytes: &[u8]| xxh3_64_with_seed(bytes, seed ^ u64::from(tag) << 8);
    let mut put = |row: usize, hash: Option<u64>| each(row, hash.unwrap_or(null));
    match encoder {
        Encoder::Int(c) => c.iter().enumerate().for_each(|(r, v)| put(r, v.map(int))),
        Encoder::UInt(c) => c.iter().enumerate().for_each(|(r, v)| {
            put(
                r,
                v.map(|v| match i64::try_from(v) {
                    Ok(v) => int(v),
                    Err(_) => tagged(b'U', v),
                }),
            )
        }),
        Encoder::Float(c) => c.iter().enumerate().for_each(|(r, v)| put(r, v.map(float))),
        Encoder::Bool(c) => c
            .iter()
            .enumerate()
            .for_each(|(r, v)| put(r, v.map(|v| tagged(b'B', u64::from(v))))),
        Encoder::Str(c) => c
            .iter()
            .enumerate()
            .for_each(|(r, v)| put(r, v.map(|v| text(b'S', v.as_bytes())))),
        Encoder::Bytes(c) => c
            .iter()
            .enumerate()
            .for_each(|(r, v)| put(r, v.map(|v| text(b'X', v)))),
        Encoder::Time(c) => c
            .iter()
            .enumerate()
            .for_each(|(r, v)| put(r, v.map(|v| tagged(b'T', v as u64)))),
        Encoder::Date(c) => c
            .iter()
            .enumerate()
            .for_each(|(r, v)| put(r, v.map(|v| tagged(b'D', v as u64)))),
    }
}

/// Hands `plan`'s rows to `on_batch` in pieces: a Parquet scan by slices of
/// [`SLICE_ROWS`] (the reader decodes only the row groups a slice needs),
/// anything else through polars' streaming engine.
fn for_each_batch(
    name: &str,
    (plan, parquet): (LazyFrame, bool),
    mut on_batch: impl FnMut(DataFrame) -> Result<(), String>,
) -> Result<(), String> {
    let fail = |err: PolarsError| format!("{name}: {err}");
    if !parquet {
        return patrol_job_kit::table::stream_batches_unordered(name, plan, BATCH_ROWS, on_batch);
    }
    let rows = plan
        .clone()
        .select([len()])
        .collect()
        .map_err(fail)?
        .column("len")
        .and_then(|c| c.u32().map(|c| c.get(0).unwrap_or(0)))
        .map_err(fail)? as usize;
    let mut offset = 0;
    while offset < rows {
        let frame = plan
            .clone()
            .slice(offset as i64, SLICE_ROWS as IdxSize)
            .collect()
            .map_err(fail)?;
        offset += SLICE_ROWS;
        on_batch(frame)?;
    }
    Ok(())
}

fn bucket(key_hash: u64) -> usize {
    (key_hash >> (64 - BUCKET_BITS)) as usize
}

fn checksums(
    name: &str,
    plan: (LazyFrame, bool),
    keys: usize,
    seed: u64,
) -> Result<Checksums, String> {
    let size = 1usize << BUCKET_BITS;
    let mut sums = Checksums {
        rows: 0,
        counts: vec![0; size],
        sums: vec![0; size],
        duplicated: Vec::new(),
    };
    let mut key_hashes: Vec<u64> = Vec::new();
    for_each_batch(name, plan, |frame| {
        sums.rows += frame.height();
        hash_rows(&frame, keys, seed, |key_hash, row_hash| {
            let b = bucket(key_hash);
            sums.counts[b] += 1;
            sums.sums[b] = sums.sums[b].wrapping_add(row_hash);
            key_hashes.push(key_hash);
        })
        .map_err(|err| format!("{name}: {err}"))
    })?;
    sums.duplicated = duplicated_buckets(key_hashes, &sums.counts);
    Ok(sums)
}

/// Buckets where a key hash occurs twice: the hashes placed by bucket (the
/// counts say where each bucket starts), then each bucket's few sorted in
/// cache — a fraction of sorting them all.
fn duplicated_buckets(key_hashes: Vec<u64>, counts: &[u32]) -> Vec<usize> {
    let mut starts = Vec::with_capacity(counts.len() + 1);
    let mut total = 0usize;
    for count in counts {
        starts.push(total);
        total += *count as usize;
    }
    starts.push(total);
    let mut next = starts.clone();
    let mut placed = vec![0u64; key_hashes.len()];
    for hash in key_hashes {
        let b = bucket(hash);
        placed[next[b]] = hash;
        next[b] += 1;
    }
    (0..counts.len())
        .filter(|&b| {
            let group = &mut placed[starts[b]..starts[b + 1]];
            group.sort_unstable();
            group.windows(2).any(|pair| pair[0] == pair[1])
        })
        .collect()
}

/// The rows of `plan` whose key falls in one of `buckets`.
fn rows_in(
    name: &str,
    plan: (LazyFrame, bool),
    keys: usize,
    seed: u64,
    buckets: &[bool],
) -> Result<DataFrame, String> {
    let mut kept: Option<DataFrame> = None;
    let empty = plan.0.clone().limit(0).collect();
    for_each_batch(name, plan, |frame| {
        let mask: Vec<bool> = key_hashes(&frame, keys, seed)
            .map_err(|err| format!("{name}: {err}"))?
            .into_iter()
            .map(|hash| buckets[bucket(hash)])
            .collect();
        if !mask.contains(&true) {
            return Ok(());
        }
        let mask = BooleanChunked::from_slice("keep".into(), &mask);
        let rows = frame
            .filter(&mask)
            .map_err(|err| format!("{name}: {err}"))?;
        match &mut kept {
            Some(all) => {
                all.vstack_mut(&rows)
                    .map_err(|err| format!("{name}: {err}"))?;
            }
            None => kept = Some(rows),
        }
        Ok(())
    })?;
    match kept {
        Some(frame) => Ok(frame),
        None => empty.map_err(|err| format!("{name}: {err}")),
    }
}
