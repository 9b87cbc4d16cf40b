//! Sigstore bundles on `sign` events, verified during a sweep against a
//! trusted root and an identity policy: upstream conformance bundles
//! (jobs/provmon/verify/tests/conformance) stand for what a CI pipeline
//! would send. A bundle that verifies counts as signed and logged; one
//! that does not pages signature-invalid with the verifier's reason.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use patrol_job_api::{CancellationToken, JobState, RunReport};
use patrol_job_provmon::memory::MemoryState;
use patrol_job_provmon::rules::load_rules;
use patrol_job_provmon::verify::{IdentitySpec, SigstoreSpec, VerifySpec};
use patrol_job_provmon::{sweep, SourceSpec, SweepInput};
use sha2::{Digest, Sha256};

const IDENTITY: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
const ISSUER: &str = "https://token.actions.githubusercontent.com";

fn suite() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("verify/tests/conformance/bundle-verify")
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 10, 0, 0).unwrap()
}

/// The digest a conformance case signs (its `artifact`, else `a.txt`).
fn case_digest(case: &str) -> String {
    let own = suite().join(case).join("artifact");
    let path = if own.exists() {
        own
    } else {
        suite().join("a.txt")
    };
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
    )
}

fn case_bundle(case: &str) -> String {
    let text = std::fs::read_to_string(suite().join(case).join("bundle.sigstore.json")).unwrap();
    // One NDJSON line: the bundle re-serialized compactly, as a producer
    // embedding it in an event would send it.
    serde_json::from_str::<serde_json::Value>(&text)
        .unwrap()
        .to_string()
}

/// A full chain for `release` whose sign event carries `bundle`.
fn chain(release: &str, digest: &str, bundle: &str) -> Vec<String> {
    let ts = |m: i64| (t0() + Duration::minutes(m)).to_rfc3339();
    vec![
        format!(
            r#"{{"type":"release","ts":"{}","release_sha":"{release}"}}"#,
            ts(0)
        ),
        format!(
            r#"{{"type":"bundle","ts":"{}","release_sha":"{release}","bundle_digest":"{digest}"}}"#,
            ts(1)
        ),
        format!(
            r#"{{"type":"sign","ts":"{}","bundle_digest":"{digest}","sigstore_bundle":{bundle}}}"#,
            ts(2)
        ),
        format!(
            r#"{{"type":"deploy","ts":"{}","bundle_digest":"{digest}","deploy_rev":"{release}-rev"}}"#,
            ts(3)
        ),
        format!(
            r#"{{"type":"runtime_verify","ts":"{}","deploy_rev":"{release}-rev","status":"pass"}}"#,
            ts(4)
        ),
    ]
}

/// One sweep, an hour after the events (every window has closed), over
/// `lines`, verifying bundles with `identity`.
async fn sweep_over(lines: &[String], identity: &str) -> RunReport {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("events")).unwrap();
    std::fs::write(dir.path().join("events/1.ndjson"), lines.join("\n") + "\n").unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let verify = VerifySpec {
        signing_keys: vec![],
        rekor: None,
        sigstore: Some(SigstoreSpec {
            trusted_root: None,
            identities: vec![IdentitySpec {
                identity: identity.into(),
                issuer: ISSUER.into(),
            }],
            keys: vec![],
        }),
    };
    let input = SweepInput {
        evidence: None,
        sources: vec![SourceSpec::Files {
            name: "ci".into(),
            path: dir.path().join("events"),
        }],
        rules: load_rules(&root.join("policies/provmon/rules.yaml")).unwrap(),
        verifier: verify.build().unwrap(),
        max_events: 1_000,
        now: t0() + Duration::hours(1),
        max_clock_skew: std::time::Duration::from_secs(300),
        rekor_outage_page_after: std::time::Duration::from_secs(1800),
    };
    let state = JobState::new(Arc::new(MemoryState::default()));
    sweep(&state, input, &CancellationToken::new())
        .await
        .unwrap()
}

fn finding_keys(report: &RunReport) -> Vec<String> {
    let mut keys: Vec<String> = report.findings.iter().map(|f| f.key.clone()).collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread")]
async fn a_verified_bundle_makes_a_healthy_chain_and_a_bad_one_pages_with_the_reason() {
    let good = "happy-path-v0.3";
    let report = sweep_over(
        &chain("r1", &case_digest(good), &case_bundle(good)),
        IDENTITY,
    )
    .await;
    // Signed, logged (the bundle's tlog entry), deployed, verified at
    // runtime: nothing to page, and the bundle was really checked.
    assert_eq!(
        finding_keys(&report),
        Vec::<String>::new(),
        "{}",
        report.summary
    );
    assert_eq!(report.details["verification"]["bundles_checked"], 1);

    for bad in [
        "signature-mismatch_fail",
        "message-digest-mismatch_fail",
        "invalid-inclusion-proof_fail",
    ] {
        let digest = case_digest(bad);
        let report = sweep_over(&chain("r2", &digest, &case_bundle(bad)), IDENTITY).await;
        assert_eq!(
            finding_keys(&report),
            vec![
                format!("provmon/deployed-unverified/{digest}"),
                format!("provmon/missing-rekor/{digest}"),
                format!("provmon/signature-invalid/{digest}"),
            ],
            "{bad}: {}",
            report.summary
        );
        let invalid = report
            .findings
            .iter()
            .find(|f| f.key.starts_with("provmon/signature-invalid/"))
            .unwrap();
        assert!(
            invalid
                .summary
                .contains("the sigstore bundle does not verify"),
            "{bad}: {}",
            invalid.summary
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_genuine_bundle_from_another_identity_is_not_accepted() {
    let good = "happy-path-v0.3";
    let report = sweep_over(
        &chain("r1", &case_digest(good), &case_bundle(good)),
        "https://github.com/someone-else/repo/.github/workflows/release.yml@refs/heads/main",
    )
    .await;
    let invalid = report
        .findings
        .iter()
        .find(|f| f.key.starts_with("provmon/signature-invalid/"))
        .unwrap_or_else(|| panic!("no signature-invalid: {}", report.summary));
    assert!(
        invalid.summary.contains("identity mismatch"),
        "{}",
        invalid.summary
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bundle_for_another_digest_fails_and_a_bundle_that_is_not_an_object_is_malformed() {
    let good = "happy-path-v0.3";
    let other = format!("sha256:{}", "ab".repeat(32));
    let mut lines = chain("r1", &other, &case_bundle(good));
    lines.push(format!(
        r#"{{"type":"sign","ts":"{}","bundle_digest":"{other}","sigstore_bundle":"bundle.json"}}"#,
        t0().to_rfc3339()
    ));
    let report = sweep_over(&lines, IDENTITY).await;
    assert!(
        finding_keys(&report).contains(&format!("provmon/signature-invalid/{other}")),
        "{}",
        report.summary
    );
    assert_eq!(report.details["malformed"], 1, "{}", report.summary);
    let samples = report.details["sources"]["ci"]["samples"].to_string();
    assert!(
        samples.contains("sigstore_bundle must be a JSON object"),
        "{samples}"
    );
}
