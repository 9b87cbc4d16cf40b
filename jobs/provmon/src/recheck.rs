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

use crate::chain::{Chains, DigestChain, ReleaseChain, StageLog};
use crate::evaluate::{evaluate, Verifying, Watch};
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

/// A release's chains as the sweeps left them, ready to be re-checked.
pub struct LoadedRelease {
    sha: String,
    chains: Chains,
    /// Digests the release lists whose chain is not in the state.
    missing: Vec<String>,
    /// SHA-256 (hex) of the state read: equal bases mean the sweeps have
    /// learned nothing new about this release since.
    pub basis: String,
}

/// Reads release `sha` and its digests' chains from `state` (the
/// provmon schedule's).
pub async fn load_release(state: &JobState, sha: &str) -> Result<LoadedRelease, RecheckError> {
    use sha2::{Digest, Sha256};
    let failed = |err: patrol_job_api::StateError| {
        RecheckError::Job(JobError::Failed(format!(
            "cannot read provmon state: {err}"
        )))
    };
    let release_key = format!("release/{sha}");
    let Some(bytes) = state.get(&release_key).await.map_err(failed)? else {
        return Err(RecheckError::UnknownRelease(sha.to_string()));
    };
    let mut basis = Sha256::new();
    basis.update(&bytes);
    let release: ReleaseChain = decode(&release_key, &bytes)?;
    let keys: Vec<String> = release
        .digests
        .iter()
        .map(|digest| format!("digest/{digest}"))
        .collect();
    let found = state.get_many(&keys).await.map_err(failed)?;
    let mut chains = Chains::default();
    let mut missing = Vec::new();
    for key in &keys {
        let digest = key.trim_start_matches("digest/").to_string();
        match found.get(key) {
            Some(bytes) => {
                basis.update(key.as_bytes());
                basis.update(bytes);
                chains.digests.insert(digest, decode(key, bytes)?);
            }
            None => missing.push(digest),
        }
    }
    chains.releases.insert(sha.to_string(), release);
    Ok(LoadedRelease {
        sha: sha.to_string(),
        chains,
        missing,
        basis: hex::encode(basis.finalize()),
    })
}

/// Re-checks a loaded release: signatures and Rekor entries verified
/// again now, every rule evaluated, each stage judged.
pub async fn recheck_release(
    loaded: LoadedRelease,
    rules: &[Rule],
    verifier: &Verifier,
    now: DateTime<Utc>,
) -> ReleaseCheck {
    let LoadedRelease {
        sha,
        mut chains,
        missing,
        ..
    } = loaded;
    for chain in chains.digests.values_mut() {
        // Verified again now, not taken from the sweep that first did.
        chain
            .checks
            .retain(|key, _| !key.starts_with("sig:") && !key.starts_with("rekor:"));
    }
    let search = crate::sweep::overdue_for_rekor(rules, &chains, now);
    let verified = verifier.verify(&mut chains, &search, now).await;
    let verifying = Verifying {
        signatures: verifier.checks_signatures(),
        rekor: verifier.checks_rekor(),
        bundles: verifier.checks_bundles(),
    };
    let judged = Judged::of(rules, &chains, verifying, now);
    let mut stages = stage_verdicts(&chains, &sha, &judged, verifying, now);
    for digest in &missing {
        fail_stage(
            &mut stages,
            Stage::Bundle,
            format!("{digest}: listed by the release, but no sweep kept its chain"),
        );
    }
    let dropped: u64 = chains.releases[&sha].dropped_links
        + chains
            .digests
            .values()
            .map(|chain| chain.dropped_links)
            .sum::<u64>();
    if dropped > 0 {
        fail_stage(
            &mut stages,
            Stage::Release,
            format!("{dropped} link(s) of this release were not kept (too many per chain): it cannot be verified whole"),
        );
    }
    let all_ok = stages
        .iter()
        .all(|stage| matches!(stage.status, StageStatus::Ok | StageStatus::Absent))
        && judged.findings.is_empty()
        && verified.outage.is_none();
    ReleaseCheck {
        release_sha: sha,
        verified: all_ok,
        stages,
        findings: judged.findings,
        outage: verified.outage,
        checked_at: now.to_rfc3339_opts(SecondsFormat::Secs, true),
    }
}

/// Marks `stage` failed with `failure`.
fn fail_stage(stages: &mut [StageVerdict], stage: Stage, failure: String) {
    if let Some(verdict) = stages
        .iter_mut()
        .find(|verdict| verdict.stage == stage.as_str())
    {
        verdict.failures.push(failure);
        verdict.status = StageStatus::Failed;
    }
}

/// What the rules say, rule by rule, so each finding and each open window
/// lands at the stage its rule judges.
struct Judged {
    findings: Vec<Finding>,
    failures: BTreeMap<Stage, Vec<String>>,
    pending: BTreeMap<Stage, Vec<String>>,
}

