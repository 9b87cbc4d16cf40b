//! The `sarif_no_levels` gate over SARIF 2.1.0 logs from real tools.
//!
//! For each result of each run:
//! - its rule: `rule.index` (in the driver, or in the extension
//!   `rule.toolComponent` names by index or name), else `ruleIndex`, else
//!   by id (`rule.id`, else `ruleId`) in that component or the driver and
//!   every extension; a hierarchical id `A/B/C` without its own rule falls
//!   back to `A/B`, then `A` (SARIF §3.27.5);
//! - its effective level (§3.27.10): the result's `level`; else `none`
//!   when its `kind` is other than `fail`; else the invocation's
//!   `ruleConfigurationOverrides` for the rule (the result's
//!   `provenance.invocationIndex`, else the first invocation that has
//!   one); else the rule's `defaultConfiguration.level`; else `warning`;
//! - suppressed when `suppressions` is non-empty and none is `rejected` or
//!   `underReview` (those still count);
//! - its severity: the `security-severity` property of the rule, else of
//!   the result, in GitHub's buckets (critical ≥ 9.0, high ≥ 7.0, medium ≥
//!   4.0, low > 0); unscored, by its level (`error` high, `warning`
//!   medium, `note` low).
//!
//! A result counts when it is a failure (`kind` absent or `fail`), not
//! suppressed, and its severity is one of the gate's levels: with the
//! seed's `[CRITICAL, HIGH]`, a security-severity ≥ 7.0, or unscored and
//! `error`. A UTF-8 byte order mark is skipped; anything that is not a
//! SARIF log fails the gate with the reason (never "clean").

use serde::Serialize;
use serde_json::Value;

/// A severity bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    None,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_uppercase().as_str() {
            "CRITICAL" => Some(Self::Critical),
            "HIGH" => Some(Self::High),
            "MEDIUM" => Some(Self::Medium),
            "LOW" => Some(Self::Low),
            "NONE" => Some(Self::None),
            _ => None,
        }
    }

    /// GitHub's buckets for a `security-severity` score.
    fn of_score(score: f64) -> Self {
        match score {
            s if s >= 9.0 => Self::Critical,
            s if s >= 7.0 => Self::High,
            s if s >= 4.0 => Self::Medium,
            s if s > 0.0 => Self::Low,
            _ => Self::None,
        }
    }

    /// An unscored result's severity from its effective level.
    fn of_level(level: &str) -> Self {
        match level {
            "error" => Self::High,
            "warning" => Self::Medium,
            "note" => Self::Low,
            _ => Self::None,
        }
    }
}

/// One result the gate counted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Counted {
    pub rule: Option<String>,
    /// `uri:line` of the first location.
    pub location: Option<String>,
    pub level: String,
    /// The `security-severity` score, when there is one.
    pub score: Option<f64>,
    pub severity: Severity,
    pub run: usize,
}

/// What the gate found in one log.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Verdict {
    pub results: usize,
    pub suppressed: usize,
    pub counted: Vec<Counted>,
}

impl Verdict {
    pub fn pass(&self) -> bool {
        self.counted.is_empty()
    }
}

