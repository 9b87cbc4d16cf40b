//! The issue's scenarios, end to end through a sweep with real keys,
//! real signatures and a Rekor stand-in holding a real Merkle log: a
//! healthy release; a signed release whose Rekor entry never appears; a
//! runtime verify failure; a tampered artifact; a forged inclusion proof;
//! a Rekor outage; and a gap that closes.
#![allow(clippy::unwrap_used)]

mod common;

use common::{chain, keys, rekor_event, ts, World};
use patrol_job_provmon::evidence::EvidenceSpec;
use patrol_provmon_verify::fixtures::{Artifact, SigningKey};
use patrol_standins::Forgery;

#[tokio::test(flavor = "multi_thread")]
async fn each_scenario_yields_exactly_its_findings_and_closed_gaps_resolve() {
    let mut world = World::new().await;
    let healthy = Artifact::signed(&world.cosign, "healthy", b"healthy bundle");
    let no_rekor = Artifact::signed(&world.cosign, "no-rekor", b"never logged");
    let verify_fails = Artifact::signed(&world.cosign, "verify-fails", b"rejected at start");
    let tampered = Artifact::signed(&world.cosign, "tampered", b"the real bundle");
    let other = Artifact::signed(&world.cosign, "other", b"what was really signed");
    let forged = Artifact::signed(&world.cosign, "forged", b"bundle with a forged proof");

    let healthy_uuid = world.log(&healthy);
    let verify_fails_uuid = world.log(&verify_fails);
    let tampered_uuid = world.log(&tampered);
    let forged_uuid = world.log(&forged);
    assert!(world
        .rekor
        .forge_inclusion_proof(&forged_uuid, Forgery::FlippedHash));

    let mut lines = Vec::new();
    lines.extend(chain(
        &healthy,
        "r-healthy",
        Some(&healthy_uuid),
        &healthy.signature_b64(),
    ));
    lines.push(format!(
        r#"{{"type":"deploy","ts":"{}","bundle_digest":"{}","deploy_rev":"web-1"}}"#,
        ts(10),
        healthy.digest()
    ));
    lines.push(format!(
        r#"{{"type":"runtime_verify","ts":"{}","deploy_rev":"web-1","status":"pass"}}"#,
        ts(11)
    ));
    lines.extend(chain(
        &no_rekor,
        "r-no-rekor",
        None,
        &no_rekor.signature_b64(),
    ));
    lines.extend(chain(
        &verify_fails,
        "r-verify-fails",
        Some(&verify_fails_uuid),
        &verify_fails.signature_b64(),
    ));
    lines.push(format!(
        r#"{{"type":"deploy","ts":"{}","bundle_digest":"{}","deploy_rev":"api-1"}}"#,
        ts(10),
        verify_fails.digest()
    ));
    lines.push(format!(
        r#"{{"type":"runtime_verify","ts":"{}","deploy_rev":"api-1","status":"fail","detail":"cosign: no matching signatures"}}"#,
        ts(11)
    ));
    // The tampered artifact's sign event carries another artifact's signature.
    lines.extend(chain(
        &tampered,
        "r-tampered",
        Some(&tampered_uuid),
        &other.signature_b64(),
    ));
    lines.extend(chain(
        &forged,
        "r-forged",
        Some(&forged_uuid),
        &forged.signature_b64(),
    ));
    world.events(&lines);

    // Four minutes after signing: the Rekor window (5m) is still open.
    let early = world.sweep(6).await;
    let digest_key =
        |rule: &str, artifact: &Artifact| format!("provmon/{rule}/{}", artifact.digest());
    let mut expected = vec![
        digest_key("rekor-mismatch", &forged),
        digest_key("runtime-verify-fail", &verify_fails),
        digest_key("signature-invalid", &tampered),
    ];
    expected.sort();
    assert_eq!(keys(&early), expected, "{}", early.summary);
    assert!(!early.findings_partial);

    // Past the window: the signed-but-unlogged release pages too (Rekor
    // was searched for its digest and has nothing).
    let late = world.sweep(8).await;
    expected.push(digest_key("missing-rekor", &no_rekor));
    expected.sort();
    assert_eq!(keys(&late), expected, "{}", late.summary);
    let found = late
        .findings
        .iter()
        .find(|f| f.key.contains("rekor-mismatch"))
        .unwrap();
    assert!(found.summary.contains("inclusion"), "{}", found.summary);
    let bad_signature = late
        .findings
        .iter()
        .find(|f| f.key.contains("signature-invalid"))
        .unwrap();
    assert!(
        bad_signature.summary.contains("no signature"),
        "{}",
        bad_signature.summary
    );

    // A Rekor outage: a newly signed release is not paged as missing, the
    // sweep says it is degraded and partial. Absence from Rekor cannot be
    // shown now, so missing-rekor is not re-reported either; being partial,
    // the sweep resolves nothing, and that page stays open. What needs no
    // Rekor is reported as before.
    let during = Artifact::signed(
        &world.cosign,
        "during-outage",
        b"signed while Rekor is down",
    );
    world.events(&chain(&during, "r-during", None, &during.signature_b64()));
    world.rekor.outage();
    let outage = world.sweep(30).await;
    assert!(outage.findings_partial);
    assert!(outage.summary.contains("degraded"), "{}", outage.summary);
    let without_rekor: Vec<String> = expected
        .iter()
        .filter(|key| !key.contains("missing-rekor"))
        .cloned()
        .collect();
    assert_eq!(
        keys(&outage),
        without_rekor,
        "no page for the outage: {}",
        outage.summary
    );

    // Rekor back; the late release's entry was logged meanwhile, and the
    // unlogged one finally gets its entry too: both gaps close.
    world.rekor.clear_failures();
    world.log(&during);
    let no_rekor_uuid = world.log(&no_rekor);
    world.events(&[rekor_event(&no_rekor, &no_rekor_uuid, 31)]);
    let recovered = world.sweep(32).await;
    assert!(!recovered.findings_partial, "{}", recovered.summary);
    expected.retain(|key| !key.contains("missing-rekor"));
    assert_eq!(keys(&recovered), expected, "{}", recovered.summary);

    // An entry Rekor does not serve yet fails (fail closed) but is asked
    // again each sweep: once served and valid, the finding clears.
    let lagging = Artifact::signed(&world.cosign, "lagging", b"logged, not yet served");
    let lagging_uuid = world.log(&lagging);
    assert!(world.rekor.withhold(&lagging_uuid));
    world.events(&chain(
        &lagging,
        "r-lagging",
        Some(&lagging_uuid),
        &lagging.signature_b64(),
    ));
    let not_yet = world.sweep(40).await;
    let lagging_key = digest_key("rekor-mismatch", &lagging);
    assert!(keys(&not_yet).contains(&lagging_key), "{}", not_yet.summary);
    world.rekor.release(&lagging_uuid);
    let served = world.sweep(45).await;
    assert_eq!(keys(&served), expected, "{}", served.summary);
}

