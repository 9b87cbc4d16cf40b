//! Acceptance: "`kill -9` of `patrol serve` mid-run, then restart: the run
//! is `crashed` (or retried), missed slots handled per `catchup`, no slot
//! lost or doubled."
//!
//! One scenario, on SQLite and on PostgreSQL. The kill and the restart are
//! placed on the wall clock so the downtime always covers the same slots:
//!
//! ```text
//!   t0              `patrol serve` starts
//!   P - 10, P - 9   a `catchup-pair` pair runs    (P: a multiple of 10 s, P >= t0 + 13.5 s)
//!   K = P - 1.5 s   kill -9, while the first `long` run sleeps
//!   P, P + 1        the next pair, inside the downtime; also the only slot of `unfired`
//!   R = P + 6.5 s   restart                       (P + 1 is then > 5 s old)
//! ```
//!
//! Structural points (no row left running, no slot doubled or lost) fail at
//! once; the per-schedule acceptance points are collected and reported
//! together, each prefixed `BUG:`. The killed job's process group outlives
//! `kill -9` of serve (recorded on stderr), but not the restart: the new
//! server kills it when it reaps the run (asserted).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use chrono::{DateTime, Timelike, Utc};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use patrol::cron::CronExpr;
use patrol::ledger::{Run, RunStatus, Trigger};

use crate::support::{group_alive, kill_hard, terminate, Db, Project};

/// `shutdown_grace` that `Project::new` writes into patrol.yaml.
const GRACE: Duration = Duration::from_secs(5);

const LONG_CRON: &str = "*/5 * * * * *";
const EVERY_SECOND: &str = "* * * * * *";
/// Two slots a second apart, every 10 s.
const PAIR_CRON: &str = "0,1,10,11,20,21,30,31,40,41,50,51 * * * * *";

/// The schedules whose every slot is checked, with their crons.
const SCHEDULES: [(&str, &str); 4] = [
    ("long", LONG_CRON),
    ("catchup-every-second", EVERY_SECOND),
    ("catchup-pair", PAIR_CRON),
    ("no-catchup", EVERY_SECOND),
];

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

/// Kills the job process groups still running; returns their ids.
fn kill_job_groups(dir: &Path) -> Vec<i32> {
    let marker = dir.display().to_string();
    let Ok(entries) = std::fs::read_dir(dir.join("pgids")) else {
        return Vec::new();
    };
    let mut killed = Vec::new();
    for entry in entries.flatten() {
        let Some(pgid) = read_pgid(&entry.path()) else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pgid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&marker) && group_alive(pgid) {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            killed.push(pgid);
        }
    }
    killed
}

fn read_pgid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.trim().parse().ok())
}

