//! Locations against tenants, with the switchboard policy's deny codes.

use std::collections::BTreeMap;

use patrol_plugin_sdk::{Finding, Outcome, RunReport, Severity};

use crate::inputs::{class_rank, Location, Locations, Tenant, Tenants};

/// One broken rule at one location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The seed's deny code: `RESIDENCY`, `LABEL`, `CLASSIFICATION`, `TENANT`.
    pub code: &'static str,
    pub location: Location,
    /// What the tenant allows, for the page.
    pub expected: String,
    pub found: String,
}

impl Violation {
    /// The rule's short name, used in keys and runbook names.
    pub fn rule(&self) -> &'static str {
        match self.code {
            "RESIDENCY" => "region",
            "LABEL" => "label",
            "CLASSIFICATION" => "class",
            _ => "unknown-tenant",
        }
    }

    /// Stable across runs: the rule, the tenant and the store.
    pub fn key(&self) -> String {
        format!(
            "residency/{}/{}/{}",
            self.rule(),
            self.location.tenant,
            self.location.store
        )
    }

    fn finding(&self) -> Finding {
        let location = &self.location;
        let severity = match self.code {
            // Data outside its region is the breach this check exists for.
            "RESIDENCY" | "TENANT" => Severity::Error,
            _ => Severity::Warning,
        };
        let title = match self.code {
            "RESIDENCY" => format!(
                "Residency: {} {} data stored in {} (tenant region {})",
                location.tenant, location.kind, self.found, self.expected
            ),
            "LABEL" => format!(
                "Residency: {} data labelled `{}` in {} (tenant allows {})",
                location.tenant, self.found, location.store, self.expected
            ),
            "CLASSIFICATION" => format!(
                "Residency: {} {} data classified {} in {} (tenant allows up to {})",
                location.tenant, location.kind, self.found, location.store, self.expected
            ),
            _ => format!(
                "Residency: data of undeclared tenant `{}` in {}",
                location.tenant, location.store
            ),
        };
        let mut finding = Finding::new(self.key(), severity, title);
        finding.summary = format!(
            "{}: {} holds {} data of tenant {}; expected {}, found {}",
            self.code, location.store, location.kind, location.tenant, self.expected, self.found
        );
        finding.runbook = Some(format!("residency-{}", self.rule()));
        finding.labels = BTreeMap::from([
            ("tenant".to_string(), location.tenant.clone()),
            ("region".to_string(), location.region.clone()),
            ("deny_code".to_string(), self.code.to_string()),
            ("plugin".to_string(), "residency".to_string()),
        ]);
        finding.details = serde_json::json!({
            "deny_code": self.code,
            "store": location.store,
            "kind": location.kind,
            "region": location.region,
            "label": location.label,
            "classification": location.classification,
            "expected": self.expected,
            "found": self.found,
        });
        finding
    }
}

/// Every violation, in file order; a location may break several rules.
pub fn check_locations(tenants: &Tenants, locations: &[Location]) -> Vec<Violation> {
    let by_id: BTreeMap<&str, &Tenant> = tenants
        .tenants
        .iter()
        .map(|tenant| (tenant.id.as_str(), tenant))
        .collect();
    let mut violations = Vec::new();
    for location in locations {
        let violation = |code, expected: String, found: String| Violation {
            code,
            location: location.clone(),
            expected,
            found,
        };
        let Some(tenant) = by_id.get(location.tenant.as_str()) else {
            violations.push(violation(
                "TENANT",
                format!(
                    "one of {}",
                    by_id.keys().copied().collect::<Vec<_>>().join(", ")
                ),
                location.tenant.clone(),
            ));
            continue;
        };
        if !location.region.eq_ignore_ascii_case(&tenant.region) {
            violations.push(violation(
                "RESIDENCY",
                tenant.region.clone(),
                location.region.clone(),
            ));
        }
        if let Some(label) = &location.label {
            if !tenant.labels.contains(label) {
                violations.push(violation("LABEL", tenant.labels.join(", "), label.clone()));
            }
        }
        if let Some(class) = &location.classification {
            let allowed = tenant.data_classes.get(&location.kind);
            let too_high = match (allowed.and_then(|a| class_rank(a)), class_rank(class)) {
                (Some(allowed), Some(found)) => found > allowed,
                // An unknown class, or a kind the tenant has no class for,
                // cannot be shown to be allowed.
                _ => true,
            };
            if too_high {
                violations.push(violation(
                    "CLASSIFICATION",
                    allowed
                        .cloned()
                        .unwrap_or_else(|| format!("no class declared for `{}`", location.kind)),
                    class.clone(),
                ));
            }
        }
    }
    violations
}

