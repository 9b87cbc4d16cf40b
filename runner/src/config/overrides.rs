//! A manual run's param overrides (`patrol run ID --param key=value`).
//!
//! A run row carries only these, never a job kind or a full params copy:
//! the executor takes both from the loaded schedule and merges the
//! overrides over its params, and only keys the schedule's
//! `manual_params` allows (a row is not a command — docs/scheduling.md).
//! Stored as a JSON object of dotted key → value, applied in key order (a
//! parent key sorts before the keys below it).

use serde_json::{Map, Value};

use super::Schedule;

/// Parses `key=value` (the value read as YAML; dots in `key` reach into
/// maps) into the overrides.
pub fn add_override(overrides: &mut Map<String, Value>, assignment: &str) -> Result<(), String> {
    let (key, raw) = assignment.split_once('=').ok_or("expected KEY=VALUE")?;
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err("empty key".into());
    }
    let value: Value = match serde_norway::from_str::<serde_norway::Value>(raw) {
        Ok(serde_norway::Value::Null)
            if !raw.trim().is_empty() && raw.trim() != "null" && raw.trim() != "~" =>
        {
            Value::String(raw.to_string())
        }
        Ok(value) => serde_json::to_value(value).map_err(|err| err.to_string())?,
        Err(_) => Value::String(raw.to_string()),
    };
    overrides.insert(key.to_string(), value);
    Ok(())
}

/// The first override key `schedule` does not allow, as a message naming
/// the key and `manual_params`.
pub fn check_allowed(schedule: &Schedule, overrides: &Map<String, Value>) -> Result<(), String> {
    for key in overrides.keys() {
        let top = key.split('.').next().unwrap_or(key);
        if !schedule.manual_params.iter().any(|allowed| allowed == top) {
            let allowed = if schedule.manual_params.is_empty() {
                "none".to_string()
            } else {
                schedule.manual_params.join(", ")
            };
            return Err(format!(
                "param `{key}` may not be overridden on schedule `{}`: its `manual_params` allow {allowed}",
                schedule.id
            ));
        }
    }
    Ok(())
}

/// The run's params: `overrides` (a JSON object, see the module doc) set
/// over `base`.
pub fn params_with(base: &Value, overrides: &Value) -> Result<Value, String> {
    let overrides = overrides
        .as_object()
        .ok_or("the run's overrides are not a map")?;
    let mut params = base.clone();
    for (key, value) in overrides {
        set_dotted(&mut params, key, value.clone())?;
    }
    Ok(params)
}

/// Sets `key` (dots walk into nested maps, made where missing) to `value`.
fn set_dotted(params: &mut Value, key: &str, value: Value) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    let Some((last, parents)) = parts.split_last() else {
        return Err("empty key".into());
    };
    let mut target = params;
    for part in parents {
        if !target.is_object() {
            *target = Value::Object(Map::new());
        }
        target = target
            .as_object_mut()
            .ok_or("not a map")?
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    let map = target
        .as_object_mut()
        .ok_or_else(|| format!("`{key}` does not lead into a map"))?;
    map.insert((*last).to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{add_override, params_with};
    use serde_json::{json, Map, Value};

    #[test]
    fn overrides_are_yaml_values_set_at_dotted_keys() {
        let mut overrides = Map::new();
        add_override(&mut overrides, "env.B=two").unwrap();
        add_override(&mut overrides, "args=[\"-v\", \"--dry\"]").unwrap();
        add_override(&mut overrides, "output_limit=1KiB").unwrap();
        assert!(add_override(&mut overrides, "novalue").is_err());
        assert!(add_override(&mut overrides, "a..b=1").is_err());
        let base = json!({"program": "x", "env": {"A": "1"}});
        let params = params_with(&base, &Value::Object(overrides)).unwrap();
        assert_eq!(params["env"], json!({"A": "1", "B": "two"}));
        assert_eq!(params["args"], json!(["-v", "--dry"]));
        assert_eq!(params["output_limit"], json!("1KiB"));
        assert_eq!(params["program"], "x");
    }
}
