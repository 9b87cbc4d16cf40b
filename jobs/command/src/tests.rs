use std::time::Duration;

use chrono::Utc;
use patrol_job_api::{CancellationToken, Job, Outcome, RunContext};
use serde_json::json;

use super::CommandJob;

fn context(cancel: CancellationToken) -> RunContext {
    RunContext {
        run_id: 7,
        schedule_id: "test".into(),
        scheduled_for: Utc::now(),
        attempt: 1,
        deadline: None,
        dry_run: false,
        cancel,
        run_key: "test/7".into(),
        state: patrol_job_api::JobState::empty(),
        clock: std::sync::Arc::new(patrol_job_api::SystemClock),
    }
}

#[tokio::test]
async fn exit_code_maps_to_outcome_and_output_is_captured() {
    let job = CommandJob;
    let ok = job
        .run(
            context(CancellationToken::new()),
            json!({"shell": "echo out; echo err >&2"}),
        )
        .await
        .unwrap();
    assert_eq!(ok.outcome, Outcome::Succeeded);
    let output = ok.output.unwrap();
    assert!(output.contains("--- stdout ---\nout"), "{output}");
    assert!(output.contains("--- stderr ---\nerr"), "{output}");

    let failed = job
        .run(
            context(CancellationToken::new()),
            json!({"shell": "exit 3"}),
        )
        .await
        .unwrap();
    assert_eq!(failed.outcome, Outcome::Failed);
    assert!(failed.summary.starts_with("exit 3"), "{}", failed.summary);
    assert_eq!(failed.details["exit_code"], 3);
}

#[tokio::test]
async fn run_id_and_env_reach_the_program() {
    let report = CommandJob
        .run(
            context(CancellationToken::new()),
            json!({"program": "sh", "args": ["-c", "echo $PATROL_RUN_ID-$GREETING"], "env": {"GREETING": "hi"}}),
        )
        .await
        .unwrap();
    assert!(report.output.unwrap().contains("7-hi"));
}

#[tokio::test]
async fn output_is_truncated_to_limit() {
    let report = CommandJob
        .run(
            context(CancellationToken::new()),
            json!({"shell": "head -c 100000 /dev/zero | tr '\\0' x", "output_limit": "1KiB"}),
        )
        .await
        .unwrap();
    let output = report.output.unwrap();
    assert!(output.len() < 2048, "kept {} bytes", output.len());
    assert!(output.contains("bytes truncated"), "{output}");
    assert_eq!(report.details["stdout_bytes"], 100_000);
}

#[tokio::test]
async fn cancel_kills_the_whole_process_group() {
    let cancel = CancellationToken::new();
    let marker = std::env::temp_dir().join(format!("patrol-cmd-test-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    // The grandchild would touch the marker after 2s if it survived the cancel.
    let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        trigger.cancel();
    });
    let started = std::time::Instant::now();
    let report = CommandJob
        .run(
            context(cancel),
            json!({"shell": script, "kill_grace": "1s"}),
        )
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !marker.exists(),
        "a process of the group survived the cancel"
    );
}

#[tokio::test]
async fn dry_run_does_not_execute() {
    let mut ctx = context(CancellationToken::new());
    ctx.dry_run = true;
    let marker = std::env::temp_dir().join(format!("patrol-dry-{}", std::process::id()));
    let report = CommandJob
        .run(
            ctx,
            json!({"program": "touch", "args": [marker.display().to_string()]}),
        )
        .await
        .unwrap();
    assert!(
        report.summary.starts_with("dry run: would run touch"),
        "{}",
        report.summary
    );
    assert!(!marker.exists());
}

#[test]
fn params_are_checked_with_field_paths() {
    let job = CommandJob;
    let errors = job.check_params(&json!({})).unwrap_err();
    assert_eq!(errors[0].path, "program");
    let errors = job
        .check_params(&json!({"program": "x", "shell": "y"}))
        .unwrap_err();
    assert_eq!(errors[0].path, "shell");
    let errors = job
        .check_params(&json!({"program": "x", "argz": []}))
        .unwrap_err();
    assert!(errors[0].message.contains("unknown field `argz`"));
    assert!(job.check_params(&json!({"program": "true"})).is_ok());
}

#[tokio::test]
async fn missing_program_is_an_error_not_a_panic() {
    let err = CommandJob
        .run(
            context(CancellationToken::new()),
            json!({"program": "/nonexistent/patrol-test-binary"}),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot start"), "{err}");
}
