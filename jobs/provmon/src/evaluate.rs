//! Rules over chains: which findings hold now, and which chains must be
//! looked at again next sweep (a window still open, or a finding firing)
//! even if no new event touches them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use patrol_job_api::Finding;

use crate::chain::{Chains, DigestChain, ReleaseChain, Unit};
use crate::event::Stage;
use crate::rules::{Condition, Rule};

/// The outcome of evaluating some units.
#[derive(Debug, Default)]
pub struct Evaluation {
    pub findings: Vec<Finding>,
    /// Units to evaluate again next sweep, with why.
    pub active: BTreeMap<Unit, Watch>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// A finding holds; it must be reported every sweep until it clears.
    Firing,
    /// A window is open; at `until` the rule decides.
    Pending { until: DateTime<Utc> },
}

/// What verification is configured: stages then count only once
/// verified.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verifying {
    pub signatures: bool,
    pub rekor: bool,
    pub bundles: bool,
}

impl Verifying {
    /// Whether signing evidence of any kind is verified.
    fn any_signing(self) -> bool {
        self.signatures || self.bundles
    }
}

/// The verdicts on a chain's signing evidence that count: cosign
/// signatures when keys are configured, Sigstore bundles when sigstore is.
fn signing_checks(chain: &DigestChain, verifying: Verifying) -> Vec<(&str, &crate::verify::Check)> {
    let signatures = chain
        .checks_of("sig:")
        .filter(move |_| verifying.signatures);
    let bundles = chain
        .checks_of("bundle:")
        .filter(move |_| verifying.bundles);
    signatures.chain(bundles).collect()
}

/// How many pieces of signing evidence a chain holds that can be verified.
fn signing_evidence(chain: &DigestChain, verifying: Verifying) -> usize {
    let mut n = 0;
    if verifying.signatures {
        n += chain.signatures.len();
    }
    if verifying.bundles {
        n += chain.bundles.len();
    }
    n
}

/// Evaluates `rules` on every chain in `chains` (a sweep loads those its
/// events touched and those being watched).
pub fn evaluate(
    rules: &[Rule],
    chains: &Chains,
    verifying: Verifying,
    now: DateTime<Utc>,
) -> Evaluation {
    let mut evaluation = Evaluation::default();
    let explained = RekorExplained {
        broken: rules
            .iter()
            .any(|r| r.condition == Condition::RekorMismatch),
        foreign: rules
            .iter()
            .any(|r| r.condition == Condition::RekorForeignSigner),
    };
    for (digest, chain) in &chains.digests {
        if chain.unverifiable {
            // Rekor could not be asked: judge it when it can.
            evaluation.watch(Unit::Digest(digest.clone()), Watch::Pending { until: now });
        }
        for rule in rules {
            check_digest(
                rule,
                digest,
                chain,
                verifying,
                explained,
                now,
                &mut evaluation,
            );
        }
    }
    for (sha, release) in &chains.releases {
        for rule in rules {
            check_release(rule, sha, release, chains, now, &mut evaluation);
        }
    }
    evaluation
}

/// The digest has a Rekor entry that checks out as ours, or a verified
/// Sigstore bundle (which carries a verified log entry).
fn rekor_vouched(chain: &DigestChain, verifying: Verifying) -> bool {
    chain.checks_of("rekor:").any(|(_, check)| check.ok)
        || (verifying.bundles && chain.checks_of("bundle:").any(|(_, check)| check.ok))
}

/// Which Rekor problems a rule of their own pages: `missing-rekor` then
/// stays quiet about an entry that came but does not count, so one problem
/// pages once, and speaks up when no such rule would.
#[derive(Debug, Clone, Copy)]
struct RekorExplained {
    broken: bool,
    foreign: bool,
}

impl RekorExplained {
    /// Every Rekor entry of `chain` failed in a way another rule pages.
    fn covers(self, chain: &DigestChain) -> bool {
        let mut failed = chain
            .checks_of("rekor:")
            .filter(|(_, check)| !check.ok)
            .peekable();
        failed.peek().is_some()
            && failed.all(|(_, check)| {
                if check.foreign {
                    self.foreign
                } else {
                    self.broken
                }
            })
    }
}

