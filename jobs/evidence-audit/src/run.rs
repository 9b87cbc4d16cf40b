//! One run: every release folder evaluated; one finding per failing
//! (release, control), named after what failed first.

use async_trait::async_trait;
use patrol_job_api::{Finding, JobError, JobInstance, Outcome, RunContext, RunReport, Severity};
use patrol_provmon_verify::key::PublicKey;
use serde_json::{json, Value};

use crate::catalog::Catalog;
use crate::evaluate::{self, ControlResult, Inputs};
use crate::{Params, RUNBOOKS};

pub(crate) struct EvidenceAuditInstance {
    pub params: Params,
    pub catalog: Catalog,
    pub keys: Vec<PublicKey>,
}

#[async_trait]
impl JobInstance for EvidenceAuditInstance {
    async fn run(&self, ctx: RunContext) -> Result<RunReport, JobError> {
        let inputs = Inputs {
            attestation_keys: self.keys.clone(),
            now: ctx.now(),
        };
        let (dir, catalog) = (self.params.releases.clone(), self.catalog.clone());
        let evaluated = tokio::task::spawn_blocking(move || evaluate_all(&dir, &catalog, &inputs))
            .await
            .map_err(|err| JobError::Failed(format!("evaluation panicked: {err}")))?;
        let (reports, errors) = evaluated.map_err(JobError::Failed)?;
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
        report.details = json!({"releases": reports, "errors": errors});
        Ok(report)
    }
}

type Evaluated = (Vec<evaluate::Report>, Vec<String>);

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
            Ok(release) => reports.push(evaluate::evaluate(catalog, &folder, &release, inputs)),
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
