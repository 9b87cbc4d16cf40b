//! One run: every table compared, its diffs written, one finding per
//! (table, reason) while that reason has rows (it resolves when they are
//! gone).

use std::collections::BTreeMap;

use async_trait::async_trait;
use patrol_job_api::{Finding, JobError, JobInstance, Outcome, RunContext, RunReport, Severity};
use serde_json::json;

use crate::cdc_run::{self, CdcOutcome};
use crate::exceptions::{self, Exception};
use crate::proof::{self, CopyProof, Counts, ProofWriter, TableProof};
use crate::report;
use crate::residency::{self, Homes, Regions};
use crate::snapshot::{CompareSpec, Diff, Reason, Summary};
use crate::source::{self, Source};
use crate::{Params, TableSpec, RUNBOOKS};

/// Sample keys a finding names (never one page per row).
const SAMPLES: usize = 10;

pub(crate) struct DiffAuditInstance {
    pub params: Params,
    /// Each table's snapshot copies, when it has them (same order as
    /// `params.tables`).
    pub sources: Vec<Option<(Source, Source)>>,
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
        let mut writes = Vec::new();
        let mut differences = 0;
        let mut facts = report::RunFacts {
            now,
            diffs: BTreeMap::new(),
            lags: Vec::new(),
            exceptions: self
                .exceptions
                .iter()
                .map(|e| (exceptions::scope(e), e.created))
                .collect(),
            expired: Vec::new(),
        };
        for (table, pair) in self.params.tables.iter().zip(&self.sources) {
            if ctx.cancel.is_cancelled() {
                return Ok(RunReport::new(
                    Outcome::Cancelled,
                    "cancelled between tables",
                ));
            }
            let compared = match pair {
                Some(pair) => compare_table(table, pair, self.homes.as_ref())
                    .await
                    .map(Some),
                None => Ok(None),
            };
            let cdc = match (&table.cdc, &compared) {
                (Some(spec), Ok(_)) => {
                    let residency = residency_of(table, self.homes.as_ref());
                    cdc_run::run(table, spec, &ctx.state, now.timestamp_millis(), residency)
                        .await
                        .map(Some)
                }
                _ => Ok(None),
            };
            let (snapshot, cdc) = match (compared, cdc) {
                (Ok(snapshot), Ok(cdc)) => (snapshot, cdc),
                (Err(err), _) | (_, Err(err)) => {
                    errors.push(format!("{}: {err}", table.name));
                    continue;
                }
            };
            let mut diffs = Vec::new();
            if let Some((found, _)) = &snapshot {
                diffs.extend(found.iter().cloned());
            }
            if let Some(cdc) = &cdc {
                diffs.extend(cdc.diffs.iter().cloned());
                writes.extend(cdc.write.clone());
                facts.lags.extend(&cdc.lags);
            }
            let applied = exceptions::apply(&table.name, diffs, &self.exceptions, now);
            facts.diffs.insert(
                &table.name,
                applied
                    .paged
                    .iter()
                    .map(|d| (d.reason.as_str(), d.key_text()))
                    .chain(
                        applied
                            .excepted
                            .iter()
                            .map(|(d, _)| ("excepted", d.key_text())),
                    )
                    .collect(),
            );
            facts
                .expired
                .extend(applied.expired.iter().map(|e| exceptions::scope(e)));
            let copies = copies(table, pair.as_ref());
            findings.extend(table_findings(table, &copies, &applied.paged));
            findings.extend(applied.expired.iter().map(|e| expired_finding(table, e)));
            let lines = diff_lines(&applied, &table.name, &ts);
            if let Some(dir) = &self.params.diffs_dir {
                let (name, bytes) = match self.params.diffs_gzip {
                    true => (format!("{}.ndjson.gz", table.name), gzip(&lines)),
                    false => (format!("{}.ndjson", table.name), lines.clone()),
                };
                if let Err(err) = ctx.effects.write_file(&dir.join(name), bytes).await {
                    errors.push(format!("{}: writing diffs: {err}", table.name));
                }
            }
            counts.ok += snapshot.as_ref().map_or(0, |(_, summary)| summary.equal)
                + cdc.as_ref().map_or(0, |c| c.lag.matched);
            counts.diff += applied.paged.len();
            counts.excepted += applied.excepted.len();
            differences += applied.paged.len();
            proved.push(table_proof(
                table,
                &copies,
                snapshot.as_ref().map(|(_, s)| s),
                cdc.as_ref(),
                lines,
                &applied,
            ));
            tables.insert(
                table.name.clone(),
                json!({
                    "compare": snapshot.as_ref().map(|(_, summary)| summary),
                    "cdc": cdc,
                    "excepted": applied.excepted.len(),
                    "expired_exceptions": applied.expired.len(),
                }),
            );
        }
        let mut summary = format!(
            "{} table(s) compared, {differences} differing key(s) not excepted; {} finding(s)",
            tables.len(),
            findings.len()
        );
        if !errors.is_empty() {
            summary.push_str(&format!("; {} table(s) failed", errors.len()));
        }
        if let (Some(dir), true) = (&self.params.report_dir, errors.is_empty()) {
            match write_report(&ctx, dir, &facts).await {
                Ok(write) => writes.push(write),
                Err(err) => errors.push(format!("report: {err}")),
            }
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
        report.state = writes;
        // A table that failed leaves its rows unknown: keep its alerts open.
        report.findings_partial = failed;
        Ok(report)
    }
}

