//! NDJSON table files (`.ndjson`, `.jsonl`): one JSON object per line,
//! read into columns. A column's type is what all its non-null values are:
//! integers (Int64), numbers (Float64), booleans, else text (strings as
//! they are; objects and arrays as their compact JSON). A field missing
//! from a line is NULL there. A line that is not a JSON object is an error
//! naming the file and line — a compare never goes on with a copy it could
//! only partly read.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

use polars::prelude::*;
use serde_json::Value;

/// Longest line read.
const MAX_LINE: usize = 1 << 20;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Null,
    Bool,
    Int,
    Float,
    Text,
}

fn kind_of(value: &Value) -> Kind {
    match value {
        Value::Null => Kind::Null,
        Value::Bool(_) => Kind::Bool,
        Value::Number(n) if n.is_i64() => Kind::Int,
        Value::Number(_) => Kind::Float,
        _ => Kind::Text,
    }
}

/// What two kinds of one column make together.
fn widen(a: Kind, b: Kind) -> Kind {
    match (a, b) {
        (Kind::Null, other) | (other, Kind::Null) => other,
        (a, b) if a == b => a,
        (Kind::Int, Kind::Float) | (Kind::Float, Kind::Int) => Kind::Float,
        _ => Kind::Text,
    }
}

/// Reads an NDJSON table file.
pub fn read(path: &Path) -> Result<DataFrame, String> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|err| format!("{name}: {err}"))?;
    let mut rows: Vec<serde_json::Map<String, Value>> = Vec::new();
    let mut kinds: BTreeMap<String, Kind> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for (at, line) in std::io::BufReader::new(file).split(b'\n').enumerate() {
        let line = line.map_err(|err| format!("{name}: {err}"))?;
        let number = at + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if line.len() > MAX_LINE {
            return Err(format!("{name}:{number}: longer than {MAX_LINE} bytes"));
        }
        let row = match serde_json::from_slice::<Value>(&line) {
            Ok(Value::Object(row)) => row,
            Ok(_) => return Err(format!("{name}:{number}: not a JSON object")),
            Err(err) => return Err(format!("{name}:{number}: not JSON: {err}")),
        };
        for (field, value) in &row {
            let kind = kind_of(value);
            match kinds.get_mut(field) {
                Some(known) => *known = widen(*known, kind),
                None => {
                    kinds.insert(field.clone(), kind);
                    order.push(field.clone());
                }
            }
        }
        rows.push(row);
    }
    let columns: Vec<Column> = order
        .iter()
        .map(|field| column(field, kinds[field], &rows))
        .collect();
    DataFrame::new_infer_height(columns).map_err(|err| format!("{name}: {err}"))
}

fn column(field: &str, kind: Kind, rows: &[serde_json::Map<String, Value>]) -> Column {
    let values = rows
        .iter()
        .map(|row| row.get(field).filter(|v| !v.is_null()));
    let name: PlSmallStr = field.into();
    match kind {
        Kind::Bool => Column::new(
            name,
            values
                .map(|v| v.and_then(Value::as_bool))
                .collect::<Vec<_>>(),
        ),
        Kind::Int => Column::new(
            name,
            values
                .map(|v| v.and_then(Value::as_i64))
                .collect::<Vec<_>>(),
        ),
        Kind::Float => Column::new(
            name,
            values
                .map(|v| v.and_then(Value::as_f64))
                .collect::<Vec<_>>(),
        ),
        Kind::Null | Kind::Text => Column::new(
            name,
            values
                .map(|v| {
                    v.map(|v| match v {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    })
                })
                .collect::<Vec<_>>(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_take_the_type_of_all_their_values_and_a_broken_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eu.ndjson");
        std::fs::write(
            &path,
            "{\"tenant\":\"acme\",\"id\":1,\"amount\":2,\"note\":null}\n\n{\"tenant\":\"acme\",\"id\":2,\"amount\":2.5,\"note\":\"\",\"tags\":[1]}\n",
        )
        .unwrap();
        let frame = read(&path).unwrap();
        assert_eq!(frame.height(), 2);
        assert_eq!(frame.column("id").unwrap().dtype(), &DataType::Int64);
        assert_eq!(frame.column("amount").unwrap().dtype(), &DataType::Float64);
        let note = frame.column("note").unwrap();
        assert_eq!(note.dtype(), &DataType::String);
        assert_eq!(note.null_count(), 1);
        assert_eq!(frame.column("tags").unwrap().null_count(), 1);
        std::fs::write(&path, "{\"id\":1}\n[1,2]\n").unwrap();
        let err = read(&path).unwrap_err();
        assert!(err.ends_with("eu.ndjson:2: not a JSON object"), "{err}");
    }
}
