//! Re-checking one release by hand (`patrol verify release SHA`): its
//! chain as the sweeps left it in the job's state, with every signature
//! and Rekor entry verified again now (the same `Verifier` the sweep
//! uses, its earlier verdicts set aside) and the same rules evaluated, then
//! told stage by stage: release → bundle → sign → rekor → deploy →
//! runtime verify.
//!
//! Sigstore bundles are the exception: a sweep verifies a bundle's text as
//! it reads the event and keeps only its verdict, so that verdict is shown
//! as recorded, with when.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use patrol_job_api::{Finding, JobError, JobState};
use serde::{Deserialize, Serialize};

use crate::chain::{Chains, DigestChain, ReleaseChain};
use crate::evaluate::{evaluate, Verifying};
use crate::event::Stage;
use crate::rules::{Condition, Rule};
use crate::verify::{Check, Verifier};

/// How one stage of the chain stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    /// Present and, where verifiable, verified.
    Ok,
    /// A rule fires here, or a check failed.
    Failed,
    /// Not there yet, but its window is still open (or Rekor could not be
    /// asked): not a failure yet, not a pass.
    Pending,
    /// Not there, and no rule expects it.
    Absent,
}

impl StageStatus {
    /// As printed, padded to one width.
    pub fn label(self) -> &'static str {
        match self {
            StageStatus::Ok => "ok     ",
            StageStatus::Failed => "FAILED ",
            StageStatus::Pending => "pending",
            StageStatus::Absent => "-      ",
        }
    }
}

/// One stage's verdict, with what it rests on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageVerdict {
    pub stage: String,
    pub status: StageStatus,
    /// What was seen and checked (each line one fact).
    pub detail: Vec<String>,
    /// Why it failed: the rules that fire at this stage, with their
    /// summaries (expected vs found).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
}

/// The whole re-check of one release (recorded as JSON and read back).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseCheck {
    pub release_sha: String,
    /// Every stage verified, no rule firing, nothing pending.
    pub verified: bool,
    pub stages: Vec<StageVerdict>,
    /// The findings the rules produce now (what a sweep would page).
    pub findings: Vec<Finding>,
    /// Rekor could not be asked: some entries are unchecked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outage: Option<String>,
    pub checked_at: String,
}

/// Why a release could not be re-checked at all.
#[derive(Debug)]
pub enum RecheckError {
    /// No sweep of this schedule has seen the release.
    UnknownRelease(String),
    Job(JobError),
}

impl std::fmt::Display for RecheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecheckError::UnknownRelease(sha) => write!(
                f,
                "release {sha} is not in this provmon schedule's state (no sweep has read an event for it)"
            ),
            RecheckError::Job(err) => write!(f, "{err}"),
        }
    }
}

