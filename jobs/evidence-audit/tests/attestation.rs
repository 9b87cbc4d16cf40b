//! The control attestation: a DSSE in-toto Statement that patrol and the
//! Python reference implementation (securesystemslib's DSSE, run from the
//! test venv, `PATROL_TEST_PYTHON`) both verify, and that both refuse once
//! any byte of its payload or signature is changed; the same inputs give
//! the same bytes; its PDF, read back by poppler's pdftotext, lists every
//! control with its verdict.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use chrono::{TimeZone, Utc};
use patrol_job_evidence_audit::attestation::{attest, PREDICATE_TYPE};
use patrol_job_evidence_audit::catalog::{self, Catalog};
use patrol_job_evidence_audit::evaluate::{evaluate, release_of, Inputs, Release, Report};
use patrol_job_evidence_audit::{dsse, fixtures};
use patrol_provmon_verify::fixtures::SigningKey;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn python() -> String {
    std::env::var("PATROL_TEST_PYTHON").expect(
        "PATROL_TEST_PYTHON is not set: run the suite with scripts/test.sh, which makes the test venv",
    )
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn evaluated(dir: &Path, tag: &str) -> (Catalog, Release, Report) {
    fixtures::generate(dir).unwrap();
    let catalog = catalog::load(&root().join("policies/compliance/control_catalog.yaml")).unwrap();
    let folder = dir.join("releases").join(tag);
    let release = release_of(&folder).unwrap();
    let inputs = Inputs {
        attestation_keys: vec![fixtures::attestation_key().public_key()],
        now: Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap(),
    };
    let report = evaluate(&catalog, &folder, &release, &inputs);
    (catalog, release, report)
}

/// The Python verdict of each envelope text.
fn python_verdicts(dir: &Path, key: &SigningKey, envelopes: &[String]) -> Vec<String> {
    let cases = dir.join("cases.json");
    std::fs::write(&cases, serde_json::to_vec(envelopes).unwrap()).unwrap();
    let pem = dir.join("key.pub");
    std::fs::write(&pem, key.public_key_pem()).unwrap();
    let out = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/verify_dsse.py"))
        .arg(&cases)
        .arg(&pem)
        .arg(dsse::key_id(key))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn patrols_attestation_verifies_with_securesystemslib_and_no_changed_byte_does() {
    let dir = tempfile::tempdir().unwrap();
    let (catalog, release, report) = evaluated(dir.path(), "v1.4.1");
    let key = SigningKey::p256_from_seed(b"control attestations");
    let signed = attest(&report, &release, &catalog, "00", &key);
    let again = attest(&report, &release, &catalog, "00", &key);
    assert_eq!(signed.envelope, again.envelope, "deterministic");
    assert_eq!(signed.pdf, again.pdf, "deterministic");

    let verified = dsse::verify(&signed.envelope, &[key.public_key()]).unwrap();
    assert_eq!(verified.predicate_type, PREDICATE_TYPE);
    assert_eq!(verified.subjects[0].sha256, release.artifacts[0].sha256);
    assert_eq!(verified.statement["predicate"]["overall"], false);
    assert_eq!(verified.statement["predicate"]["release"], "v1.4.1");

    // Every byte of the signature, of the subject's digest and of the
    // verdicts, and every 16th byte elsewhere in the payload, changed in
    // turn (all 2,000 payload bytes would only repeat the same check).
    let envelope: serde_json::Value = serde_json::from_slice(&signed.envelope).unwrap();
    let payload = B64.decode(envelope["payload"].as_str().unwrap()).unwrap();
    let sig = B64
        .decode(envelope["signatures"][0]["sig"].as_str().unwrap())
        .unwrap();
    let mut cases = vec![String::from_utf8(signed.envelope.clone()).unwrap()];
    let text = String::from_utf8(payload.clone()).unwrap();
    let digest_at = text.find(&release.artifacts[0].sha256).unwrap();
    let verdicts_at = text.find("\"overall\"").unwrap();
    let chosen = (0..payload.len()).filter(|&at| {
        at % 16 == 0
            || (digest_at..digest_at + 64).contains(&at)
            || (verdicts_at..verdicts_at + 16).contains(&at)
    });
    for at in chosen {
        let mut changed = payload.clone();
        changed[at] ^= 0x01;
        let mut tampered = envelope.clone();
        tampered["payload"] = B64.encode(&changed).into();
        cases.push(tampered.to_string());
    }
    for at in 0..sig.len() {
        let mut changed = sig.clone();
        changed[at] ^= 0x01;
        let mut tampered = envelope.clone();
        tampered["signatures"][0]["sig"] = B64.encode(&changed).into();
        cases.push(tampered.to_string());
    }
    let mut retyped = envelope.clone();
    retyped["payloadType"] = "application/vnd.in-toto+jsoN".into();
    cases.push(retyped.to_string());

    let verdicts = python_verdicts(dir.path(), &key, &cases);
    assert_eq!(verdicts.len(), cases.len());
    assert!(verdicts[0].starts_with("verified:"), "{}", verdicts[0]);
    assert!(
        verdicts[0].contains(&release.artifacts[0].sha256),
        "{}",
        verdicts[0]
    );
    for (n, (case, python)) in cases.iter().zip(&verdicts).enumerate().skip(1) {
        assert!(
            !python.starts_with("verified"),
            "case {n}: securesystemslib accepted a changed envelope"
        );
        assert!(
            dsse::verify(case.as_bytes(), &[key.public_key()]).is_err(),
            "case {n}: patrol accepted a changed envelope"
        );
    }
    // Another key: refused by both.
    let other = SigningKey::p256_from_seed(b"someone else");
    let refused = python_verdicts(dir.path(), &other, &cases[..1]);
    assert!(refused[0].starts_with("failed"), "{}", refused[0]);
}

#[test]
fn the_pdf_lists_every_control_with_its_verdict_and_its_signature_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (catalog, release, report) = evaluated(dir.path(), "v1.5.1");
    let key = SigningKey::p256_from_seed(b"control attestations");
    let signed = attest(&report, &release, &catalog, "00", &key);
    let pdf = dir.path().join("attestation.pdf");
    std::fs::write(&pdf, &signed.pdf).unwrap();
    let out = Command::new("pdftotext")
        .args(["-layout", pdf.to_str().unwrap(), "-"])
        .output()
        .expect("pdftotext (poppler-utils) is installed by scripts/test.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Control Attestation — v1.5.1"), "{text}");
    assert!(text.contains("Overall: FAIL"), "{text}");
    for control in &report.controls {
        let verdict = if control.pass { "PASS" } else { "FAIL" };
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&control.id))
            .unwrap_or_else(|| panic!("{} not in:\n{text}", control.id));
        assert!(
            line.contains(verdict) && line.contains(&control.name),
            "{line}"
        );
    }
    assert!(
        text.contains("chaos-dr/run-*.json"),
        "the failure is explained:\n{text}"
    );
    assert!(patrol_provmon_verify::cosign::verify_with_key(
        &key.public_key(),
        &signed.pdf,
        &signed.pdf_signature
    )
    .is_verified());
}