#[allow(clippy::too_many_arguments)]
fn check_digest(
    rule: &Rule,
    digest: &str,
    chain: &DigestChain,
    verifying: Verifying,
    explained: RekorExplained,
    now: DateTime<Utc>,
    out: &mut Evaluation,
) {
    let unit = || Unit::Digest(digest.to_string());
    match &rule.condition {
        Condition::Absent {
            after,
            expected,
            within,
        } if !after.is_release_level() => {
            let Some(start) = chain.stages.get(after) else {
                return;
            };
            // Under verification a Rekor event counts only once its entry
            // checks out as ours: a foreign or broken entry is no entry.
            let rekor_unproven =
                *expected == Stage::Rekor && verifying.rekor && !rekor_vouched(chain, verifying);
            if chain.stages.contains_key(expected) && (!rekor_unproven || explained.covers(chain)) {
                return;
            }
            let deadline = start.first + chrono::Duration::from_std(*within).unwrap_or_default();
            if now < deadline {
                out.watch(unit(), Watch::Pending { until: deadline });
                return;
            }
            if *expected == Stage::Rekor && chain.unverifiable {
                return; // Rekor could not be searched: absence not shown
            }
            let unproven = if chain.stages.contains_key(expected) {
                let reasons: Vec<&str> = chain
                    .checks_of("rekor:")
                    .filter_map(|(_, check)| check.reason.as_deref())
                    .collect();
                format!(
                    "; a rekor event came, but no entry of ours checks out: {}",
                    reasons.join("; ")
                )
            } else {
                String::new()
            };
            let finding = finding(
                rule,
                digest,
                format!(
                    "{} of {digest}: no {} within {} (first {} at {}){unproven}",
                    after.as_str(),
                    expected.as_str(),
                    humantime::format_duration(*within),
                    after.as_str(),
                    start.first.to_rfc3339()
                ),
                chain_details(chain),
            );
            out.fire(unit(), finding);
        }
        Condition::Status {
            after,
            stage,
            value,
        } => {
            let has_after = if after.is_release_level() {
                !chain.releases.is_empty()
            } else {
                chain.stages.contains_key(after)
            };
            let Some(log) = chain.stages.get(stage).filter(|_| has_after) else {
                return;
            };
            if log.status.as_deref() == Some(value.as_str()) {
                let detail = log
                    .detail
                    .as_deref()
                    .map(|detail| format!(": {detail}"))
                    .unwrap_or_default();
                let finding = finding(
                    rule,
                    digest,
                    format!(
                        "latest {} of {digest} at {} is {value}{detail}",
                        stage.as_str(),
                        log.last.to_rfc3339()
                    ),
                    chain_details(chain),
                );
                out.fire(unit(), finding);
            }
        }
        Condition::DeployedUnverified { within } => {
            let Some(deploy) = chain.stages.get(&Stage::Deploy) else {
                return;
            };
            let signed = if verifying.any_signing() {
                signing_checks(chain, verifying)
                    .iter()
                    .any(|(_, check)| check.ok)
            } else {
                chain.stages.contains_key(&Stage::Sign)
            };
            let logged = if verifying.rekor {
                rekor_vouched(chain, verifying)
            } else {
                chain.stages.contains_key(&Stage::Rekor)
            };
            let missing: Vec<&str> = [
                (
                    signed,
                    if verifying.any_signing() {
                        "a verified signature"
                    } else {
                        "sign"
                    },
                ),
                (
                    logged,
                    if verifying.rekor {
                        "a verified Rekor entry"
                    } else {
                        "rekor"
                    },
                ),
            ]
            .into_iter()
            .filter(|(present, _)| !present)
            .map(|(_, name)| name)
            .collect();
            if chain.unverifiable && !logged {
                return; // not knowable this sweep
            }
            if missing.is_empty() {
                return;
            }
            let deadline = deploy.first + chrono::Duration::from_std(*within).unwrap_or_default();
            if now < deadline {
                out.watch(unit(), Watch::Pending { until: deadline });
                return;
            }
            let revs: Vec<&str> = chain.deploy_revs.iter().map(String::as_str).collect();
            let finding = finding(
                rule,
                digest,
                format!(
                    "{digest} is deployed ({}) without {}",
                    revs.join(", "),
                    missing.join(" or ")
                ),
                chain_details(chain),
            );
            out.fire(unit(), finding);
        }
        Condition::SignatureInvalid => {
            if !verifying.any_signing() || !chain.stages.contains_key(&Stage::Sign) {
                return;
            }
            let checks = signing_checks(chain, verifying);
            let evidence = signing_evidence(chain, verifying);
            let summary = if evidence == 0 {
                format!("{digest} was signed (a `sign` event) but no event carried a signature or sigstore bundle to verify")
            } else if checks.iter().any(|(_, check)| check.ok) {
                return;
            } else if checks.len() < evidence {
                return; // not all checked yet
            } else {
                let reasons: Vec<&str> = checks
                    .iter()
                    .filter_map(|(_, check)| check.reason.as_deref())
                    .collect();
                format!(
                    "no signature of {digest} verifies ({} tried): {}",
                    checks.len(),
                    reasons.join("; ")
                )
            };
            out.fire(unit(), finding(rule, digest, summary, chain_details(chain)));
        }
        Condition::RekorForeignSigner => {
            let foreign: Vec<String> = chain
                .checks_of("rekor:")
                .filter(|(_, check)| check.foreign)
                .map(|(uuid, check)| {
                    format!("{uuid}: {}", check.reason.as_deref().unwrap_or("foreign"))
                })
                .collect();
            if verifying.rekor && !foreign.is_empty() && !rekor_vouched(chain, verifying) {
                let summary = format!(
                    "{digest} is in Rekor only under someone else's signature: {}",
                    foreign.join("; ")
                );
                out.fire(unit(), finding(rule, digest, summary, chain_details(chain)));
            }
        }
        Condition::RekorMismatch => {
            let failed: Vec<String> = chain
                .checks_of("rekor:")
                .filter(|(_, check)| !check.ok && !check.foreign)
                .map(|(uuid, check)| {
                    format!("{uuid}: {}", check.reason.as_deref().unwrap_or("failed"))
                })
                .collect();
            if verifying.rekor && !failed.is_empty() {
                let summary = format!(
                    "Rekor entry of {digest} does not check out: {}",
                    failed.join("; ")
                );
                out.fire(unit(), finding(rule, digest, summary, chain_details(chain)));
            }
        }
        Condition::Absent { .. } => {}
    }
}

