//! One run: every release folder evaluated; one finding per failing
//! (release, control), named after what failed first.

use async_trait::async_trait;
use patrol_job_api::{Finding, JobError, JobInstance, Outcome, RunContext, RunReport, Severity};
use patrol_provmon_verify::key::PublicKey;
use serde_json::{json, Value};

use patrol_job_api::{StatePrefix, StateWrite};
use patrol_provmon_verify::fixtures::SigningKey;
use sha2::{Digest, Sha256};

use crate::attestation;
use crate::audit;
use crate::catalog::Catalog;
use crate::chain;
use crate::evaluate::{self, ControlResult, Inputs, Release, Report};
use crate::{Params, RUNBOOKS};

/// `attested/<release>`: the SHA-256 of the release's signed attestation
/// (each release is attested once, with its verdict at that time).
const ATTESTED: StatePrefix<String> = StatePrefix::new("attested/");

pub(crate) struct EvidenceAuditInstance {
    pub params: Params,
    pub catalog: Catalog,
    pub catalog_sha256: String,
    pub keys: Vec<PublicKey>,
    pub signer: Option<SigningKey>,
}

#[async_trait]
impl JobInstance for EvidenceAuditInstance {
    async fn run(&self, ctx: RunContext) -> Result<RunReport, JobError> {
        if let Some(spec) = &self.params.audit {
            return self.audit_run(&ctx, spec).await;
        }
        let inputs = Inputs {
            attestation_keys: self.keys.clone(),
            now: ctx.now(),
        };
        let (dir, catalog) = (self.params.releases.clone(), self.catalog.clone());
        let evaluated = tokio::task::spawn_blocking(move || evaluate_all(&dir, &catalog, &inputs))
            .await
            .map_err(|err| JobError::Failed(format!("evaluation panicked: {err}")))?;
        let (evaluated, mut errors) = evaluated.map_err(JobError::Failed)?;
        let (attested, state) = match &self.signer {
            Some(signer) => {
                self.attest_new(&ctx, &evaluated, signer, &mut errors)
                    .await?
            }
            None => (Vec::new(), Vec::new()),
        };
        let reports: Vec<Report> = evaluated.into_iter().map(|(_, report)| report).collect();
        let mut findings = Vec::new();
        for report in &reports {
            findings.extend(
                report
                    .controls
                    .iter()
                    .filter(|c| !c.pass)
                    .map(|c| control_finding(&report.release, c)),
            );
        }
        let failed = reports.iter().filter(|r| !r.overall).count();
        let summary = format!(
            "{} release(s) evaluated against {} control(s): {} failing; {} finding(s)",
            reports.len(),
            self.catalog.controls.len(),
            failed,
            findings.len()
        );
        let outcome = if errors.is_empty() {
            Outcome::Succeeded
        } else {
            Outcome::Failed
        };
        let mut report = RunReport::new(outcome, summary);
        report.findings = findings;
        report.output = (!errors.is_empty()).then(|| errors.join("\n"));
        report.details = json!({"releases": reports, "errors": errors, "attested": attested});
        report.state = state;
        Ok(report)
    }
}