async fn sleep_until(at: DateTime<Utc>) {
    if let Ok(wait) = (at - Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
}

fn millis(ms: i64) -> chrono::Duration {
    chrono::Duration::milliseconds(ms)
}

/// The first whole 10 s at or after `earliest`.
fn next_pair_start(earliest: DateTime<Utc>) -> DateTime<Utc> {
    let mut at = earliest.with_nanosecond(0).expect("whole second");
    while at.second() % 10 != 0 || at < earliest {
        at += chrono::Duration::seconds(1);
    }
    at
}

fn describe(runs: &[Run]) -> String {
    runs.iter()
        .map(|run| {
            format!(
                "  #{} {} attempt {} {} {} created {} instance {} error {:?}\n",
                run.id,
                run.scheduled_for.format("%H:%M:%S%.3f"),
                run.attempt,
                run.trigger.as_str(),
                run.status,
                run.created_at.format("%H:%M:%S%.3f"),
                run.instance_id.as_deref().map_or("-", |id| &id[..8]),
                run.error,
            )
        })
        .collect()
}

/// No slot lost or doubled: one row per (slot, attempt); every retry has
/// its first attempt; the first attempts are exactly the cron's fires from
/// the first recorded slot to the last.
fn assert_slots_exact(schedule: &str, cron: &str, runs: &[Run]) {
    let mut per_key: BTreeMap<(DateTime<Utc>, u32), usize> = BTreeMap::new();
    for run in runs {
        *per_key.entry((run.scheduled_for, run.attempt)).or_default() += 1;
    }
    let doubled: Vec<_> = per_key.iter().filter(|(_, count)| **count > 1).collect();
    assert!(
        doubled.is_empty(),
        "{schedule}: slots recorded twice: {doubled:?}\n{}",
        describe(runs)
    );
    let first_attempts: BTreeSet<DateTime<Utc>> = runs
        .iter()
        .filter(|run| run.attempt == 1)
        .map(|run| run.scheduled_for)
        .collect();
    for run in runs.iter().filter(|run| run.attempt > 1) {
        assert!(
            first_attempts.contains(&run.scheduled_for),
            "{schedule}: retry without a first attempt: {run:#?}"
        );
        assert!(
            per_key.contains_key(&(run.scheduled_for, run.attempt - 1)),
            "{schedule}: attempt {} without attempt {}",
            run.attempt,
            run.attempt - 1
        );
    }
    let (Some(&first), Some(&last)) = (first_attempts.first(), first_attempts.last()) else {
        panic!("{schedule}: no runs at all");
    };
    let expr = CronExpr::parse(cron).expect("cron");
    let expected: BTreeSet<DateTime<Utc>> = expr
        .fires_between(first - millis(1), last, &chrono_tz::UTC, usize::MAX)
        .into_iter()
        .collect();
    let lost: Vec<_> = expected.difference(&first_attempts).collect();
    let extra: Vec<_> = first_attempts.difference(&expected).collect();
    assert!(
        lost.is_empty() && extra.is_empty(),
        "{schedule}: slots lost {lost:?}, slots not in the cron {extra:?}\n{}",
        describe(runs)
    );
}

fn schedule_yaml(id: &str, cron: &str, extra: &str, shell: &str) -> String {
    format!(
        "id: {id}\njob: command\ncron: \"{cron}\"\n{extra}params:\n  shell: '{}'\n",
        shell.replace('\'', "''")
    )
}

/// Acceptance points that failed; reported together at the end so one run
/// shows every one of them.
#[derive(Default)]
struct Failures(Vec<String>);

impl Failures {
    fn check(&mut self, ok: bool, message: impl FnOnce() -> String) {
        if !ok {
            self.0.push(message());
        }
    }
}

async fn kill_9_mid_run_then_restart(db: Db) {
    let project = Project::new(db, "").await;
    let dir = project.path().to_path_buf();
    let pgids = dir.join("pgids");
    std::fs::create_dir_all(&pgids).expect("pgids dir");
    let record_group = format!(
        "read -r _ _ _ _ pg _ < /proc/$$/stat; echo $pg > {}/$PATROL_RUN_ID",
        pgids.display()
    );

    let t0 = Utc::now();
    let pair_start = next_pair_start(t0 + millis(13_500));
    let kill_at = pair_start - millis(1500);
    let restart_at = pair_start + millis(6500);

    // (a) The first run ever sleeps 30 s: it is the one killed. Retries and
    // later slots take 1 s.
    project.schedule(
        "long.yaml",
        &schedule_yaml(
            "long",
            LONG_CRON,
            "overlap: allow\ncatchup: 0\nretries: {max: 1, backoff: 1s}\n",
            &format!(
                "{record_group}; if [ \"$PATROL_ATTEMPT\" = 1 ] && mkdir {}/long-lock 2>/dev/null; then sleep 30; else sleep 1; fi",
                dir.display()
            ),
        ),
    );
    // (b) Every second, catch-up within a minute.
    project.schedule(
        "catchup-every-second.yaml",
        &schedule_yaml(
            "catchup-every-second",
            EVERY_SECOND,
            "overlap: allow\ncatchup: 1m\n",
            "true",
        ),
    );
    // (b') Two slots in the downtime, the newer one > 5 s old at restart.
    project.schedule(
        "catchup-pair.yaml",
        &schedule_yaml(
            "catchup-pair",
            PAIR_CRON,
            "overlap: allow\ncatchup: 1m\n",
            "true",
        ),
    );
    // (c) Missed slots are not run.
    project.schedule(
        "no-catchup.yaml",
        &schedule_yaml(
            "no-catchup",
            EVERY_SECOND,
            "overlap: allow\ncatchup: 0\n",
            "true",
        ),
    );
    // (d) A daily schedule whose one slot of the day falls in the downtime:
    // it had never fired, so the ledger holds no row for it before the crash.
    let unfired_cron = format!(
        "{} {} {} * * *",
        pair_start.second(),
        pair_start.minute(),
        pair_start.hour()
    );
    project.schedule(
        "unfired.yaml",
        &schedule_yaml(
            "unfired",
            &unfired_cron,
            "overlap: allow\ncatchup: 1m\n",
            "true",
        ),
    );

    // Create the schema first: two processes migrating a fresh SQLite file
    // at once race.
    project.ledger().await.close().await;
    let mut cleanup = Cleanup {
        servers: vec![project.serve("first")],
        dir: dir.clone(),
    };

    // The first `long` run (the 30 s one) must be mid-run at the kill.
    let long = project
        .wait_for_runs("long", Duration::from_secs(10), |runs| !runs.is_empty())
        .await;
    let victim = long
        .first()
        .filter(|run| run.status == RunStatus::Running)
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "`long` is not running:\n{}\n{}",
                describe(&long),
                project.log("first")
            )
        });
    let deadline = Instant::now() + Duration::from_secs(10);
    let victim_pgid = loop {
        if let Some(pgid) = read_pgid(&pgids.join(victim.id.to_string())) {
            break pgid;
        }
        assert!(
            Instant::now() < deadline,
            "the long job never started its shell"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        Utc::now() < kill_at - millis(500),
        "the first server started too late for the plan"
    );

    sleep_until(kill_at).await;
    let killed_pid = cleanup.servers[0].id();
    let killed_at = Utc::now();
    kill_hard(&mut cleanup.servers[0]);
    let orphan_after_kill = group_alive(victim_pgid);
    eprintln!(
        "[{db:?}] after kill -9 of serve (pid {killed_pid}) the killed run's process group {victim_pgid} is {}",
        if orphan_after_kill { "still running (orphaned)" } else { "gone" }
    );
    let before_restart = project.runs("long").await;
    assert!(
        before_restart
            .iter()
            .any(|run| run.id == victim.id && run.status == RunStatus::Running),
        "the killed run was running at the kill:\n{}",
        describe(&before_restart)
    );

    sleep_until(restart_at).await;
    let restarted_at = Utc::now();
    cleanup.servers.push(project.serve("second"));

    // The crashed run's retry, and a few live slots after the restart.
    project
        .wait_for_runs("long", Duration::from_secs(10), |runs| {
            runs.iter()
                .any(|run| run.attempt == 2 && run.status.is_terminal())
        })
        .await;
    project
        .wait_for_runs("catchup-every-second", Duration::from_secs(20), |runs| {
            runs.iter()
                .any(|run| run.scheduled_for > restarted_at + millis(3000))
        })
        .await;
    // The restarted server reaps the crashed run and kills what it left
    // behind, so the retry never runs beside the orphan.
    assert!(
        !group_alive(victim_pgid),
        "[{db:?}] after the restart the killed run's process group {victim_pgid} is still running"
    );
    let status = terminate(&mut cleanup.servers[1], GRACE + Duration::from_secs(20));
    let log = format!(
        "--- serve-first.log\n{}\n--- serve-second.log\n{}",
        project.log("first"),
        project.log("second")
    );
    let status = status.unwrap_or_else(|| panic!("serve did not stop after SIGTERM\n{log}"));
    assert_eq!(status.code(), Some(0), "{log}");
    let leftover = kill_job_groups(&dir);
    eprintln!("[{db:?}] job process groups still running at the end, killed now: {leftover:?}");

    let mut all: BTreeMap<&str, Vec<Run>> = BTreeMap::new();
    for (id, _) in SCHEDULES {
        all.insert(id, project.runs(id).await);
    }
    let unfired = project.runs("unfired").await;

    // Nothing left running or pending; nothing doubled or lost.
    for (id, cron) in SCHEDULES {
        let runs = &all[id];
        for run in runs {
            assert!(
                run.status.is_terminal(),
                "{id}: left {}: {run:#?}\n{log}",
                run.status
            );
            // The dead server wrote nothing once dead.
            if run.scheduled_for > killed_at + millis(100) {
                assert!(run.created_at >= restarted_at, "{id}: {run:#?}");
            }
        }
        assert_slots_exact(id, cron, runs);
    }

    let mut failures = Failures::default();
    // The slots due while no server ran: (K, R).
    let downtime = |runs: &[Run]| -> Vec<Run> {
        runs.iter()
            .filter(|run| {
                run.attempt == 1
                    && run.scheduled_for > killed_at
                    && run.scheduled_for < restarted_at
            })
            .cloned()
            .collect()
    };

    // (a) The killed run is `crashed`, naming the dead process, found at
    // the restart, and its retry ran on the new server.
    let long = &all["long"];
    let crashed = long
        .iter()
        .find(|run| run.id == victim.id)
        .expect("the killed run is in the ledger");
    assert_eq!(crashed.status, RunStatus::Crashed, "{crashed:#?}\n{log}");
    let error = crashed.error.as_deref().unwrap_or_default();
    failures.check(
        error.contains(&format!("process {killed_pid} ")) && error.contains("died"),
        || format!("(a) the crash does not name the dead process {killed_pid}: {error}"),
    );
    let found = crashed.finished_at.expect("finished_at");
    failures.check(
        found >= restarted_at && found - restarted_at < chrono::Duration::seconds(5),
        || format!("(a) the crash was not found at the restart: {found} vs restart {restarted_at}"),
    );
    match long
        .iter()
        .find(|run| run.scheduled_for == victim.scheduled_for && run.attempt == 2)
    {
        None => failures.0.push(format!(
            "(a) the crashed run (retries: max 1) was never retried; runs of `long`:\n{}",
            describe(long)
        )),
        Some(retry) => {
            failures.check(
                retry.trigger == Trigger::Retry
                    && retry.status == RunStatus::Succeeded
                    && retry.started_at.is_some()
                    && retry.instance_id.is_some()
                    && retry.instance_id != crashed.instance_id,
                || format!("(a) the retry did not run on the new server: {retry:#?}"),
            );
        }
    }

    // (b) Every second, catchup 1m: one catch-up run for the whole
    // downtime, at its newest slot; every older slot `missed`, coalesced.
    let runs = &all["catchup-every-second"];
    let down = downtime(runs);
    assert!(
        down.len() >= 6,
        "the downtime spans several slots:\n{}",
        describe(runs)
    );
    let ran: Vec<Run> = down
        .iter()
        .filter(|run| run.status != RunStatus::Missed)
        .cloned()
        .collect();
    let newest = down.last().expect("slots").scheduled_for;
    failures.check(
        ran.len() == 1
            && ran[0].scheduled_for == newest
            && ran[0].status == RunStatus::Succeeded
            && ran[0].trigger == Trigger::Catchup,
        || {
            format!(
                "(b) catchup 1m, every second: expected one run (trigger catchup) at the newest downtime slot, \
                 every other downtime slot missed; downtime rows:\n{}",
                describe(&down)
            )
        },
    );
    for run in down.iter().filter(|run| run.status == RunStatus::Missed) {
        let reason = run.error.as_deref().unwrap_or_default();
        failures.check(reason.contains("coalesced"), || {
            format!("(b) missed without `coalesced`: {run:#?}")
        });
    }

    // (b') The pair: P is missed, coalesced into the catch-up run of P + 1.
    let runs = &all["catchup-pair"];
    let down = downtime(runs);
    let slots: Vec<DateTime<Utc>> = down.iter().map(|run| run.scheduled_for).collect();
    assert_eq!(
        slots,
        [pair_start, pair_start + chrono::Duration::seconds(1)],
        "{}",
        describe(runs)
    );
    failures.check(
        down[0].status == RunStatus::Missed
            && down[0]
                .error
                .as_deref()
                .is_some_and(|reason| reason.contains("coalesced into the catch-up run"))
            && (down[1].trigger, down[1].status) == (Trigger::Catchup, RunStatus::Succeeded),
        || {
            format!(
                "(b') catchup 1m, a pair in the downtime:\n{}",
                describe(&down)
            )
        },
    );

    // (c) catchup 0: every slot of the downtime `missed`, none run.
    let runs = &all["no-catchup"];
    let down = downtime(runs);
    assert!(
        down.len() >= 6,
        "the downtime spans several slots:\n{}",
        describe(runs)
    );
    failures.check(
        down.iter().all(|run| {
            run.status == RunStatus::Missed
                && run.error.as_deref().is_some_and(|reason| reason.contains("catchup is 0"))
        }),
        || format!("(c) catchup 0: a downtime slot was run or not recorded as missed (catchup is 0):\n{}", describe(&down)),
    );

    // (d) The daily slot in the downtime is caught up (catchup 1m), though
    // the schedule had never fired before the crash.
    failures.check(
        unfired.len() == 1
            && unfired[0].scheduled_for == pair_start
            && (unfired[0].trigger, unfired[0].status) == (Trigger::Catchup, RunStatus::Succeeded),
        || {
            format!(
                "(d) a schedule that had not fired before the crash (cron `{unfired_cron}`, catchup 1m): \
                 its slot {pair_start} in the downtime was expected to be caught up; rows:\n{}",
                describe(&unfired)
            )
        },
    );

    assert!(
        failures.0.is_empty(),
        "[{db:?}] BUG: crash recovery acceptance points failed:\n\n{}\n\n{log}",
        failures.0.join("\n\n")
    );
}

#[tokio::test]
async fn kill_9_mid_run_then_restart_sqlite() {
    kill_9_mid_run_then_restart(Db::Sqlite).await;
}

#[tokio::test]
async fn kill_9_mid_run_then_restart_postgres() {
    kill_9_mid_run_then_restart(Db::Postgres).await;
}
