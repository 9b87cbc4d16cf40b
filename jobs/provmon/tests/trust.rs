//! Issue 20, items 5 and 6: a Rekor entry counts only when its signer is
//! ours, and verdicts kept in state are judged again when the keys they
//! rest on change.
#![allow(clippy::unwrap_used)]

mod common;

use common::{chain, keys, rekor_event, ts, World};
use patrol_provmon_verify::fixtures::{Artifact, SigningKey};

fn digest_key(rule: &str, artifact: &Artifact) -> String {
    format!("provmon/{rule}/{}", artifact.digest())
}

fn deploy(artifact: &Artifact, rev: &str) -> String {
    format!(
        r#"{{"type":"deploy","ts":"{}","bundle_digest":"{}","deploy_rev":"{rev}"}}"#,
        ts(3),
        artifact.digest()
    )
}

/// Someone holding another key (or ours, offline) logs the digest under a
/// throwaway key: the entry is sound, but it is not ours. It must neither
/// satisfy `missing-rekor` nor pass as `rekor-mismatch`'s generic failure.
#[tokio::test]
async fn a_digest_logged_only_by_someone_else_pages_rekor_foreign_signer() {
    let mut world = World::new().await;
    let ours = Artifact::signed(&world.cosign, "release", b"the release bundle");
    let thief = SigningKey::p256_from_seed(b"trust/throwaway");
    let decoy = Artifact::signed(&thief, "release", b"the release bundle");
    assert_eq!(ours.digest(), decoy.digest());
    let decoy_uuid = world
        .rekor
        .add_body(decoy.hashedrekord_body(&thief.public_key_pem()));
    world.events(&chain(
        &ours,
        "r-1",
        Some(&decoy_uuid),
        &ours.signature_b64(),
    ));

    let report = world.sweep(30).await;
    let found = keys(&report);
    assert_eq!(
        found,
        [digest_key("rekor-foreign-signer", &ours)],
        "{}",
        report.summary
    );
    let finding = &report.findings[0];
    assert!(finding.summary.contains(&decoy_uuid), "{}", finding.summary);
    assert!(
        finding.summary.contains("none of verify.signing_keys"),
        "{}",
        finding.summary
    );

    // Our own entry arrives: the digest is logged by us; nothing pages.
    let own_uuid = world.log(&ours);
    world.events(&[rekor_event(&ours, &own_uuid, 31)]);
    let report = world.sweep(32).await;
    assert!(keys(&report).is_empty(), "{:?}", keys(&report));
}

/// Without a `rekor-foreign-signer` rule, the foreign entry still does not
/// count: `missing-rekor` pages, saying why.
#[tokio::test]
async fn without_the_foreign_signer_rule_a_foreign_entry_does_not_silence_missing_rekor() {
    let mut world = World::new().await;
    let rules_path = world.dir.path().join("rules.yaml");
    let rules = std::fs::read_to_string(&rules_path).unwrap();
    let cut = rules.find("  - id: rekor-foreign-signer").unwrap();
    std::fs::write(&rules_path, &rules[..cut]).unwrap();
    let ours = Artifact::signed(&world.cosign, "release", b"another bundle");
    let thief = SigningKey::p256_from_seed(b"trust/throwaway");
    let decoy = Artifact::signed(&thief, "release", b"another bundle");
    let decoy_uuid = world
        .rekor
        .add_body(decoy.hashedrekord_body(&thief.public_key_pem()));
    world.events(&chain(
        &ours,
        "r-2",
        Some(&decoy_uuid),
        &ours.signature_b64(),
    ));

    let report = world.sweep(30).await;
    assert_eq!(keys(&report), [digest_key("missing-rekor", &ours)]);
    let summary = &report.findings[0].summary;
    assert!(
        summary.contains("a rekor event came, but no entry of ours checks out"),
        "{summary}"
    );
}

/// A key found compromised is removed from the config. Chains judged under
/// it are judged again — including one no new event touches — and its
/// signatures and Rekor entries no longer count.
#[tokio::test]
async fn removing_a_signing_key_rejudges_every_kept_verdict_made_with_it() {
    let mut world = World::new().await;
    let artifact = Artifact::signed(&world.cosign, "release", b"signed before the breach");
    let uuid = world.log(&artifact);
    let mut lines = chain(&artifact, "r-3", Some(&uuid), &artifact.signature_b64());
    lines.push(deploy(&artifact, "web-3"));
    world.events(&lines);
    let first = world.sweep(30).await;
    assert!(keys(&first).is_empty(), "all verified: {:?}", keys(&first));

    // The compromised key goes; a new one takes its place.
    let replacement = SigningKey::p256_from_seed(b"trust/replacement");
    std::fs::write(
        world.dir.path().join("cosign.pub"),
        replacement.public_key_pem(),
    )
    .unwrap();
    let second = world.sweep(60).await;
    let mut expected = vec![
        digest_key("deployed-unverified", &artifact),
        digest_key("rekor-foreign-signer", &artifact),
        digest_key("signature-invalid", &artifact),
    ];
    expected.sort();
    assert_eq!(keys(&second), expected, "{}", second.summary);
    assert!(
        second.details["verification"]["rejudged"]
            .as_u64()
            .unwrap_or(0)
            >= 2,
        "{}",
        second.details
    );
}
