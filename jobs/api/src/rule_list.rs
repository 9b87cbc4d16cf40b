//! Rules files (`policies/<job>/rules.yaml`): a `rules:` list whose entries
//! are deserialized and checked one by one, so every problem in the file is
//! reported at once as `file:line:col: field: message`.

use std::collections::HashSet;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::yaml_lines::parse_located;

/// Problems found by a job's own checks: `(field path, message)`, the path
/// below the file's root (`rules[2].window`).
pub type FieldProblems = Vec<(String, String)>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    rules: Vec<serde_norway::Value>,
}

/// Parses `source` (read from `path`): each entry of `rules` is
/// deserialized into `R` (field errors located), then `check`ed with its
/// field prefix (`rules[0]`); ids must be unique. `empty` is the message
/// for a file with no rules.
pub fn parse_rule_list<R, T>(
    path: &Path,
    source: &str,
    empty: &str,
    check: impl Fn(R, &str) -> Result<T, FieldProblems>,
    id: impl Fn(&T) -> &str,
) -> Result<Vec<T>, Vec<String>>
where
    R: DeserializeOwned,
{
    let file = parse_located::<RulesFile>(path, source).map_err(|err| vec![err])?;
    let at = |field: &str, message: String| file.at(field, message);
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    let mut ids = HashSet::new();
    if file.value.rules.is_empty() {
        errors.push(at("rules", empty.to_string()));
    }
    for (n, value) in file.value.rules.iter().cloned().enumerate() {
        let prefix = format!("rules[{n}]");
        let raw: R = match serde_path_to_error::deserialize(value) {
            Ok(raw) => raw,
            Err(err) => {
                let inner = err.path().to_string();
                let field = if inner == "." {
                    prefix.clone()
                } else {
                    format!("{prefix}.{inner}")
                };
                errors.push(at(&field, err.into_inner().to_string()));
                continue;
            }
        };
        match check(raw, &prefix) {
            Ok(rule) if ids.insert(id(&rule).to_string()) => rules.push(rule),
            Ok(rule) => errors.push(at(
                &format!("{prefix}.id"),
                format!("rule `{}` is defined twice", id(&rule)),
            )),
            Err(problems) => errors.extend(
                problems
                    .into_iter()
                    .map(|(field, message)| at(&field, message)),
            ),
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

/// The checks every rule shares: an id of 1-63 of `a-z 0-9 -`, and a
/// runbook that names a file in `runbooks/` (without `.md`).
pub fn check_id_and_runbook(
    id: &str,
    runbook: Option<&str>,
    prefix: &str,
    problems: &mut FieldProblems,
) {
    let valid_id = !id.is_empty()
        && id.len() <= 63
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid_id {
        problems.push((
            format!("{prefix}.id"),
            format!("`{id}` is not a valid rule id (1-63 of a-z, 0-9, -)"),
        ));
    }
    if let Some(runbook) = runbook {
        if runbook.is_empty() || runbook.contains(['/', '\\']) || runbook.starts_with('.') {
            problems.push((
                format!("{prefix}.runbook"),
                format!(
                    "`{runbook}` is not a runbook name (a file name in runbooks/, without .md)"
                ),
            ));
        }
    }
}
