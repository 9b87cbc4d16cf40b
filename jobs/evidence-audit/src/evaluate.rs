//! A release's evidence folder evaluated against the catalog: the seed's
//! renderer output `{created_utc, release, controls: [{id, name, pass,
//! details}], overall}`, with each failure explained in `details`.
//!
//! A release folder may hold `release.json` — `{tag, created, artifacts:
//! [{name, sha256}]}` — naming the release, its time (the reference time
//! of `max_age`) and the artifacts attestations must name.

use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use patrol_provmon_verify::key::PublicKey;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::catalog::{Assertion, Catalog, Control, Op};
use crate::sarif::{self, Severity};

/// `release.json`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    pub tag: String,
    #[serde(default)]
    pub created: Option<DateTime<Utc>>,
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    pub name: String,
    pub sha256: String,
}

/// One control's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ControlResult {
    pub id: String,
    pub name: String,
    pub pass: bool,
    pub details: Vec<Value>,
}

/// The renderer's output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub created_utc: String,
    pub release: String,
    pub controls: Vec<ControlResult>,
    pub overall: bool,
}

/// What an evaluation needs besides the catalog and the folder.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// Keys attestations may be signed with.
    pub attestation_keys: Vec<PublicKey>,
    /// "Now", when the release does not say when it was made.
    pub now: DateTime<Utc>,
}

/// Reads `release.json` of `dir`, if there is one; without it the release
/// is named after the folder.
pub fn release_of(dir: &Path) -> Result<Release, String> {
    let path = dir.join("release.json");
    let release = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice::<Release>(&bytes)
            .map_err(|err| format!("{}: {err}", path.display()))?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Release {
            tag: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            ..Release::default()
        },
        Err(err) => return Err(format!("{}: {err}", path.display())),
    };
    check_tag(&release.tag).map_err(|err| format!("{}: tag: {err}", path.display()))?;
    Ok(release)
}

/// A tag names folders (attestations, packs): letters, digits and
/// `._+-` only, not `.` or `..`, so it can never point elsewhere.
pub fn check_tag(tag: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-');
    if tag.is_empty() || tag == "." || tag == ".." || !tag.chars().all(allowed) {
        return Err(format!(
            "`{tag}` is not a release tag (letters, digits and ._+- only)"
        ));
    }
    Ok(())
}

/// Evaluates every control over `dir`.
pub fn evaluate(catalog: &Catalog, dir: &Path, release: &Release, inputs: &Inputs) -> Report {
    let controls: Vec<ControlResult> = catalog
        .controls
        .iter()
        .map(|control| evaluate_control(control, dir, release, inputs))
        .collect();
    Report {
        created_utc: inputs.now.to_rfc3339_opts(SecondsFormat::Secs, true),
        release: release.tag.clone(),
        overall: controls.iter().all(|c| c.pass),
        controls,
    }
}