impl Judged {
    fn of(rules: &[Rule], chains: &Chains, verifying: Verifying, now: DateTime<Utc>) -> Self {
        let mut judged = Judged {
            findings: Vec::new(),
            failures: BTreeMap::new(),
            pending: BTreeMap::new(),
        };
        for rule in rules {
            let stage = stage_of(rule);
            let evaluation = evaluate(std::slice::from_ref(rule), chains, verifying, now);
            for finding in &evaluation.findings {
                judged
                    .failures
                    .entry(stage)
                    .or_default()
                    .push(format!("{}: {}", rule.id, finding.summary));
            }
            for watch in evaluation.active.values() {
                // `until == now` marks a chain Rekor could not be asked
                // about; the outage is reported on its own.
                if let Watch::Pending { until } = watch {
                    if *until > now {
                        judged.pending.entry(stage).or_default().push(format!(
                            "{}: window open until {}",
                            rule.id,
                            at(*until)
                        ));
                    }
                }
            }
            judged.findings.extend(evaluation.findings);
        }
        judged
    }
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
        Condition::RekorMismatch | Condition::RekorForeignSigner => Stage::Rekor,
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
    chains: &Chains,
    sha: &str,
    judged: &Judged,
    verifying: Verifying,
    now: DateTime<Utc>,
) -> Vec<StageVerdict> {
    let release = &chains.releases[sha];
    let digests: BTreeMap<&str, &DigestChain> = chains
        .digests
        .iter()
        .map(|(digest, chain)| (digest.as_str(), chain))
        .collect();
    Stage::ALL
        .iter()
        .map(|&stage| {
            let mut verdict = StageVerdict {
                stage: stage.as_str().to_string(),
                status: StageStatus::Absent,
                detail: Vec::new(),
                failures: judged.failures.get(&stage).cloned().unwrap_or_default(),
            };
            let mut present = false;
            let mut pending = judged.pending.get(&stage).cloned().unwrap_or_default();
            if stage.is_release_level() {
                if let Some(log) = release.stages.get(&stage) {
                    present = true;
                    verdict
                        .detail
                        .push(format!("release {sha} at {}", at(log.first)));
                }
            }
            for (digest, chain) in &digests {
                if let Some(log) = chain.stages.get(&stage) {
                    present = true;
                    verdict.detail.push(event_line(stage, digest, chain, log));
                }
                let proof = evidence_lines(stage, digest, chain, verifying);
                verdict
                    .detail
                    .extend(proof.lines.iter().map(|(line, _)| line.clone()));
                // Verification on means a stage counts only with a proof:
                // one passing check per digest that reached it.
                if proof.required && !proof.lines.iter().any(|(_, ok)| *ok) {
                    if chain.unverifiable {
                        pending.push(format!("{digest}: Rekor could not be asked"));
                    } else if verdict.failures.is_empty() {
                        verdict
                            .failures
                            .push(format!("{digest}: no {} verified", proof.what));
                    }
                }
            }
            if stage == Stage::Rekor && !present {
                // A verified Sigstore bundle carries its own tlog entry.
                let in_bundle = digests
                    .values()
                    .any(|chain| chain.checks_of("bundle:").any(|(_, check)| check.ok));
                if in_bundle {
                    present = true;
                    verdict
                        .detail
                        .push("logged in the verified sigstore bundle's tlog entry".into());
                }
            }
            verdict.status = if !verdict.failures.is_empty() {
                StageStatus::Failed
            } else if !pending.is_empty() {
                verdict
                    .detail
                    .extend(pending.into_iter().map(|line| format!("pending: {line}")));
                verdict
                    .detail
                    .push(format!("not settled yet (as of {})", at(now)));
                StageStatus::Pending
            } else if present {
                StageStatus::Ok
            } else {
                StageStatus::Absent
            };
            verdict
        })
        .collect()
}

fn event_line(stage: Stage, digest: &str, chain: &DigestChain, log: &StageLog) -> String {
    let status = log
        .status
        .as_deref()
        .map(|status| format!(", status {status}"))
        .unwrap_or_default();
    let revs = match stage {
        Stage::Deploy => format!(
            " as {}",
            chain
                .deploy_revs
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => String::new(),
    };
    format!(
        "{digest}{revs}: {} event(s), first {}{status}",
        log.count,
        at(log.first)
    )
}

/// A digest's cryptographic evidence at one stage.
struct Proof {
    /// One line per check, with whether it passed.
    lines: Vec<(String, bool)>,
    /// Whether the stage needs a passing check to count (verification of
    /// its kind is configured and the digest reached the stage).
    required: bool,
    what: &'static str,
}

fn evidence_lines(stage: Stage, digest: &str, chain: &DigestChain, verifying: Verifying) -> Proof {
    let mut lines = Vec::new();
    let bundle_ok = chain.checks_of("bundle:").any(|(_, check)| check.ok);
    match stage {
        Stage::Sign => {
            if verifying.signatures {
                for (_, check) in chain.checks_of("sig:") {
                    lines.push((
                        check_line(&format!("{digest} cosign signature"), check, true),
                        check.ok,
                    ));
                }
            }
            if verifying.bundles {
                for (id, check) in chain.checks_of("bundle:") {
                    let short = &id[..id.len().min(12)];
                    let what = format!("{digest} sigstore bundle {short}");
                    lines.push((check_line(&what, check, false), check.ok));
                }
            }
            Proof {
                lines,
                required: (verifying.signatures || verifying.bundles)
                    && chain.stages.contains_key(&Stage::Sign),
                what: "signature or sigstore bundle",
            }
        }
        Stage::Rekor if verifying.rekor => {
            for (uuid, check) in chain.checks_of("rekor:") {
                let what = format!("{digest} Rekor entry {uuid}");
                lines.push((check_line(&what, check, true), check.ok));
            }
            if bundle_ok && chain.stages.contains_key(&Stage::Rekor) {
                lines.push((
                    format!("{digest}: logged in its verified sigstore bundle"),
                    true,
                ));
            }
            Proof {
                lines,
                required: chain.stages.contains_key(&Stage::Rekor),
                what: "Rekor entry (the events name none that verifies)",
            }
        }
        _ => Proof {
            lines,
            required: false,
            what: "",
        },
    }
}
