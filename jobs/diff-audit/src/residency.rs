//! Residency: each tenant's home region from the tenants file (seed 002
//! KR1.1, `version: 1`, `tenants: [{id, name, region, labels,
//! data_classes}]`). A key the snapshot finds in one copy only is a
//! `cross-region-write` when the copy holding it is not in the tenant's
//! home region: the row was written where the tenant's data may not be
//! written (a row in its home copy only is replication lag: `missing`).
//! The change streams say more: a change both copies made is a
//! `cross-region-write` when the copy outside the home made it first (by
//! the events' source times), and one made only there once it is missing
//! from the home copy.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use patrol_job_api::yaml_lines::read_located;
use serde::Deserialize;

use crate::snapshot::{Diff, Reason, Side};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantsFile {
    version: u32,
    tenants: Vec<Tenant>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Tenant {
    id: String,
    #[serde(default)]
    #[allow(dead_code)]
    name: Option<String>,
    region: String,
    #[serde(default)]
    #[allow(dead_code)]
    labels: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)]
    data_classes: BTreeMap<String, String>,
}

/// Tenant id → home region (upper case).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Homes(pub BTreeMap<String, String>);

/// Reads the tenants file; every problem as `file:line:col: field: message`.
pub fn load(path: &Path) -> Result<Homes, Vec<String>> {
    let located = read_located::<TenantsFile>(path).map_err(|err| vec![err])?;
    let at = |field: &str, message: String| located.at(field, message);
    let file = &located.value;
    let mut errors = Vec::new();
    if file.version != 1 {
        errors.push(at(
            "version",
            format!("version {} is not known (1 is)", file.version),
        ));
    }
    let mut seen = HashSet::new();
    let mut homes = BTreeMap::new();
    for (n, tenant) in file.tenants.iter().enumerate() {
        if !seen.insert(tenant.id.clone()) {
            errors.push(at(
                &format!("tenants[{n}].id"),
                format!("tenant `{}` is listed twice", tenant.id),
            ));
        }
        if tenant.region.trim().is_empty() {
            errors.push(at(&format!("tenants[{n}].region"), "is empty".into()));
        }
        homes.insert(tenant.id.clone(), tenant.region.trim().to_uppercase());
    }
    if errors.is_empty() {
        Ok(Homes(homes))
    } else {
        Err(errors)
    }
}

/// The copies' regions (upper case).
#[derive(Debug, Clone)]
pub struct Regions {
    pub left: String,
    pub right: String,
}

/// Turns each `missing` diff whose row sits only in a copy outside the
/// tenant's home region into `cross-region-write` (`side`: the copy that
/// holds it). Returns how many.
pub fn classify(diffs: &mut [Diff], homes: &Homes, regions: &Regions) -> usize {
    let mut found = 0;
    for diff in diffs.iter_mut().filter(|d| d.reason == Reason::Missing) {
        let holder = match diff.side {
            Some(Side::Left) => Side::Right,
            _ => Side::Left,
        };
        if let Some(wrong) = outside_home(&diff.key, holder, homes, regions) {
            diff.reason = Reason::CrossRegionWrite;
            diff.side = Some(holder);
            diff.regions = Some(wrong);
            found += 1;
        }
    }
    found
}

/// `(region of copy, tenant's home)` when the key's tenant is homed
/// elsewhere than `copy`'s region; `None` for a tenant at home or unknown
/// (and for a key without a `tenant` column).
pub fn outside_home(
    key: &[(String, serde_json::Value)],
    copy: Side,
    homes: &Homes,
    regions: &Regions,
) -> Option<(String, String)> {
    // A numeric tenant id is looked up as its text.
    let tenant = match &key.iter().find(|(name, _)| name == "tenant")?.1 {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Number(number) => number.to_string(),
        _ => return None,
    };
    let home = homes.0.get(&tenant)?;
    let region = match copy {
        Side::Left => &regions.left,
        Side::Right => &regions.right,
    };
    (region != home).then(|| (region.clone(), home.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn missing(tenant: &str, side: Side) -> Diff {
        Diff {
            key: vec![("tenant".into(), tenant.into()), ("id".into(), 1.into())],
            reason: Reason::Missing,
            side: Some(side),
            lhs_sha256: None,
            rhs_sha256: None,
            rows: None,
            regions: None,
            lag_ms: None,
        }
    }

    #[test]
    fn a_row_only_outside_its_tenants_home_is_a_cross_region_write() {
        let homes = Homes(
            [("acme", "EU"), ("globex", "US")]
                .map(|(t, r)| (t.to_string(), r.to_string()))
                .into(),
        );
        let regions = Regions {
            left: "EU".into(),
            right: "US".into(),
        };
        // acme only in US (missing on the left): wrong region. acme only in
        // EU: lag. globex only in US: its home. unknown tenants: unchanged.
        // A numeric tenant id is its text.
        let mut numeric = missing("acme", Side::Left);
        numeric.key[0].1 = 42.into();
        let numeric_homes = Homes([("42".to_string(), "EU".to_string())].into());
        assert_eq!(classify(&mut [numeric], &numeric_homes, &regions), 1);
        let mut diffs = vec![
            missing("acme", Side::Left),
            missing("acme", Side::Right),
            missing("globex", Side::Left),
            missing("hooli", Side::Left),
        ];
        assert_eq!(classify(&mut diffs, &homes, &regions), 1);
        assert_eq!(diffs[0].reason, Reason::CrossRegionWrite);
        assert_eq!(diffs[0].side, Some(Side::Right));
        assert_eq!(diffs[0].regions, Some(("US".into(), "EU".into())));
        let line = diffs[0].to_json("audit", "t");
        assert_eq!(
            (line["reason"].as_str(), line["region"].as_str()),
            (Some("cross-region-write"), Some("US"))
        );
        assert!(diffs[1..].iter().all(|d| d.reason == Reason::Missing));
    }

    #[test]
    fn the_tenants_file_is_checked_with_file_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenants.yaml");
        std::fs::write(
            &path,
            "version: 1\ntenants:\n  - id: acme\n    region: EU\n    colour: blue\n",
        )
        .unwrap();
        let errors = load(&path).unwrap_err();
        assert!(
            errors[0].contains("tenants.yaml:5:5: tenants[0].colour: unknown field `colour`"),
            "{errors:?}"
        );
        std::fs::write(
            &path,
            "version: 2\ntenants:\n  - id: acme\n    region: EU\n  - id: acme\n    region: us\n",
        )
        .unwrap();
        let errors = load(&path).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].contains(":1:1: version: version 2 is not known"),
            "{errors:?}"
        );
        assert!(
            errors[1].contains(":5:5: tenants[1].id: tenant `acme` is listed twice"),
            "{errors:?}"
        );
    }

    #[test]
    fn the_shipped_tenants_file_agrees_with_the_fixtures_generator() {
        let shipped =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/diff-audit/tenants.yaml");
        let homes = load(&shipped).unwrap();
        let generator: BTreeMap<String, String> = crate::fixtures::HOMES
            .iter()
            .map(|(t, r)| (t.to_string(), r.to_string()))
            .collect();
        assert_eq!(homes.0, generator);
    }
}