/// Runs the gate over a SARIF log's bytes.
pub fn gate(bytes: &[u8], levels: &[Severity]) -> Result<Verdict, String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let log: Value = serde_json::from_slice(bytes).map_err(|err| format!("not JSON: {err}"))?;
    let runs = log
        .get("runs")
        .and_then(Value::as_array)
        .ok_or("not a SARIF log: no `runs` array")?;
    if let Some(version) = log.get("version").and_then(Value::as_str) {
        if version != "2.1.0" {
            return Err(format!("SARIF version {version}, not 2.1.0"));
        }
    }
    let mut verdict = Verdict::default();
    for (at, run) in runs.iter().enumerate() {
        // No `results` (absent or null) means the analysis did not run to
        // the end (SARIF §3.14.23): not a clean scan.
        if run.get("results").is_none_or(Value::is_null) {
            return Err(format!(
                "run {at} has no `results`: the tool did not finish its analysis"
            ));
        }
        if array(run, "invocations")
            .iter()
            .any(|i| i.get("executionSuccessful") == Some(&Value::Bool(false)))
        {
            return Err(format!(
                "run {at}: an invocation did not execute successfully"
            ));
        }
        let run_view = Run::new(run);
        for result in array(run, "results") {
            verdict.results += 1;
            if suppressed(result) {
                verdict.suppressed += 1;
                continue;
            }
            if result
                .get("kind")
                .and_then(Value::as_str)
                .is_some_and(|kind| kind != "fail")
            {
                continue;
            }
            let rule = run_view.rule_of(result);
            let level = run_view.effective_level(result, rule.as_ref());
            let score = rule
                .as_ref()
                .and_then(|r| security_severity(r.descriptor))
                .or_else(|| security_severity(result));
            let severity = match score {
                Some(score) => Severity::of_score(score),
                None => Severity::of_level(&level),
            };
            if levels.contains(&severity) {
                verdict.counted.push(Counted {
                    rule: rule_id(result, rule.as_ref()),
                    location: location(result),
                    level,
                    score,
                    severity,
                    run: at,
                });
            }
        }
    }
    Ok(verdict)
}

fn array<'a>(value: &'a Value, field: &str) -> &'a [Value] {
    value
        .get(field)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Suppressed, unless a suppression is rejected or under review.
fn suppressed(result: &Value) -> bool {
    let suppressions = array(result, "suppressions");
    !suppressions.is_empty()
        && suppressions.iter().all(|s| {
            !matches!(
                s.get("status").and_then(Value::as_str),
                Some("rejected" | "underReview")
            )
        })
}

/// A `security-severity` property, as a string or a number.
fn security_severity(object: &Value) -> Option<f64> {
    let score = match object.get("properties")?.get("security-severity")? {
        Value::String(text) => text.trim().parse().ok(),
        Value::Number(n) => n.as_f64(),
        _ => None,
    };
    // `NaN` or `inf` parse but score nothing: unscored.
    score.filter(|s: &f64| s.is_finite())
}

fn location(result: &Value) -> Option<String> {
    let physical = array(result, "locations")
        .first()?
        .get("physicalLocation")?;
    let uri = physical
        .get("artifactLocation")
        .and_then(|a| a.get("uri"))
        .and_then(Value::as_str)?;
    Some(
        match physical
            .get("region")
            .and_then(|r| r.get("startLine"))
            .and_then(Value::as_u64)
        {
            Some(line) => format!("{uri}:{line}"),
            None => uri.to_string(),
        },
    )
}

fn rule_id(result: &Value, rule: Option<&Rule>) -> Option<String> {
    result
        .get("ruleId")
        .or_else(|| result.get("rule").and_then(|r| r.get("id")))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| rule.and_then(|r| r.descriptor.get("id")?.as_str().map(str::to_string)))
}

/// A rule found for a result: its descriptor, where it sits.
#[derive(Debug, Clone)]
struct Rule<'a> {
    descriptor: &'a Value,
    /// `None`: the driver; `Some(i)`: extension `i`.
    component: Option<usize>,
    index: usize,
}

/// A run's tool components and invocations.
struct Run<'a> {
    driver: &'a [Value],
    extensions: Vec<(&'a str, &'a [Value])>,
    invocations: &'a [Value],
}

impl<'a> Run<'a> {
    fn new(run: &'a Value) -> Self {
        let tool = run.get("tool").unwrap_or(&Value::Null);
        let driver = tool.get("driver").map_or(&[][..], |d| array(d, "rules"));
        let extensions = array(tool, "extensions")
            .iter()
            .map(|e| {
                (
                    e.get("name").and_then(Value::as_str).unwrap_or(""),
                    array(e, "rules"),
                )
            })
            .collect();
        Self {
            driver,
            extensions,
            invocations: array(run, "invocations"),
        }
    }