impl EvidenceAuditInstance {
    /// Signs the control attestation of each release not attested yet,
    /// writes it through the run's effects, and chains it. Returns what
    /// was attested (release, envelope sha256, chain head) and the state
    /// writes.
    async fn attest_new(
        &self,
        ctx: &RunContext,
        evaluated: &[(Release, Report)],
        signer: &SigningKey,
        errors: &mut Vec<String>,
    ) -> Result<(Vec<Value>, Vec<StateWrite>), JobError> {
        let Some(spec) = &self.params.attestations else {
            return Ok((Vec::new(), Vec::new()));
        };
        let failed = |err: patrol_job_api::StateError| JobError::Failed(err.to_string());
        let head = chain_head(ctx).await?;
        let keys: Vec<_> = evaluated
            .iter()
            .map(|(r, _)| ATTESTED.key(&r.tag))
            .collect();
        let done = ctx.state.load_many(&keys).await.map_err(failed)?;
        let mut items = Vec::new();
        let mut writes = Vec::new();
        let mut attested = Vec::new();
        for (release, report) in evaluated {
            let marker = ATTESTED.key(&release.tag);
            if done.contains_key(marker.name()) {
                continue;
            }
            let signed =
                attestation::attest(report, release, &self.catalog, &self.catalog_sha256, signer);
            let folder = spec.dir.join(&release.tag);
            let files = [
                ("control-attestation.intoto.json", signed.envelope.clone()),
                ("control-attestation.pdf", signed.pdf.clone()),
                (
                    "control-attestation.pdf.sig",
                    signed.pdf_signature.clone().into_bytes(),
                ),
            ];
            let mut written = true;
            for (name, bytes) in files {
                if let Err(err) = ctx.effects.write_file(&folder.join(name), bytes).await {
                    errors.push(format!("{}: writing {name}: {err}", release.tag));
                    written = false;
                    break;
                }
            }
            if !written {
                continue;
            }
            let digest = hex::encode(Sha256::digest(&signed.envelope));
            writes.push(marker.put(&digest).map_err(failed)?);
            items.push((
                "attestation".to_string(),
                Some(release.tag.clone()),
                digest.clone(),
            ));
            attested.push(json!({"release": release.tag, "envelope_sha256": digest}));
        }
        if items.is_empty() {
            return Ok((attested, writes));
        }
        let at = ctx.now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let (chained, head) = chain::append(&head, items, &at).map_err(JobError::Failed)?;
        writes.extend(chained);
        attested.push(json!({"chain_head": head}));
        Ok((attested, writes))
    }
}

impl EvidenceAuditInstance {
    /// The audit of the configured period: the report through the run's
    /// effects, a finding per failing sampled release, the report's digest
    /// chained.
    async fn audit_run(
        &self,
        ctx: &RunContext,
        spec: &crate::AuditSpec,
    ) -> Result<RunReport, JobError> {
        let period =
            audit::parse_period(&spec.period, ctx.scheduled_for).map_err(JobError::Failed)?;
        let share = audit::parse_share(&spec.sample).map_err(JobError::Failed)?;
        let seed = spec
            .seed
            .clone()
            .unwrap_or_else(|| format!("{}:{}", ctx.schedule_id, period.name));
        let setup = audit::Setup {
            catalog: self.catalog.clone(),
            releases: self.params.releases.clone(),
            attestations: self.params.attestations.as_ref().map(|a| a.dir.clone()),
            evidence_keys: self.keys.clone(),
            attestation_keys: self.signer.iter().map(SigningKey::public_key).collect(),
        };
        let now = ctx.now();
        let (period_copy, seed_copy) = (period.clone(), seed.clone());
        let report = tokio::task::spawn_blocking(move || {
            audit::audit(&setup, &period_copy, share, &seed_copy, now)
        })
        .await
        .map_err(|err| JobError::Failed(format!("audit panicked: {err}")))?
        .map_err(JobError::Failed)?;
        let json = serde_json::to_vec_pretty(&report).unwrap_or_default();
        let mut errors = report.errors.clone();
        if let Some(dir) = &spec.report_dir {
            for (name, bytes) in [
                (format!("audit-{}.json", period.name), json.clone()),
                (
                    format!("audit-{}.md", period.name),
                    audit::markdown(&report).into_bytes(),
                ),
            ] {
                if let Err(err) = ctx.effects.write_file(&dir.join(&name), bytes).await {
                    errors.push(format!("writing {name}: {err}"));
                }
            }
        }
        // Chained only once posted: the chain never vouches for a report
        // nobody can read (the retry posts and chains it).
        let head = chain_head(ctx).await?;
        let (state, head) = if errors.len() > report.errors.len() {
            (Vec::new(), head)
        } else {
            let at = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let digest = hex::encode(Sha256::digest(&json));
            chain::append(&head, [("audit".to_string(), None, digest)], &at)
                .map_err(JobError::Failed)?
        };
        let findings: Vec<Finding> = report
            .sampled
            .iter()
            .filter(|r| !r.problems.is_empty())
            .map(|r| audit_finding(&period.name, r))
            .collect();
        let summary = format!(
            "evidence audit {}: {} of {} release(s) sampled (seed {seed}), {} passed, {} failed",
            period.name,
            report.sampled.len(),
            report.releases.len(),
            report.passed,
            report.failed
        );
        let mut run = RunReport::new(
            if errors.is_empty() {
                Outcome::Succeeded
            } else {
                Outcome::Failed
            },
            summary,
        );
        run.findings = findings;
        run.output = (!errors.is_empty()).then(|| errors.join("\n"));
        run.details = json!({"audit": report, "chain_head": head});
        run.state = state;
        Ok(run)
    }
}

