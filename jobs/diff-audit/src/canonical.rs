//! The canonical form of a row, so two databases that store the same data
//! differently (Int32 here, Int64 there; a timestamp with or without a
//! zone) produce the same digest, and two that store different data never
//! do.
//!
//! A row's digest is the SHA-256 of its compared columns' values, in the
//! order the columns are compared (given, or sorted by name), each encoded
//! as one tag byte and a body:
//!
//! | value | tag | body |
//! |---|---|---|
//! | NULL | `N` | nothing (NULL and the empty string differ) |
//! | boolean | `B` | `0` or `1` |
//! | integer (any width, signed or not) | `I` | decimal text |
//! | float | `I` when integral and exact below 2^53, else `F` | decimal text (shortest that reads back the same; NaN as `NaN`, −0 as `0`) |
//! | text | `S` | its UTF-8 bytes as stored: no Unicode normalisation, so `é` and `e◌́` differ |
//! | bytes | `X` | the bytes |
//! | timestamp | `T` | UTC, RFC 3339 with nanoseconds (`2026-11-02T10:00:00.120000000Z`): the same instant is equal whatever its zone or stored precision, a different instant (`.12` vs `.123`) differs |
//! | date | `D` | `YYYY-MM-DD` |
//!
//! and the body's length as 8 bytes (little endian) before it, so no two
//! rows can run together. Other types (lists, structs, decimals with a
//! scale, durations) are refused with the column's name.

use polars::prelude::*;
use sha2::{Digest, Sha256};

/// A column ready to encode row by row (its values cast once).
pub enum Encoder {
    Int(Int64Chunked),
    UInt(UInt64Chunked),
    Float(Float64Chunked),
    Bool(BooleanChunked),
    Str(StringChunked),
    Bytes(BinaryChunked),
    /// Nanoseconds since the epoch, UTC.
    Time(Int64Chunked),
    /// Days since the epoch.
    Date(Int32Chunked),
}

/// Why a column cannot be compared.
pub fn unsupported(name: &str, dtype: &dyn std::fmt::Display) -> String {
    format!("column `{name}`: type {dtype} has no canonical form (lists, structs, decimals and durations are not compared; cast or leave the column out)")
}

impl Encoder {
    /// The encoder of `column`, or why it has none.
    pub fn of(column: &Column) -> Result<Self, String> {
        Self::new(column, true)
    }

    /// [`Encoder::of`] keeping the column's chunks, for reading it in order
    /// (`iter`) rather than row by row (`encode`), without copying it whole.
    pub fn chunked(column: &Column) -> Result<Self, String> {
        Self::new(column, false)
    }