fn check_release(
    rule: &Rule,
    sha: &str,
    release: &ReleaseChain,
    chains: &Chains,
    now: DateTime<Utc>,
    out: &mut Evaluation,
) {
    let Condition::Absent {
        after,
        expected,
        within,
    } = &rule.condition
    else {
        return;
    };
    if !after.is_release_level() {
        return;
    }
    let Some(start) = release.stages.get(after) else {
        return;
    };
    let done = release.stages.contains_key(expected)
        || release.digests.iter().any(|digest| {
            chains
                .digests
                .get(digest)
                .is_some_and(|chain| chain.stages.contains_key(expected))
        });
    if done {
        return;
    }
    let unit = Unit::Release(sha.to_string());
    let deadline = start.first + chrono::Duration::from_std(*within).unwrap_or_default();
    if now < deadline {
        out.watch(unit, Watch::Pending { until: deadline });
        return;
    }
    let finding = finding(
        rule,
        sha,
        format!(
            "release {sha} at {}: no {} within {}",
            start.first.to_rfc3339(),
            expected.as_str(),
            humantime::format_duration(*within)
        ),
        serde_json::json!({
            "release_sha": sha,
            "bundle_digests": release.digests,
            "stages": release.stages,
        }),
    );
    out.fire(unit, finding);
}

impl Evaluation {
    fn fire(&mut self, unit: Unit, finding: Finding) {
        self.findings.push(finding);
        self.active.insert(unit, Watch::Firing);
    }

    fn watch(&mut self, unit: Unit, watch: Watch) {
        let entry = self.active.entry(unit).or_insert(watch);
        if let (Watch::Pending { until: old }, Watch::Pending { until: new }) = (*entry, watch) {
            *entry = Watch::Pending {
                until: old.min(new),
            };
        }
    }
}

fn finding(rule: &Rule, subject: &str, summary: String, details: serde_json::Value) -> Finding {
    let mut finding = Finding::new(
        format!("provmon/{}/{subject}", rule.id),
        rule.severity,
        format!("{}: {}", rule.id, rule.description),
    );
    finding.summary = summary;
    finding.runbook = rule.runbook.clone();
    finding.labels.insert("rule".into(), rule.id.clone());
    finding.details = details;
    finding
}