/// Packs take their Rekor entries from Rekor itself (no offline folder)
/// and record each verdict; a pack that cannot be written is retried next
/// sweep even when nothing changed.
#[tokio::test(flavor = "multi_thread")]
async fn evidence_packs_hold_the_entries_verified_and_failed_writes_are_retried() {
    let mut world = World::new().await;
    let key = SigningKey::p256_from_seed(b"scenarios/evidence");
    let key_file = world.dir.path().join("evidence.key");
    std::fs::write(&key_file, key.to_pkcs8_pem()).unwrap();
    // A file where the evidence folder's parent should be: writes fail.
    let blocker = world.dir.path().join("blocker");
    std::fs::write(&blocker, "not a folder").unwrap();
    world.evidence = Some(EvidenceSpec {
        dir: blocker.join("evidence"),
        signing_key: patrol_job_api::secret::SecretRef::File(key_file.clone()),
    });
    let healthy = Artifact::signed(&world.cosign, "healthy", b"healthy bundle");
    let forged = Artifact::signed(&world.cosign, "forged", b"forged proof");
    let healthy_uuid = world.log(&healthy);
    let forged_uuid = world.log(&forged);
    assert!(world
        .rekor
        .forge_inclusion_proof(&forged_uuid, Forgery::FlippedHash));
    let mut lines = chain(
        &healthy,
        "rel-healthy",
        Some(&healthy_uuid),
        &healthy.signature_b64(),
    );
    lines.extend(chain(
        &forged,
        "rel-forged",
        Some(&forged_uuid),
        &forged.signature_b64(),
    ));
    world.events(&lines);

    let first = world.sweep(10).await;
    let stats = &first.details["evidence"];
    assert_eq!(stats["written"], 0, "{stats}");
    assert_eq!(stats["failed"].as_object().unwrap().len(), 2, "{stats}");
    assert!(first.summary.contains("2 failed"), "{}", first.summary);

    std::fs::remove_file(&blocker).unwrap();
    let second = world.sweep(11).await;
    assert_eq!(
        second.details["evidence"]["written"], 2,
        "{}",
        second.summary
    );
    let third = world.sweep(12).await;
    assert_eq!(
        third.details["evidence"]["written"], 0,
        "nothing changed, nothing pending"
    );

    let evidence = blocker.join("evidence");
    for (release, uuid, verified) in [
        ("rel-healthy", &healthy_uuid, true),
        ("rel-forged", &forged_uuid, false),
    ] {
        let pack = evidence.join(release);
        patrol_provmon_verify::evidence::verify_pack(&pack, &key.public_key()).unwrap();
        let results: serde_json::Value =
            serde_json::from_slice(&std::fs::read(pack.join("verification.json")).unwrap())
                .unwrap();
        let rekor = results["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["check"] == "rekor_entry")
            .unwrap();
        assert_eq!(rekor["inputs"]["uuid"], uuid.as_str());
        assert_eq!(rekor["result"]["verified"], verified, "{rekor}");
        let entry = std::fs::read_to_string(pack.join(format!("rekor/{uuid}.json"))).unwrap();
        assert!(entry.contains("inclusionProof"), "{entry}");
    }
}
