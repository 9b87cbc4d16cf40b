//! The control catalog (seed 003 §III.1, `schema: 1`): controls, the
//! evidence each needs (paths or globs under a release's evidence folder),
//! the assertions over it, and each control's SOC 2 / ISO 27001 ids.
//!
//! ```yaml
//! schema: 1
//! controls:
//!   - id: SC-01
//!     name: Supply Chain — SBOM & Scans
//!     maps: {soc2: [CC7.1], iso27001: [A.8.8]}
//!     evidence:
//!       - path: sbom/sbom-*.json
//!       - scans/trivy.sarif            # a bare path is the same
//!     assert:
//!       - type: sarif_no_levels
//!         levels: [CRITICAL, HIGH]
//! ```
//!
//! Every evidence entry must match at least one file (the implicit
//! `present`, as the seed's renderer does); the assertions then run.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use patrol_job_api::yaml_lines::read_located;
use serde::{Deserialize, Serialize};

use crate::sarif::Severity;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub schema: u32,
    pub controls: Vec<Control>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    pub id: String,
    pub name: String,
    /// Framework → its control ids (`soc2`, `iso27001`).
    #[serde(default)]
    pub maps: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub evidence: Vec<Evidence>,
    #[serde(default, rename = "assert")]
    pub asserts: Vec<Assertion>,
}

/// `- path: GLOB` or `- GLOB`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Evidence {
    Path(String),
    Entry(EvidenceEntry),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceEntry {
    pub path: String,
}

impl Evidence {
    pub fn pattern(&self) -> &str {
        match self {
            Evidence::Path(path) | Evidence::Entry(EvidenceEntry { path }) => path,
        }
    }
}

/// A comparison of a `json` assertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Op {
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
    /// The query must select nothing (e.g. `$[*].failures[*]`).
    #[serde(rename = "absent")]
    Absent,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Assertion {
    /// Every glob (of the control's evidence, or `paths`) matches a file.
    Present {
        #[serde(default)]
        paths: Vec<String>,
    },
    /// No SARIF result of these severities (every `.sarif` evidence file,
    /// or those `path` matches).
    SarifNoLevels {
        levels: Vec<String>,
        #[serde(default)]
        path: Option<String>,
    },
    /// The release's DSSE in-toto attestations verify and name its
    /// artifacts.
    CosignVerifyAttestation {
        #[serde(default)]
        path: Option<String>,
    },
    /// A JSONPath (RFC 9535) over an evidence file compared with a value:
    /// every node the query selects must compare true, and it must select
    /// at least one (with `op: absent`, it must select none).
    Json {
        path: String,
        query: String,
        op: Op,
        #[serde(default)]
        value: Option<serde_json::Value>,
    },
    /// Evidence no older than `days` at the release's time: its time from
    /// `time` (a JSONPath to an RFC 3339 timestamp in the file), else the
    /// file's modification time.
    MaxAge {
        days: u32,
        #[serde(default)]
        path: Option<String>,
        #[serde(default)]
        time: Option<String>,
    },
}

impl Assertion {
    pub fn kind(&self) -> &'static str {
        match self {
            Assertion::Present { .. } => "present",
            Assertion::SarifNoLevels { .. } => "sarif_no_levels",
            Assertion::CosignVerifyAttestation { .. } => "cosign_verify_attestation",
            Assertion::Json { .. } => "json",
            Assertion::MaxAge { .. } => "max_age",
        }
    }
}

