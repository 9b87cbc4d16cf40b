//! A ledger row is not a command (issue 20, item 1): `serve` takes a run's
//! job kind and params from its schedule, never from the row; a row holds
//! at most a manual run's overrides, of keys the schedule's
//! `manual_params` allow. Rows that ask for more are recorded `failed`
//! with the reason and nothing runs.

use std::time::Duration;

use patrol::ledger::{Run, RunStatus};

use crate::support::{anomaly_inputs, stderr, stdout, terminate, Db, Project};

/// `audit` (an anomaly job) and `greet` (a command job whose `env` a
/// manual run may set), both manual only.
fn two_schedules(project: &Project) {
    anomaly_inputs(project);
    project.schedule(
        "audit.yaml",
        "id: audit\njob: anomaly\ncron: \"0 3 1 1 *\"\nparams:\n  rules: rules.yaml\n  sources:\n    - {kind: files, name: audit, path: events}\n",
    );
    project.schedule(
        "greet.yaml",
        "id: greet\njob: command\ncron: \"0 3 1 1 *\"\nretries: {max: 2, backoff: 1s}\nmanual_params: [env]\nparams: {shell: 'echo hello $WHO'}\n",
    );
}

/// Writes a `pending` row straight into the ledger, as anyone who can
/// write the database could.
async fn insert_row(
    project: &Project,
    schedule: &str,
    job: &str,
    params: &str,
    overrides: Option<&str>,
    slot_ms: i64,
) {
    let ledger = project.ledger().await;
    let now = chrono::Utc::now().timestamp_millis();
    sqlx::query(
        "INSERT INTO runs (schedule_id, job, scheduled_for, attempt, triggered_by, status, \
         not_before, created_at, params, overrides, dry_run, force_overlap) \
         VALUES ($1, $2, $3, 1, 'manual', 'pending', $4, $4, $5, $6, 0, 1)",
    )
    .bind(schedule)
    .bind(job)
    .bind(slot_ms)
    .bind(now)
    .bind(params)
    .bind(overrides)
    .execute(ledger.pool())
    .await
    .unwrap();
    ledger.close().await;
}

fn ended(runs: &[Run], count: usize) -> bool {
    runs.len() >= count && runs.iter().all(|run| run.status.is_terminal())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_naming_another_job_or_overrides_not_allowed_are_refused_and_run_nothing() {
    let project = Project::new(Db::Sqlite, "").await;
    two_schedules(&project);
    let dir = project.path().to_path_buf();
    let mut serve = project.serve("a");
    project.wait_until_serving("a").await;

    // A `command` row for the anomaly schedule.
    let job_forged = dir.join("pwned-by-job");
    let shell = serde_json::json!({ "shell": format!("touch {}", job_forged.display()) });
    insert_row(
        &project,
        "audit",
        "command",
        &shell.to_string(),
        None,
        1_000,
    )
    .await;
    // An override `greet` does not allow.
    let override_forged = dir.join("pwned-by-override");
    let shell = serde_json::json!({ "shell": format!("touch {}", override_forged.display()) });
    insert_row(
        &project,
        "greet",
        "command",
        "null",
        Some(&shell.to_string()),
        1_000,
    )
    .await;
    // A row in the old shape (a full params copy): the copy is not run,
    // the schedule's own params are.
    let params_forged = dir.join("pwned-by-params");
    let shell = serde_json::json!({ "shell": format!("touch {}", params_forged.display()) });
    insert_row(
        &project,
        "greet",
        "command",
        &shell.to_string(),
        None,
        2_000,
    )
    .await;
    // An allowed override runs.
    insert_row(
        &project,
        "greet",
        "command",
        "null",
        Some(r#"{"env.WHO": "ops"}"#),
        3_000,
    )
    .await;

    let audit = project
        .wait_for_runs("audit", Duration::from_secs(30), |runs| ended(runs, 1))
        .await;
    let greet = project
        .wait_for_runs("greet", Duration::from_secs(30), |runs| ended(runs, 3))
        .await;
    terminate(&mut serve, Duration::from_secs(15));
    for file in [&job_forged, &override_forged, &params_forged] {
        assert!(!file.exists(), "{} was created", file.display());
    }

    assert_eq!(audit.len(), 1, "a refused row is not retried: {audit:#?}");
    assert_eq!(audit[0].status, RunStatus::Failed);
    let error = audit[0].error.as_deref().unwrap_or("");
    assert!(
        error.contains("refused") && error.contains("`command`") && error.contains("`anomaly`"),
        "{error}"
    );

    let by_slot = |ms: i64| -> Vec<&Run> {
        greet
            .iter()
            .filter(|run| run.scheduled_for.timestamp_millis() == ms)
            .collect()
    };
    let refused = by_slot(1_000);
    assert_eq!(refused.len(), 1, "a refused row is not retried: {greet:#?}");
    assert_eq!(refused[0].status, RunStatus::Failed);
    let error = refused[0].error.as_deref().unwrap_or("");
    assert!(
        error.contains("`shell`") && error.contains("manual_params"),
        "{error}"
    );
    let old_shape = by_slot(2_000);
    assert_eq!(old_shape[0].status, RunStatus::Succeeded, "{old_shape:#?}");
    let output = old_shape[0].output.as_deref().unwrap_or("");
    assert!(output.trim_end().ends_with("\nhello"), "{output}");
    let allowed = by_slot(3_000);
    assert_eq!(allowed[0].status, RunStatus::Succeeded, "{allowed:#?}");
    let output = allowed[0].output.as_deref().unwrap_or("");
    assert!(output.contains("hello ops"), "{output}");
}

#[tokio::test]
async fn patrol_run_refuses_params_the_schedule_does_not_allow() {
    let project = Project::new(Db::Sqlite, "").await;
    two_schedules(&project);
    let touched = project.path().join("touched");
    let assignment = format!("shell=touch {}", touched.display());
    let refused = project.patrol(&["run", "greet", "--param", &assignment, "--wait"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stdout(&refused));
    let message = stderr(&refused);
    assert!(
        message.contains("`shell`") && message.contains("manual_params"),
        "{message}"
    );
    // None allowed at all on `audit`.
    let none = project.patrol(&["run", "audit", "--param", "history=1d"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(stderr(&none).contains("allow none"), "{}", stderr(&none));
    assert!(project.runs("greet").await.is_empty(), "no row was written");
    assert!(!touched.exists());

    let allowed = project.patrol(&["run", "greet", "--param", "env.WHO=ops", "--wait"]);
    assert_eq!(allowed.status.code(), Some(0), "{}", stderr(&allowed));
    assert!(
        stdout(&allowed).contains("hello ops"),
        "{}",
        stdout(&allowed)
    );
}
