//! Paths that used to fail open in a sweep (issue 20, item 7): a `rekor`
//! event naming no entry satisfied `missing-rekor`; an event dated in the
//! future pushed its rules' deadlines out for good; a Rekor outage silenced
//! `missing-rekor` and `deployed-unverified` for as long as it lasted, and
//! nobody was paged. Each runs end to end through a sweep with real keys and
//! a Rekor stand-in.
#![allow(clippy::unwrap_used)]

mod common;

use common::{chain, chain_with_uuidless_rekor, keys, ts, World};
use patrol_provmon_verify::fixtures::Artifact;

fn digest_key(rule: &str, artifact: &Artifact) -> String {
    format!("provmon/{rule}/{}", artifact.digest())
}

fn malformed_samples(report: &patrol_job_api::RunReport) -> String {
    report.details["sources"]["ci"]["samples"].to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rekor_event_without_a_uuid_is_malformed_and_missing_rekor_pages() {
    let mut world = World::new().await;
    let artifact = Artifact::signed(&world.cosign, "no-uuid", b"never logged");
    world.events(&chain_with_uuidless_rekor(&artifact, "r1"));
    let report = world.sweep(8).await;
    assert_eq!(report.details["malformed"], 1, "{}", report.summary);
    assert!(
        malformed_samples(&report).contains("needs bundle_digest and rekor_uuid"),
        "{}",
        malformed_samples(&report)
    );
    assert_eq!(
        keys(&report),
        [digest_key("missing-rekor", &artifact)],
        "{}",
        report.summary
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_dated_in_the_future_is_malformed_and_does_not_postpone_deadlines() {
    let mut world = World::new().await;
    let far = Artifact::signed(&world.cosign, "far", b"signed in 2099, supposedly");
    let near = Artifact::signed(&world.cosign, "near", b"signed by a clock 4m fast");
    let near_uuid = world.log(&near);
    let mut lines = chain(&far, "r-far", None, "");
    // Not signed now, signed "in 2099": that sign would hold back both
    // unsigned-bundle and missing-rekor for ever.
    lines.pop();
    lines.push(format!(
        r#"{{"type":"sign","ts":"2099-01-01T00:00:00Z","bundle_digest":"{}","signature":"{}"}}"#,
        far.digest(),
        far.signature_b64()
    ));
    // A producer's clock a few minutes fast is tolerated (default 5m).
    lines.extend(chain(
        &near,
        "r-near",
        Some(&near_uuid),
        &near.signature_b64(),
    ));
    lines.push(format!(
        r#"{{"type":"deploy","ts":"{}","bundle_digest":"{}","deploy_rev":"near-1"}}"#,
        ts(20),
        near.digest()
    ));
    world.events(&lines);
    let report = world.sweep(16).await;
    assert_eq!(report.details["malformed"], 1, "{}", report.summary);
    let samples = malformed_samples(&report);
    assert!(
        samples.contains("2099-01-01T00:00:00+00:00 is more than 5m ahead"),
        "{samples}"
    );
    // The future sign does not count: the bundle is unsigned past its 15m.
    assert_eq!(
        keys(&report),
        [digest_key("unsigned-bundle", &far)],
        "{}",
        report.summary
    );
    assert_eq!(report.details["events"], 7, "the near-future deploy counts");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_rekor_outage_pages_and_the_skipped_rules_run_once_rekor_is_back() {
    let mut world = World::new().await;
    let unlogged = Artifact::signed(&world.cosign, "unlogged", b"never logged");
    let mut lines = chain(&unlogged, "r1", None, &unlogged.signature_b64());
    lines.push(format!(
        r#"{{"type":"deploy","ts":"{}","bundle_digest":"{}","deploy_rev":"rev-1"}}"#,
        ts(3),
        unlogged.digest()
    ));
    world.events(&lines);
    world.rekor.outage();

    // Rekor down from minute 8: nothing can be shown absent, nothing pages.
    let first = world.sweep(8).await;
    assert!(first.findings_partial, "{}", first.summary);
    assert!(first.summary.contains("degraded"), "{}", first.summary);
    assert_eq!(keys(&first), Vec::<String>::new(), "{}", first.summary);
    let still = world.sweep(37).await;
    assert_eq!(keys(&still), Vec::<String>::new(), "29m: {}", still.summary);

    // 30 minutes after the outage was first met: it pages on its own.
    let long = world.sweep(38).await;
    assert_eq!(
        keys(&long),
        ["provmon/rekor-unreachable"],
        "{}",
        long.summary
    );
    let page = &long.findings[0];
    assert_eq!(page.runbook.as_deref(), Some("provmon-rekor-unreachable"));
    assert!(
        page.summary
            .contains("unreachable since 2026-11-20T10:08:00+00:00 (30m)"),
        "{}",
        page.summary
    );
    assert!(
        long.findings_partial,
        "nothing resolves while Rekor is down"
    );

    // Rekor answers again: the rules it held back are judged now, and the
    // outage page is no longer reported (so it resolves).
    world.rekor.clear_failures();
    let back = world.sweep(40).await;
    assert!(!back.findings_partial, "{}", back.summary);
    assert_eq!(
        keys(&back),
        [
            digest_key("deployed-unverified", &unlogged),
            digest_key("missing-rekor", &unlogged),
        ],
        "{}",
        back.summary
    );

    // A new outage starts its own clock.
    world.rekor.outage();
    let again = world.sweep(45).await;
    assert!(
        !keys(&again).contains(&"provmon/rekor-unreachable".to_string()),
        "{}",
        again.summary
    );
}
