//! Two PostgreSQL copies compared without pulling every row: the
//! checksum-and-bisect technique of data-diff/reladiff, over ranges of the
//! key's hash instead of ranges of the key.
//!
//! Each row falls in bucket `hash(key) mod B` (the same key in the same
//! bucket on both sides); each database computes, per bucket, the row count
//! and the sum of the rows' 64-bit hashes (`hashtextextended` of the row's
//! text, key included), and sends at the first level only one 8-byte
//! checksum of them per bucket (finer levels send the counts too). Buckets that agree
//! are done. The differing ones are split again (B × 256, only their rows
//! hashed), until they hold few enough rows to fetch; those rows are read
//! and compared by the canonical digests of `canonical.rs`, the same code
//! that compares files, so the checksums only decide what to read, never
//! what differs.
//!
//! Why hash ranges: the key (tenant, id) is composite and may be text, so
//! key ranges would need boundary queries per level and stay uneven under
//! skew; hash buckets need one GROUP BY per level and side, split evenly,
//! and work for any key type. With differences scattered over the table
//! (the usual case) every key range differs at the first level anyway, so
//! reladiff scans everything twice too.
//!
//! Equal data gives equal sums when both sides print values the same way:
//! the sessions fix the settings that change a value's text, and a column
//! whose type differs between the sides (int4/int8, timestamp/timestamptz)
//! is cast to one form first. Where texts still differ for equal values,
//! a bucket is merely read and found equal: slower, never wrong.
//!
//! Duplicate keys cannot hide in agreeing buckets: unless a unique index
//! covers the key, each side lists its duplicated keys' hashes and their
//! buckets are read too.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::postgres::{quote, where_clause, Kind, PgColumn, PgTable};
use crate::snapshot::{self, resolve_columns, type_clash, CompareSpec, Diff, Summary};

/// How a bisection splits.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// Most buckets at the first level (its answer is all a compare of two
    /// equal tables transfers: 8 bytes a bucket).
    pub first_level_max: i64,
    /// How much finer each level is.
    pub split: i64,
    /// Rows in differing buckets few enough to read.
    pub fetch_rows: i64,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            first_level_max: 1 << 9,
            split: 1 << 8,
            fetch_rows: 20_000,
        }
    }
}

const MAX_BUCKETS: i64 = 1 << 40;

/// What a bisecting compare did (shown with the summary).
#[derive(Debug, Clone, Default, Serialize)]
pub struct BisectStats {
    pub levels: Vec<LevelStats>,
    /// Rows read to compare row by row, per side.
    pub fetched_left: usize,
    pub fetched_right: usize,
    /// Whether a unique index covers the key (no duplicate scan needed).
    pub unique_left: bool,
    pub unique_right: bool,
}

/// One level of the bisection.
#[derive(Debug, Clone, Serialize)]
pub struct LevelStats {
    pub buckets: i64,
    /// Buckets each side returned.
    pub groups_left: usize,
    pub groups_right: usize,
    pub differing: usize,
    /// Rows in the differing buckets (the larger side's count).
    pub rows_differing: i64,
}

/// Per bucket: (rows, sum of row hashes as text).
type Checksums = BTreeMap<i64, (i64, String)>;

/// The SQL texts one side hashes.
struct Hashing {
    key: String,
    row: String,
}