    fn new(column: &Column, rechunk: bool) -> Result<Self, String> {
        let name = column.name().to_string();
        let fail = |err: PolarsError| format!("column `{name}`: {err}");
        let series = column.as_materialized_series();
        let series = if rechunk {
            series.rechunk()
        } else {
            series.clone()
        };
        let dtype = series.dtype().clone();
        Ok(match dtype {
            DataType::Boolean => Encoder::Bool(series.bool().map_err(fail)?.clone()),
            DataType::String => Encoder::Str(series.str().map_err(fail)?.clone()),
            DataType::Binary => Encoder::Bytes(series.binary().map_err(fail)?.clone()),
            DataType::Float32 | DataType::Float64 => {
                let cast = series.cast(&DataType::Float64).map_err(fail)?;
                Encoder::Float(cast.f64().map_err(fail)?.clone())
            }
            DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
                let cast = series.cast(&DataType::UInt64).map_err(fail)?;
                Encoder::UInt(cast.u64().map_err(fail)?.clone())
            }
            dtype if dtype.is_integer() => {
                let cast = series.cast(&DataType::Int64).map_err(fail)?;
                Encoder::Int(cast.i64().map_err(fail)?.clone())
            }
            DataType::Datetime(_, _) => {
                let utc = series
                    .cast(&DataType::Datetime(TimeUnit::Nanoseconds, None))
                    .and_then(|s| s.cast(&DataType::Int64))
                    .map_err(fail)?;
                Encoder::Time(utc.i64().map_err(fail)?.clone())
            }
            DataType::Date => {
                let days = series.cast(&DataType::Int32).map_err(fail)?;
                Encoder::Date(days.i32().map_err(fail)?.clone())
            }
            other => return Err(unsupported(&name, &other)),
        })
    }

    /// Which values this column holds, for telling a type mismatch between
    /// the two sides from a mere width difference.
    pub fn family(&self) -> &'static str {
        match self {
            Encoder::Int(_) | Encoder::UInt(_) | Encoder::Float(_) => "number",
            Encoder::Bool(_) => "boolean",
            Encoder::Str(_) => "text",
            Encoder::Bytes(_) => "bytes",
            Encoder::Time(_) => "timestamp",
            Encoder::Date(_) => "date",
        }
    }

    /// Appends row `row`'s canonical encoding to `out`.
    pub fn encode(&self, row: usize, out: &mut Vec<u8>) {
        let mut put = |tag: u8, body: &[u8]| put_tagged(out, tag, body);
        match self {
            Encoder::Int(c) => match c.get(row) {
                Some(v) => put(b'I', itoa::Buffer::new().format(v).as_bytes()),
                None => put(b'N', b""),
            },
            Encoder::UInt(c) => match c.get(row) {
                Some(v) => put(b'I', itoa::Buffer::new().format(v).as_bytes()),
                None => put(b'N', b""),
            },
            Encoder::Float(c) => match c.get(row) {
                Some(v) => {
                    let (tag, text) = float_text(v);
                    put(tag, text.as_bytes());
                }
                None => put(b'N', b""),
            },
            Encoder::Bool(c) => match c.get(row) {
                Some(v) => put(b'B', if v { b"1" } else { b"0" }),
                None => put(b'N', b""),
            },
            Encoder::Str(c) => match c.get(row) {
                Some(v) => put(b'S', v.as_bytes()),
                None => put(b'N', b""),
            },
            Encoder::Bytes(c) => match c.get(row) {
                Some(v) => put(b'X', v),
                None => put(b'N', b""),
            },
            Encoder::Time(c) => match c.get(row) {
                Some(v) => match time_bytes(v) {
                    Some(bytes) => put(b'T', &bytes),
                    None => put(b'T', time_text(v).as_bytes()),
                },
                None => put(b'N', b""),
            },
            Encoder::Date(c) => match c.get(row) {
                Some(v) => put(b'D', date_text(v).as_bytes()),
                None => put(b'N', b""),
            },
        }
    }

    /// Row `row`'s value as JSON (for diff lines naming a key).
    pub fn json(&self, row: usize) -> serde_json::Value {
        use serde_json::Value;
        let text = |v: Option<String>| v.map_or(Value::Null, Value::String);
        match self {
            Encoder::Int(c) => c.get(row).map_or(Value::Null, Value::from),
            Encoder::UInt(c) => c.get(row).map_or(Value::Null, Value::from),
            Encoder::Float(c) => c.get(row).map_or(Value::Null, Value::from),
            Encoder::Bool(c) => c.get(row).map_or(Value::Null, Value::from),
            Encoder::Str(c) => text(c.get(row).map(str::to_string)),
            Encoder::Bytes(c) => text(c.get(row).map(hex::encode)),
            Encoder::Time(c) => text(c.get(row).map(time_text)),
            Encoder::Date(c) => text(c.get(row).map(date_text)),
        }
    }
}

/// One value: its tag, its body's length (8 bytes, little endian), the body.
fn put_tagged(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(body);
}

/// A float's tag and text: integral values below 2^53 as integers, so an
/// integer column on one side and a float one on the other agree.
fn float_text(v: f64) -> (u8, String) {
    if v.is_nan() {
        return (b'F', "NaN".into());
    }
    if v == v.trunc() && v.abs() < 9_007_199_254_740_992.0 {
        return (b'I', format!("{}", v as i64));
    }
    (b'F', format!("{v:?}"))
}

