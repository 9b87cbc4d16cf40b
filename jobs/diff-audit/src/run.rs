//! One run: every table compared, its diffs written, one finding per
//! (table, reason) while that reason has rows (it resolves when they are
//! gone).

use std::collections::BTreeMap;

use async_trait::async_trait;
use patrol_job_api::{Finding, JobError, JobInstance, Outcome, RunContext, RunReport, Severity};
use serde_json::json;

use crate::exceptions::{self, Exception};
use crate::proof::{self, Counts, ProofWriter, TableProof};
use crate::residency::{self, Homes, Regions};
use crate::snapshot::{self, CompareSpec, Diff, Reason, Summary};
use crate::{Params, TableSpec, RUNBOOKS};

/// Sample keys a finding names (never one page per row).
const SAMPLES: usize = 10;

pub(crate) struct DiffAuditInstance {
    pub params: Params,
    /// Tenants' home regions, when a tenants file is configured.
    pub homes: Option<Homes>,
    pub exceptions: Vec<Exception>,
    pub proofs: Option<ProofWriter>,
}

#[async_trait]
impl JobInstance for DiffAuditInstance {
    async fn run(&self, ctx: RunContext) -> Result<RunReport, JobError> {
        let now = ctx.now();
        let ts = now.to_rfc3339();
        let mut findings = Vec::new();
        let mut tables = BTreeMap::new();
        let mut errors = Vec::new();
        let mut proved = Vec::new();
        let mut counts = Counts {
            ok: 0,
            diff: 0,
            excepted: 0,
        };
        for table in &self.params.tables {
            if ctx.cancel.is_cancelled() {
                return Ok(RunReport::new(
                    Outcome::Cancelled,
                    "cancelled between tables",
                ));
            }
            let spec = table.clone();
            let homes = self.homes.clone();
            let compared =
                tokio::task::spawn_blocking(move || compare_table(&spec, homes.as_ref()))
                    .await
                    .map_err(|err| {
                        JobError::Failed(format!("comparing {} panicked: {err}", table.name))
                    })?;
            let (diffs, summary) = match compared {
                Ok(done) => done,
                Err(err) => {
                    errors.push(format!("{}: {err}", table.name));
                    continue;
                }
            };
            let applied = exceptions::apply(&table.name, diffs, &self.exceptions, now);
            findings.extend(table_findings(table, &applied.paged));
            findings.extend(applied.expired.iter().map(|e| expired_finding(table, e)));
            let lines = diff_lines(&applied, &table.name, &ts);
            if let Some(dir) = &self.params.diffs_dir {
                let path = dir.join(format!("{}.ndjson", table.name));
                if let Err(err) = ctx.effects.write_file(&path, lines.clone()).await {
                    errors.push(format!("{}: writing diffs: {err}", table.name));
                }
            }
            counts.ok += summary.equal;
            counts.diff += applied.paged.len();
            counts.excepted += applied.excepted.len();
            proved.push(TableProof {
                name: table.name.clone(),
                left: (
                    table.left.display().to_string(),
                    summary.left_rows,
                    summary.left_commitment.clone(),
                ),
                right: (
                    table.right.display().to_string(),
                    summary.right_rows,
                    summary.right_commitment.clone(),
                ),
                diffs: lines,
                exceptions_applied: applied
                    .excepted
                    .iter()
                    .map(|(_, e)| exceptions::scope(e))
                    .collect(),
            });
            tables.insert(
                table.name.clone(),
                json!({"compare": summary, "excepted": applied.excepted.len(), "expired_exceptions": applied.expired.len()}),
            );
        }
        let differences: u64 = tables
            .values()
            .map(|t| {
                let all = t["compare"].as_object().map_or(0, |c| {
                    ["missing", "mismatch", "duplicate", "cross_region_write"]
                        .iter()
                        .filter_map(|k| c.get(*k)?.as_u64())
                        .sum()
                });
                all - t["excepted"].as_u64().unwrap_or(0)
            })
            .sum();
        let mut summary = format!(
            "{} table(s) compared, {differences} differing key(s) not excepted; {} finding(s)",
            tables.len(),
            findings.len()
        );
        if !errors.is_empty() {
            summary.push_str(&format!("; {} table(s) failed", errors.len()));
        }
        let mut proof_dir = None;
        if let (Some(writer), true) = (&self.proofs, errors.is_empty()) {
            let files = proof::pack_files(&ctx.run_key, now, ctx.now(), &counts, &proved);
            match writer.write(&ctx.effects, &ctx.run_key, now, files).await {
                Ok(dir) => proof_dir = Some(dir.display().to_string()),
                Err(err) => errors.push(format!("proof: {err}")),
            }
        }
        let failed = !errors.is_empty();
        let mut report = RunReport::new(
            if failed {
                Outcome::Failed
            } else {
                Outcome::Succeeded
            },
            summary,
        );
        report.output = (!errors.is_empty()).then(|| errors.join("\n"));
        report.details = json!({"tables": tables, "errors": errors, "proof": proof_dir});
        report.findings = findings;
        // A table that failed leaves its rows unknown: keep its alerts open.
        report.findings_partial = failed;
        Ok(report)
    }
}