/// Compares two PostgreSQL tables (`spec.key`, `spec.columns`), with an
/// operator's row filter `where_sql` applied to both.
pub async fn compare(
    left: &PgTable,
    right: &PgTable,
    spec: &CompareSpec,
    where_sql: Option<&str>,
    tuning: Tuning,
) -> Result<(Vec<Diff>, Summary, BisectStats), String> {
    let names = (left.shown.as_str(), right.shown.as_str());
    let resolved = resolve_columns(&left.column_names(), &right.column_names(), spec, names)?;
    let (left_hash, right_hash) = hashing(left, right, &spec.key, &resolved.columns, names)?;
    let mut stats = BisectStats::default();
    let (unique_left, unique_right) = tokio::try_join!(
        left.key_is_unique(&spec.key),
        right.key_is_unique(&spec.key)
    )?;
    (stats.unique_left, stats.unique_right) = (unique_left, unique_right);
    let (dups_left, dups_right) = tokio::try_join!(
        duplicated_keys(left, &left_hash, &spec.key, where_sql, unique_left),
        duplicated_keys(right, &right_hash, &spec.key, where_sql, unique_right)
    )?;
    let estimated = left.estimated_rows.max(right.estimated_rows).unwrap_or(0) as i64;
    let mut buckets = (estimated / 64).clamp(1, tuning.first_level_max);
    buckets = (buckets as u64).next_power_of_two() as i64;
    let mut filter: Option<(i64, Vec<i64>)> = None;
    let mut summary = Summary {
        columns: resolved.columns.clone(),
        only_left: resolved.only_left,
        only_right: resolved.only_right,
        ..Summary::default()
    };
    let fetch = loop {
        // Rows a differing bucket holds, where the level gave no counts.
        let mut per_bucket = None;
        let (l, r) = if filter.is_none() {
            let (l, r) = tokio::try_join!(
                first_level(left, &left_hash, where_sql, buckets),
                first_level(right, &right_hash, where_sql, buckets)
            )?;
            (summary.left_rows, summary.right_rows) = (l.0 as usize, r.0 as usize);
            summary.left_commitment = commitment(buckets, &l.1);
            summary.right_commitment = commitment(buckets, &r.1);
            summary.commitment_of = "bucket-checksums";
            per_bucket = Some((l.0.max(r.0) + buckets - 1) / buckets);
            (l.1, r.1)
        } else {
            tokio::try_join!(
                level(left, &left_hash, where_sql, buckets, filter.as_ref()),
                level(right, &right_hash, where_sql, buckets, filter.as_ref())
            )?
        };
        let differing: Vec<i64> = l
            .keys()
            .chain(r.keys())
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|b| l.get(b) != r.get(b))
            .collect();
        let count = |side: &Checksums, b: &i64| side.get(b).map_or(0, |(n, _)| *n);
        let rows_differing: i64 = match per_bucket {
            Some(rows) => rows * differing.len() as i64,
            None => differing
                .iter()
                .map(|b| count(&l, b).max(count(&r, b)))
                .sum(),
        };
        stats.levels.push(LevelStats {
            buckets,
            groups_left: l.len(),
            groups_right: r.len(),
            differing: differing.len(),
            rows_differing,
        });
        if differing.is_empty() || rows_differing <= tuning.fetch_rows || buckets >= MAX_BUCKETS {
            break (buckets, differing);
        }
        filter = Some((buckets, differing));
        buckets = (buckets * tuning.split).min(MAX_BUCKETS);
    };
    let (buckets, mut read) = fetch;
    read.extend(
        dups_left
            .iter()
            .chain(&dups_right)
            .map(|hash| hash.rem_euclid(buckets)),
    );
    read.sort_unstable();
    read.dedup();
    if read.is_empty() {
        summary.equal = summary.left_rows;
        return Ok((Vec::new(), summary, stats));
    }
    let mut read_columns = spec.key.clone();
    read_columns.extend(resolved.columns.iter().cloned());
    let condition = bucket_of(buckets);
    let condition = format!("{condition} = ANY($1)");
    let (left_rows, right_rows) = tokio::try_join!(
        left.read(
            &read_columns,
            Some(&left_hash.key),
            where_sql,
            Some((&condition, &read))
        ),
        right.read(
            &read_columns,
            Some(&right_hash.key),
            where_sql,
            Some((&condition, &read))
        )
    )?;
    stats.fetched_left = left_rows.height();
    stats.fetched_right = right_rows.height();
    let rows_spec = CompareSpec {
        key: spec.key.clone(),
        columns: Some(resolved.columns.clone()),
    };
    let (diffs, found) = snapshot::compare(&left_rows, &right_rows, &rows_spec, names)?;
    // Rows outside the read buckets agree one for one (their buckets hold
    // no duplicate key).
    summary.equal = found.equal + summary.left_rows.saturating_sub(stats.fetched_left);
    summary.missing = found.missing;
    summary.mismatch = found.mismatch;
    summary.duplicate = found.duplicate;
    Ok((diffs, summary, stats))
}

/// `mod(mod(__patrol_kh, B) + B, B)`: the bucket of a row's key hash.
fn bucket_of(buckets: i64) -> String {
    format!("mod(mod(__patrol_kh, {buckets}) + {buckets}, {buckets})")
}

/// The key and row texts each side hashes; refuses columns without a
/// canonical form and columns whose values differ in kind between sides.
fn hashing(
    left: &PgTable,
    right: &PgTable,
    key: &[String],
    columns: &[String],
    names: (&str, &str),
) -> Result<(Hashing, Hashing), String> {
    let mut key_exprs = (Vec::new(), Vec::new());
    let mut row_exprs = (Vec::new(), Vec::new());
    for (at, name) in key.iter().chain(columns).enumerate() {
        let (l, r) = match (left.column(name), right.column(name)) {
            (Some(l), Some(r)) => (l, r),
            _ => return Err(format!("column `{name}` is not on both sides")),
        };
        for column in [l, r] {
            if column.kind == Kind::Other {
                return Err(crate::canonical::unsupported(name, &column.type_name));
            }
        }
        if l.kind.family() != r.kind.family() {
            return Err(type_clash(name, names, (l.kind.family(), r.kind.family())));
        }
        let same = l.type_name == r.type_name;
        let (le, re) = (hash_expr(l, same), hash_expr(r, same));
        if at < key.len() {
            key_exprs.0.push(le.clone());
            key_exprs.1.push(re.clone());
        }
        row_exprs.0.push(le);
        row_exprs.1.push(re);
    }
    let text = |exprs: &[String]| format!("ROW({})::text", exprs.join(", "));
    Ok((
        Hashing {
            key: text(&key_exprs.0),
            row: text(&row_exprs.0),
        },
        Hashing {
            key: text(&key_exprs.1),
            row: text(&row_exprs.1),
        },
    ))
}

