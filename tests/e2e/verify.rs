//! `patrol verify` with the real binary: every vendored upstream
//! sigstore-conformance `bundle-verify` case through the CLI, with the
//! artifact's path and with its `sha256:` digest; keyed cosign blobs with
//! one flipped bit in each input; and `verify release` over the shipped
//! provmon fixtures, healthy and broken chains alike.

use std::path::{Path, PathBuf};
use std::process::Output;

use base64::Engine;
use patrol_provmon_verify::fixtures::SigningKey;
use sha2::{Digest, Sha256};

use crate::support::{patrol, repo_root, shipped_checkout, stderr, stdout};

const DEFAULT_IDENTITY: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
const DEFAULT_ISSUER: &str = "https://token.actions.githubusercontent.com";

fn suite() -> PathBuf {
    std::env::var_os("PATROL_CONFORMANCE_CASES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("jobs/provmon/verify/tests/conformance/bundle-verify"))
}

fn arg(path: &Path) -> String {
    path.to_str().unwrap().to_string()
}

/// The flags a Sigstore conformance harness passes for `case`.
fn conformance_args(case: &Path) -> Vec<String> {
    let mut args = vec![
        "verify".to_string(),
        "bundle".into(),
        "--bundle".into(),
        arg(&case.join("bundle.sigstore.json")),
    ];
    if case.join("key.pub").exists() {
        args.extend(["--key".into(), arg(&case.join("key.pub"))]);
    } else {
        let read = |name: &str, default: &str| {
            std::fs::read_to_string(case.join(name))
                .map(|text| text.trim().to_string())
                .unwrap_or_else(|_| default.to_string())
        };
        args.extend([
            "--certificate-identity".into(),
            read("identity", DEFAULT_IDENTITY),
            "--certificate-oidc-issuer".into(),
            read("issuer", DEFAULT_ISSUER),
        ]);
    }
    if case.join("trusted_root.json").exists() {
        args.extend([
            "--trusted-root".into(),
            arg(&case.join("trusted_root.json")),
        ]);
    }
    args
}

#[test]
fn every_upstream_bundle_verify_case_gives_its_verdict_by_path_and_by_digest() {
    let suite = suite();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&suite)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 20,
        "{}: {} cases",
        suite.display(),
        cases.len()
    );
    let dir = tempfile::tempdir().unwrap();
    let mut wrong = Vec::new();
    let (mut passes, mut fails) = (0, 0);
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let expect_verified = !name.ends_with("_fail");
        let artifact = match case.join("artifact") {
            path if path.exists() => path,
            _ => suite.join("a.txt"),
        };
        let digest = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(std::fs::read(&artifact).unwrap()))
        );
        for (form, subject) in [("path", arg(&artifact)), ("digest", digest)] {
            let mut args = conformance_args(case);
            args.push(subject);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let output = patrol(dir.path(), &args);
            let expected = if expect_verified { 0 } else { 1 };
            if output.status.code() != Some(expected) {
                wrong.push(format!(
                    "{name} ({form}): expected exit {expected}, got {:?}: {}{}",
                    output.status.code(),
                    stdout(&output),
                    stderr(&output)
                ));
            }
            if expect_verified {
                passes += 1;
                assert!(stdout(&output).starts_with("verified: "), "{name}");
            } else {
                fails += 1;
                assert!(
                    stderr(&output).starts_with("verification failed: "),
                    "{name}: {}",
                    stderr(&output)
                );
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(passes > 0 && fails > 0, "{passes} {fails}");
}

#[test]
fn bundle_json_reports_what_a_verified_bundle_established() {
    let case = suite().join("managed-key-happy-path");
    let mut args = conformance_args(&case);
    args.extend(["--json".into(), arg(&suite().join("a.txt"))]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = patrol(&repo_root(), &args);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["verified"], true);
    assert!(report["subject"].as_str().unwrap().starts_with("sha256:"));
    assert!(report["facts"]["trusted_root"].is_string(), "{report}");
}

#[test]
fn unreadable_inputs_and_bad_usage_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let case = suite().join("managed-key-happy-path");
    let bundle = arg(&case.join("bundle.sigstore.json"));
    let key = arg(&case.join("key.pub"));
    for args in [
        vec![
            "verify",
            "bundle",
            "--bundle",
            "missing.json",
            "--key",
            &key,
            "a.txt",
        ],
        vec![
            "verify",
            "bundle",
            "--bundle",
            &bundle,
            "--key",
            &key,
            "no-such-artifact",
        ],
        vec![
            "verify",
            "bundle",
            "--bundle",
            &bundle,
            "--key",
            &key,
            "sha256:abcd",
        ],
        // Neither a key nor an identity.
        vec!["verify", "bundle", "--bundle", &bundle, "a.txt"],
        // An identity without its issuer.
        vec![
            "verify",
            "bundle",
            "--bundle",
            &bundle,
            "--certificate-identity",
            "x",
            "a.txt",
        ],
        vec![
            "verify",
            "blob",
            "--key",
            "missing.pub",
            "--signature",
            "sig",
            "a.txt",
        ],
    ] {
        let output = patrol(dir.path(), &args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

fn flip_bit(bytes: &mut [u8], at: usize) {
    bytes[at] ^= 0x01;
}

fn pem(der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|chunk| std::str::from_utf8(chunk).unwrap())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

fn blob(dir: &Path, artifact: &str, signature: &str, key: &str) -> Output {
    patrol(
        dir,
        &[
            "verify",
            "blob",
            "--key",
            key,
            "--signature",
            signature,
            artifact,
        ],
    )
}

/// Runs `verify blob`, asserts it failed verification (exit 1) and
/// returns its stderr.
fn blob_fails(dir: &Path, artifact: &str, signature: &str, key: &str) -> String {
    let output = blob(dir, artifact, signature, key);
    let reason = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{reason}");
    reason
}

#[test]
fn keyed_blobs_verify_and_a_flipped_bit_in_any_input_fails_naming_it() {
    for (kind, signer) in [
        ("p256", SigningKey::p256_from_seed(b"verify-blob-test")),
        (
            "ed25519",
            SigningKey::ed25519_from_seed(b"verify-blob-test"),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let write =
            |name: &str, bytes: &[u8]| std::fs::write(dir.path().join(name), bytes).unwrap();
        let artifact = b"release tarball contents\n".repeat(100);
        let signature = signer.sign(&artifact);
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let key_der = signer.public_key().spki_der().to_vec();
        write("app.tar", &artifact);
        write("app.tar.sig", b64(&signature).as_bytes());
        write("cosign.pub", pem(&key_der).as_bytes());

        let good = blob(dir.path(), "app.tar", "app.tar.sig", "cosign.pub");
        assert_eq!(good.status.code(), Some(0), "{kind}: {}", stderr(&good));
        assert!(
            stdout(&good).starts_with("verified: app.tar (sha256:"),
            "{}",
            stdout(&good)
        );
        if kind == "p256" {
            // ECDSA signs the digest: the digest alone is enough.
            let digest = format!("sha256:{}", hex::encode(Sha256::digest(&artifact)));
            let by_digest = blob(dir.path(), &digest, "app.tar.sig", "cosign.pub");
            assert_eq!(by_digest.status.code(), Some(0), "{}", stderr(&by_digest));
        }

        // A flipped bit in the artifact.
        let mut changed = artifact.clone();
        flip_bit(&mut changed, 700);
        write("changed.tar", &changed);
        let reason = blob_fails(dir.path(), "changed.tar", "app.tar.sig", "cosign.pub");
        assert!(
            reason.starts_with("verification failed: signature: app.tar.sig does not verify artifact changed.tar (sha256:"),
            "{kind}: {reason}"
        );

        // A flipped bit in the signature (inside r, or inside the Ed25519
        // signature): well formed, wrong.
        let mut bad_signature = signature.clone();
        flip_bit(&mut bad_signature, 10);
        write("bad.sig", b64(&bad_signature).as_bytes());
        let reason = blob_fails(dir.path(), "app.tar", "bad.sig", "cosign.pub");
        assert!(
            reason.starts_with(
                "verification failed: signature: bad.sig does not verify artifact app.tar"
            ),
            "{kind}: {reason}"
        );
        // A flipped bit in the signature's DER framing: not a signature.
        if kind == "p256" {
            let mut framing = signature.clone();
            flip_bit(&mut framing, 1);
            write("framing.sig", b64(&framing).as_bytes());
            let reason = blob_fails(dir.path(), "app.tar", "framing.sig", "cosign.pub");
            assert!(
                reason.starts_with("verification failed: signature: framing.sig: the signature is not ASN.1 DER ECDSA"),
                "{reason}"
            );
        }

        // A flipped bit in the key's point: a point off the curve, which
        // does not parse, or another valid key, which verifies nothing (the
        // reason names the key and its id either way).
        let mut bad_key = key_der.clone();
        let last = bad_key.len() - 5;
        flip_bit(&mut bad_key, last);
        write("bad.pub", pem(&bad_key).as_bytes());
        let reason = blob_fails(dir.path(), "app.tar", "app.tar.sig", "bad.pub");
        assert!(
            reason.starts_with("verification failed: key: bad.pub: not a usable public key")
                || reason.starts_with(
                    "verification failed: signature: app.tar.sig does not verify artifact app.tar"
                ) && reason.contains("with key bad.pub (sha256:"),
            "{kind}: {reason}"
        );
        // A flipped bit in the key's DER framing: not a key at all.
        let mut framing = key_der.clone();
        flip_bit(&mut framing, 2);
        write("framing.pub", pem(&framing).as_bytes());
        let reason = blob_fails(dir.path(), "app.tar", "app.tar.sig", "framing.pub");
        assert!(
            reason.starts_with("verification failed: key: framing.pub: not a usable public key"),
            "{kind}: {reason}"
        );
    }
}

/// The release of each shipped provmon fixture scenario, the stages its
/// chain breaks at (none: healthy) and what the first failure says.
const RELEASES: &[(&str, &[&str], &str)] = &[
    ("b2a47ce21b8520d9713d32eaee0084664d1b9326", &[], ""),
    // Rebuilt from the same bundle digest as the release above.
    ("0c1f65b51d45acc98f08c00df9ec21aa9cb3936e", &[], ""),
    // Signed with a Sigstore bundle whose tlog entry stands for Rekor.
    ("58e24f0ac42d522d252318a5b4e0a57ae318a8fd", &[], ""),
    (
        "8194d3667e3f5f6e50bd4add8b80ca7e81797567",
        &["bundle"],
        "stale-chain: release 8194d3667e3f5f6e50bd4add8b80ca7e81797567",
    ),
    (
        "2aeb7be1b6401bec44cac4deca97ba73f37bcbaf",
        &["sign", "deploy"],
        "unsigned-bundle: bundle of sha256:115f4b29",
    ),
    (
        "b10398da739bae652bede5c18798a1b4a37a45cd",
        // Its signature (ours, over another artifact) is also what it
        // logged: an entry whose signature does not verify over the digest.
        &["sign", "rekor"],
        "signature-invalid: no signature of sha256:beb5ee40",
    ),
    (
        "0506dd8e0d494b60bbc7df5e5e58bd525e5f3824",
        &["rekor"],
        "missing-rekor: sign of sha256:893ae208",
    ),
    (
        "4a3a0ab3cbba6ed421405c21d91753e6d0e10424",
        &["rekor"],
        "entry body: the entry is for sha256:0b6a5e11",
    ),
    (
        "e3c6dfddc4e70ab431e2e7402fd760e181065492",
        &["rekor"],
        "inclusion proof: the proof leads to root",
    ),
    (
        "9095d0d26b8bc07743b196a60eeeee2978652351",
        &["runtime_verify"],
        "runtime-verify-fail: latest runtime_verify",
    ),
];

fn recheck(dir: &Path, sha: &str, extra: &[&str]) -> (Output, serde_json::Value) {
    let mut args = vec!["verify", "release", sha, "--json"];
    args.extend_from_slice(extra);
    let output = patrol(dir, &args);
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("{sha}: {err}: {}{}", stdout(&output), stderr(&output)));
    (output, report)
}

fn stages_with(report: &serde_json::Value, status: &str) -> Vec<String> {
    report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|stage| stage["status"] == status)
        .map(|stage| stage["stage"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn release_rechecks_show_the_healthy_chain_green_and_each_broken_one_at_its_stage() {
    let dir = tempfile::tempdir().unwrap();
    shipped_checkout(dir.path());
    let sweep = patrol(dir.path(), &["run", "provmon", "--wait"]);
    assert_eq!(sweep.status.code(), Some(1), "{}", stderr(&sweep));
    for (sha, broken, reason) in RELEASES {
        let (output, report) = recheck(dir.path(), sha, &[]);
        let failed = stages_with(&report, "failed");
        if broken.is_empty() {
            assert_eq!(output.status.code(), Some(0), "{sha}: {report:#}");
            assert_eq!(report["verified"], true);
            assert_eq!(stages_with(&report, "ok").len(), 6, "{sha}: {report:#}");
        } else {
            assert_eq!(output.status.code(), Some(1), "{sha}: {report:#}");
            assert_eq!(report["verified"], false);
            assert_eq!(failed, *broken, "{sha}: {report:#}");
            let expected = format!(
                "verification failed: release {sha} at {}: ",
                broken.join(", ")
            );
            let message = stderr(&output);
            assert!(message.starts_with(&expected), "{message}");
            assert!(
                message.contains(reason),
                "{sha}: `{message}` lacks `{reason}`"
            );
        }
    }
    // The human form marks each stage.
    let text = stdout(&patrol(dir.path(), &["verify", "release", RELEASES[0].0]));
    for stage in [
        "release",
        "bundle",
        "sign",
        "rekor",
        "deploy",
        "runtime_verify",
    ] {
        assert!(text.contains(&format!("  ok      {stage}\n")), "{text}");
    }
}

/// The recheck verifies again: a Rekor entry damaged after the sweep
/// passed it fails the next `--fresh` check at the rekor stage.
#[test]
fn a_release_recheck_verifies_the_rekor_entry_again_instead_of_trusting_the_sweep() {
    let dir = tempfile::tempdir().unwrap();
    shipped_checkout(dir.path());
    patrol(dir.path(), &["run", "provmon", "--wait"]);
    let sha = RELEASES[0].0;
    let (first, report) = recheck(dir.path(), sha, &[]);
    assert_eq!(first.status.code(), Some(0), "{report:#}");
    let uuid = "622f31f829f6cabe1bd612f970ddf63a50304a68ba301e5eabd757cb5f7cb1153013047e4925425b";
    let entry = dir
        .path()
        .join(format!("fixtures/provmon/rekor/{uuid}.json"));
    let text = std::fs::read_to_string(&entry).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let body = json.as_object_mut().unwrap().values_mut().next().unwrap();
    let hashes = body["verification"]["inclusionProof"]["hashes"]
        .as_array_mut()
        .unwrap();
    let first_hash = hashes[0].as_str().unwrap().to_string();
    let flipped = if first_hash.starts_with('0') {
        "1"
    } else {
        "0"
    };
    hashes[0] = format!("{flipped}{}", &first_hash[1..]).into();
    std::fs::write(&entry, serde_json::to_string(&json).unwrap()).unwrap();
    let (cached, _) = recheck(dir.path(), sha, &[]);
    assert_eq!(
        cached.status.code(),
        Some(0),
        "within 15 minutes the record answers"
    );
    let (fresh, report) = recheck(dir.path(), sha, &["--fresh"]);
    assert_eq!(fresh.status.code(), Some(1), "{report:#}");
    // And the deploy of that digest is no longer backed by a verified entry.
    assert_eq!(
        stages_with(&report, "failed"),
        ["rekor", "deploy"],
        "{report:#}"
    );
    assert!(
        stderr(&fresh).contains("inclusion proof"),
        "{}",
        stderr(&fresh)
    );
}

#[test]
fn a_release_recheck_is_recorded_and_reused_for_15_minutes_unless_fresh() {
    let dir = tempfile::tempdir().unwrap();
    shipped_checkout(dir.path());
    let sha = RELEASES[0].0;
    assert_eq!(
        patrol(dir.path(), &["verify", "release", sha])
            .status
            .code(),
        Some(2),
        "no sweep has run: the release is unknown"
    );
    patrol(dir.path(), &["run", "provmon", "--wait"]);
    let first = patrol(dir.path(), &["verify", "release", sha]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert!(
        stdout(&first).contains("(recorded as verification #1)"),
        "{}",
        stdout(&first)
    );
    let again = patrol(dir.path(), &["verify", "release", sha]);
    assert_eq!(again.status.code(), Some(0));
    assert!(
        stdout(&again).contains("as verification #1, nothing it rests on has changed"),
        "{}",
        stdout(&again)
    );
    let fresh = patrol(dir.path(), &["verify", "release", sha, "--fresh"]);
    assert_eq!(fresh.status.code(), Some(0));
    assert!(
        stdout(&fresh).contains("(recorded as verification #2)"),
        "{}",
        stdout(&fresh)
    );
    // An edited rules file (or a rotated key) is a new basis: checked again.
    let rules = dir.path().join("policies/provmon/rules.yaml");
    let mut text = std::fs::read_to_string(&rules).unwrap();
    text.push_str("# reviewed\n");
    std::fs::write(&rules, text).unwrap();
    let edited = patrol(dir.path(), &["verify", "release", sha]);
    assert_eq!(edited.status.code(), Some(0), "{}", stderr(&edited));
    assert!(
        stdout(&edited).contains("(recorded as verification #3)"),
        "{}",
        stdout(&edited)
    );
}

/// Issue 20, item 6: a manual run shares provmon's state, so what its
/// verdicts rest on (keys, rules, sources, evidence) cannot be opened to
/// manual overrides; other params can.
#[test]
fn a_schedule_may_not_open_provmons_verification_params_to_manual_runs() {
    let dir = tempfile::tempdir().unwrap();
    shipped_checkout(dir.path());
    let path = dir.path().join("schedules/provmon.yaml");
    let shipped = std::fs::read_to_string(&path).unwrap();
    let opened = shipped.replace(
        "\nparams:\n",
        "\nmanual_params: [max_events, verify]\nparams:\n",
    );
    assert_ne!(opened, shipped);
    std::fs::write(&path, opened).unwrap();
    let output = patrol(dir.path(), &["validate"]);
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    let report = stderr(&output);
    assert!(
        report.contains("manual_params[1]: `verify` is pinned by this job"),
        "{report}"
    );
    assert!(!report.contains("manual_params[0]"), "{report}");
}