/// Reads and checks a catalog; every problem as `file:line:col: field:
/// message`, all of them at once.
pub fn load(path: &Path) -> Result<Catalog, Vec<String>> {
    let located = read_located::<Catalog>(path).map_err(|err| vec![err])?;
    let at = |field: &str, message: String| located.at(field, message);
    let catalog = &located.value;
    let mut errors = Vec::new();
    if catalog.schema != 1 {
        errors.push(at(
            "schema",
            format!("schema {} is not known (1 is)", catalog.schema),
        ));
    }
    if catalog.controls.is_empty() {
        errors.push(at("controls", "no controls".into()));
    }
    let mut seen = HashSet::new();
    for (n, control) in catalog.controls.iter().enumerate() {
        let field = |name: &str| format!("controls[{n}].{name}");
        if control.id.trim().is_empty() {
            errors.push(at(&field("id"), "is empty".into()));
        }
        if !seen.insert(control.id.clone()) {
            errors.push(at(
                &field("id"),
                format!("control `{}` is listed twice", control.id),
            ));
        }
        for (e, evidence) in control.evidence.iter().enumerate() {
            if let Err(message) = check_glob(evidence.pattern()) {
                errors.push(at(&field(&format!("evidence[{e}]")), message));
            }
        }
        for (framework, ids) in &control.maps {
            if ids.iter().any(|id| id.trim().is_empty()) {
                errors.push(at(
                    &field(&format!("maps.{framework}")),
                    "an empty id".into(),
                ));
            }
        }
        for (a, assertion) in control.asserts.iter().enumerate() {
            let name = field(&format!("assert[{a}]"));
            errors.extend(
                check_assertion(assertion)
                    .into_iter()
                    .map(|(sub, message)| {
                        at(
                            &if sub.is_empty() {
                                name.clone()
                            } else {
                                format!("{name}.{sub}")
                            },
                            message,
                        )
                    }),
            );
        }
    }
    if errors.is_empty() {
        Ok(located.value)
    } else {
        Err(errors)
    }
}

/// A glob is relative, inside the evidence folder, and well formed.
pub fn check_glob(pattern: &str) -> Result<(), String> {
    if pattern.trim().is_empty() {
        return Err("an empty path".into());
    }
    if pattern.starts_with('/') || pattern.split('/').any(|part| part == "..") {
        return Err(format!(
            "`{pattern}` must stay inside the release's evidence folder"
        ));
    }
    glob::Pattern::new(pattern)
        .map(|_| ())
        .map_err(|err| format!("`{pattern}`: {err}"))
}

fn check_assertion(assertion: &Assertion) -> Vec<(&'static str, String)> {
    let mut errors = Vec::new();
    let mut glob = |field: &'static str, pattern: Option<&String>| {
        if let Some(Err(message)) = pattern.map(|p| check_glob(p)) {
            errors.push((field, message));
        }
    };
    match assertion {
        Assertion::Present { paths } => paths.iter().for_each(|p| glob("paths", Some(p))),
        Assertion::SarifNoLevels { levels, path } => {
            glob("path", path.as_ref());
            if levels.is_empty() {
                errors.push(("levels", "name at least one level".into()));
            }
            for level in levels {
                if Severity::parse(level).is_none() {
                    errors.push((
                        "levels",
                        format!("`{level}` is not CRITICAL, HIGH, MEDIUM, LOW or NONE"),
                    ));
                }
            }
        }
        Assertion::CosignVerifyAttestation { path } => glob("path", path.as_ref()),
        Assertion::Json {
            path,
            query,
            op,
            value,
        } => {
            glob("path", Some(path));
            match (op, value) {
                (Op::Absent, Some(_)) => {
                    errors.push(("value", "`absent` takes no value".into()));
                }
                (Op::Absent, None) | (_, Some(_)) => {}
                (_, None) => errors.push(("value", "give the value to compare with".into())),
            }
            if let Err(err) = serde_json_path::JsonPath::parse(query) {
                errors.push(("query", format!("not an RFC 9535 JSONPath: {err}")));
            }
        }
        Assertion::MaxAge { days, path, time } => {
            glob("path", path.as_ref());
            if *days == 0 {
                errors.push(("days", "must be at least 1".into()));
            }
            if let Some(Err(err)) = time.as_deref().map(serde_json_path::JsonPath::parse) {
                errors.push(("time", format!("not an RFC 9535 JSONPath: {err}")));
            }
        }
    }
    errors
}