/// A column as hashed: as stored when both sides have the same type, else
/// cast to a form both print alike.
fn hash_expr(column: &PgColumn, same_type: bool) -> String {
    let q = quote(&column.name);
    if same_type {
        return q;
    }
    match column.kind {
        Kind::Int => format!("{q}::int8"),
        Kind::Float => format!("{q}::float8"),
        Kind::Text => format!("{q}::text"),
        Kind::Timestamp => format!("{q}::timestamp"),
        Kind::TimestampTz => format!("({q} AT TIME ZONE 'UTC')"),
        Kind::Bool | Kind::Bytes | Kind::Date | Kind::Other => q,
    }
}

/// The first level of one side, compactly: its row count, and per bucket
/// one 8-byte checksum of its (count, sum), all buckets in order in one
/// `bytea` (8 bytes a bucket on the wire; what a compare of two equal
/// tables transfers). Counts are not sent per bucket: a differing bucket is
/// taken to hold the average.
async fn first_level(
    table: &PgTable,
    hashing: &Hashing,
    where_sql: Option<&str>,
    buckets: i64,
) -> Result<(i64, Checksums), String> {
    let sql = format!(
        "WITH q AS (SELECT {} AS b, count(*) AS n, sum(hashtextextended({}, 0)) AS s \
           FROM (SELECT hashtextextended({}, 0) AS __patrol_kh, * FROM {}{} OFFSET 0) AS s GROUP BY 1) \
         SELECT (SELECT coalesce(sum(n), 0)::int8 FROM q), \
                (SELECT string_agg(int8send(coalesce(hashtextextended(q.n || ':' || q.s, 0), 0)), ''::bytea ORDER BY g) \
                 FROM generate_series(0, {} - 1) AS g LEFT JOIN q ON q.b = g)",
        bucket_of(buckets),
        hashing.row,
        hashing.key,
        table.relation,
        where_clause(where_sql),
        buckets
    );
    let (rows, packed): (i64, Option<Vec<u8>>) = sqlx::query_as(&sql)
        .fetch_one(&table.pool)
        .await
        .map_err(|err| format!("{}: {err}", table.shown))?;
    let packed = packed.unwrap_or_default();
    let checksums = packed
        .chunks_exact(8)
        .enumerate()
        .map(|(bucket, bytes)| {
            let mut word = [0u8; 8];
            word.copy_from_slice(bytes);
            (bucket as i64, (0, i64::from_be_bytes(word).to_string()))
        })
        .collect();
    Ok((rows, checksums))
}

/// One level's checksums of one side.
async fn level(
    table: &PgTable,
    hashing: &Hashing,
    where_sql: Option<&str>,
    buckets: i64,
    filter: Option<&(i64, Vec<i64>)>,
) -> Result<Checksums, String> {
    let filter_sql = match filter {
        Some((coarse, _)) => format!(" WHERE {} = ANY($1)", bucket_of(*coarse)),
        None => String::new(),
    };
    let sql = format!(
        "SELECT {} AS b, count(*)::int8, sum(hashtextextended({}, 0))::text \
         FROM (SELECT hashtextextended({}, 0) AS __patrol_kh, * FROM {}{} OFFSET 0) AS s{} \
         GROUP BY 1",
        bucket_of(buckets),
        hashing.row,
        hashing.key,
        table.relation,
        where_clause(where_sql),
        filter_sql
    );
    let mut query = sqlx::query_as::<_, (i64, i64, String)>(&sql);
    if let Some((_, coarse)) = filter {
        query = query.bind(coarse.clone());
    }
    let rows = query
        .fetch_all(&table.pool)
        .await
        .map_err(|err| format!("{}: {err}", table.shown))?;
    Ok(rows.into_iter().map(|(b, n, sum)| (b, (n, sum))).collect())
}

/// The key hashes of keys held by more than one row (none asked when a
/// unique index covers the key).
async fn duplicated_keys(
    table: &PgTable,
    hashing: &Hashing,
    key: &[String],
    where_sql: Option<&str>,
    unique: bool,
) -> Result<Vec<i64>, String> {
    if unique {
        return Ok(Vec::new());
    }
    let group: Vec<String> = key.iter().map(|k| quote(k)).collect();
    let sql = format!(
        "SELECT hashtextextended({}, 0) FROM {}{} GROUP BY {} HAVING count(*) > 1",
        hashing.key,
        table.relation,
        where_clause(where_sql),
        group.join(", ")
    );
    sqlx::query_scalar(&sql)
        .fetch_all(&table.pool)
        .await
        .map_err(|err| format!("{}: {err}", table.shown))
}

/// SHA-256 of a side's first-level checksums: what the proof commits to
/// for a database copy (its rows are never all read).
fn commitment(buckets: i64, checksums: &Checksums) -> String {
    let mut hash = Sha256::new();
    hash.update(format!("buckets {buckets}\n"));
    for (bucket, (rows, sum)) in checksums {
        hash.update(format!("{bucket} {rows} {sum}\n"));
    }
    hex::encode(hash.finalize())
}
