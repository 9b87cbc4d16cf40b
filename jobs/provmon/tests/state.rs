//! provmon's state through typed keys: a ledger written by earlier
//! versions (a `rev/` row as bare text) still works, new rows are JSON,
//! and an entry that does not decode fails the sweep naming its key.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{chain, keys, ts, World};
use patrol_job_api::{CancellationToken, JobState, StateRead, StateWrite};
use patrol_job_provmon::{sweep, SourceSpec, SweepInput};
use patrol_provmon_verify::fixtures::Artifact;

fn deploy(artifact: &Artifact, rev: &str) -> String {
    format!(
        r#"{{"type":"deploy","ts":"{}","bundle_digest":"{}","deploy_rev":"{rev}"}}"#,
        ts(10),
        artifact.digest()
    )
}

fn failed_verify(rev: &str) -> String {
    format!(
        r#"{{"type":"runtime_verify","ts":"{}","deploy_rev":"{rev}","status":"fail","detail":"no"}}"#,
        ts(11)
    )
}

async fn stored(world: &World, key: &str) -> Option<Vec<u8>> {
    world
        .state
        .get_many(&[key.to_string()])
        .await
        .unwrap()
        .remove(key)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rev_row_written_as_bare_text_by_older_versions_still_links() {
    let mut world = World::new().await;
    let web = Artifact::signed(&world.cosign, "web", b"web bundle");
    let uuid = world.log(&web);
    let mut lines = chain(&web, "r-web", Some(&uuid), &web.signature_b64());
    lines.push(deploy(&web, "web-1"));
    world.events(&lines);
    let first = world.sweep(6).await;
    assert!(keys(&first).is_empty(), "{:?}", keys(&first));
    assert_eq!(
        stored(&world, "rev/web-1").await.unwrap(),
        format!("\"{}\"", web.digest()).into_bytes(),
        "new rows are JSON"
    );

    // As the version before typed keys left it: the digest, unquoted.
    world.state.apply(&[StateWrite::put(
        "rev/web-1",
        web.digest().to_string().into_bytes(),
    )]);
    world.events(&[failed_verify("web-1")]);
    let second = world.sweep(7).await;
    assert_eq!(
        keys(&second),
        [format!("provmon/runtime-verify-fail/{}", web.digest())],
        "the verify naming only the rev reached the digest's stored chain through the old row: {}",
        second.summary
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_entry_that_does_not_decode_fails_the_sweep_naming_its_key() {
    let mut world = World::new().await;
    world
        .state
        .apply(&[StateWrite::put("rev/web-1", vec![0xff, 0xfe])]);
    world.events(&[failed_verify("web-1")]);
    let input = SweepInput {
        evidence: None,
        sources: vec![SourceSpec::Files {
            name: "ci".into(),
            path: world.dir.path().join("events"),
        }],
        rules: world.rules(),
        verifier: world.verify_spec().build().unwrap(),
        max_events: 1_000,
        now: common::t0() + chrono::Duration::minutes(20),
        max_clock_skew: std::time::Duration::from_secs(300),
        rekor_outage_page_after: std::time::Duration::from_secs(1800),
    };
    let state = JobState::new(Arc::clone(&world.state) as Arc<dyn StateRead>);
    let err = sweep(&state, input, &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("`rev/web-1`"), "{err}");
}
