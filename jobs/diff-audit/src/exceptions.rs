//! Exceptions (`policies/diff-audit/exceptions.yaml`, seed 002 KR2.2): a
//! known difference, with a justification, an owner and an expiry (TTL at
//! most 90 days from `created`), is reported as excepted instead of paged.
//! Once expired it stops suppressing, and the expiry itself pages
//! (`diff-audit/<table>/exception-expired/<n>`) until the entry is renewed
//! or removed.
//!
//! ```yaml
//! version: 1
//! exceptions:
//!   - table: audit
//!     tenant: initech
//!     id: 10600            # or id_prefix: "106"
//!     reason: missing      # missing | mismatch | duplicate | cross-region-write
//!     justification: GDPR erasure replayed late in us (DPO-123)
//!     owner: data-platform@example.com
//!     created: 2026-12-01
//!     expires: 2027-02-01
//! ```

use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use patrol_job_api::yaml_lines::read_located;
use serde::Deserialize;

use crate::snapshot::Diff;

/// The longest an exception may live.
pub const MAX_TTL_DAYS: i64 = 90;

const REASONS: [&str; 4] = ["missing", "mismatch", "duplicate", "cross-region-write"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExceptionsFile {
    version: u32,
    exceptions: Vec<Exception>,
}

/// One exception, as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exception {
    pub table: String,
    pub tenant: String,
    #[serde(default)]
    pub id: Option<serde_json::Value>,
    #[serde(default)]
    pub id_prefix: Option<String>,
    pub reason: String,
    pub justification: String,
    pub owner: String,
    pub created: NaiveDate,
    pub expires: NaiveDate,
}

impl Exception {
    /// Expired at `now` (from the start of its `expires` day, UTC).
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        now.date_naive() >= self.expires
    }

    /// Whether it covers `diff` of `table`.
    pub fn covers(&self, table: &str, diff: &Diff) -> bool {
        if self.table != table || self.reason != diff.reason.as_str() {
            return false;
        }
        let field = |name: &str| diff.key.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if field("tenant").map(text).as_deref() != Some(self.tenant.as_str()) {
            return false;
        }
        let Some(id) = field("id").map(text) else {
            return false;
        };
        match (&self.id, &self.id_prefix) {
            (Some(want), _) => text(want) == id,
            (None, Some(prefix)) => id.starts_with(prefix.as_str()),
            (None, None) => false,
        }
    }
}

/// Reads and checks the exceptions file; every problem as
/// `file:line:col: field: message`.
pub fn load(path: &Path) -> Result<Vec<Exception>, Vec<String>> {
    let located = read_located::<ExceptionsFile>(path).map_err(|err| vec![err])?;
    let at = |field: &str, message: String| located.at(field, message);
    let file = &located.value;
    let mut errors = Vec::new();
    if file.version != 1 {
        errors.push(at(
            "version",
            format!("version {} is not known (1 is)", file.version),
        ));
    }
    for (n, exception) in file.exceptions.iter().enumerate() {
        let field = |name: &str| format!("exceptions[{n}].{name}");
        for (name, text) in [
            ("justification", &exception.justification),
            ("owner", &exception.owner),
            ("table", &exception.table),
            ("tenant", &exception.tenant),
        ] {
            if text.trim().is_empty() {
                errors.push(at(&field(name), "must not be empty".into()));
            }
        }
        if !REASONS.contains(&exception.reason.as_str()) {
            errors.push(at(
                &field("reason"),
                format!(
                    "`{}` is not one of {}",
                    exception.reason,
                    REASONS.join(", ")
                ),
            ));
        }
        if exception.id.is_some() == exception.id_prefix.is_some() {
            errors.push(at(
                &field("tenant"),
                "give exactly one of `id` and `id_prefix`".into(),
            ));
        }
        let ttl = (exception.expires - exception.created).num_days();
        if ttl <= 0 {
            errors.push(at(&field("expires"), "is not after `created`".into()));
        } else if ttl > MAX_TTL_DAYS {
            errors.push(at(
                &field("expires"),
                format!(
                    "{ttl} days after `created`: an exception lives at most {MAX_TTL_DAYS} days"
                ),
            ));
        }
    }
    if errors.is_empty() {
        Ok(file.exceptions.clone())
    } else {
        Err(errors)
    }
}

/// The active exception covering `diff` at `now`, if any.
pub fn covering<'a>(
    exceptions: &'a [Exception],
    table: &str,
    diff: &Diff,
    now: DateTime<Utc>,
) -> Option<&'a Exception> {
    exceptions
        .iter()
        .find(|e| !e.expired(now) && e.covers(table, diff))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{Reason, Side};

    fn diff(tenant: &str, id: i64, reason: Reason) -> Diff {
        Diff {
            key: vec![("tenant".into(), tenant.into()), ("id".into(), id.into())],
            reason,
            side: Some(Side::Right),
            lhs_sha256: None,
            rhs_sha256: None,
            rows: None,
            regions: None,
            lag_ms: None,
        }
    }

    fn at(day: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("{day}T12:00:00Z"))
            .unwrap()
            .into()
    }

    const FILE: &str = "version: 1
exceptions:
  - table: audit
    tenant: initech
    id: 10600
    reason: missing
    justification: erasure replayed late (DPO-1)
    owner: dpo@example.com
    created: 2026-12-01
    expires: 2027-01-15
  - table: audit
    tenant: acme
    id_prefix: \"101\"
    reason: mismatch
    justification: amount backfill (FIN-9)
    owner: fin@example.com
    created: 2026-09-01
    expires: 2026-11-30