fn compare_table(table: &TableSpec, homes: Option<&Homes>) -> Result<(Vec<Diff>, Summary), String> {
    let left = snapshot::read_table(&table.left)?;
    let right = snapshot::read_table(&table.right)?;
    let spec = CompareSpec {
        key: table.key.clone(),
        columns: table.columns.clone(),
    };
    let names = (
        table.left.display().to_string(),
        table.right.display().to_string(),
    );
    let (mut diffs, mut summary) = snapshot::compare(&left, &right, &spec, (&names.0, &names.1))?;
    if let (Some(homes), Some(left), Some(right)) = (homes, &table.left_region, &table.right_region)
    {
        let regions = Regions {
            left: left.trim().to_uppercase(),
            right: right.trim().to_uppercase(),
        };
        let moved = residency::classify(&mut diffs, homes, &regions);
        summary.missing -= moved;
        summary.cross_region_write = moved;
    }
    Ok((diffs, summary))
}

/// One finding per reason with rows: counts and the first sample keys.
fn table_findings(table: &TableSpec, diffs: &[Diff]) -> Vec<Finding> {
    let configured = Severity::parse_with_seed_names(&table.severity).unwrap_or(Severity::Error);
    // A write where the tenant's data may not be: always paged high.
    let high = Severity::parse_with_seed_names("high").unwrap_or(Severity::Error);
    let mut by_reason: BTreeMap<Reason, Vec<&Diff>> = BTreeMap::new();
    for diff in diffs {
        by_reason.entry(diff.reason).or_default().push(diff);
    }
    by_reason
        .into_iter()
        .map(|(reason, diffs)| {
            let severity = match reason {
                Reason::CrossRegionWrite => high.max(configured),
                _ => configured,
            };
            let mut finding = Finding::new(
                format!("diff-audit/{}/{}", table.name, reason.as_str()),
                severity,
                format!(
                    "Diff audit: {} {} row(s) in {}",
                    diffs.len(),
                    reason.as_str(),
                    table.name
                ),
            );
            let samples: Vec<String> = diffs.iter().take(SAMPLES).map(|d| sample(d)).collect();
            finding.summary = format!(
                "{} key(s) of {} {} between {} and {}; e.g. {}",
                diffs.len(),
                table.name,
                match reason {
                    Reason::Missing => "are on one side only",
                    Reason::Mismatch => "differ",
                    Reason::Duplicate => "are held by several rows of one side",
                    Reason::CrossRegionWrite =>
                        "were written only in a copy outside their tenant's home region",
                },
                table.left.display(),
                table.right.display(),
                samples.join("; ")
            );
            finding.runbook = RUNBOOKS
                .iter()
                .find(|(r, _)| *r == reason.as_str())
                .map(|(_, runbook)| runbook.to_string());
            finding.labels.insert("table".into(), table.name.clone());
            finding
                .labels
                .insert("reason".into(), reason.as_str().into());
            finding.details = json!({
                "count": diffs.len(),
                "samples": samples,
                "left": table.left.display().to_string(),
                "right": table.right.display().to_string(),
            });
            finding
        })
        .collect()
}

/// `tenant=acme,id=42 (missing on right)`.
fn sample(diff: &Diff) -> String {
    match (diff.reason, diff.side) {
        (Reason::Missing, Some(side)) => {
            format!("{} (missing on {})", diff.key_text(), side.as_str())
        }
        (Reason::Duplicate, Some(side)) => format!(
            "{} ({} rows on {})",
            diff.key_text(),
            diff.rows.unwrap_or(0),
            side.as_str()
        ),
        (Reason::CrossRegionWrite, Some(side)) => match &diff.regions {
            Some((region, home)) => format!(
                "{} (only in {}, {region}; home {home})",
                diff.key_text(),
                side.as_str()
            ),
            None => diff.key_text(),
        },
        _ => diff.key_text(),
    }
}

/// The finding of an exception that expired: it pages until the entry is
/// renewed or removed (and covers nothing meanwhile).
fn expired_finding(table: &TableSpec, exception: &Exception) -> Finding {
    let scope = exceptions::scope(exception);
    let mut finding = Finding::new(
        format!("diff-audit/{}/exception-expired/{scope}", table.name),
        Severity::Warning,
        format!("Diff audit: exception expired in {} ({scope})", table.name),
    );
    finding.summary = format!(
        "The exception for {scope} in {} expired on {} (owner {}; \"{}\"): its rows page again until it is renewed (at most {} days) or removed",
        table.name,
        exception.expires,
        exception.owner,
        exception.justification,
        exceptions::MAX_TTL_DAYS,
    );
    finding.runbook = Some("diff-audit-exception-expired".into());
    finding.labels.insert("table".into(), table.name.clone());
    finding
        .labels
        .insert("reason".into(), "exception-expired".into());
    finding
        .labels
        .insert("owner".into(), exception.owner.clone());
    finding.details = json!({
        "scope": scope,
        "expires": exception.expires.to_string(),
        "created": exception.created.to_string(),
        "owner": exception.owner,
        "justification": exception.justification,
    });
    finding
}

/// The diffs file: paged diffs, then excepted ones marked as such.
fn diff_lines(applied: &exceptions::Applied<'_>, table: &str, ts: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    let lines = applied
        .paged
        .iter()
        .map(|diff| diff.to_json(table, ts))
        .chain(applied.excepted.iter().map(|(diff, exception)| {
            let mut line = diff.to_json(table, ts);
            line["excepted"] = json!({
                "owner": exception.owner,
                "justification": exception.justification,
                "expires": exception.expires.to_string(),
            });
            line
        }));
    for line in lines {
        bytes.extend_from_slice(line.to_string().as_bytes());
        bytes.push(b'\n');
    }
    bytes
}
