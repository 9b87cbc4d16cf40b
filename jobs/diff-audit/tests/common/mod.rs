//! Running the job in tests the way the runner does between restarts.
#![allow(clippy::unwrap_used, dead_code)]

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use patrol_job_api::{
    BuildContext, CancellationToken, Checkpoints, Effects, Job, JobState, ManualClock, MemoryState,
    RunContext, RunReport, Typed,
};
use patrol_job_diff_audit::DiffAuditJob;

pub fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).unwrap()
}

/// Builds the job anew from `params` (a restart), runs it at `now_ms` over
/// `store`, and keeps the state the run wrote.
pub async fn run_at(
    store: &Arc<MemoryState>,
    dir: &Path,
    params: &serde_json::Value,
    now_ms: i64,
) -> RunReport {
    let instance = Typed(DiffAuditJob)
        .build(params, &BuildContext::new("diff-audit", dir))
        .unwrap_or_else(|errors| panic!("{errors:?}"));
    let ctx = RunContext {
        run_id: 1,
        schedule_id: "diff-audit".into(),
        scheduled_for: at(now_ms),
        attempt: 1,
        deadline: None,
        dry_run: false,
        cancel: CancellationToken::new(),
        run_key: format!("diff-audit/{now_ms}"),
        state: JobState::new(store.clone()),
        effects: Effects::in_memory(),
        checkpoints: Checkpoints::dry_run(),
        clock: Arc::new(ManualClock::new(at(now_ms))),
        fence: patrol_job_api::ProcessFence::none(),
    };
    let report = instance.run(ctx).await.unwrap();
    store.apply(&report.state);
    report
}