/// `time_text` without formatting machinery, for years 1970–9999 (the
/// hot path of every timestamp column); `None` outside them.
fn time_bytes(nanos: i64) -> Option<[u8; 30]> {
    if nanos < 0 {
        return None;
    }
    let secs = nanos / 1_000_000_000;
    let frac = nanos % 1_000_000_000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if year > 9_999 {
        return None;
    }
    let mut out = *b"0000-00-00T00:00:00.000000000Z";
    let mut digits = |at: usize, width: usize, mut value: i64| {
        for i in (0..width).rev() {
            out[at + i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    digits(0, 4, year);
    digits(5, 2, month);
    digits(8, 2, day);
    digits(11, 2, rem / 3_600);
    digits(14, 2, rem % 3_600 / 60);
    digits(17, 2, rem % 60);
    digits(20, 9, frac);
    Some(out)
}

fn time_text(nanos: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(nanos)
        .format("%Y-%m-%dT%H:%M:%S%.9fZ")
        .to_string()
}

fn date_text(days: i32) -> String {
    chrono::NaiveDate::from_num_days_from_ce_opt(days + 719_163).map_or_else(
        || format!("day {days}"),
        |d| d.format("%Y-%m-%d").to_string(),
    )
}

/// Appends a JSON value's canonical encoding (a CDC image's field): null,
/// booleans, integers, floats and strings as in the table above; an object
/// or array as `J` and its compact JSON text.
pub fn encode_json(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    let mut put = |tag: u8, body: &[u8]| put_tagged(out, tag, body);
    match value {
        Value::Null => put(b'N', b""),
        Value::Bool(v) => put(b'B', if *v { b"1" } else { b"0" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(v), _, _) => put(b'I', v.to_string().as_bytes()),
            (None, Some(v), _) => put(b'I', v.to_string().as_bytes()),
            (None, None, Some(v)) => {
                let (tag, text) = float_text(v);
                put(tag, text.as_bytes());
            }
            _ => put(b'F', n.to_string().as_bytes()),
        },
        Value::String(text) => put(b'S', text.as_bytes()),
        other => put(b'J', other.to_string().as_bytes()),
    }
}

/// The SHA-256 of an encoded row.
pub fn digest(encoded: &[u8]) -> [u8; 32] {
    Sha256::digest(encoded).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(column: Column) -> Vec<[u8; 32]> {
        let encoder = Encoder::of(&column).unwrap();
        (0..column.len())
            .map(|row| {
                let mut out = Vec::new();
                encoder.encode(row, &mut out);
                digest(&out)
            })
            .collect()
    }

    #[test]
    fn null_and_the_empty_string_differ_and_unicode_is_compared_as_bytes() {
        let text = Column::new("t".into(), &[None, Some(""), Some("é"), Some("e\u{301}")]);
        let d = digest_of(text);
        assert_ne!(d[0], d[1]);
        assert_ne!(d[2], d[3]);
    }

    #[test]
    fn widths_and_zones_do_not_matter_values_do() {
        let narrow = Column::new("n".into(), &[1i32, 2, 3]);
        let wide = Column::new("n".into(), &[1i64, 2, 4]);
        let float = Column::new("n".into(), &[1.0f64, 2.0, 3.5]);
        let (a, b, c) = (digest_of(narrow), digest_of(wide), digest_of(float));
        assert_eq!((a[0], a[1]), (b[0], b[1]));
        assert_ne!(a[2], b[2]);
        assert_eq!((a[0], a[1]), (c[0], c[1]));
        assert_ne!(a[2], c[2]);
        // The same instant in microseconds and nanoseconds is equal; a
        // value that lost precision is not.
        let micros = Series::new(
            "t".into(),
            &[1_700_000_000_123_456i64, 1_700_000_000_123_000],
        )
        .cast(&DataType::Datetime(TimeUnit::Microseconds, None))
        .unwrap();
        let nanos = Series::new(
            "t".into(),
            &[1_700_000_000_123_456_000i64, 1_700_000_000_123_456_000],
        )
        .cast(&DataType::Datetime(TimeUnit::Nanoseconds, None))
        .unwrap();
        let (m, n) = (digest_of(micros.into()), digest_of(nanos.into()));
        assert_eq!(m[0], n[0]);
        assert_ne!(m[1], n[1]);
    }

    #[test]
    fn the_fast_timestamp_text_is_chronos() {
        for nanos in [
            0,
            1,
            951_782_400_123_456_789, // 2000-02-29
            1_793_577_600_000_000_000,
            4_102_444_799_999_999_999, // 2099-12-31T23:59:59.999999999
            i64::MAX,                  // 2262-04-11
        ] {
            let fast = time_bytes(nanos).unwrap();
            assert_eq!(std::str::from_utf8(&fast).unwrap(), time_text(nanos));
        }
        assert_eq!(time_bytes(-1), None);
    }

    #[test]
    fn a_type_without_a_canonical_form_is_named() {
        let list = Series::new("tags".into(), &[Series::new("".into(), &[1i64])]);
        let err = Encoder::of(&list.into()).err().unwrap();
        assert!(err.starts_with("column `tags`: type list"), "{err}");
    }
}
