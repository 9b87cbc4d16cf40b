//! Acceptance: "Two `patrol serve` processes on one PostgreSQL database for
//! 2 minutes of every-second schedules: each slot has exactly one run."
//!
//! Both processes start at once on a fresh database (so they also race on
//! the schema), run every-second schedules for 120 s, and are stopped with
//! SIGTERM. Then, from the ledger: every slot between the first and the
//! last has exactly one row, both instances ran slots, nothing is left
//! `running`, and the `overlap: forbid` schedule never ran twice at once —
//! across the two nodes — by the ledger's times and by the job's own.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Child;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use patrol::cron::CronExpr;
use patrol::ledger::{Run, RunFilter, RunStatus, Trigger};

use crate::support::{kill_hard, terminate, Db, Project};

const RUN_FOR: Duration = Duration::from_secs(120);
const EVERY_SECOND: &str = "* * * * * *";
/// `overlap: allow`: every slot must run and succeed.
const ALLOW: [&str; 3] = ["tick-true", "tick-echo", "tick-sleep"];
/// `overlap: forbid`, a 1.5 s job: every other slot is skipped.
const FORBID: &str = "slow-forbid";

/// Kills the servers if the test fails before stopping them.
struct Servers(Vec<Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for server in &mut self.0 {
            kill_hard(server);
        }
    }
}

fn schedule_yaml(id: &str, overlap: &str, params: &str) -> String {
    format!(
        "id: {id}\njob: command\ncron: \"{EVERY_SECOND}\"\noverlap: {overlap}\ncatchup: 1m\ntimeout: 30s\nparams:\n{params}"
    )
}

fn describe(runs: &[&Run]) -> String {
    runs.iter()
        .map(|run| {
            format!(
                "  #{} {} {} attempt {} {} {} started {:?} finished {:?} instance {} error {:?}\n",
                run.id,
                run.schedule_id,
                run.scheduled_for.format("%H:%M:%S%.3f"),
                run.attempt,
                run.trigger.as_str(),
                run.status,
                run.started_at
                    .map(|at| at.format("%H:%M:%S%.3f").to_string()),
                run.finished_at
                    .map(|at| at.format("%H:%M:%S%.3f").to_string()),
                run.instance_id.as_deref().map_or("-", |id| &id[..8]),
                run.error,
            )
        })
        .collect()
}

/// `(run id, start, end)` of each run of the forbid job, from the lines it
/// appended to its own log: `<run> start <epoch>` and `<run> end <epoch>`.
fn job_intervals(text: &str) -> Vec<(i64, f64, f64)> {
    let mut starts: HashMap<i64, f64> = HashMap::new();
    let mut intervals = Vec::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [run, kind, at] = parts[..] else {
            panic!("bad job log line {line:?}");
        };
        let run: i64 = run.parse().expect("run id");
        let at: f64 = at.parse().expect("epoch seconds");
        match kind {
            "start" => {
                starts.insert(run, at);
            }
            "end" => {
                let start = starts.remove(&run).expect("an end after its start");
                intervals.push((run, start, at));
            }
            _ => panic!("bad job log line {line:?}"),
        }
    }
    assert!(
        starts.is_empty(),
        "runs of the job that never ended: {starts:?}"
    );
    intervals.sort_by(|a, b| a.1.total_cmp(&b.1));
    intervals
}