/// `report/state`: the daily report's accumulators.
const REPORT: patrol_job_api::StateKey<report::Stored> =
    patrol_job_api::StateKey::new("report/state");

/// Adds the run to the day's report, writes its JSON and Markdown, and
/// returns the state to keep.
async fn write_report(
    ctx: &RunContext,
    dir: &std::path::Path,
    facts: &report::RunFacts<'_>,
) -> Result<patrol_job_api::StateWrite, String> {
    let mut stored = ctx
        .state
        .load(&REPORT)
        .await
        .map_err(|err| err.to_string())?
        .unwrap_or_default();
    let day = stored.add(facts).clone();
    let json = serde_json::to_vec_pretty(&day.to_json()).map_err(|err| err.to_string())?;
    for (name, bytes) in [
        (format!("{}.json", day.day), json),
        (format!("{}.md", day.day), day.to_markdown().into_bytes()),
    ] {
        ctx.effects
            .write_file(&dir.join(name), bytes)
            .await
            .map_err(|err| err.to_string())?;
    }
    REPORT.put(&stored).map_err(|err| err.to_string())
}

/// How a table's two copies are named in findings: its snapshot sources,
/// else its change streams.
fn copies(table: &TableSpec, pair: Option<&(Source, Source)>) -> (String, String) {
    match (pair, &table.cdc) {
        (Some((left, right)), _) => (left.describe(), right.describe()),
        (None, Some(cdc)) => (format!("cdc:{}", cdc.left), format!("cdc:{}", cdc.right)),
        (None, None) => (String::new(), String::new()),
    }
}

/// What the proof says of one table: each copy's source, rows and
/// commitment (for change streams: events read and the pending keys).
fn table_proof(
    table: &TableSpec,
    copies: &(String, String),
    snapshot: Option<&Summary>,
    cdc: Option<&CdcOutcome>,
    diffs: Vec<u8>,
    applied: &exceptions::Applied,
) -> TableProof {
    let side = |name: &str, rows: usize, commitment: &str, of: &'static str| CopyProof {
        source: name.to_string(),
        rows,
        commitment: commitment.to_string(),
        commitment_of: of,
    };
    let (left, right) = match (snapshot, cdc) {
        (Some(s), _) => (
            side(&copies.0, s.left_rows, &s.left_commitment, s.commitment_of),
            side(
                &copies.1,
                s.right_rows,
                &s.right_commitment,
                s.commitment_of,
            ),
        ),
        (None, Some(c)) => (
            side(
                &copies.0,
                c.left.events as usize,
                &c.commitment,
                "pending-keys",
            ),
            side(
                &copies.1,
                c.right.events as usize,
                &c.commitment,
                "pending-keys",
            ),
        ),
        (None, None) => (side(&copies.0, 0, "", ""), side(&copies.1, 0, "", "")),
    };
    TableProof {
        name: table.name.clone(),
        left,
        right,
        diffs,
        exceptions_applied: applied
            .excepted
            .iter()
            .map(|(_, e)| exceptions::scope(e))
            .collect(),
    }
}

/// `bytes` gzipped with no name and time in the header: the same diffs
/// give the same file.
fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    // Writing to memory cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// The tenants' homes and the table's copies' regions, when both are
/// configured.
fn residency_of(table: &TableSpec, homes: Option<&Homes>) -> Option<(Homes, Regions)> {
    let (homes, left, right) = (
        homes?,
        table.left_region.as_ref()?,
        table.right_region.as_ref()?,
    );
    let regions = Regions {
        left: left.trim().to_uppercase(),
        right: right.trim().to_uppercase(),
    };
    Some((homes.clone(), regions))
}

async fn compare_table(
    table: &TableSpec,
    (left, right): &(Source, Source),
    homes: Option<&Homes>,
) -> Result<(Vec<Diff>, Summary), String> {
    let spec = CompareSpec {
        key: table.key.clone(),
        columns: table.columns.clone(),
    };
    let (mut diffs, mut summary, _) = source::compare(left, right, &spec, None).await?;
    // Two files are compared streaming, by hashes seeded per compare: the
    // commitment anyone can recompute is each file's SHA-256.
    if let (Source::File(l), Source::File(r)) = (left, right) {
        let sha = |path: &std::path::Path| {
            patrol_job_api::effects::file_sha256(path)
                .map_err(|err| format!("{}: {err}", path.display()))
        };
        summary.left_commitment = sha(l)?;
        summary.right_commitment = sha(r)?;
        summary.commitment_of = "file";
    }
    if let Some((homes, regions)) = residency_of(table, homes) {
        let moved = residency::classify(&mut diffs, &homes, &regions);
        summary.missing -= moved;
        summary.cross_region_write = moved;
    }
    Ok((diffs, summary))
}

/// One finding per reason with rows: counts and the first sample keys.
fn table_findings(table: &TableSpec, copies: &(String, String), diffs: &[Diff]) -> Vec<Finding> {
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
                // Arrived, only slowly: a lag SLO breach, not lost data.
                Reason::Late => configured.min(Severity::Warning),
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
                    Reason::Late => "were mirrored later than the lag window",
                },
                copies.0,
                copies.1,
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
                "left": copies.0,
                "right": copies.1,
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
        (Reason::Late, _) => format!("{} ({} ms late)", diff.key_text(), diff.lag_ms.unwrap_or(0)),
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
