//! What an operator does by hand: trigger runs, pause and resume, edit
//! schedule files under a running scheduler; and what a job does wrong:
//! time out, fail and retry, overlap itself.

use std::time::Duration;

use patrol::ledger::{RunStatus, Trigger};

use crate::support::{stderr, stdout, terminate, Db, Project};

fn command_schedule(id: &str, cron: &str, extra: &str, params: &str) -> String {
    format!("id: {id}\njob: command\ncron: \"{cron}\"\n{extra}params: {params}\n")
}

#[tokio::test]
async fn manual_run_without_a_server_runs_here_and_is_recorded() {
    let project = Project::new(Db::Sqlite, "").await;
    project.schedule(
        "greet.yaml",
        &command_schedule("greet", "0 3 * * *", "", "{shell: 'echo hello $WHO'}"),
    );
    let output = project.patrol(&["run", "greet", "--param", "env.WHO=ops", "--wait"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("hello ops"), "{}", stdout(&output));
    let runs = project.runs("greet").await;
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (runs[0].trigger, runs[0].status),
        (Trigger::Manual, RunStatus::Succeeded)
    );
    assert_eq!(runs[0].params["env"]["WHO"], "ops");

    let failing = project.patrol(&["run", "greet", "--param", "shell=exit 4"]);
    assert_eq!(failing.status.code(), Some(1), "a failed job exits 1");
    let dry = project.patrol(&["run", "greet", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0));
    assert!(
        stdout(&dry).contains("dry run: would run /bin/sh -c"),
        "{}",
        stdout(&dry)
    );
    let unknown = project.patrol(&["run", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
}

#[tokio::test]
async fn manual_run_goes_through_a_running_server() {
    let project = Project::new(Db::Sqlite, "").await;
    project.schedule(
        "slow.yaml",
        &command_schedule("slow", "0 3 * * *", "", "{shell: 'sleep 2; echo done'}"),
    );
    let mut server = project.serve("a");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let queued = project.patrol(&["run", "slow"]);
    assert_eq!(queued.status.code(), Some(0), "{}", stderr(&queued));
    assert!(stdout(&queued).contains("queued"), "{}", stdout(&queued));
    // overlap: forbid (the default) refuses a second manual run while the first runs…
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let refused = project.patrol(&["run", "slow"]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("overlap: forbid"),
        "{}",
        stderr(&refused)
    );
    // …unless forced.
    let forced = project.patrol(&["run", "slow", "--force", "--wait"]);
    assert_eq!(forced.status.code(), Some(0), "{}", stderr(&forced));
    let runs = project
        .wait_for_runs("slow", Duration::from_secs(10), |runs| {
            runs.iter().all(|r| r.status.is_terminal())
        })
        .await;
    let statuses: Vec<RunStatus> = runs.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [
            RunStatus::Succeeded,
            RunStatus::Skipped,
            RunStatus::Succeeded
        ]
    );
    assert!(runs.iter().all(|r| r.trigger == Trigger::Manual));
    assert_eq!(
        terminate(&mut server, Duration::from_secs(10)).and_then(|s| s.code()),
        Some(0)
    );
}

#[tokio::test]
async fn pause_is_persisted_and_resume_fires_from_now_on() {
    let project = Project::new(Db::Sqlite, "").await;
    project.schedule(
        "tick.yaml",
        &command_schedule(
            "tick",
            "* * * * * *",
            "catchup: 1m\n",
            "{program: \"true\"}",
        ),
    );
    let paused = project.patrol(&["pause", "tick"]);
    assert_eq!(paused.status.code(), Some(0), "{}", stderr(&paused));
    let mut server = project.serve("a");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        project.runs("tick").await.is_empty(),
        "a paused schedule fired"
    );
    let listed = project.patrol(&["schedules", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["state"], "paused");

    project.patrol(&["resume", "tick"]);
    let runs = project
        .wait_for_runs("tick", Duration::from_secs(10), |runs| runs.len() >= 2)
        .await;
    assert!(runs.len() >= 2, "no fires after resume");
    // Nothing is owed for the paused time: no catch-up, no missed rows.
    assert!(
        runs.iter()
            .all(|r| r.trigger == Trigger::Schedule && r.status != RunStatus::Missed),
        "{runs:?}"
    );
    terminate(&mut server, Duration::from_secs(10));
}

#[tokio::test]
async fn schedule_files_reload_on_change_and_bad_edits_keep_the_last_good_set() {
    let project = Project::new(Db::Sqlite, "").await;
    project.schedule(
        "a.yaml",
        &command_schedule("first", "0 3 * * *", "", "{program: \"true\"}"),
    );
    let mut server = project.serve("a");
    tokio::time::sleep(Duration::from_secs(2)).await;

    // A broken edit is reported and changes nothing.
    project.schedule("b.yaml", "id: second\njob: command\ncron: \"*/1 * * *\"\n");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        project.log("a").contains("keeping the last good set"),
        "{}",
        project.log("a")
    );
    assert!(project.runs("second").await.is_empty());

    // Fixing it applies the new set without a restart.
    project.schedule(
        "b.yaml",
        &command_schedule("second", "* * * * * *", "", "{program: \"true\"}"),
    );
    let runs = project
        .wait_for_runs("second", Duration::from_secs(10), |runs| !runs.is_empty())
        .await;
    assert!(
        !runs.is_empty(),
        "the fixed schedule never fired:\n{}",
        project.log("a")
    );

    // Removing it stops it.
    std::fs::remove_file(project.path().join("schedules/b.yaml")).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = project.runs("second").await.len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        project.runs("second").await.len(),
        before,
        "a removed schedule kept firing"
    );
    terminate(&mut server, Duration::from_secs(10));
}