";

    #[test]
    fn an_active_exception_covers_its_key_and_reason_and_an_expired_one_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exceptions.yaml");
        std::fs::write(&path, FILE).unwrap();
        let exceptions = load(&path).unwrap();
        let now = at("2026-12-07");
        let missing = diff("initech", 10600, Reason::Missing);
        assert!(covering(&exceptions, "audit", &missing, now).is_some());
        // Another reason, table, tenant or id: not covered.
        assert!(covering(
            &exceptions,
            "audit",
            &diff("initech", 10600, Reason::Mismatch),
            now
        )
        .is_none());
        assert!(covering(&exceptions, "orders", &missing, now).is_none());
        assert!(covering(
            &exceptions,
            "audit",
            &diff("acme", 10600, Reason::Missing),
            now
        )
        .is_none());
        assert!(covering(
            &exceptions,
            "audit",
            &diff("initech", 10601, Reason::Missing),
            now
        )
        .is_none());
        // The prefix one expired on 2026-11-30.
        let backfill = diff("acme", 10100, Reason::Mismatch);
        assert!(exceptions[1].covers("audit", &backfill));
        assert!(covering(&exceptions, "audit", &backfill, now).is_none());
        assert!(covering(&exceptions, "audit", &backfill, at("2026-11-29")).is_some());
        // The first expires on its day.
        assert!(covering(&exceptions, "audit", &missing, at("2027-01-15")).is_none());
    }

    #[test]
    fn applied_to_a_tables_diffs_the_covered_ones_are_held_and_expiries_listed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exceptions.yaml");
        std::fs::write(&path, FILE).unwrap();
        let exceptions = load(&path).unwrap();
        let diffs = vec![
            diff("initech", 10600, Reason::Missing),
            diff("acme", 10100, Reason::Mismatch),
            diff("globex", 1, Reason::Missing),
        ];
        let applied = apply("audit", diffs, &exceptions, at("2026-12-07"));
        assert_eq!(applied.excepted.len(), 1);
        assert_eq!(applied.excepted[0].1.owner, "dpo@example.com");
        assert_eq!(applied.paged.len(), 2, "the expired one covers nothing");
        assert_eq!(applied.expired.len(), 1);
        assert_eq!(scope(applied.expired[0]), "acme/101*/mismatch");
        assert_eq!(scope(applied.excepted[0].1), "initech/10600/missing");
        assert!(apply("orders", Vec::new(), &exceptions, at("2026-12-07"))
            .expired
            .is_empty());
    }

    #[test]
    fn every_problem_of_the_file_is_named_with_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exceptions.yaml");
        let broken = FILE
            .replace("    expires: 2027-01-15", "    expires: 2027-06-01")
            .replace("    reason: mismatch", "    reason: typo")
            .replace("    owner: fin@example.com", "    owner: \"\"");
        std::fs::write(&path, broken).unwrap();
        let errors = load(&path).unwrap_err();
        let shown: Vec<&str> = errors
            .iter()
            .map(|e| e.split_once("exceptions.yaml:").unwrap().1)
            .collect();
        assert_eq!(
            shown,
            vec![
                "10:5: exceptions[0].expires: 182 days after `created`: an exception lives at most 90 days",
                "16:5: exceptions[1].owner: must not be empty",
                "14:5: exceptions[1].reason: `typo` is not one of missing, mismatch, duplicate, cross-region-write",
            ]
        );
        std::fs::write(&path, FILE.replace("    created: 2026-12-01\n", "")).unwrap();
        let errors = load(&path).unwrap_err();
        assert!(
            errors[0].contains("exceptions[0]: missing field `created`"),
            "{errors:?}"
        );
    }
}

/// A table's diffs sorted by the exceptions at `now`.
#[derive(Debug, Default)]
pub struct Applied<'a> {
    /// Diffs no active exception covers: these page.
    pub paged: Vec<Diff>,
    /// Diffs an active exception covers: reported, not paged.
    pub excepted: Vec<(Diff, &'a Exception)>,
    /// The table's exceptions that have expired (each pages).
    pub expired: Vec<&'a Exception>,
}

/// Sorts `diffs` of `table` by `exceptions` at `now`.
pub fn apply<'a>(
    table: &str,
    diffs: Vec<Diff>,
    exceptions: &'a [Exception],
    now: DateTime<Utc>,
) -> Applied<'a> {
    let mut applied = Applied {
        expired: exceptions
            .iter()
            .filter(|e| e.table == table && e.expired(now))
            .collect(),
        ..Applied::default()
    };
    for diff in diffs {
        match covering(exceptions, table, &diff, now) {
            Some(exception) => applied.excepted.push((diff, exception)),
            None => applied.paged.push(diff),
        }
    }
    applied
}

/// `initech/10600/missing` or `acme/101*/mismatch`: what an exception
/// covers, for its expiry's finding key.
pub fn scope(exception: &Exception) -> String {
    let id = match (&exception.id, &exception.id_prefix) {
        (Some(serde_json::Value::String(id)), _) => id.clone(),
        (Some(id), _) => id.to_string(),
        (None, Some(prefix)) => format!("{prefix}*"),
        (None, None) => "*".into(),
    };
    format!("{}/{id}/{}", exception.tenant, exception.reason)
}
