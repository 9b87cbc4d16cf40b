use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use patrol_job_api::effects::{EffectSlot, EffectStatus, MemoryEffectLog};
use patrol_job_api::{
    CancellationToken, Checkpoints, Effects, Job, JobState, MemoryState, Outcome, RunContext,
    RunOnce,
};
use serde_json::json;

use super::{CommandJob, CHECKPOINT};

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
        checkpoints: patrol_job_api::Checkpoints::dry_run(),
        effects: Effects::in_memory(),
        clock: std::sync::Arc::new(patrol_job_api::SystemClock),
        fence: patrol_job_api::ProcessFence::none(),
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

/// The runner's environment holds notifier tokens and database URLs; a
/// program sees none of it unless a schedule names it.
#[tokio::test]
async fn the_program_gets_a_minimal_environment_unless_variables_are_named() {
    std::env::set_var("PATROL_TEST_RUNNER_ONLY", "runner-private-value");
    std::env::set_var("PATROL_TEST_PASSED_ON", "passed-on-value");
    let report = CommandJob
        .run(
            context(CancellationToken::new()),
            json!({"program": "env", "pass_env": ["PATROL_TEST_PASSED_ON"]}),
        )
        .await
        .unwrap();
    let output = report.output.unwrap();
    assert!(!output.contains("runner-private-value"), "{output}");
    assert!(
        output.contains("PATROL_TEST_PASSED_ON=passed-on-value"),
        "{output}"
    );
    assert!(output.contains("PATH="), "{output}");
    assert!(output.contains("PATROL_RUN_ID=7"), "{output}");

    let cleared = CommandJob
        .run(
            context(CancellationToken::new()),
            json!({"program": "/usr/bin/env", "clear_env": true, "env": {"ONLY": "this"}}),
        )
        .await
        .unwrap();
    let output = cleared.output.unwrap();
    assert!(!output.contains("PATH="), "{output}");
    assert!(output.contains("ONLY=this"), "{output}");
}

#[tokio::test]
async fn secret_env_reaches_the_program_and_a_missing_secret_is_a_param_error() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("api.token");
    std::fs::write(&token, "file-held-token-42\n").unwrap();
    let report = CommandJob
        .run(
            context(CancellationToken::new()),
            json!({"shell": "echo \"[$API_TOKEN]\"", "secret_env": {"API_TOKEN": format!("file:{}", token.display())}}),
        )
        .await
        .unwrap();
    assert!(report.output.unwrap().contains("[file-held-token-42]"));

    let err = CommandJob
        .run(
            context(CancellationToken::new()),
            json!({"program": "true", "secret_env": {"API_TOKEN": "env:PATROL_TEST_UNSET_TOKEN"}}),
        )
        .await
        .unwrap_err();
    let err = err.to_string();
    assert!(err.contains("secret_env.API_TOKEN"), "{err}");
    assert!(err.contains("PATROL_TEST_UNSET_TOKEN is not set"), "{err}");
    let inline = patrol_job_api::Typed(CommandJob)
        .check_params(&json!({"program": "true", "secret_env": {"API_TOKEN": "hunter2-inline"}}))
        .unwrap_err();
    assert_eq!(inline[0].path, "secret_env.API_TOKEN");
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
    let dry = Effects::dry_run();
    ctx.effects = dry.clone();
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
    let effects = dry.records();
    assert_eq!(effects.len(), 1, "{effects:?}");
    assert_eq!(
        effects[0].description,
        format!("run touch {}", marker.display())
    );
    assert_eq!(effects[0].status, EffectStatus::NotPerformed);
}

#[tokio::test]
async fn a_retry_of_the_slot_does_not_rerun_a_program_that_exited_0() {
    let log = Arc::new(MemoryEffectLog::default());
    let dir = tempfile::tempdir().unwrap();
    let counter = dir.path().join("runs");
    let slot = Utc::now();
    // The same program each attempt: it fails until it has run twice.
    let attempt = |n: u32| {
        let mut ctx = context(CancellationToken::new());
        ctx.scheduled_for = slot;
        ctx.attempt = n;
        ctx.effects = Effects::recorded(
            log.clone(),
            EffectSlot {
                schedule_id: ctx.schedule_id.clone(),
                scheduled_for: ctx.scheduled_for,
                run_id: i64::from(n),
                attempt: n,
            },
        );
        let shell = format!(
            "echo x >> {0}; test $(wc -l < {0}) -ge 2",
            counter.display()
        );
        (ctx, json!({ "shell": shell }))
    };
    let (ctx, params) = attempt(1);
    let failed = CommandJob.run(ctx, params).await.unwrap();
    assert_eq!(failed.outcome, Outcome::Failed);
    let (ctx, params) = attempt(2);
    let ok = CommandJob.run(ctx, params).await.unwrap();
    assert_eq!(
        ok.outcome,
        Outcome::Succeeded,
        "a failed program runs again"
    );
    let (ctx, params) = attempt(3);
    let skipped = CommandJob.run(ctx, params).await.unwrap();
    assert!(
        skipped.summary.starts_with("not run again"),
        "an attempt after the one that exited 0 skips it: {}",
        skipped.summary
    );
    assert_eq!(std::fs::read_to_string(&counter).unwrap(), "x\nx\n");
}

