//! SIGTERM while jobs run: a job shorter than `shutdown_grace` finishes
//! and is recorded `succeeded`; a longer one is cancelled, its process
//! group killed, and recorded `cancelled`; `patrol serve` exits 0 within
//! the grace period plus a little, and no row is left `running`.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use chrono::Utc;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use patrol::ledger::{Run, RunStatus};

use crate::support::{group_alive, kill_hard, terminate, Db, Project};

/// `shutdown_grace` that `Project::new` writes into patrol.yaml.
const GRACE: Duration = Duration::from_secs(5);

/// Kills what a failed test would leave behind: the servers it started and
/// the process groups of its jobs (each job writes its group id, read from
/// /proc by its shell, into `pgids/`; a group is only killed while its leader's
/// command line still names this project's folder).
struct Cleanup {
    servers: Vec<Child>,
    dir: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for server in &mut self.servers {
            kill_hard(server);
        }
        kill_job_groups(&self.dir);
    }
}

fn kill_job_groups(dir: &Path) {
    let marker = dir.display().to_string();
    let Ok(entries) = std::fs::read_dir(dir.join("pgids")) else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pgid) = std::fs::read_to_string(entry.path())
            .ok()
            .and_then(|text| text.trim().parse::<i32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pgid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&marker) {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

fn schedule_yaml(id: &str, dir: &Path, body: &str) -> String {
    let pgids = dir.join("pgids");
    format!(
        "id: {id}\njob: command\ncron: \"* * * * * *\"\noverlap: forbid\ncatchup: 0\nparams:\n  shell: 'read -r _ _ _ _ pg _ < /proc/$$/stat; echo $pg > {}/$PATROL_RUN_ID; {body}'\n",
        pgids.display()
    )
}

#[tokio::test]
async fn sigterm_lets_short_jobs_finish_and_cancels_long_ones() {
    let project = Project::new(Db::Sqlite, "").await;
    let dir = project.path().to_path_buf();
    std::fs::create_dir_all(dir.join("pgids")).expect("pgids dir");
    // Every second, one at a time: `short` is always somewhere in its 2 s.
    project.schedule("short.yaml", &schedule_yaml("short", &dir, "sleep 2"));
    project.schedule("long.yaml", &schedule_yaml("long", &dir, "sleep 60"));

    // Create the schema before serve starts: two processes migrating a
    // fresh SQLite file at once race.
    project.ledger().await.close().await;
    let mut cleanup = Cleanup {
        servers: vec![project.serve("a")],
        dir: dir.clone(),
    };

    // Wait for `long` to run, then for a `short` run that started moments
    // ago, so it is mid-run, with well under the grace left, at SIGTERM.
    let long = project
        .wait_for_runs("long", Duration::from_secs(20), |runs| {
            runs.iter().any(|run| run.status == RunStatus::Running)
        })
        .await;
    let long_run = long
        .iter()
        .find(|run| run.status == RunStatus::Running)
        .cloned()
        .unwrap_or_else(|| panic!("`long` never ran: {long:#?}\n{}", project.log("a")));
    let deadline = Instant::now() + Duration::from_secs(20);
    let short_run: Run = loop {
        let runs = project.runs("short").await;
        let fresh = runs.into_iter().find(|run| {
            run.status == RunStatus::Running
                && run
                    .started_at
                    .is_some_and(|at| Utc::now() - at < chrono::Duration::milliseconds(800))
        });
        if let Some(run) = fresh {
            break run;
        }
        assert!(
            Instant::now() < deadline,
            "no fresh `short` run to interrupt\n{}",
            project.log("a")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The row says `running` before the job's shell (started through the
    // process guard) has written its line: wait for it.
    let pgid_file = dir.join("pgids").join(long_run.id.to_string());
    let written_by = Instant::now() + Duration::from_secs(10);
    let written = || std::fs::read_to_string(&pgid_file).is_ok_and(|text| text.ends_with('\n'));
    while !written() && Instant::now() < written_by {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let long_pgid: i32 = std::fs::read_to_string(&pgid_file)
        .expect("the long job wrote its process group")
        .trim()
        .parse()
        .expect("a pid");
    assert!(group_alive(long_pgid), "the long job's process group runs");

    let sigterm_at = Utc::now();
    let started = Instant::now();
    let status = terminate(&mut cleanup.servers[0], GRACE + Duration::from_secs(20));
    let took = started.elapsed();
    let log = project.log("a");
    let status = status.unwrap_or_else(|| panic!("serve did not exit within grace + 20s\n{log}"));
    assert_eq!(status.code(), Some(0), "serve exits 0 after SIGTERM\n{log}");
    // It waited for the grace period (the long job ran), then cancelled and
    // stopped promptly: `sleep` dies on the group's SIGTERM.
    assert!(
        took >= GRACE - Duration::from_millis(500),
        "serve exited after {took:?}, before the grace of {GRACE:?} was up\n{log}"
    );
    assert!(
        took <= GRACE + Duration::from_secs(6),
        "serve took {took:?} to exit; grace is {GRACE:?}\n{log}"
    );

    // (i) The short job that was running at SIGTERM finished its work.
    let short = project.runs("short").await;
    let interrupted = short
        .iter()
        .find(|run| run.id == short_run.id)
        .expect("the interrupted short run is in the ledger");
    assert_eq!(
        interrupted.status,
        RunStatus::Succeeded,
        "a job shorter than the grace finishes: {interrupted:#?}\n{log}"
    );
    let finished = interrupted.finished_at.expect("finished_at");
    assert!(
        finished > sigterm_at,
        "the short run ended after SIGTERM ({finished} vs {sigterm_at}): it was let finish"
    );
    let summary = interrupted.summary.as_deref().unwrap_or_default();
    assert!(summary.contains("exit 0"), "{summary}");

    // (ii) The long job was cancelled at the end of the grace period.
    let long = project.runs("long").await;
    let cancelled = long
        .iter()
        .find(|run| run.id == long_run.id)
        .expect("the long run is in the ledger");
    assert_eq!(
        cancelled.status,
        RunStatus::Cancelled,
        "{cancelled:#?}\n{log}"
    );
    let error = cancelled.error.as_deref().unwrap_or_default();
    assert!(error.contains("patrol shut down"), "error: {error}");
    let ended = cancelled.finished_at.expect("finished_at") - sigterm_at;
    assert!(
        ended >= chrono::Duration::from_std(GRACE - Duration::from_millis(500)).expect("grace"),
        "the long run was cancelled {ended} after SIGTERM, before the grace was up"
    );
    assert!(
        !group_alive(long_pgid),
        "the cancelled job's process group was killed"
    );
    // Only one `long` ever ran; every other slot was skipped naming it.
    for run in &long {
        if run.id != long_run.id {
            assert_eq!(run.status, RunStatus::Skipped, "{run:#?}");
            let reason = run.error.as_deref().unwrap_or_default();
            assert!(reason.contains(&format!("#{}", long_run.id)), "{reason}");
        }
    }

    // Never a row left `running` (or pending) after shutdown.
    for run in short.iter().chain(&long) {
        assert!(
            run.status.is_terminal(),
            "left {}: {run:#?}\n{log}",
            run.status
        );
    }
    // No slot was started after SIGTERM.
    for run in short.iter().chain(&long) {
        assert!(
            run.created_at <= sigterm_at + chrono::Duration::milliseconds(500),
            "a row written after SIGTERM: {run:#?}"
        );
    }
}
