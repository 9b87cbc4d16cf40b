//! The two inputs: `tenants.yaml` in the seed's shape, and the observed
//! data locations (one JSON object per line, as an inventory export).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// `tenants.yaml`: `version: 1` and the tenants.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tenants {
    pub version: u32,
    pub tenants: Vec<Tenant>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Where the tenant's data must live, e.g. `EU`.
    pub region: String,
    /// Labels the tenant's data may carry.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Per data kind, the most sensitive class allowed
    /// (`public < internal < confidential < restricted`).
    #[serde(default)]
    pub data_classes: BTreeMap<String, String>,
}

/// One observed place where a tenant's data is stored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    pub tenant: String,
    /// The store's stable name (bucket, table, index), part of the alert key.
    pub store: String,
    /// The data kind, as in `data_classes` (`audit`, `agents`).
    pub kind: String,
    pub region: String,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub classification: Option<String>,
}

/// The locations file read, with the lines that could not be used.
#[derive(Debug, Clone, Default)]
pub struct Locations {
    pub locations: Vec<Location>,
    /// `line N: why`, at most a few kept.
    pub bad_lines: Vec<String>,
    pub bad_line_count: usize,
}

pub fn read_tenants(path: &Path) -> Result<Tenants, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("cannot read tenants file {}: {err}", path.display()))?;
    let tenants: Tenants = serde_norway::from_str(&text)
        .map_err(|err| format!("tenants file {}: {err}", path.display()))?;
    if tenants.version != 1 {
        return Err(format!(
            "tenants file {}: version {} is not supported (expected 1)",
            path.display(),
            tenants.version
        ));
    }
    for tenant in &tenants.tenants {
        for (kind, class) in &tenant.data_classes {
            if class_rank(class).is_none() {
                return Err(format!(
                    "tenants file {}: tenant {} data_classes.{kind}: `{class}` is not a class (public, internal, confidential, restricted)",
                    path.display(),
                    tenant.id
                ));
            }
        }
    }
    Ok(tenants)
}

const KEPT_BAD_LINES: usize = 10;

pub fn read_locations(path: &Path) -> Result<Locations, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("cannot read locations file {}: {err}", path.display()))?;
    let mut read = Locations::default();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Location>(line) {
            Ok(location) => read.locations.push(location),
            Err(err) => {
                read.bad_line_count += 1;
                if read.bad_lines.len() < KEPT_BAD_LINES {
                    read.bad_lines.push(format!("line {}: {err}", index + 1));
                }
            }
        }
    }
    Ok(read)
}

/// The sensitivity order of the seed's classes (its OPA data uses the
/// same numbers: internal 1, confidential 2).
pub fn class_rank(class: &str) -> Option<u8> {
    match class {
        "public" => Some(0),
        "internal" => Some(1),
        "confidential" => Some(2),
        "restricted" => Some(3),
        _ => None,
    }
}