/// The files `pattern` matches under `dir`, sorted.
pub fn matches(dir: &Path, pattern: &str) -> Vec<PathBuf> {
    let full = format!(
        "{}/{}",
        glob::Pattern::escape(&dir.to_string_lossy()),
        pattern
    );
    // Only regular files that really are inside `dir`: a symbolic link
    // (to a file or through a folder) could bring in anything.
    let inside = dir.canonicalize().ok();
    let mut found: Vec<PathBuf> = match glob::glob(&full) {
        Ok(paths) => paths
            .filter_map(Result::ok)
            .filter(|p| p.symlink_metadata().is_ok_and(|m| m.is_file()))
            .filter(|p| {
                p.canonicalize()
                    .ok()
                    .zip(inside.as_ref())
                    .is_some_and(|(real, dir)| real.starts_with(dir))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    found.sort();
    found
}

fn relative(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

fn evaluate_control(
    control: &Control,
    dir: &Path,
    release: &Release,
    inputs: &Inputs,
) -> ControlResult {
    let mut details = Vec::new();
    let mut evidence = Vec::new();
    for entry in &control.evidence {
        let found = matches(dir, entry.pattern());
        if found.is_empty() {
            details.push(json!({"missing": entry.pattern()}));
        }
        evidence.extend(found);
    }
    for assertion in &control.asserts {
        details.extend(check(assertion, dir, &evidence, release, inputs));
    }
    ControlResult {
        id: control.id.clone(),
        name: control.name.clone(),
        pass: details.is_empty(),
        details,
    }
}

/// The files an assertion looks at: those `path` matches, else the
/// control's evidence with `default_ext` (any when `None`).
fn files(
    dir: &Path,
    path: Option<&String>,
    evidence: &[PathBuf],
    ext: Option<&str>,
) -> Vec<PathBuf> {
    match path {
        Some(pattern) => matches(dir, pattern),
        None => evidence
            .iter()
            .filter(|p| ext.is_none_or(|e| p.extension().is_some_and(|x| x == e)))
            .cloned()
            .collect(),
    }
}

/// The failures of one assertion, as details entries (none: it holds).
fn check(
    assertion: &Assertion,
    dir: &Path,
    evidence: &[PathBuf],
    release: &Release,
    inputs: &Inputs,
) -> Vec<Value> {
    match assertion {
        Assertion::Present { paths } => paths
            .iter()
            .filter(|p| matches(dir, p).is_empty())
            .map(|p| json!({"missing": p}))
            .collect(),
        Assertion::SarifNoLevels { levels, path } => {
            let levels: Vec<Severity> = levels.iter().filter_map(|l| Severity::parse(l)).collect();
            let logs = files(dir, path.as_ref(), evidence, Some("sarif"));
            if logs.is_empty() {
                return vec![json!({"sarif": {"problem": "no SARIF file to check"}})];
            }
            logs.iter()
                .filter_map(|log| {
                    let file = relative(dir, log);
                    let verdict = std::fs::read(log)
                        .map_err(|err| err.to_string())
                        .and_then(|bytes| sarif::gate(&bytes, &levels));
                    match verdict {
                        Ok(v) if v.pass() => None,
                        Ok(v) => Some(json!({"sarif": {"file": file, "counted": v.counted}})),
                        Err(problem) => Some(json!({"sarif": {"file": file, "problem": problem}})),
                    }
                })
                .collect()
        }
        Assertion::CosignVerifyAttestation { path } => {
            let envelopes = files(dir, path.as_ref(), evidence, Some("json"));
            crate::attest_check::check(dir, &envelopes, release, &inputs.attestation_keys)
        }
        Assertion::Json {
            path,
            query,
            op,
            value,
        } => {
            let targets = matches(dir, path);
            if targets.is_empty() {
                return vec![json!({"json": {"missing": path}})];
            }
            targets
                .iter()
                .filter_map(|file| json_check(&relative(dir, file), file, query, *op, value))
                .collect()
        }
        Assertion::MaxAge { days, path, time } => {
            let reference = release.created.unwrap_or(inputs.now);
            let targets = files(dir, path.as_ref(), evidence, None);
            if targets.is_empty() {
                let what = path
                    .clone()
                    .unwrap_or_else(|| "the control's evidence".into());
                return vec![json!({"max_age": {"missing": what}})];
            }
            targets
                .iter()
                .filter_map(|file| {
                    let name = relative(dir, file);
                    let made = match evidence_time(file, time.as_deref()) {
                        Ok(made) => made,
                        Err(problem) => {
                            return Some(json!({"max_age": {"file": name, "problem": problem}}))
                        }
                    };
                    let age = reference - made;
                    if made > reference {
                        return Some(json!({"max_age": {"file": name, "problem": "dated after the release",
                            "time": made.to_rfc3339_opts(SecondsFormat::Secs, true)}}));
                    }
                    (age > chrono::Duration::days(i64::from(*days))).then(|| {
                        json!({"max_age": {"file": name, "age_days": age.num_days(), "max_days": days,
                                           "time": made.to_rfc3339_opts(SecondsFormat::Secs, true)}})
                    })
                })
                .collect()
        }
    }
}

fn read_json(file: &Path) -> Result<Value, String> {
    let bytes = std::fs::read(file).map_err(|err| err.to_string())?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    serde_json::from_slice(bytes).map_err(|err| format!("not JSON: {err}"))
}

fn json_check(name: &str, file: &Path, query: &str, op: Op, want: &Option<Value>) -> Option<Value> {
    let fail =
        |problem: String| Some(json!({"json": {"file": name, "query": query, "problem": problem}}));
    let document = match read_json(file) {
        Ok(document) => document,
        Err(problem) => return fail(problem),
    };
    let path = match serde_json_path::JsonPath::parse(query) {
        Ok(path) => path,
        Err(err) => return fail(err.to_string()),
    };
    let nodes = path.query(&document).all();
    let wrong: Vec<&Value> = match (op, want) {
        (Op::Absent, _) => nodes,
        (_, None) => return fail("no value to compare with".into()),
        _ if nodes.is_empty() => return fail("selects nothing".into()),
        (_, Some(want)) => nodes
            .into_iter()
            .filter(|found| !compare(found, op, want))
            .collect(),
    };
    if wrong.is_empty() {
        return None;
    }
    Some(json!({"json": {"file": name, "query": query, "op": op, "value": want, "found": wrong}}))
}

/// `found op want`: numbers as numbers, strings in byte order; `==`/`!=`
/// on any JSON; an ordering between other kinds is false.
fn compare(found: &Value, op: Op, want: &Value) -> bool {
    use std::cmp::Ordering;
    let order = match (found, want) {
        (Value::Number(a), Value::Number(b)) => a
            .as_f64()
            .zip(b.as_f64())
            .and_then(|(a, b)| a.partial_cmp(&b)),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        _ => None,
    };
    match op {
        Op::Eq => order.map_or(found == want, |o| o == Ordering::Equal),
        Op::Ne => order.map_or(found != want, |o| o != Ordering::Equal),
        Op::Lt => order == Some(Ordering::Less),
        Op::Le => matches!(order, Some(Ordering::Less | Ordering::Equal)),
        Op::Gt => order == Some(Ordering::Greater),
        Op::Ge => matches!(order, Some(Ordering::Greater | Ordering::Equal)),
        Op::Absent => false,
    }
}

/// When a piece of evidence was made: the RFC 3339 time `time` selects in
/// it, else its modification time.
fn evidence_time(file: &Path, time: Option<&str>) -> Result<DateTime<Utc>, String> {
    let Some(query) = time else {
        let modified = std::fs::metadata(file)
            .and_then(|m| m.modified())
            .map_err(|err| err.to_string())?;
        return Ok(modified.into());
    };
    let document = read_json(file)?;
    let path = serde_json_path::JsonPath::parse(query).map_err(|err| err.to_string())?;
    let text = path
        .query(&document)
        .at_most_one()
        .map_err(|_| format!("`{query}` selects more than one value"))?
        .and_then(Value::as_str)
        .ok_or_else(|| format!("`{query}` selects no timestamp"))?;
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|err| format!("`{text}` is not an RFC 3339 time: {err}"))
}