/// The chain's head as stored (none yet: the start).
async fn chain_head(ctx: &RunContext) -> Result<chain::Head, JobError> {
    Ok(ctx
        .state
        .load(&chain::HEAD)
        .await
        .map_err(|err| JobError::Failed(err.to_string()))?
        .unwrap_or_default())
}

fn audit_finding(period: &str, release: &audit::ReleaseAudit) -> Finding {
    let reason = release.problems[0].reason;
    let mut finding = Finding::new(
        format!("evidence-audit/audit/{period}/{}", release.release),
        Severity::Error,
        format!(
            "Evidence audit {period}: {} fails re-verification: {}",
            release.release,
            release
                .problems
                .iter()
                .map(|p| format!("{} {}", p.reason, p.detail))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    );
    finding.runbook = RUNBOOKS
        .iter()
        .find(|(r, _)| *r == reason)
        .map(|(_, runbook)| runbook.to_string());
    finding
        .labels
        .insert("release".into(), release.release.clone());
    finding.labels.insert("reason".into(), reason.into());
    finding.labels.insert("period".into(), period.into());
    finding.details = json!({"problems": release.problems, "rank": release.rank});
    finding
}

type Evaluated = (Vec<(Release, Report)>, Vec<String>);

fn evaluate_all(
    dir: &std::path::Path,
    catalog: &Catalog,
    inputs: &Inputs,
) -> Result<Evaluated, String> {
    let mut folders: Vec<_> = std::fs::read_dir(dir)
        .map_err(|err| format!("{}: {err}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    let (mut reports, mut errors) = (Vec::new(), Vec::new());
    for folder in folders {
        match evaluate::release_of(&folder) {
            Ok(release)
                if reports
                    .iter()
                    .any(|(r, _): &(Release, Report)| r.tag == release.tag) =>
            {
                errors.push(format!(
                    "{}: release {} is in another folder too",
                    folder.display(),
                    release.tag
                ));
            }
            Ok(release) => {
                let report = evaluate::evaluate(catalog, &folder, &release, inputs);
                reports.push((release, report));
            }
            Err(err) => errors.push(err),
        }
    }
    Ok((reports, errors))
}

/// What a failing control's details say first: missing evidence, a bad
/// attestation, or another assertion.
fn reason(control: &ControlResult) -> &'static str {
    let has = |key: &str| control.details.iter().any(|d| d.get(key).is_some());
    if has("missing") {
        "evidence-missing-artifact"
    } else if has("attestation") {
        "attestation-invalid"
    } else {
        "control-failed"
    }
}

fn control_finding(release: &str, control: &ControlResult) -> Finding {
    let reason = reason(control);
    let mut finding = Finding::new(
        format!("evidence-audit/{release}/{}", control.id),
        Severity::Error,
        format!(
            "Evidence audit: {release} fails {} ({}): {}",
            control.id,
            control.name,
            describe(&control.details)
        ),
    );
    finding.runbook = RUNBOOKS
        .iter()
        .find(|(r, _)| *r == reason)
        .map(|(_, runbook)| runbook.to_string());
    finding.labels.insert("release".into(), release.to_string());
    finding.labels.insert("control".into(), control.id.clone());
    finding.labels.insert("reason".into(), reason.into());
    finding.details = json!({"details": control.details});
    finding
}

/// A short text of the first few details.
fn describe(details: &[Value]) -> String {
    let mut parts: Vec<String> = details.iter().take(3).map(Value::to_string).collect();
    if details.len() > 3 {
        parts.push(format!("and {} more", details.len() - 3));
    }
    parts.join("; ")
}
