//! Provenance rules (`policies/provmon/rules.yaml`), in the seed's format:
//!
//! ```yaml
//! rules:
//!   - id: missing-rekor
//!     description: Bundle signed but no Rekor entry within 5m
//!     when: "sign -> (no rekor within 5m)"
//!     severity: high
//!     runbook: provmon-missing-rekor
//! ```
//!
//! `when` is one of two shapes: `A -> (no B within D)` (a stage that must
//! follow within a window) and `A -> B(field=value)` (the latest `B` of a
//! chain that has an `A` has that status). Checks that need more than
//! events name a built-in `check` instead (`deployed-unverified`,
//! `signature-invalid`, `rekor-mismatch`).

use std::path::Path;
use std::time::Duration;

use patrol_job_api::rule_list::parse_rule_list;
use patrol_job_api::units::HumanDuration;
use patrol_job_api::Severity;
use serde::Deserialize;

use crate::event::Stage;

/// What a rule looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// A chain with stage `after` and no stage `expected` once `within`
    /// has passed since the first `after`.
    Absent {
        after: Stage,
        expected: Stage,
        within: Duration,
    },
    /// A chain with stage `after` whose latest `stage` event has
    /// `status == value`.
    Status {
        after: Stage,
        stage: Stage,
        value: String,
    },
    /// A deployed digest whose chain lacks a (verified, when verification
    /// is configured) signature or Rekor entry once `within` has passed
    /// since the deploy.
    DeployedUnverified { within: Duration },
    /// A signed digest none of whose signatures verifies with the
    /// configured keys.
    SignatureInvalid,
    /// A Rekor entry of the digest that does not check out: body for
    /// another artifact, bad entry timestamp, inclusion proof or checkpoint.
    RekorMismatch,
    /// A sound Rekor entry of the digest logged by someone else (a key
    /// none of `verify.signing_keys`, or a signature no `sign` event
    /// carried), and no entry of ours: a stolen key used offline, or a
    /// decoy logged to silence `missing-rekor`.
    RekorForeignSigner,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    pub description: String,
    pub severity: Severity,
    pub runbook: Option<String>,
    pub condition: Condition,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    description: String,
    #[serde(default)]
    when: Option<String>,
    #[serde(default)]
    check: Option<String>,
    #[serde(default)]
    window: Option<String>,
    severity: String,
    #[serde(default)]
    runbook: Option<String>,
}

/// Built-in checks a rule may name with `check:`.
pub const CHECKS: [&str; 4] = [
    "deployed-unverified",
    "signature-invalid",
    "rekor-mismatch",
    "rekor-foreign-signer",
];

/// Reads and checks a rules file; every problem is reported as
/// `file:line:col: field: message`.
pub fn load_rules(path: &Path) -> Result<Vec<Rule>, Vec<String>> {
    let source = std::fs::read_to_string(path)
        .map_err(|err| vec![format!("{}: cannot read: {err}", path.display())])?;
    parse_rules(path, &source)
}

pub fn parse_rules(path: &Path, source: &str) -> Result<Vec<Rule>, Vec<String>> {
    parse_rule_list(
        path,
        source,
        "no rules: a monitor that checks nothing",
        check_rule,
        |rule: &Rule| &rule.id,
    )
}

fn check_rule(raw: RawRule, prefix: &str) -> Result<Rule, Vec<(String, String)>> {
    let mut problems = Vec::new();
    let field = |name: &str| format!("{prefix}.{name}");
    patrol_job_api::rule_list::check_id_and_runbook(
        &raw.id,
        raw.runbook.as_deref(),
        prefix,
        &mut problems,
    );
    let severity = Severity::parse_with_seed_names(&raw.severity)
        .map_err(|message| (field("severity"), message));
    let window = raw
        .window
        .as_deref()
        .map(|text| HumanDuration::parse(text).map(|d| d.0))
        .transpose()
        .map_err(|message| (field("window"), message));
    let condition = match (&raw.when, &raw.check) {
        (Some(_), Some(_)) => Err((
            field("check"),
            "give either `when` or `check`, not both".to_string(),
        )),
        (None, None) => Err((
            field("when"),
            "missing: a rule needs `when` (e.g. \"sign -> (no rekor within 5m)\") or `check`"
                .to_string(),
        )),
        (Some(when), None) => {
            parse_when(when).map_err(|message| (field("when"), format!("`{when}`: {message}")))
        }
        (None, Some(check)) => match (check.as_str(), &window) {
            ("deployed-unverified", Ok(window)) => Ok(Condition::DeployedUnverified {
                within: window.unwrap_or(Duration::from_secs(600)),
            }),
            ("deployed-unverified", Err(_)) => Err((field("window"), String::new())),
            ("signature-invalid", _) if raw.window.is_none() => Ok(Condition::SignatureInvalid),
            ("rekor-mismatch", _) if raw.window.is_none() => Ok(Condition::RekorMismatch),
            ("rekor-foreign-signer", _) if raw.window.is_none() => {
                Ok(Condition::RekorForeignSigner)
            }
            ("signature-invalid" | "rekor-mismatch" | "rekor-foreign-signer", _) => Err((
                field("window"),
                format!("`{check}` has no window: it fires as soon as a check fails"),
            )),
            (other, _) => Err((
                field("check"),
                format!("unknown check `{other}` (known: {})", CHECKS.join(", ")),
            )),
        },
    };
    if raw.window.is_some() && raw.when.is_some() {
        problems.push((
            field("window"),
            "`window` goes with `check`; a `when` states its own (`within 5m`)".to_string(),
        ));
    }
    if let Err(problem) = &window {
        problems.push(problem.clone());
    }
    // Reported in the order the fields usually appear: when, severity.
    let condition = condition
        .map_err(|problem| {
            if !problem.1.is_empty() {
                problems.push(problem);
            }
        })
        .ok();
    let severity = severity.map_err(|problem| problems.push(problem)).ok();
    match (severity, condition) {
        (Some(severity), Some(condition)) if problems.is_empty() => Ok(Rule {
            id: raw.id,
            description: raw.description,
            severity,
            runbook: raw.runbook,
            condition,
        }),
        _ => Err(problems),
    }
}

