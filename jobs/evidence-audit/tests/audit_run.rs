//! The audit as a scheduled run: its report is posted through the run's
//! effects and chained; a report that could not be written is not chained
//! (the chain never vouches for a report nobody can read).
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use patrol_job_api::{
    BuildContext, CancellationToken, Checkpoints, Effects, Job, JobState, ManualClock, MemoryState,
    Outcome, RunContext, RunReport, Typed,
};
use patrol_job_evidence_audit::{fixtures, EvidenceAuditJob};

async fn audit(store: &Arc<MemoryState>, dir: &Path, report_dir: &str) -> RunReport {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let params = serde_json::json!({
        "catalog": root.join("policies/compliance/control_catalog.yaml"),
        "releases": "releases",
        "attestation_keys": ["keys/attestation.pub"],
        "audit": {"period": "2026Q4", "sample": "50%", "seed": "s", "report_dir": report_dir},
    });
    let instance = Typed(EvidenceAuditJob)
        .build(&params, &BuildContext::new("evidence-audit", dir))
        .unwrap_or_else(|errors| panic!("{errors:?}"));
    let at = Utc.with_ymd_and_hms(2027, 1, 1, 7, 0, 0).unwrap();
    let ctx = RunContext {
        run_id: 1,
        schedule_id: "evidence-audit-quarterly".into(),
        scheduled_for: at,
        attempt: 1,
        deadline: None,
        dry_run: false,
        cancel: CancellationToken::new(),
        run_key: "evidence-audit-quarterly/1".into(),
        state: JobState::new(store.clone()),
        effects: Effects::in_memory(),
        checkpoints: Checkpoints::dry_run(),
        clock: Arc::new(ManualClock::new(at)),
        fence: patrol_job_api::ProcessFence::none(),
    };
    let report = instance.run(ctx).await.unwrap();
    store.apply(&report.state);
    report
}

#[tokio::test]
async fn a_posted_report_is_chained_and_one_that_could_not_be_written_is_not() {
    let dir = tempfile::tempdir().unwrap();
    fixtures::generate(dir.path()).unwrap();
    let store = Arc::new(MemoryState::default());
    // `blocked` is a file: no report can be written under it.
    std::fs::write(dir.path().join("blocked"), b"").unwrap();
    let failed = audit(&store, dir.path(), "blocked/audits").await;
    assert_eq!(failed.outcome, Outcome::Failed, "{}", failed.summary);
    assert!(failed.output.unwrap().contains("writing audit-2026Q4.json"));
    assert!(
        failed.state.is_empty(),
        "nothing chained: {:?}",
        failed.state
    );
    assert!(store.entries().keys().all(|k| !k.starts_with("chain")));

    let posted = audit(&store, dir.path(), "audits").await;
    assert!(dir.path().join("audits/audit-2026Q4.json").is_file());
    assert_eq!(posted.details["chain_head"]["seq"], 1, "{}", posted.details);
    assert!(store.entries().contains_key("chain/00000001"));
}