fn chain_details(chain: &DigestChain) -> serde_json::Value {
    serde_json::json!({
        "release_shas": chain.releases,
        "rekor_uuids": chain.rekor_uuids,
        "deploy_revs": chain.deploy_revs,
        "stages": chain.stages,
        "checks": chain.checks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse_event;
    use crate::rules::parse_rules;

    fn rules() -> Vec<Rule> {
        parse_rules(
            std::path::Path::new("rules.yaml"),
            r#"rules:
  - {id: missing-rekor, description: no rekor, when: "sign -> (no rekor within 5m)", severity: high}
  - {id: runtime-verify-fail, description: verify failed, when: "deploy -> runtime_verify(status=fail)", severity: critical}
  - {id: stale-chain, description: no bundle, when: "release -> (no bundle within 30m)", severity: warning}
  - {id: deployed-unverified, description: unverified deploy, check: deployed-unverified, window: 10m, severity: critical}
"#,
        )
        .unwrap()
    }

    fn chains(lines: &[&str]) -> Chains {
        let mut chains = Chains::default();
        for line in lines {
            chains.apply(&parse_event(line.as_bytes()).unwrap());
        }
        chains
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn keys(evaluation: &Evaluation) -> Vec<&str> {
        let mut keys: Vec<&str> = evaluation.findings.iter().map(|f| f.key.as_str()).collect();
        keys.sort_unstable();
        keys
    }

    #[test]
    fn a_signature_without_rekor_is_pending_for_five_minutes_then_fires() {
        let chains =
            chains(&[r#"{"type":"sign","ts":"2026-11-20T10:00:00Z","bundle_digest":"d1"}"#]);
        let early = evaluate(
            &rules(),
            &chains,
            Verifying::default(),
            at("2026-11-20T10:04:59Z"),
        );
        assert!(early.findings.is_empty());
        assert_eq!(
            early.active[&Unit::Digest("d1".into())],
            Watch::Pending {
                until: at("2026-11-20T10:05:00Z")
            }
        );
        let late = evaluate(
            &rules(),
            &chains,
            Verifying::default(),
            at("2026-11-20T10:05:00Z"),
        );
        assert_eq!(keys(&late), ["provmon/missing-rekor/d1"]);
        assert_eq!(late.active[&Unit::Digest("d1".into())], Watch::Firing);
    }

    #[test]
    fn a_healthy_chain_has_no_findings_and_needs_no_watching() {
        let chains = chains(&[
            r#"{"type":"release","ts":"2026-11-20T10:00:00Z","release_sha":"r1"}"#,
            r#"{"type":"bundle","ts":"2026-11-20T10:01:00Z","release_sha":"r1","bundle_digest":"d1"}"#,
            r#"{"type":"sign","ts":"2026-11-20T10:02:00Z","bundle_digest":"d1"}"#,
            r#"{"type":"rekor","ts":"2026-11-20T10:02:05Z","bundle_digest":"d1","rekor_uuid":"u1"}"#,
            r#"{"type":"deploy","ts":"2026-11-20T10:10:00Z","bundle_digest":"d1","deploy_rev":"v1"}"#,
            r#"{"type":"runtime_verify","ts":"2026-11-20T10:11:00Z","deploy_rev":"v1","status":"pass"}"#,
        ]);
        let evaluation = evaluate(
            &rules(),
            &chains,
            Verifying::default(),
            at("2026-11-21T00:00:00Z"),
        );
        assert!(evaluation.findings.is_empty(), "{:?}", evaluation.findings);
        assert!(evaluation.active.is_empty());
    }

    #[test]
    fn gaps_fire_with_stable_keys() {
        let chains = chains(&[
            r#"{"type":"release","ts":"2026-11-20T10:00:00Z","release_sha":"r-stale"}"#,
            r#"{"type":"deploy","ts":"2026-11-20T10:10:00Z","bundle_digest":"d-bare","deploy_rev":"v9"}"#,
            r#"{"type":"sign","ts":"2026-11-20T10:00:00Z","bundle_digest":"d-bad","release_sha":"r2"}"#,
            r#"{"type":"rekor","ts":"2026-11-20T10:00:00Z","bundle_digest":"d-bad","rekor_uuid":"u"}"#,
            r#"{"type":"deploy","ts":"2026-11-20T10:10:00Z","bundle_digest":"d-bad","deploy_rev":"v2"}"#,
            r#"{"type":"runtime_verify","ts":"2026-11-20T10:11:00Z","bundle_digest":"d-bad","status":"FAIL","detail":"cosign: no matching signatures"}"#,
        ]);
        let evaluation = evaluate(
            &rules(),
            &chains,
            Verifying::default(),
            at("2026-11-21T00:00:00Z"),
        );
        assert_eq!(
            keys(&evaluation),
            [
                "provmon/deployed-unverified/d-bare",
                "provmon/runtime-verify-fail/d-bad",
                "provmon/stale-chain/r-stale",
            ]
        );
        let failed = evaluation
            .findings
            .iter()
            .find(|f| f.key.contains("runtime-verify"))
            .unwrap();
        assert!(failed.summary.contains("no matching signatures"));
        assert_eq!(failed.severity, patrol_job_api::Severity::Critical);
    }
}
