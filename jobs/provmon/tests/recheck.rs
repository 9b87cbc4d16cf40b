//! Re-checking one release by hand (`patrol verify release`) over state
//! left by real sweeps: healthy chains pass; an open window, a second
//! digest still unsigned, or a Rekor event that names no entry never pass;
//! a chain missing from the state fails.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::Duration;
use common::{chain, chain_with_uuidless_rekor, t0, ts, World};
use patrol_job_api::JobState;
use patrol_job_provmon::recheck::{load_release, recheck_release, ReleaseCheck, StageStatus};
use patrol_provmon_verify::fixtures::Artifact;

async fn recheck(world: &World, sha: &str, minutes_after_t0: i64) -> ReleaseCheck {
    let state = JobState::new(world.state.clone());
    let loaded = load_release(&state, sha).await.unwrap();
    let verifier = world.verify_spec().build().unwrap();
    let now = t0() + Duration::minutes(minutes_after_t0);
    recheck_release(loaded, &world.rules(), &verifier, now).await
}

fn status(check: &ReleaseCheck, stage: &str) -> StageStatus {
    check
        .stages
        .iter()
        .find(|verdict| verdict.stage == stage)
        .unwrap()
        .status
}

#[tokio::test(flavor = "multi_thread")]
async fn a_healthy_chain_passes_and_a_second_unsigned_digest_is_pending_then_fails() {
    let mut world = World::new().await;
    let first = Artifact::signed(&world.cosign, "first", b"first bundle");
    let uuid = world.log(&first);
    world.events(&chain(&first, "r1", Some(&uuid), &first.signature_b64()));
    world.sweep(3).await;
    let check = recheck(&world, "r1", 3).await;
    assert!(check.verified, "{check:#?}");
    for stage in ["release", "bundle", "sign", "rekor"] {
        assert_eq!(
            status(&check, stage),
            StageStatus::Ok,
            "{stage}: {check:#?}"
        );
    }
    assert_eq!(status(&check, "deploy"), StageStatus::Absent);

    // A second bundle of the same release, built at +5 and not signed:
    // within its 15-minute window the release is not verified (pending),
    // even though the first digest's signature is fine.
    let second = Artifact::signed(&world.cosign, "second", b"second bundle");
    world.events(&[format!(
        r#"{{"type":"bundle","ts":"{}","release_sha":"r1","bundle_digest":"{}"}}"#,
        ts(5),
        second.digest()
    )]);
    world.sweep(6).await;
    let open = recheck(&world, "r1", 6).await;
    assert!(!open.verified, "{open:#?}");
    assert_eq!(status(&open, "sign"), StageStatus::Pending, "{open:#?}");
    let closed = recheck(&world, "r1", 30).await;
    assert!(!closed.verified);
    assert_eq!(status(&closed, "sign"), StageStatus::Failed, "{closed:#?}");
    let sign = closed.stages.iter().find(|s| s.stage == "sign").unwrap();
    assert!(
        sign.failures[0].starts_with("unsigned-bundle: bundle of"),
        "{sign:#?}"
    );
}

/// A `rekor` event naming no entry is malformed (it vouches for nothing
/// anyone could check), so the digest has no Rekor stage and fails it.
#[tokio::test(flavor = "multi_thread")]
async fn a_rekor_event_that_names_no_entry_is_not_a_verified_log_entry() {
    let mut world = World::new().await;
    let artifact = Artifact::signed(&world.cosign, "no-uuid", b"logged without a uuid");
    world.events(&chain_with_uuidless_rekor(&artifact, "r2"));
    let report = world.sweep(8).await;
    assert_eq!(report.details["malformed"], 1, "{}", report.summary);
    let check = recheck(&world, "r2", 8).await;
    assert!(!check.verified, "{check:#?}");
    assert_eq!(status(&check, "sign"), StageStatus::Ok, "{check:#?}");
    assert_eq!(status(&check, "rekor"), StageStatus::Failed, "{check:#?}");
    let rekor = check.stages.iter().find(|s| s.stage == "rekor").unwrap();
    assert!(
        rekor.failures[0].starts_with("missing-rekor:"),
        "{rekor:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_digest_whose_chain_is_gone_from_the_state_fails_the_bundle_stage() {
    let mut world = World::new().await;
    let artifact = Artifact::signed(&world.cosign, "gone", b"chain removed");
    let uuid = world.log(&artifact);
    world.events(&chain(
        &artifact,
        "r3",
        Some(&uuid),
        &artifact.signature_b64(),
    ));
    world.sweep(3).await;
    assert!(recheck(&world, "r3", 3).await.verified);
    world
        .state
        .apply(&[patrol_job_api::StateWrite::delete(format!(
            "digest/{}",
            artifact.digest()
        ))]);
    let check = recheck(&world, "r3", 3).await;
    assert!(!check.verified, "{check:#?}");
    assert_eq!(status(&check, "bundle"), StageStatus::Failed, "{check:#?}");
}