/// `A -> (no B within D)` or `A -> B(field=value)`.
pub fn parse_when(when: &str) -> Result<Condition, String> {
    let (left, right) = when
        .split_once("->")
        .ok_or("expected `A -> (no B within D)` or `A -> B(status=V)`")?;
    let after = stage(left.trim())?;
    let right = right.trim();
    if let Some(inner) = right.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
        let words: Vec<&str> = inner.split_whitespace().collect();
        let ["no", expected, "within", window] = words[..] else {
            return Err("expected `(no B within D)`, e.g. `(no rekor within 5m)`".into());
        };
        let expected = stage(expected)?;
        if expected == after {
            return Err("a stage cannot be expected to follow itself".into());
        }
        let within = HumanDuration::parse(window)?.0;
        if within.is_zero() {
            return Err("the window must be longer than 0".into());
        }
        return Ok(Condition::Absent {
            after,
            expected,
            within,
        });
    }
    let (name, test) = right
        .strip_suffix(')')
        .and_then(|r| r.split_once('('))
        .ok_or("expected `B(status=V)` or `(no B within D)` after `->`")?;
    let (field, value) = test
        .split_once('=')
        .ok_or("expected `field=value` inside the parentheses")?;
    if field.trim() != "status" {
        return Err(format!(
            "only `status` can be tested, not `{}`",
            field.trim()
        ));
    }
    let value = value.trim().to_ascii_lowercase();
    if value.is_empty() {
        return Err("the status to look for is empty".into());
    }
    Ok(Condition::Status {
        after,
        stage: stage(name.trim())?,
        value,
    })
}

fn stage(name: &str) -> Result<Stage, String> {
    Stage::parse(name).ok_or_else(|| {
        format!(
            "unknown stage `{name}` (stages: {})",
            Stage::ALL.map(Stage::as_str).join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_rules_parse() {
        let rules = parse_rules(
            Path::new("rules.yaml"),
            r#"
rules:
  - id: missing-rekor
    description: Bundle signed but no Rekor entry within 5m
    when: "sign -> (no rekor within 5m)"
    severity: high
  - id: runtime-verify-fail
    description: Startup verify failed for deployed digest
    when: "deploy -> runtime_verify(status=fail)"
    severity: critical
"#,
        )
        .unwrap();
        assert_eq!(
            rules[0].condition,
            Condition::Absent {
                after: Stage::Sign,
                expected: Stage::Rekor,
                within: Duration::from_secs(300)
            }
        );
        assert_eq!(rules[0].severity, Severity::Error);
        assert_eq!(
            rules[1].condition,
            Condition::Status {
                after: Stage::Deploy,
                stage: Stage::RuntimeVerify,
                value: "fail".into()
            }
        );
    }

    #[test]
    fn the_shipped_rules_parse_and_each_names_a_runbook_that_exists() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let rules = load_rules(&root.join("policies/provmon/rules.yaml")).unwrap();
        assert!(rules.len() >= 5);
        for rule in rules {
            let runbook = rule.runbook.expect("every shipped rule names its runbook");
            let path = root.join("runbooks").join(format!("{runbook}.md"));
            assert!(path.is_file(), "{} is missing", path.display());
        }
    }

    #[test]
    fn every_mistake_is_reported_with_its_line() {
        let errors = parse_rules(
            Path::new("rules.yaml"),
            r#"rules:
  - id: a
    description: x
    when: "sign -> (no rekr within 5m)"
    severity: high
  - id: b
    description: x
    when: "sign -> (no rekor within soon)"
    severity: urgent
  - id: a
    description: x
    check: verify-everything
    severity: low
  - id: c
    description: x
    severity: low
    colour: red
"#,
        )
        .unwrap_err();
        let expected = [
            "rules.yaml:4:5: rules[0].when: `sign -> (no rekr within 5m)`: unknown stage `rekr`",
            "rules.yaml:8:5: rules[1].when:",
            "rules.yaml:9:5: rules[1].severity: `urgent` is not a severity",
            "rules.yaml:12:5: rules[2].check: unknown check `verify-everything`",
            "rules.yaml:17:5: rules[3].colour: unknown field `colour`",
        ];
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
        for (error, expected) in errors.iter().zip(expected) {
            assert!(
                error.contains(expected),
                "{error} should contain {expected}"
            );
        }
    }
}
