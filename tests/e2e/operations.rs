//! What an operator does by hand: trigger runs, pause and resume, edit
//! schedule files under a running scheduler; and what a job does wrong:
//! time out, fail and retry, overlap itself.

use std::time::Duration;

use patrol::ledger::{RunStatus, Trigger};

use crate::support::{group_alive, stderr, stdout, terminate, wait_until, Db, Project};

fn command_schedule(id: &str, cron: &str, extra: &str, params: &str) -> String {
    format!("id: {id}\njob: command\ncron: \"{cron}\"\n{extra}params: {params}\n")
}

#[tokio::test]
async fn manual_run_without_a_server_runs_here_and_is_recorded() {
    let project = Project::new(Db::Sqlite, "").await;
    project.schedule(
        "greet.yaml",
        &command_schedule(
            "greet",
            "0 3 * * *",
            "manual_params: [env, shell]\n",
            "{shell: 'echo hello $WHO'}",
        ),
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
    assert_eq!(
        runs[0].overrides,
        Some(serde_json::json!({"env.WHO": "ops"})),
        "the row holds the overrides, not a params copy"
    );
    assert!(runs[0].params.is_null());

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
    // Each run holds until the test creates `release` (or 30 s pass), so
    // the runs overlap for exactly as long as the test needs.
    project.schedule(
        "slow.yaml",
        &command_schedule(
            "slow",
            "0 3 * * *",
            "",
            "{shell: 'i=0; while [ ! -f release ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; echo done'}",
        ),
    );
    let mut server = project.serve("a");
    project.wait_until_serving("a").await;
    let queued = project.patrol(&["run", "slow"]);
    assert_eq!(queued.status.code(), Some(0), "{}", stderr(&queued));
    assert!(stdout(&queued).contains("queued"), "{}", stdout(&queued));
    // overlap: forbid (the default) refuses a second manual run while the first runs…
    let first = project
        .wait_for_runs("slow", Duration::from_secs(10), |runs| {
            runs.iter().any(|r| r.status == RunStatus::Running)
        })
        .await;
    assert_eq!(first[0].status, RunStatus::Running, "{first:?}");
    let refused = project.patrol(&["run", "slow"]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("overlap: forbid"),
        "{}",
        stderr(&refused)
    );
    // …unless forced: it runs beside the first.
    let forced = project.spawn_patrol(&["run", "slow", "--force", "--wait"]);
    let both = project
        .wait_for_runs("slow", Duration::from_secs(10), |runs| {
            runs.iter()
                .filter(|r| r.status == RunStatus::Running)
                .count()
                == 2
        })
        .await;
    assert_eq!(
        both.iter()
            .filter(|r| r.status == RunStatus::Running)
            .count(),
        2,
        "{both:?}"
    );
    std::fs::write(project.path().join("release"), "").unwrap();
    let forced = forced.wait_with_output().unwrap();
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
    // Fires beside it: proof that slots came and went while it was paused.
    project.schedule(
        "witness.yaml",
        &command_schedule("witness", "* * * * * *", "", "{program: \"true\"}"),
    );
    let paused = project.patrol(&["pause", "tick"]);
    assert_eq!(paused.status.code(), Some(0), "{}", stderr(&paused));
    let mut server = project.serve("a");
    let witnessed = project
        .wait_for_runs("witness", Duration::from_secs(10), |runs| runs.len() >= 2)
        .await;
    assert!(witnessed.len() >= 2, "the scheduler never fired");
    assert!(
        project.runs("tick").await.is_empty(),
        "a paused schedule fired"
    );
    let listed = project.patrol(&["schedules", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let tick = listed
        .as_array()
        .and_then(|listed| listed.iter().find(|schedule| schedule["id"] == "tick"))
        .unwrap_or_else(|| panic!("tick is not listed: {listed}"));
    assert_eq!(tick["state"], "paused");

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
    // Fires every second: the clock the "stopped firing" check waits on.
    project.schedule(
        "a.yaml",
        &command_schedule("first", "* * * * * *", "", "{program: \"true\"}"),
    );
    let mut server = project.serve("a");
    project.wait_until_serving("a").await;

    // A broken edit is reported and changes nothing.
    project.schedule("b.yaml", "id: second\njob: command\ncron: \"*/1 * * *\"\n");
    project
        .wait_for_log("a", Duration::from_secs(10), |log| {
            log.contains("keeping the last good set")
        })
        .await;
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

    // Removing it stops it: once the set without it is applied, `first`
    // fires on and `second` not.
    let reloads = |log: &str| log.matches("schedules reloaded").count();
    let applied = reloads(&project.log("a"));
    std::fs::remove_file(project.path().join("schedules/b.yaml")).unwrap();
    project
        .wait_for_log("a", Duration::from_secs(10), |log| reloads(log) > applied)
        .await;
    let before = project.runs("second").await.len();
    let first_before = project.runs("first").await.len();
    let first = project
        .wait_for_runs("first", Duration::from_secs(10), |runs| {
            runs.len() >= first_before + 3
        })
        .await;
    assert!(
        first.len() >= first_before + 3,
        "the scheduler stopped firing"
    );
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
    // The job's process group (led by patrol's process guard), as the
    // job's shell reads it from /proc.
    let pgid_file = project.path().join("pgid");
    project.schedule(
        "slow.yaml",
        &command_schedule(
            "slow",
            "0 3 * * *",
            "timeout: 1s\n",
            &format!(
                "{{shell: 'read -r _ _ _ _ pg _ < /proc/$$/stat; echo $pg > {}; (sleep 3; touch {}) & sleep 30', kill_grace: 1s}}",
                pgid_file.display(),
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
    project.wait_until_serving("a").await;
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

    // With its whole group gone, nothing is left to write the marker.
    let pgid: i32 = std::fs::read_to_string(&pgid_file)
        .expect("the job wrote its group id")
        .trim()
        .parse()
        .expect("a pid");
    assert!(
        wait_until(Duration::from_secs(10), || !group_alive(pgid)).await,
        "a process of the timed-out job's group {pgid} survived"
    );
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
    project
        .wait_for_runs("forbid", Duration::from_secs(20), |runs| {
            runs.iter().any(|r| r.status == RunStatus::Skipped)
        })
        .await;
    project
        .wait_for_runs("replace", Duration::from_secs(20), |runs| {
            runs.iter().any(|r| r.status == RunStatus::Cancelled)
        })
        .await;
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
