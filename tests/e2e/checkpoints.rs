//! Acceptance: "a job that checkpoints twice and is then killed (`kill -9`
//! of serve) resumes from the second checkpoint after restart", on SQLite
//! and on PostgreSQL.
//!
//! A `command` schedule's first run prints two checkpoint lines and
//! sleeps; once the ledger holds the second, serve is killed with SIGKILL
//! and started again. The restarted server reaps the run as crashed and
//! the schedule's next attempt starts with `PATROL_CHECKPOINT` holding the
//! second value. Every run appends what it was handed to `seen`.

use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use patrol::ledger::{RunStatus, ScheduleStateStore};
use patrol_job_api::JobState;
use patrol_job_command::CHECKPOINT;
use serde_json::json;

use crate::support::{group_alive, kill_hard, terminate, Db, Project};

/// Kills what a failed test leaves behind: its servers, and the process
/// group of the sleeping first run (its shell wrote its pid to `pgid`).
struct Cleanup<'a> {
    servers: Vec<Child>,
    dir: &'a Path,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for server in &mut self.servers {
            kill_hard(server);
        }
        if let Some(pgid) = first_run_group(self.dir) {
            if group_alive(pgid) {
                let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            }
        }
    }
}

fn first_run_group(dir: &Path) -> Option<i32> {
    std::fs::read_to_string(dir.join("pgid"))
        .ok()
        .and_then(|text| text.trim().parse().ok())
}

/// The lines of `seen`: `<attempt> <PATROL_CHECKPOINT or "none">`.
fn seen(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("seen"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

async fn kill_9_after_two_checkpoints_then_resume(db: Db) {
    let project = Project::new(db, "").await;
    let dir = project.path();
    // The first run (it creates `started`) checkpoints twice and sleeps
    // far past the test; every later run only records what it was given.
    let script = format!(
        "cd {dir}; echo \"$PATROL_ATTEMPT ${{PATROL_CHECKPOINT:-none}}\" >> seen; \
         if mkdir started 2>/dev/null; then read -r _ _ _ _ pg _ < /proc/$$/stat; echo $pg > pgid; \
         echo '{{\"checkpoint\": {{\"step\": 1}}}}'; echo '{{\"checkpoint\": {{\"step\": 2}}}}'; \
         sleep 120; fi",
        dir = dir.display()
    );
    project.schedule(
        "resume.yaml",
        &format!(
            "id: resume\njob: command\ncron: \"*/2 * * * * *\"\noverlap: forbid\ncatchup: 0\n\
             retries: {{max: 1, backoff: 1s}}\nparams:\n  shell: '{}'\n",
            script.replace('\'', "''")
        ),
    );
    // The schema first, so the server and this test do not both migrate.
    let ledger = project.ledger().await;
    let state = JobState::new(Arc::new(ScheduleStateStore::new(ledger.clone(), "resume")));
    let mut cleanup = Cleanup {
        servers: vec![project.serve("first")],
        dir,
    };

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if state.load(&CHECKPOINT).await.expect("checkpoint decodes") == Some(json!({"step": 2})) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "[{db:?}] the second checkpoint never reached the ledger; seen {:?}\n{}",
            seen(dir),
            project.log("first")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = project.runs("resume").await;
    let victim = first
        .iter()
        .find(|run| run.status == RunStatus::Running)
        .cloned()
        .unwrap_or_else(|| panic!("[{db:?}] the first run is not running: {first:#?}"));
    kill_hard(&mut cleanup.servers[0]);
    cleanup.servers.push(project.serve("second"));

    let deadline = Instant::now() + Duration::from_secs(30);
    while seen(dir).len() < 2 {
        assert!(
            Instant::now() < deadline,
            "[{db:?}] no run after the restart; seen {:?}\n{}",
            seen(dir),
            project.log("second")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lines = seen(dir);
    assert_eq!(lines[0], "1 none", "the first run had no checkpoint yet");
    let (_attempt, handed) = lines[1].split_once(' ').expect("attempt and value");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(handed).ok(),
        Some(json!({"step": 2})),
        "[{db:?}] the run after the restart resumes from the second checkpoint: {lines:?}"
    );

    let status = terminate(&mut cleanup.servers[1], Duration::from_secs(20));
    let log = project.log("second");
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");
    let runs = project.runs("resume").await;
    let crashed = runs
        .iter()
        .find(|run| run.id == victim.id)
        .expect("the killed run");
    assert_eq!(crashed.status, RunStatus::Crashed, "{crashed:#?}\n{log}");
    assert!(
        first_run_group(dir).is_none_or(|pgid| !group_alive(pgid)),
        "the restarted server stops what the killed run left running"
    );
    ledger.close().await;
}

#[tokio::test]
async fn kill_9_after_two_checkpoints_then_resume_sqlite() {
    kill_9_after_two_checkpoints_then_resume(Db::Sqlite).await;
}

#[tokio::test]
async fn kill_9_after_two_checkpoints_then_resume_postgres() {
    kill_9_after_two_checkpoints_then_resume(Db::Postgres).await;
}
