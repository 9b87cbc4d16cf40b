//! Debezium change events, one JSON object per line: the envelope
//! (`before`, `after`, `op` c/u/d/r, `source` with `ts_ms` and `table`),
//! bare or inside `payload` (Kafka Connect with schemas on). An event
//! becomes the key it changed and the row's new image (its digest, or
//! deleted).

use serde_json::Value;

use crate::canonical;

/// One change, as the joiner needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The key columns' values, in key order.
    pub key: Vec<Value>,
    /// SHA-256 (hex) of the new image's compared fields; `None`: deleted.
    pub digest: Option<String>,
    /// When the source database committed it (`source.ts_ms`).
    pub ts_ms: i64,
}

/// What a line was.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Change(Change),
    /// A Kafka tombstone (`null`) or an event of another table: not ours.
    Skipped,
}

/// Reads one event line of `table` keyed by `key`, digesting `columns`
/// of the image (`None`: every field but the key, by name). An `Err` is a
/// malformed line (counted by the caller, never fatal).
pub fn parse(
    line: &[u8],
    table: &str,
    key: &[String],
    columns: Option<&[String]>,
) -> Result<Parsed, String> {
    let value: Value = serde_json::from_slice(line).map_err(|err| format!("not JSON: {err}"))?;
    let envelope = match &value {
        Value::Null => return Ok(Parsed::Skipped),
        Value::Object(map) => match map.get("payload") {
            Some(Value::Null) => return Ok(Parsed::Skipped),
            Some(payload @ Value::Object(_)) => payload,
            Some(_) => return Err("`payload` is not an object".into()),
            None => &value,
        },
        _ => return Err("not a JSON object".into()),
    };
    let op = envelope
        .get("op")
        .and_then(Value::as_str)
        .ok_or("no `op`")?;
    let source = envelope.get("source").ok_or("no `source`")?;
    if let Some(name) = source.get("table").and_then(Value::as_str) {
        if name != table {
            return Ok(Parsed::Skipped);
        }
    }
    let ts_ms = source
        .get("ts_ms")
        .and_then(Value::as_i64)
        .ok_or("no `source.ts_ms`")?;
    let image = |field: &str| match envelope.get(field) {
        Some(Value::Object(map)) => Ok(map),
        _ => Err(format!("op `{op}` without an `{field}` object")),
    };
    let (row, deleted) = match op {
        "c" | "u" | "r" => (image("after")?, false),
        "d" => (image("before")?, true),
        other => return Err(format!("unknown op `{other}`")),
    };
    let mut key_values = Vec::with_capacity(key.len());
    for column in key {
        match row.get(column) {
            Some(value) if !value.is_null() => key_values.push(value.clone()),
            _ => return Err(format!("no key field `{column}`")),
        }
    }
    let digest = if deleted {
        None
    } else {
        let mut names: Vec<&String> = match columns {
            Some(columns) => columns.iter().collect(),
            None => {
                let mut all: Vec<&String> = row.keys().filter(|f| !key.contains(f)).collect();
                all.sort();
                all
            }
        };
        names.dedup();
        let mut encoded = Vec::new();
        for name in names {
            canonical::encode_json(row.get(name).unwrap_or(&Value::Null), &mut encoded);
        }
        Some(hex::encode(canonical::digest(&encoded)))
    };
    Ok(Parsed::Change(Change {
        key: key_values,
        digest,
        ts_ms,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Vec<String> {
        vec!["tenant".into(), "id".into()]
    }

    fn change(line: &str) -> Change {
        match parse(line.as_bytes(), "audit", &key(), None).unwrap() {
            Parsed::Change(change) => change,
            Parsed::Skipped => panic!("skipped: {line}"),
        }
    }

    #[test]
    fn an_update_and_the_same_row_under_payload_digest_alike_and_a_delete_has_no_image() {
        let bare = change(
            r#"{"before":null,"after":{"tenant":"acme","id":7,"note":"ok","amount":3},"op":"u","source":{"ts_ms":1000,"table":"audit"}}"#,
        );
        let wrapped = change(
            r#"{"schema":{},"payload":{"after":{"amount":3,"id":7,"note":"ok","tenant":"acme"},"op":"c","source":{"ts_ms":1001,"table":"audit"}}}"#,
        );
        assert_eq!(bare.key, vec![Value::from("acme"), Value::from(7)]);
        assert_eq!(bare.digest, wrapped.digest);
        assert_eq!((bare.ts_ms, wrapped.ts_ms), (1000, 1001));
        let null_note = change(
            r#"{"after":{"tenant":"acme","id":7,"note":null,"amount":3},"op":"u","source":{"ts_ms":1}}"#,
        );
        let empty_note = change(
            r#"{"after":{"tenant":"acme","id":7,"note":"","amount":3},"op":"u","source":{"ts_ms":1}}"#,
        );
        assert_ne!(null_note.digest, empty_note.digest);
        let deleted = change(
            r#"{"before":{"tenant":"acme","id":7},"after":null,"op":"d","source":{"ts_ms":5,"table":"audit"}}"#,
        );
        assert_eq!(deleted.digest, None);
    }

    #[test]
    fn tombstones_and_other_tables_are_skipped_and_broken_events_say_why() {
        let parse = |line: &str| parse(line.as_bytes(), "audit", &key(), None);
        assert_eq!(parse("null").unwrap(), Parsed::Skipped);
        assert_eq!(
            parse(
                r#"{"after":{"tenant":"a","id":1},"op":"c","source":{"ts_ms":1,"table":"users"}}"#
            )
            .unwrap(),
            Parsed::Skipped
        );
        for (line, why) in [
            ("{not json", "not JSON"),
            (
                r#"{"after":{"tenant":"a","id":1},"source":{"ts_ms":1}}"#,
                "no `op`",
            ),
            (
                r#"{"after":{"tenant":"a","id":1},"op":"c","source":{}}"#,
                "no `source.ts_ms`",
            ),
            (
                r#"{"after":{"tenant":"a"},"op":"c","source":{"ts_ms":1}}"#,
                "no key field `id`",
            ),
            (
                r#"{"after":null,"op":"u","source":{"ts_ms":1}}"#,
                "without an `after` object",
            ),
            (
                r#"{"after":{"tenant":"a","id":1},"op":"x","source":{"ts_ms":1}}"#,
                "unknown op",
            ),
        ] {
            let err = parse(line).unwrap_err();
            assert!(err.contains(why), "{line}: {err}");
        }
    }
}