#[tokio::test]
async fn timeouts_kill_the_process_group_and_failures_retry_with_backoff() {
    let project = Project::new(Db::Sqlite, "").await;
    let marker = project.path().join("survivor");
    project.schedule(
        "slow.yaml",
        &command_schedule(
            "slow",
            "0 3 * * *",
            "timeout: 1s\n",
            &format!(
                "{{shell: '(sleep 3; touch {}) & sleep 30', kill_grace: 1s}}",
                marker.display()
            ),
        ),
    );
    project.schedule(
        "flaky.yaml",
        &command_schedule(
            "flaky",
            "0 3 * * *",
            "retries: {max: 2, backoff: 1s, max_backoff: 2s}\n",
            "{shell: 'exit 3'}",
        ),
    );
    let mut server = project.serve("a");
    tokio::time::sleep(Duration::from_secs(1)).await;
    project.patrol(&["run", "slow"]);
    project.patrol(&["run", "flaky"]);

    let slow = project
        .wait_for_runs("slow", Duration::from_secs(15), |runs| {
            runs.iter().any(|r| r.status.is_terminal())
        })
        .await;
    assert_eq!(slow[0].status, RunStatus::TimedOut, "{slow:?}");
    assert!(
        slow[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("timed out after 1s"),
        "{slow:?}"
    );
    let flaky = project
        .wait_for_runs("flaky", Duration::from_secs(20), |runs| {
            runs.len() == 3 && runs.iter().all(|r| r.status.is_terminal())
        })
        .await;
    let attempts: Vec<(u32, Trigger, RunStatus)> = flaky
        .iter()
        .map(|r| (r.attempt, r.trigger, r.status))
        .collect();
    assert_eq!(
        attempts,
        [
            (1, Trigger::Manual, RunStatus::Failed),
            (2, Trigger::Retry, RunStatus::Failed),
            (3, Trigger::Retry, RunStatus::Failed)
        ]
    );
    let gap = flaky[1].started_at.unwrap() - flaky[0].finished_at.unwrap();
    assert!(
        gap >= chrono::Duration::milliseconds(500),
        "retry came after {gap}"
    );
    assert!(flaky
        .iter()
        .all(|r| r.scheduled_for == flaky[0].scheduled_for));

    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !marker.exists(),
        "a process of the timed-out job's group survived"
    );
    terminate(&mut server, Duration::from_secs(10));
}

#[tokio::test]
async fn overlap_forbid_skips_and_records_while_replace_cancels_the_old_run() {
    let project = Project::new(Db::Sqlite, "").await;
    project.schedule(
        "forbid.yaml",
        &command_schedule("forbid", "*/2 * * * * *", "", "{shell: 'sleep 3'}"),
    );
    project.schedule(
        "replace.yaml",
        &command_schedule(
            "replace",
            "*/2 * * * * *",
            "overlap: replace\n",
            "{shell: 'sleep 3', kill_grace: 1s}",
        ),
    );
    let mut server = project.serve("a");
    tokio::time::sleep(Duration::from_secs(9)).await;
    terminate(&mut server, Duration::from_secs(15));

    let forbid = project.runs("forbid").await;
    assert!(
        forbid.iter().any(|r| r.status == RunStatus::Skipped),
        "{forbid:?}"
    );
    for skipped in forbid.iter().filter(|r| r.status == RunStatus::Skipped) {
        assert!(skipped
            .error
            .as_deref()
            .unwrap_or("")
            .contains("still running (overlap: forbid)"));
    }
    let replace = project.runs("replace").await;
    assert!(
        replace.iter().any(|r| r.status == RunStatus::Cancelled
            && r.error.as_deref().unwrap_or("").contains("replaced")),
        "{replace:?}"
    );
    assert!(replace.iter().all(|r| r.status != RunStatus::Skipped));
    assert!(
        forbid
            .iter()
            .chain(&replace)
            .all(|r| r.status != RunStatus::Running),
        "a run was left running"
    );
}