/// The run's report: one finding per violation, partial when lines were bad.
pub fn report(tenants: &Tenants, locations: &Locations, dry_run: bool) -> RunReport {
    let violations = check_locations(tenants, &locations.locations);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for violation in &violations {
        *counts.entry(violation.code).or_default() += 1;
    }
    let mut summary = format!(
        "{} locations of {} tenants checked, {} violation(s)",
        locations.locations.len(),
        tenants.tenants.len(),
        violations.len()
    );
    if locations.bad_line_count > 0 {
        summary.push_str(&format!(", {} bad line(s)", locations.bad_line_count));
    }
    if dry_run {
        summary.push_str(" (dry run)");
    }
    let mut report = RunReport::new(Outcome::Succeeded, summary);
    report.details = serde_json::json!({
        "locations": locations.locations.len(),
        "tenants": tenants.tenants.len(),
        "violations": counts,
        "bad_lines": locations.bad_line_count,
        "bad_line_samples": locations.bad_lines,
    });
    // A location we could not read may hold a violation: do not resolve
    // what we did not see.
    report.findings_partial = locations.bad_line_count > 0;
    report.findings = violations.iter().map(Violation::finding).collect();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenants() -> Tenants {
        serde_norway::from_str(
            "version: 1\ntenants:\n  - id: acme\n    region: EU\n    labels: [confidential, pii]\n    data_classes: { audit: confidential, agents: internal }\n  - id: beta\n    region: US\n    labels: [internal]\n    data_classes: { audit: internal, agents: public }\n",
        )
        .expect("tenants parse")
    }

    fn location(json: &str) -> Location {
        serde_json::from_str(json).expect("location parses")
    }

    #[test]
    fn each_deny_code_is_found_with_a_stable_key() {
        let locations = vec![
            location(
                r#"{"tenant":"acme","store":"s3://acme-eu-audit","kind":"audit","region":"EU","label":"pii","classification":"confidential"}"#,
            ),
            location(
                r#"{"tenant":"acme","store":"s3://acme-us-replica","kind":"audit","region":"US","label":"pii","classification":"confidential"}"#,
            ),
            location(
                r#"{"tenant":"beta","store":"pg://beta/agents","kind":"agents","region":"US","label":"pii","classification":"internal"}"#,
            ),
            location(r#"{"tenant":"gamma","store":"s3://gamma","kind":"audit","region":"EU"}"#),
        ];
        let violations = check_locations(&tenants(), &locations);
        let keys: Vec<String> = violations.iter().map(Violation::key).collect();
        assert_eq!(
            keys,
            [
                "residency/region/acme/s3://acme-us-replica",
                "residency/label/beta/pg://beta/agents",
                "residency/class/beta/pg://beta/agents",
                "residency/unknown-tenant/gamma/s3://gamma",
            ]
        );
        assert_eq!(violations[0].expected, "EU");
        assert_eq!(violations[0].found, "US");
    }

    #[test]
    fn bad_lines_make_the_findings_partial() {
        let dir = std::env::temp_dir().join(format!("residency-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("locations.ndjson");
        std::fs::write(
            &path,
            "{\"tenant\":\"acme\",\"store\":\"a\",\"kind\":\"audit\",\"region\":\"EU\"}\nnot json\n",
        )
        .expect("write");
        let locations = crate::read_locations(&path).expect("reads");
        let report = report(&tenants(), &locations, false);
        assert!(report.findings_partial);
        assert!(report.findings.is_empty());
        assert_eq!(locations.bad_line_count, 1);
        std::fs::remove_dir_all(&dir).ok();
    }
}