#[tokio::test]
async fn two_servers_on_one_postgres_run_each_slot_exactly_once() {
    let project = Project::new(Db::Postgres, "").await;
    let dir = project.path().to_path_buf();
    project.schedule(
        "tick-true.yaml",
        &schedule_yaml("tick-true", "allow", "  program: \"true\"\n"),
    );
    // tick-echo also counts its executions, one line each.
    let executions = dir.join("tick-echo.log");
    project.schedule(
        "tick-echo.yaml",
        &schedule_yaml(
            "tick-echo",
            "allow",
            &format!(
                "  shell: 'echo \"$PATROL_SCHEDULED_FOR $PATROL_RUN_ID\" >> {}'\n",
                executions.display()
            ),
        ),
    );
    project.schedule(
        "tick-sleep.yaml",
        &schedule_yaml("tick-sleep", "allow", "  shell: 'sleep 0.3'\n"),
    );
    let job_log = dir.join("slow-forbid.log");
    project.schedule(
        "slow-forbid.yaml",
        &schedule_yaml(
            FORBID,
            "forbid",
            &format!(
                "  shell: 'echo \"$PATROL_RUN_ID start $(date +%s.%N)\" >> {log}; sleep 1.5; echo \"$PATROL_RUN_ID end $(date +%s.%N)\" >> {log}'\n",
                log = job_log.display()
            ),
        ),
    );

    let mut servers = Servers(vec![
        project.serve_as_node("a", "node-a"),
        project.serve_as_node("b", "node-b"),
    ]);
    let logs = || {
        format!(
            "--- serve-a.log\n{}\n--- serve-b.log\n{}",
            project.log("a"),
            project.log("b")
        )
    };

    // Let them run; stop early if either dies.
    let started = Instant::now();
    while started.elapsed() < RUN_FOR {
        for (tag, server) in ["a", "b"].iter().zip(servers.0.iter_mut()) {
            if let Ok(Some(status)) = server.try_wait() {
                panic!("serve {tag} exited early with {status}\n{}", logs());
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // SIGTERM both at once, then wait for each.
    let stopping_at = Utc::now();
    for server in &servers.0 {
        let _ = kill(Pid::from_raw(server.id() as i32), Signal::SIGTERM);
    }
    let mut statuses = Vec::new();
    for server in &mut servers.0 {
        statuses.push(terminate(server, Duration::from_secs(30)));
    }
    for (tag, status) in ["a", "b"].iter().zip(&statuses) {
        assert_eq!(
            status.and_then(|status| status.code()),
            Some(0),
            "serve {tag} did not exit 0 after SIGTERM: {status:?}\n{}",
            logs()
        );
    }

    let ledger = project.ledger().await;
    let all = ledger
        .runs(&RunFilter {
            schedule_id: None,
            status: None,
            limit: 1_000_000,
        })
        .await
        .expect("runs");
    ledger.close().await;
    let mut by_schedule: BTreeMap<&str, Vec<&Run>> = BTreeMap::new();
    for run in &all {
        by_schedule
            .entry(run.schedule_id.as_str())
            .or_default()
            .push(run);
    }
    for runs in by_schedule.values_mut() {
        runs.sort_by_key(|run| (run.scheduled_for, run.attempt));
    }
    let ids: BTreeSet<&str> = by_schedule.keys().copied().collect();
    let expected_ids: BTreeSet<&str> = ALLOW.iter().copied().chain([FORBID]).collect();
    assert_eq!(ids, expected_ids, "rows for exactly the schedules defined");

    // Never a row left `running` (or `pending`) after shutdown.
    let unfinished: Vec<&Run> = all.iter().filter(|run| !run.status.is_terminal()).collect();
    assert!(
        unfinished.is_empty(),
        "rows left unfinished:\n{}\n{}",
        describe(&unfinished),
        logs()
    );

    // Each slot exactly one row (attempt 1), no gaps, for every schedule.
    let expr = CronExpr::parse(EVERY_SECOND).expect("cron");
    for (id, runs) in &by_schedule {
        let mut per_key: BTreeMap<(DateTime<Utc>, u32), Vec<&Run>> = BTreeMap::new();
        for run in runs {
            per_key
                .entry((run.scheduled_for, run.attempt))
                .or_default()
                .push(run);
        }
        let doubled: Vec<&Run> = per_key
            .values()
            .filter(|rows| rows.len() > 1)
            .flatten()
            .copied()
            .collect();
        assert!(
            doubled.is_empty(),
            "{id}: slots with more than one row:\n{}",
            describe(&doubled)
        );
        let retries: Vec<&Run> = runs
            .iter()
            .filter(|run| run.attempt != 1)
            .copied()
            .collect();
        assert!(
            retries.is_empty(),
            "{id}: unexpected retries:\n{}",
            describe(&retries)
        );
        let slots: BTreeSet<DateTime<Utc>> = runs.iter().map(|run| run.scheduled_for).collect();
        let first = *slots.first().expect("slots");
        let last = *slots.last().expect("slots");
        let expected: BTreeSet<DateTime<Utc>> = expr
            .fires_between(
                first - chrono::Duration::milliseconds(1),
                last,
                &chrono_tz::UTC,
                usize::MAX,
            )
            .into_iter()
            .collect();
        let lost: Vec<&DateTime<Utc>> = expected.difference(&slots).collect();
        assert!(lost.is_empty(), "{id}: slots without a row: {lost:?}");
        assert_eq!(slots, expected, "{id}: slots off the cron");
        assert!(
            slots.len() >= 100,
            "{id}: only {} slots in {RUN_FOR:?} ({first} … {last}, stopping at {stopping_at})",
            slots.len()
        );
        assert!(
            runs.iter().all(|run| run.trigger == Trigger::Schedule),
            "{id}: a non-schedule trigger"
        );
    }

    // overlap: allow: every slot ran and succeeded — none missed or skipped.
    for id in ALLOW {
        let bad: Vec<&Run> = by_schedule[id]
            .iter()
            .filter(|run| run.status != RunStatus::Succeeded)
            .copied()
            .collect();
        assert!(
            bad.is_empty(),
            "{id}: slots that did not run and succeed:\n{}\n{}",
            describe(&bad),
            logs()
        );
    }

    // One execution per slot, by the job's own count.
    let text = std::fs::read_to_string(&executions).expect("tick-echo's log");
    let mut executed: BTreeMap<DateTime<Utc>, Vec<i64>> = BTreeMap::new();
    for line in text.lines() {
        let (slot, run) = line.split_once(' ').expect("`<slot> <run>`");
        let slot = DateTime::parse_from_rfc3339(slot)
            .expect("rfc3339")
            .to_utc();
        executed
            .entry(slot)
            .or_default()
            .push(run.parse().expect("run id"));
    }
    let twice: Vec<_> = executed.iter().filter(|(_, runs)| runs.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "tick-echo: slots executed more than once: {twice:?}"
    );
    let recorded: BTreeMap<DateTime<Utc>, Vec<i64>> = by_schedule["tick-echo"]
        .iter()
        .map(|run| (run.scheduled_for, vec![run.id]))
        .collect();
    assert_eq!(
        executed, recorded,
        "tick-echo: executions differ from the ledger's runs"
    );

    // Both servers ran slots.
    let mut per_instance: BTreeMap<&str, usize> = BTreeMap::new();
    for run in &all {
        if let Some(instance) = &run.instance_id {
            *per_instance.entry(instance.as_str()).or_default() += 1;
        }
    }
    eprintln!("runs per instance: {per_instance:?}");
    assert_eq!(
        per_instance.len(),
        2,
        "two instances ran slots: {per_instance:?}"
    );

    // overlap: forbid across nodes. Runs that ran did so one at a time…
    let forbid = &by_schedule[FORBID];
    let statuses: BTreeSet<&str> = forbid.iter().map(|run| run.status.as_str()).collect();
    assert!(
        statuses
            .iter()
            .all(|status| ["succeeded", "skipped"].contains(status)),
        "{FORBID}: statuses {statuses:?}\n{}",
        describe(forbid)
    );
    let mut ran: Vec<&Run> = forbid
        .iter()
        .filter(|run| run.status == RunStatus::Succeeded)
        .copied()
        .collect();
    ran.sort_by_key(|run| run.started_at);
    assert!(ran.len() >= 30, "{FORBID}: only {} runs ran", ran.len());
    let ran_on: BTreeSet<&str> = ran
        .iter()
        .filter_map(|run| run.instance_id.as_deref())
        .collect();
    eprintln!(
        "{FORBID}: {} runs ran, on {} instances",
        ran.len(),
        ran_on.len()
    );
    for pair in ran.windows(2) {
        let (earlier, later) = (pair[0], pair[1]);
        let ended = earlier.finished_at.expect("finished_at");
        let began = later.started_at.expect("started_at");
        assert!(
            began >= ended,
            "{FORBID}: runs overlapped in the ledger (#{} ended {ended}, #{} started {began}):\n{}",
            earlier.id,
            later.id,
            describe(&[earlier, later])
        );
    }
    // …also by the job's own clock.
    let text = std::fs::read_to_string(&job_log).expect("the forbid job's log");
    let intervals = job_intervals(&text);
    assert_eq!(
        intervals.len(),
        ran.len(),
        "one job execution per run that ran"
    );
    for pair in intervals.windows(2) {
        assert!(
            pair[1].1 >= pair[0].2,
            "{FORBID}: job executions overlapped: run {} ran {:.3}–{:.3}, run {} started {:.3}",
            pair[0].0,
            pair[0].1,
            pair[0].2,
            pair[1].0,
            pair[1].1
        );
    }
    // …and every skipped slot names the run that was going at the time.
    let by_id: HashMap<i64, &Run> = forbid.iter().map(|run| (run.id, *run)).collect();
    let skipped: Vec<&Run> = forbid
        .iter()
        .filter(|run| run.status == RunStatus::Skipped)
        .copied()
        .collect();
    assert!(
        skipped.len() >= 30,
        "{FORBID}: only {} slots skipped",
        skipped.len()
    );
    for run in &skipped {
        let reason = run.error.as_deref().unwrap_or_default();
        let named: Vec<i64> = reason
            .split('#')
            .skip(1)
            .filter_map(|rest| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            })
            .collect();
        assert!(
            !named.is_empty() && reason.contains("still running (overlap: forbid)"),
            "{FORBID}: skipped without naming the running run: {run:#?}"
        );
        for id in named {
            let other = by_id
                .get(&id)
                .unwrap_or_else(|| panic!("skipped slot names unknown run #{id}: {run:#?}"));
            let started = other.started_at.expect("started_at");
            let finished = other.finished_at.expect("finished_at");
            assert!(
                other.status == RunStatus::Succeeded
                    && other.scheduled_for < run.scheduled_for
                    && started <= run.created_at + chrono::Duration::milliseconds(500)
                    && finished >= run.created_at,
                "{FORBID}: skipped slot names #{id}, which was not running then:\n{}",
                describe(&[run, other])
            );
        }
    }
}
