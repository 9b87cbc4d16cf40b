//! The upstream Sigstore conformance suite's `bundle-verify` cases
//! (sigstore/sigstore-conformance, test/assets/bundle-verify; see
//! tests/conformance/README.md): every case must give its expected verdict,
//! once with the artifact's bytes and once with only its `sha256:` digest.
//!
//! `PATROL_CONFORMANCE_CASES=/path/to/bundle-verify` runs another copy of
//! the suite (a newer upstream checkout) instead of the vendored one.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use patrol_provmon_verify::bundle::{verify_bundle, Signer, Subject, TrustRoot};
use sha2::{Digest, Sha256};

const DEFAULT_IDENTITY: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
const DEFAULT_ISSUER: &str = "https://token.actions.githubusercontent.com";

struct Case {
    name: String,
    dir: PathBuf,
    expect_verified: bool,
}

fn cases_dir() -> PathBuf {
    std::env::var_os("PATROL_CONFORMANCE_CASES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/bundle-verify")
        })
}

fn cases(root: &Path) -> Vec<Case> {
    let mut cases: Vec<Case> = std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .map(|dir| {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            Case {
                expect_verified: !name.ends_with("_fail"),
                name,
                dir,
            }
        })
        .collect();
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    cases
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|text| text.trim().to_string())
}

/// Runs one case with the artifact's bytes and with its digest; returns
/// the two verdicts' reasons (`None` = verified).
fn run(case: &Case, suite: &Path) -> [Option<String>; 2] {
    let artifact_path = if case.dir.join("artifact").exists() {
        case.dir.join("artifact")
    } else {
        suite.join("a.txt")
    };
    let artifact = std::fs::read(&artifact_path).unwrap();
    let digest: [u8; 32] = Sha256::digest(&artifact).into();
    let bundle = std::fs::read(case.dir.join("bundle.sigstore.json")).unwrap();
    let root = match case.dir.join("trusted_root.json") {
        path if path.exists() => TrustRoot::from_file(&path),
        _ => TrustRoot::public_good(),
    };
    let signer = match read_trimmed(&case.dir.join("key.pub")) {
        Some(pem) => Signer::key_from_pem(&pem),
        None => Ok(Signer::Identity {
            identity: read_trimmed(&case.dir.join("identity"))
                .unwrap_or_else(|| DEFAULT_IDENTITY.into()),
            issuer: read_trimmed(&case.dir.join("issuer")).unwrap_or_else(|| DEFAULT_ISSUER.into()),
        }),
    };
    // An unusable trusted root or key is a failed verification, as in the
    // CLI; upstream has `_fail` cases built on exactly that.
    let (root, signer) = match (root, signer) {
        (Ok(root), Ok(signer)) => (root, signer),
        (Err(e), _) | (_, Err(e)) => return [Some(e.clone()), Some(e)],
    };
    [
        verify_bundle(&bundle, Subject::Bytes(&artifact), &signer, &root),
        verify_bundle(&bundle, Subject::Sha256(digest), &signer, &root),
    ]
    .map(|verdict| verdict.reason().map(str::to_string))
}

#[test]
fn every_upstream_bundle_verify_case_gives_its_expected_verdict() {
    let suite = cases_dir();
    let cases = cases(&suite);
    assert!(
        cases.len() >= 20,
        "{} holds only {} cases; is the suite there?",
        suite.display(),
        cases.len()
    );
    let expected_passes = cases.iter().filter(|c| c.expect_verified).count();
    assert!(expected_passes > 0 && expected_passes < cases.len());

    let mut wrong = Vec::new();
    for case in &cases {
        for (form, reason) in ["bytes", "digest"].iter().zip(run(case, &suite)) {
            let verified = reason.is_none();
            eprintln!(
                "{:<60} {:<6} {}",
                case.name,
                form,
                reason.as_deref().unwrap_or("verified")
            );
            if verified != case.expect_verified {
                wrong.push(format!(
                    "{} ({form}): expected {}, got {}",
                    case.name,
                    if case.expect_verified {
                        "verified"
                    } else {
                        "a failure"
                    },
                    reason.as_deref().unwrap_or("verified")
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} verdicts are wrong:\n{}",
        wrong.len(),
        cases.len() * 2,
        wrong.join("\n")
    );
}

/// A bundle that lists its transparency-log entry twice fails, as it does
/// in the Go, JavaScript and Python clients — whether the copy is exact or
/// only its log position or body repeats. Built from upstream happy paths
/// (Rekor v1 and v2) that verify as they are.
#[test]
fn a_bundle_listing_the_same_tlog_entry_twice_fails() {
    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/bundle-verify");
    let artifact = std::fs::read(suite.join("a.txt")).unwrap();
    for case in ["happy-path-v0.3", "rekor2-happy-path"] {
        let dir = suite.join(case);
        let bundle: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("bundle.sigstore.json")).unwrap())
                .unwrap();
        let root = match dir.join("trusted_root.json") {
            path if path.exists() => TrustRoot::from_file(&path).unwrap(),
            _ => TrustRoot::public_good().unwrap(),
        };
        let signer = Signer::Identity {
            identity: DEFAULT_IDENTITY.into(),
            issuer: DEFAULT_ISSUER.into(),
        };
        let entry = bundle["verificationMaterial"]["tlogEntries"][0].clone();
        let mut same_position = entry.clone();
        same_position["canonicalizedBody"] = "e30=".into(); // `{}`
        let mut same_body = entry.clone();
        same_body["logIndex"] = "1".into();
        for (what, copy, expected) in [
            ("an exact copy", entry.clone(), "repeats log"),
            ("the same log and index", same_position, "repeats log"),
            (
                "the same body",
                same_body,
                "repeats an earlier entry's body",
            ),
        ] {
            let mut doubled = bundle.clone();
            doubled["verificationMaterial"]["tlogEntries"] =
                serde_json::Value::Array(vec![entry.clone(), copy]);
            let doubled = serde_json::to_vec(&doubled).unwrap();
            let verdict = verify_bundle(&doubled, Subject::Bytes(&artifact), &signer, &root);
            let reason = verdict.reason().unwrap_or("verified");
            assert!(
                reason.contains("the same transparency-log entry twice")
                    && reason.contains(expected),
                "{case}, {what}: {reason}"
            );
        }
        // The bundle as published still verifies.
        let once = serde_json::to_vec(&bundle).unwrap();
        let verdict = verify_bundle(&once, Subject::Bytes(&artifact), &signer, &root);
        assert_eq!(verdict.reason(), None, "{case}");
    }
}
