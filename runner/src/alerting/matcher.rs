//! Which alerts a route, silence or maintenance window applies to.
//! Every value is a glob (`*` matches any run of characters); a field with
//! several values matches if any does; all fields given must match.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::notify::AlertView;

/// A value or a list of values, as people write either in YAML.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn values(&self) -> &[String] {
        match self {
            Self::None => &[],
            Self::One(value) => std::slice::from_ref(value),
            Self::Many(values) => values,
        }
    }

    fn matches(&self, candidate: &str) -> bool {
        let values = self.values();
        values.is_empty() || values.iter().any(|pattern| glob_match(pattern, candidate))
    }

    fn push(&mut self, value: String) {
        *self = match std::mem::take(self) {
            Self::None => Self::One(value),
            Self::One(first) => Self::Many(vec![first, value]),
            Self::Many(mut values) => {
                values.push(value);
                Self::Many(values)
            }
        };
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matcher {
    #[serde(default, skip_serializing_if = "is_none")]
    pub job: OneOrMany,
    #[serde(default, skip_serializing_if = "is_none")]
    pub schedule: OneOrMany,
    /// `critical`, `error`, `warning`, `info`.
    #[serde(default, skip_serializing_if = "is_none")]
    pub severity: OneOrMany,
    /// The finding key, e.g. `backups/missing-rekor/*`.
    #[serde(default, skip_serializing_if = "is_none")]
    pub key: OneOrMany,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, OneOrMany>,
}

fn is_none(value: &OneOrMany) -> bool {
    matches!(value, OneOrMany::None)
}

/// What a matcher looks at.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub job: &'a str,
    pub schedule: &'a str,
    pub severity: &'a str,
    pub key: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

impl<'a> From<&'a AlertView> for Subject<'a> {
    fn from(alert: &'a AlertView) -> Self {
        Self {
            job: &alert.job,
            schedule: &alert.schedule_id,
            severity: alert.severity.as_str(),
            key: &alert.key,
            labels: &alert.labels,
        }
    }
}

impl Matcher {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    pub fn matches(&self, subject: Subject<'_>) -> bool {
        self.job.matches(subject.job)
            && self.schedule.matches(subject.schedule)
            && self.severity.matches(subject.severity)
            && self.key.matches(subject.key)
            && self.labels.iter().all(|(name, wanted)| {
                subject
                    .labels
                    .get(name)
                    .is_some_and(|value| wanted.matches(value))
            })
    }

    /// Builds a matcher from `field=value` terms (`job=backups`,
    /// `severity=critical`, `label.region=eu`, `key=backups/*`), as
    /// `patrol silence add --match` takes them.
    pub fn from_terms(terms: &[String]) -> Result<Self, String> {
        let mut matcher = Self::default();
        for term in terms {
            let Some((field, value)) = term.split_once('=') else {
                return Err(format!("`{term}` is not field=value"));
            };
            let (field, value) = (field.trim(), value.trim().to_string());
            if value.is_empty() {
                return Err(format!("`{term}` has an empty value"));
            }
            match field {
                "job" => matcher.job.push(value),
                "schedule" => matcher.schedule.push(value),
                "severity" => {
                    if !value.contains('*') && value.parse::<patrol_job_api::Severity>().is_err() {
                        return Err(format!(
                            "`{value}` is not a severity (critical, error, warning, info)"
                        ));
                    }
                    matcher.severity.push(value);
                }
                "key" => matcher.key.push(value),
                _ => match field.strip_prefix("label.") {
                    Some(label) if !label.is_empty() => {
                        matcher.labels.entry(label.to_string()).or_default().push(value);
                    }
                    _ => {
                        return Err(format!(
                            "unknown field `{field}` (expected job, schedule, severity, key or label.NAME)"
                        ))
                    }
                },
            }
        }
        if matcher.is_empty() {
            return Err("give at least one --match field=value".into());
        }
        Ok(matcher)
    }

    /// `job=backups severity=critical`, for listings.
    pub fn describe(&self) -> String {
        let mut terms = Vec::new();
        let mut add = |field: &str, values: &OneOrMany| {
            for value in values.values() {
                terms.push(format!("{field}={value}"));
            }
        };
        add("job", &self.job);
        add("schedule", &self.schedule);
        add("severity", &self.severity);
        add("key", &self.key);
        for (name, values) in &self.labels {
            add(&format!("label.{name}"), values);
        }
        terms.join(" ")
    }
}

/// `*` matches any run of characters (including none); nothing else is special.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_prefixes_suffixes_and_middles() {
        assert!(glob_match("backups/*", "backups/missing-rekor/abc"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*c*e", "abcde"));
        assert!(!glob_match("a*c*e", "abde"));
        assert!(!glob_match("ab*ba", "aba"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
    }

    #[test]
    fn terms_build_matchers_and_reject_nonsense() {
        let terms = [
            "job=backups".to_string(),
            "severity=critical".to_string(),
            "label.region=eu".to_string(),
        ];
        let matcher = Matcher::from_terms(&terms).unwrap();
        let mut labels = BTreeMap::new();
        labels.insert("region".to_string(), "eu".to_string());
        let subject = Subject {
            job: "backups",
            schedule: "backups-5m",
            severity: "critical",
            key: "backups/x",
            labels: &labels,
        };
        assert!(matcher.matches(subject));
        let mut elsewhere = labels.clone();
        elsewhere.insert("region".to_string(), "us".to_string());
        assert!(!matcher.matches(Subject {
            labels: &elsewhere,
            ..subject
        }));
        assert_eq!(
            matcher.describe(),
            "job=backups severity=critical label.region=eu"
        );
        assert!(Matcher::from_terms(&["severity=loud".into()]).is_err());
        assert!(Matcher::from_terms(&["colour=red".into()]).is_err());
        assert!(Matcher::from_terms(&[]).is_err());
    }
}
