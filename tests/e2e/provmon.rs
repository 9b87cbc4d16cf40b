//! The shipped provmon schedule over the shipped fixtures, as on a fresh
//! clone: each gap pages once, a repeat sweep pages nothing new, and a gap
//! that closes (its missing events arrive) resolves.

use std::path::Path;
use std::process::Output;

use sha2::Digest;

use crate::support::{console_pages, patrol as run, shipped_checkout, stderr, stdout};

/// `(action, key)` of each console page, sorted, e.g. `("TRIGGER", "provmon/stale-chain/…")`.
fn pages(out: &str) -> Vec<(String, String)> {
    let mut pages = console_pages(out);
    pages.sort();
    pages
}

fn subject(pages: &[(String, String)], rule: &str) -> String {
    let prefix = format!("provmon/{rule}/");
    pages
        .iter()
        .find_map(|(_, key)| key.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {rule} page in {pages:?}"))
        .to_string()
}

#[test]
fn fixture_gaps_page_once_and_resolve_when_the_missing_events_arrive() {
    let dir = tempfile::tempdir().unwrap();
    shipped_checkout(dir.path());

    let first = run(dir.path(), &["run", "provmon", "--wait"]);
    let out = stdout(&first);
    assert_eq!(first.status.code(), Some(1), "{out}{}", stderr(&first));
    let paged = pages(&out);
    let rules: Vec<&str> = paged
        .iter()
        .map(|(action, key)| {
            assert_eq!(action, "TRIGGER");
            key.split('/').nth(1).unwrap()
        })
        .collect();
    let mut expected = [
        "deployed-unverified",
        "missing-rekor",
        "rekor-mismatch",
        "rekor-mismatch",
        "rekor-mismatch",
        "runtime-verify-fail",
        "signature-invalid",
        "stale-chain",
        "unsigned-bundle",
    ];
    expected.sort_unstable();
    let mut rules_sorted = rules.clone();
    rules_sorted.sort_unstable();
    // Nothing for the release signed with a Sigstore bundle (no Rekor
    // event of its own: the bundle's verified tlog entry stands for it).
    assert_eq!(rules_sorted, expected, "{out}");
    assert!(out.contains("38 events from 1 sources"), "{out}");
    assert!(out.contains("2 malformed (fixtures: 2)"), "{out}");

    // Nothing new: the same findings hold, nobody is paged again.
    let again = run(dir.path(), &["run", "provmon", "--wait"]);
    let out = stdout(&again);
    assert_eq!(again.status.code(), Some(1), "{out}");
    assert!(pages(&out).is_empty(), "{out}");
    assert!(out.contains("0 events from 1 sources"), "{out}");

    // The stale release gets its bundle (just now: its signing window is
    // still open) and the failed runtime verify passes on a retry.
    let stale = subject(&paged, "stale-chain");
    let failed = subject(&paged, "runtime-verify-fail");
    let now = chrono::Utc::now().to_rfc3339();
    let late = format!(
        "{}\n{}\n",
        format_args!(
            r#"{{"type":"bundle","ts":"{now}","release_sha":"{stale}","bundle_digest":"sha256:{}"}}"#,
            "ab".repeat(32)
        ),
        format_args!(
            r#"{{"type":"runtime_verify","ts":"{now}","bundle_digest":"{failed}","status":"pass"}}"#
        ),
    );
    std::fs::write(
        dir.path().join("fixtures/provmon/events/2026-11-c.ndjson"),
        late,
    )
    .unwrap();
    let closed = run(dir.path(), &["run", "provmon", "--wait"]);
    let out = stdout(&closed);
    assert_eq!(closed.status.code(), Some(1), "seven gaps remain: {out}");
    let resolved: Vec<String> = pages(&out)
        .into_iter()
        .map(|(action, key)| {
            assert_eq!(action, "RESOLVE", "{out}");
            key
        })
        .collect();
    assert_eq!(
        resolved,
        [
            format!("provmon/runtime-verify-fail/{failed}"),
            format!("provmon/stale-chain/{stale}"),
        ],
        "{out}"
    );
    assert!(out.contains("2 events from 1 sources"), "{out}");
    assert!(
        out.contains("1 windows open"),
        "the new bundle's signing window: {out}"
    );

    let open = run(dir.path(), &["alerts", "--open", "--json"]);
    let open: serde_json::Value = serde_json::from_slice(&open.stdout).unwrap();
    assert_eq!(open.as_array().unwrap().len(), 7);
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn verify_evidence(dir: &Path, path: &str) -> Output {
    run(
        dir,
        &[
            "evidence",
            "verify",
            path,
            "--key",
            "fixtures/provmon/keys/evidence.pub",
        ],
    )
}

#[test]
fn evidence_packs_are_signed_rewritten_when_a_release_changes_and_tampering_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    shipped_checkout(dir.path());
    let first = run(dir.path(), &["run", "provmon", "--wait"]);
    let out = stdout(&first);
    assert!(out.contains("10 evidence packs written"), "{out}");
    let paged = pages(&out);

    let checked = verify_evidence(dir.path(), "evidence");
    let out = stdout(&checked);
    assert_eq!(checked.status.code(), Some(0), "{out}{}", stderr(&checked));
    assert!(out.contains("10 packs, 0 failed"), "{out}");

    // The release signed with a Sigstore bundle: its pack records the
    // bundle verified, by its digest, with the policy it was checked under.
    let bundled = read_json(
        &dir.path()
            .join("evidence/58e24f0ac42d522d252318a5b4e0a57ae318a8fd/verification.json"),
    );
    let bundle = bundled["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|result| result["check"] == "sigstore_bundle")
        .expect("a sigstore_bundle result");
    assert_eq!(bundle["result"]["verified"], true, "{bundle}");
    assert_eq!(
        bundle["inputs"]["bundle_sha256"].as_str().unwrap().len(),
        64
    );
    assert_eq!(
        bundle["inputs"]["policy"]["trusted_root"],
        "fixtures/provmon/keys/trusted_root.json"
    );

    // The tampered artifact's release: its pack records the failed
    // signature check with the reason and the digest of what was checked.
    let tampered = subject(&paged, "signature-invalid");
    let evidence = dir.path().join("evidence");
    let pack = std::fs::read_dir(&evidence)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|pack| {
            let chain = std::fs::read_to_string(pack.join("chain.json")).unwrap();
            chain.contains(&tampered)
        })
        .expect("a pack for the tampered artifact's release");
    let results = read_json(&pack.join("verification.json"));
    let signature = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|result| {
            result["check"] == "signature" && result["artifact_digest"] == tampered.as_str()
        })
        .unwrap();
    assert_eq!(signature["result"]["verified"], false);
    assert!(signature["result"]["reason"]
        .as_str()
        .unwrap()
        .contains("no configured key"));
    assert_eq!(
        signature["inputs"]["signature_sha256"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    let findings = read_json(&pack.join("findings.json"));
    assert!(
        findings.to_string().contains("provmon/signature-invalid/"),
        "{findings}"
    );

    // Every pack with a Rekor check carries the entry it was checked on.
    let mut entries = 0;
    for pack in std::fs::read_dir(&evidence).unwrap() {
        let pack = pack.unwrap().path();
        let results = read_json(&pack.join("verification.json"));
        for result in results["results"].as_array().unwrap() {
            if result["check"] == "rekor_entry" {
                let file = result["inputs"]["entry_file"].as_str().unwrap();
                let bytes = std::fs::read(pack.join(file)).unwrap();
                let digest = sha2::Sha256::digest(&bytes);
                assert_eq!(result["inputs"]["entry_sha256"], hex::encode(digest));
                entries += 1;
            }
        }
    }
    assert!(entries >= 4, "{entries} Rekor entries in the packs");

    // New events for one release rewrite its pack and no other.
    let stale = subject(&paged, "stale-chain");
    let before: Vec<(String, serde_json::Value)> = std::fs::read_dir(&evidence)
        .unwrap()
        .map(|pack| {
            let pack = pack.unwrap().path();
            let name = pack.file_name().unwrap().to_string_lossy().into_owned();
            (
                name,
                read_json(&pack.join("manifest.json"))["created_at"].clone(),
            )
        })
        .collect();
    let now = chrono::Utc::now().to_rfc3339();
    std::fs::write(
        dir.path().join("fixtures/provmon/events/2026-11-c.ndjson"),
        format!(
            "{{\"type\":\"bundle\",\"ts\":\"{now}\",\"release_sha\":\"{stale}\",\"bundle_digest\":\"sha256:{}\"}}\n",
            "cd".repeat(32)
        ),
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    let second = run(dir.path(), &["run", "provmon", "--wait"]);
    assert!(
        stdout(&second).contains("1 evidence packs written"),
        "{}",
        stdout(&second)
    );
    for (name, created) in before {
        let now = read_json(&evidence.join(&name).join("manifest.json"))["created_at"].clone();
        assert_eq!(now != created, name == stale, "pack {name}");
    }
    let chain = std::fs::read_to_string(evidence.join(&stale).join("chain.json")).unwrap();
    assert!(chain.contains(&"cd".repeat(32)), "{chain}");
    assert_eq!(
        verify_evidence(dir.path(), "evidence").status.code(),
        Some(0)
    );

    // Tampering with a pack is caught and named.
    let victim = evidence.join(&stale).join("chain.json");
    let text = std::fs::read_to_string(&victim).unwrap();
    std::fs::write(&victim, text.replace("bundle", "bundIe")).unwrap();
    std::fs::write(evidence.join(&stale).join("notes.txt"), "added later").unwrap();
    let caught = verify_evidence(dir.path(), "evidence");
    assert_eq!(caught.status.code(), Some(1));
    let err = stderr(&caught);
    assert!(err.contains("chain.json: expected sha256"), "{err}");
    assert!(
        err.contains("notes.txt: not listed in manifest.json"),
        "{err}"
    );
    assert!(
        stdout(&caught).contains("10 packs, 1 failed"),
        "{}",
        stdout(&caught)
    );

    // The wrong key fails every pack; a missing key file is a usage error.
    let wrong = run(
        dir.path(),
        &[
            "evidence",
            "verify",
            "evidence",
            "--key",
            "fixtures/provmon/keys/cosign.pub",
        ],
    );
    assert!(
        stdout(&wrong).contains("10 packs, 10 failed"),
        "{}",
        stdout(&wrong)
    );
    let missing = run(
        dir.path(),
        &["evidence", "verify", "evidence", "--key", "nope.pub"],
    );
    assert_eq!(missing.status.code(), Some(2));
}