#[test]
fn params_are_checked_with_field_paths() {
    let job = patrol_job_api::Typed(CommandJob);
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

/// A context whose state and checkpoints live in `store`.
fn stateful(store: &Arc<MemoryState>) -> RunContext {
    let mut ctx = context(CancellationToken::new());
    ctx.state = JobState::new(store.clone());
    ctx.checkpoints = Checkpoints::local(store.clone());
    ctx
}

#[tokio::test]
async fn checkpoint_lines_are_committed_while_the_program_runs() {
    let store = Arc::new(MemoryState::default());
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    // The program waits after its checkpoint until the test has seen it
    // in the state: the commit cannot have waited for the program's end.
    let script = format!(
        "echo '{{\"checkpoint\": {{\"done\": 1}}}}'; while [ ! -e {0} ]; do sleep 0.05; done; echo after",
        go.display()
    );
    let run = tokio::spawn(CommandJob.run(stateful(&store), json!({ "shell": script })));
    let state = JobState::new(store.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while state.load(&CHECKPOINT).await.unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint committed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::write(&go, "").unwrap();
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.outcome, Outcome::Succeeded);
    assert_eq!(
        state.load(&CHECKPOINT).await.unwrap(),
        Some(json!({"done": 1}))
    );
    assert_eq!(report.details["checkpoint_lines"]["committed"], 1);
    assert!(
        report.summary.contains("1 checkpoint(s)"),
        "{}",
        report.summary
    );
}

#[tokio::test]
async fn the_next_run_starts_with_the_last_checkpoint_in_its_environment() {
    let store = Arc::new(MemoryState::default());
    let script = "echo \"saw=${PATROL_CHECKPOINT-none}\"; \
                  echo '{\"checkpoint\": 1}'; echo '{\"checkpoint\": {\"page\": \"b\"}}'; \
                  echo '{\"checkpoint\": oops}'";
    let first = CommandJob
        .run(stateful(&store), json!({ "shell": script }))
        .await
        .unwrap();
    assert!(first.output.unwrap().contains("saw=none"));
    assert_eq!(first.details["malformed_checkpoints"], 1);
    assert!(
        first.details["checkpoint_problems"][0]
            .as_str()
            .unwrap()
            .starts_with("stdout line 4: checkpoint:"),
        "{}",
        first.details
    );
    assert!(
        !first.findings_partial,
        "a bad checkpoint line is no bad finding"
    );
    let second = CommandJob
        .run(stateful(&store), json!({ "shell": script }))
        .await
        .unwrap();
    assert!(
        second.output.unwrap().contains("saw={\"page\":\"b\"}"),
        "the last committed value, as JSON text"
    );

    // `null` clears it; with checkpoints off nothing is read or handed over.
    CommandJob
        .run(
            stateful(&store),
            json!({ "shell": "echo '{\"checkpoint\": null}'" }),
        )
        .await
        .unwrap();
    assert!(store.entries().is_empty());
    store.apply(&[CHECKPOINT.put(&json!(5)).unwrap()]);
    let off = CommandJob
        .run(
            stateful(&store),
            json!({ "shell": "echo \"saw=${PATROL_CHECKPOINT-none}\"; echo '{\"checkpoint\": 6}'", "checkpoints": false }),
        )
        .await
        .unwrap();
    assert!(off.output.unwrap().contains("saw=none"));
    assert_eq!(
        JobState::new(store.clone())
            .load(&CHECKPOINT)
            .await
            .unwrap(),
        Some(json!(5))
    );
}

#[tokio::test]
async fn a_stored_checkpoint_that_is_not_json_fails_the_run_naming_the_key() {
    let store = Arc::new(MemoryState::default());
    store.apply(&[patrol_job_api::StateWrite::put(
        "checkpoint",
        b"{oops".to_vec(),
    )]);
    let err = CommandJob
        .run(stateful(&store), json!({ "shell": "true" }))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("`checkpoint`"), "{err}");
    let off = CommandJob
        .run(
            stateful(&store),
            json!({ "shell": "true", "checkpoints": false }),
        )
        .await
        .unwrap();
    assert_eq!(off.outcome, Outcome::Succeeded, "not read when turned off");
}