    fn rules(&self, component: Option<usize>) -> &'a [Value] {
        match component {
            None => self.driver,
            Some(i) => self.extensions.get(i).map_or(&[], |(_, rules)| rules),
        }
    }

    /// The component a reference's `toolComponent` names (by index or
    /// name); `Some(None)` for the driver, `None` when not said.
    fn component_of(&self, reference: &Value) -> Option<Option<usize>> {
        let component = reference.get("toolComponent")?;
        if let Some(i) = component.get("index").and_then(Value::as_u64) {
            return Some(Some(i as usize));
        }
        let name = component.get("name").and_then(Value::as_str)?;
        Some(self.extensions.iter().position(|(n, _)| *n == name))
    }

    fn at(&self, component: Option<usize>, index: u64) -> Option<Rule<'a>> {
        let index = usize::try_from(index).ok()?;
        self.rules(component).get(index).map(|descriptor| Rule {
            descriptor,
            component,
            index,
        })
    }

    fn by_id(&self, components: &[Option<usize>], id: &str) -> Option<Rule<'a>> {
        // `A/B/C`, then `A/B`, then `A`.
        let mut candidate = id;
        loop {
            for &component in components {
                let found = self
                    .rules(component)
                    .iter()
                    .position(|r| r.get("id").and_then(Value::as_str) == Some(candidate));
                if let Some(index) = found {
                    return self.at(component, index as u64);
                }
            }
            candidate = &candidate[..candidate.rfind('/')?];
        }
    }

    fn rule_of(&self, result: &Value) -> Option<Rule<'a>> {
        let reference = result.get("rule").unwrap_or(&Value::Null);
        let named = self.component_of(reference);
        let component = named.unwrap_or(None);
        if let Some(index) = reference.get("index").and_then(Value::as_u64) {
            if let Some(rule) = self.at(component, index) {
                return Some(rule);
            }
        }
        if let Some(index) = result.get("ruleIndex").and_then(Value::as_u64) {
            if let Some(rule) = self.at(component, index) {
                return Some(rule);
            }
        }
        let id = reference
            .get("id")
            .or_else(|| result.get("ruleId"))
            .and_then(Value::as_str)?;
        let everywhere: Vec<Option<usize>> = match named {
            Some(component) => vec![component],
            None => std::iter::once(None)
                .chain((0..self.extensions.len()).map(Some))
                .collect(),
        };
        self.by_id(&everywhere, id)
    }

    fn effective_level(&self, result: &Value, rule: Option<&Rule>) -> String {
        if let Some(level) = result.get("level").and_then(Value::as_str) {
            return level.to_string();
        }
        if result
            .get("kind")
            .and_then(Value::as_str)
            .is_some_and(|kind| kind != "fail")
        {
            return "none".into();
        }
        let Some(rule) = rule else {
            return "warning".into();
        };
        let invocation = result
            .get("provenance")
            .and_then(|p| p.get("invocationIndex"))
            .and_then(Value::as_u64)
            .and_then(|i| self.invocations.get(i as usize));
        let overridden = match invocation {
            Some(invocation) => self.override_in(invocation, rule),
            None => self
                .invocations
                .iter()
                .find_map(|invocation| self.override_in(invocation, rule)),
        };
        if let Some(level) = overridden {
            return level;
        }
        rule.descriptor
            .get("defaultConfiguration")
            .and_then(|c| c.get("level"))
            .and_then(Value::as_str)
            .unwrap_or("warning")
            .to_string()
    }

    /// The level an invocation's `ruleConfigurationOverrides` sets for
    /// `rule`.
    fn override_in(&self, invocation: &Value, rule: &Rule) -> Option<String> {
        array(invocation, "ruleConfigurationOverrides")
            .iter()
            .find(|o| {
                let Some(descriptor) = o.get("descriptor") else {
                    return false;
                };
                let component = self.component_of(descriptor).unwrap_or(None);
                if let Some(index) = descriptor.get("index").and_then(Value::as_u64) {
                    return component == rule.component && index as usize == rule.index;
                }
                descriptor.get("id").and_then(Value::as_str).is_some()
                    && descriptor.get("id") == rule.descriptor.get("id")
            })
            .and_then(|o| o.get("configuration")?.get("level")?.as_str())
            .map(str::to_string)
    }
}