/// Re-checks release `sha` against `state` (the provmon schedule's).
pub async fn recheck_release(
    state: &JobState,
    rules: &[Rule],
    verifier: &Verifier,
    sha: &str,
    now: DateTime<Utc>,
) -> Result<ReleaseCheck, RecheckError> {
    let failed = |err: patrol_job_api::StateError| {
        RecheckError::Job(JobError::Failed(format!(
            "cannot read provmon state: {err}"
        )))
    };
    let release_key = format!("release/{sha}");
    let Some(bytes) = state.get(&release_key).await.map_err(failed)? else {
        return Err(RecheckError::UnknownRelease(sha.to_string()));
    };
    let release: ReleaseChain = decode(&release_key, &bytes)?;
    let keys: Vec<String> = release
        .digests
        .iter()
        .map(|digest| format!("digest/{digest}"))
        .collect();
    let mut chains = Chains::default();
    for (key, bytes) in state.get_many(&keys).await.map_err(failed)? {
        let chain: DigestChain = decode(&key, &bytes)?;
        let digest = key.trim_start_matches("digest/").to_string();
        chains.digests.insert(digest, chain);
    }
    for chain in chains.digests.values_mut() {
        // Verified again now, not taken from the sweep that first did.
        chain
            .checks
            .retain(|key, _| !key.starts_with("sig:") && !key.starts_with("rekor:"));
    }
    chains.releases.insert(sha.to_string(), release);
    let search = crate::sweep::overdue_for_rekor(rules, &chains, now);
    let verified = verifier.verify(&mut chains, &search, now).await;
    let verifying = Verifying {
        signatures: verifier.checks_signatures(),
        rekor: verifier.checks_rekor(),
        bundles: verifier.checks_bundles(),
    };
    let evaluation = evaluate(rules, &chains, verifying, now);
    let stages = stage_verdicts(rules, &chains, sha, &evaluation.findings, verifying, now);
    let all_ok = stages
        .iter()
        .all(|stage| matches!(stage.status, StageStatus::Ok | StageStatus::Absent))
        && evaluation.findings.is_empty()
        && verified.outage.is_none();
    Ok(ReleaseCheck {
        release_sha: sha.to_string(),
        verified: all_ok,
        stages,
        findings: evaluation.findings,
        outage: verified.outage,
        checked_at: now.to_rfc3339_opts(SecondsFormat::Secs, true),
    })
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, RecheckError> {
    serde_json::from_slice(bytes).map_err(|err| {
        RecheckError::Job(JobError::Failed(format!(
            "provmon state `{key}` is unreadable: {err}"
        )))
    })
}

/// The stage a rule judges: what it finds missing, or what it checks.
fn stage_of(rule: &Rule) -> Stage {
    match &rule.condition {
        Condition::Absent { expected, .. } => *expected,
        Condition::Status { stage, .. } => *stage,
        Condition::DeployedUnverified { .. } => Stage::Deploy,
        Condition::SignatureInvalid => Stage::Sign,
        Condition::RekorMismatch => Stage::Rekor,
    }
}

fn at(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn check_line(what: &str, check: &Check, fresh: bool) -> String {
    // A bundle's text is not kept, so its verdict is the sweep's.
    let when = if fresh {
        String::new()
    } else {
        format!(" (by the sweep at {})", at(check.at))
    };
    match (&check.reason, check.ok) {
        (_, true) => format!("{what}: verified{when}"),
        (Some(reason), false) => format!("{what}: FAILED{when}: {reason}"),
        (None, false) => format!("{what}: FAILED{when}"),
    }
}

fn stage_verdicts(
    rules: &[Rule],
    chains: &Chains,
    sha: &str,
    findings: &[Finding],
    verifying: Verifying,
    now: DateTime<Utc>,
) -> Vec<StageVerdict> {
    let release = &chains.releases[sha];
    let digests: BTreeMap<&str, &DigestChain> = chains
        .digests
        .iter()
        .map(|(digest, chain)| (digest.as_str(), chain))
        .collect();
    // Findings by the stage their rule judges.
    let mut failures: BTreeMap<Stage, Vec<String>> = BTreeMap::new();
    for finding in findings {
        let rule_id = finding.key.split('/').nth(1).unwrap_or_default();
        if let Some(rule) = rules.iter().find(|rule| rule.id == rule_id) {
            failures
                .entry(stage_of(rule))
                .or_default()
                .push(format!("{}: {}", rule.id, finding.summary));
        }
    }
    Stage::ALL
        .iter()
        .map(|&stage| {
            let mut detail = Vec::new();
            let mut present = false;
            let mut checks_failed = false;
            if stage.is_release_level() {
                if let Some(log) = release.stages.get(&stage) {
                    present = true;
                    detail.push(format!("release {sha} at {}", at(log.first)));
                }
            }
            for (digest, chain) in &digests {
                let Some(log) = chain.stages.get(&stage) else {
                    continue;
                };
                present = true;
                let status = log
                    .status
                    .as_deref()
                    .map(|status| format!(", status {status}"))
                    .unwrap_or_default();
                let extra = match stage {
                    Stage::Deploy => format!(
                        " as {}",
                        chain.deploy_revs.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                    _ => String::new(),
                };
                detail.push(format!(
                    "{digest}{extra}: {} event(s), first {}{status}",
                    log.count,
                    at(log.first)
                ));
            }
            for (digest, chain) in &digests {
                let lines: Vec<(String, &Check, bool)> = match stage {
                    Stage::Sign => {
                        let mut lines = Vec::new();
                        if verifying.signatures {
                            for (_, check) in chain.checks_of("sig:") {
                                lines.push((format!("{digest} cosign signature"), check, true));
                            }
                        }
                        if verifying.bundles {
                            for (id, check) in chain.checks_of("bundle:") {
                                let short = &id[..id.len().min(12)];
                                lines.push((
                                    format!("{digest} sigstore bundle {short}"),
                                    check,
                                    false,
                                ));
                            }
                        }
                        lines
                    }
                    Stage::Rekor if verifying.rekor => chain
                        .checks_of("rekor:")
                        .map(|(uuid, check)| {
                            (format!("{digest} Rekor entry {uuid}"), check, true)
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                for (what, check, fresh) in lines {
                    checks_failed |= !check.ok;
                    detail.push(check_line(&what, check, fresh));
                }
            }
            if stage == Stage::Rekor && !present {
                // A verified Sigstore bundle carries its own tlog entry.
                let in_bundle = digests
                    .values()
                    .any(|chain| chain.checks_of("bundle:").any(|(_, check)| check.ok));
                if in_bundle {
                    present = true;
                    detail.push("logged in the verified sigstore bundle's tlog entry".into());
                }
            }
            let failures = failures.remove(&stage).unwrap_or_default();
            let expected = rules
                .iter()
                .any(|rule| matches!(rule.condition, Condition::Absent { expected, .. } if expected == stage));
            let status = if !failures.is_empty() || (present && checks_failed) {
                StageStatus::Failed
            } else if present {
                StageStatus::Ok
            } else if expected && reached_before(stage, release, &digests) {
                detail.push(format!("not seen yet (as of {})", at(now)));
                StageStatus::Pending
            } else {
                StageStatus::Absent
            };
            StageVerdict {
                stage: stage.as_str().to_string(),
                status,
                detail,
                failures,
            }
        })
        .collect()
}

/// Whether the stage before `stage` was reached, so `stage` is awaited.
fn reached_before(
    stage: Stage,
    release: &ReleaseChain,
    digests: &BTreeMap<&str, &DigestChain>,
) -> bool {
    let Some(position) = Stage::ALL.iter().position(|s| *s == stage) else {
        return false;
    };
    let Some(previous) = position.checked_sub(1).map(|p| Stage::ALL[p]) else {
        return false;
    };
    release.stages.contains_key(&previous)
        || digests
            .values()
            .any(|chain| chain.stages.contains_key(&previous))
}
