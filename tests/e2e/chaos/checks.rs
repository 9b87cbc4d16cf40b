//! The guarantees a chaos run is judged by, over the ledger's rows, the
//! alerts, the instances and the jobs' own execution logs. Each check
//! returns findings naming the check, the schedule and slot, and the rows
//! and executions involved, so whoever fixes the runner can read what went
//! wrong without rerunning the test.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use patrol::cron::CronExpr;
use patrol::ledger::{Run, RunStatus};

use super::executions::Execution;

/// One schedule under test.
pub struct ScheduleUnderTest {
    pub id: &'static str,
    pub cron: &'static str,
    /// `overlap: forbid`: no two executions of the schedule at once.
    pub forbid: bool,
    pub executions: Vec<Execution>,
}

/// An alert row (alerts table), as far as the checks need it.
#[derive(Debug)]
pub struct AlertRow {
    pub key: String,
    pub schedule_id: String,
    pub first_seen_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// An instance row (instances table).
#[derive(Debug)]
pub struct InstanceRow {
    pub id: String,
    pub node: String,
    pub pid: i64,
    pub stopped_at: Option<DateTime<Utc>>,
}

/// When a drill disturbed the nodes, and until when its effects may last.
#[derive(Debug, Clone)]
pub struct DrillWindow {
    pub name: String,
    pub started: DateTime<Utc>,
    pub recovered: DateTime<Utc>,
}

/// A `serve` process the test never killed nor froze.
#[derive(Debug)]
pub struct UndisturbedNode {
    pub label: String,
    pub pid: i64,
}

/// Everything the checks read.
pub struct Evidence {
    pub schedules: Vec<ScheduleUnderTest>,
    pub runs: Vec<Run>,
    pub alerts: Vec<AlertRow>,
    pub instances: Vec<InstanceRow>,
    pub drills: Vec<DrillWindow>,
    pub undisturbed: Vec<UndisturbedNode>,
    /// `running` rows older than `longest_job + node_ttl` just before the
    /// nodes were stopped.
    pub stale_running: Vec<Run>,
    pub longest_job: Duration,
    pub node_ttl: Duration,
    /// When the test began stopping the nodes (SIGTERM).
    pub shutdown_at: DateTime<Utc>,
}

/// A broken guarantee.
pub struct Finding {
    pub check: &'static str,
    pub message: String,
}

/// Slots this close to the shutdown may not have settled yet.
const SETTLING: chrono::Duration = chrono::Duration::seconds(2);
/// Slack for comparing the job's clock readings with the ledger's.
const SLACK: chrono::Duration = chrono::Duration::milliseconds(1000);

/// Runs every check; the findings, each check's in slot order.
pub fn check_all(evidence: &Evidence) -> Vec<Finding> {
    let mut findings = Vec::new();
    for schedule in &evidence.schedules {
        let runs: Vec<&Run> = evidence
            .runs
            .iter()
            .filter(|run| run.schedule_id == schedule.id)
            .collect();
        one_first_attempt_per_slot(evidence, schedule, &runs, &mut findings);
        no_overlapping_executions(evidence, schedule, &runs, &mut findings);
        each_slot_ran_to_its_end_once(evidence, schedule, &mut findings);
        executions_match_rows(evidence, schedule, &runs, &mut findings);
        slots_succeeded_or_paged(evidence, schedule, &runs, &mut findings);
    }
    no_stuck_rows(evidence, &mut findings);
    live_nodes_never_reaped(evidence, &mut findings);
    findings
}

/// "For every slot of every schedule exactly one attempt-1 row."
fn one_first_attempt_per_slot(
    evidence: &Evidence,
    schedule: &ScheduleUnderTest,
    runs: &[&Run],
    findings: &mut Vec<Finding>,
) {
    const CHECK: &str = "one attempt-1 row per slot";
    let mut first_attempts: BTreeMap<DateTime<Utc>, Vec<&Run>> = BTreeMap::new();
    for run in runs.iter().filter(|run| run.attempt == 1) {
        first_attempts
            .entry(run.scheduled_for)
            .or_default()
            .push(run);
    }
    let Some(&first) = first_attempts.keys().next() else {
        findings.push(Finding {
            check: CHECK,
            message: format!("{}: no rows at all", schedule.id),
        });
        return;
    };
    let expr = CronExpr::parse(schedule.cron).expect("the test's cron");
    let expected = expr.fires_between(
        first - chrono::Duration::milliseconds(1),
        evidence.shutdown_at - SETTLING,
        &chrono_tz::UTC,
        usize::MAX,
    );
    for slot in expected {
        match first_attempts.get(&slot).map_or(0, Vec::len) {
            1 => {}
            0 => findings.push(Finding {
                check: CHECK,
                message: format!(
                    "{}: slot {}{} has no row at all (lost); rows of the slot:\n{}",
                    schedule.id,
                    time(slot),
                    evidence.during(slot),
                    describe_runs(runs.iter().copied().filter(|run| run.scheduled_for == slot))
                ),
            }),
            n => findings.push(Finding {
                check: CHECK,
                message: format!(
                    "{}: slot {}{} has {n} attempt-1 rows:\n{}",
                    schedule.id,
                    time(slot),
                    evidence.during(slot),
                    describe_runs(first_attempts[&slot].iter().copied())
                ),
            }),
        }
    }
    for (slot, rows) in &first_attempts {
        let on_the_cron = expr
            .next_after(*slot - chrono::Duration::milliseconds(1), &chrono_tz::UTC)
            == Some(*slot);
        if !on_the_cron {
            findings.push(Finding {
                check: CHECK,
                message: format!(
                    "{}: rows for {}, not a slot of `{}`:\n{}",
                    schedule.id,
                    time(*slot),
                    schedule.cron,
                    describe_runs(rows.iter().copied())
                ),
            });
        }
    }
}

/// "No two executions of one slot ever overlap", by the job's own lines;
/// with `overlap: forbid`, no two executions of the schedule at all.
fn no_overlapping_executions(
    evidence: &Evidence,
    schedule: &ScheduleUnderTest,
    runs: &[&Run],
    findings: &mut Vec<Finding>,
) {
    let executions = &schedule.executions;
    for (i, earlier) in executions.iter().enumerate() {
        for later in &executions[i + 1..] {
            let same_slot = earlier.slot == later.slot;
            if !(same_slot || schedule.forbid) || !earlier.overlaps(later) {
                continue;
            }
            let involved = runs
                .iter()
                .copied()
                .filter(|run| run.id == earlier.run_id || run.id == later.run_id);
            findings.push(Finding {
                check: if same_slot {
                    "no two executions of one slot overlap"
                } else {
                    "overlap: forbid holds across slots"
                },
                message: format!(
                    "{}: slot {}{}: two executions at once:\n  {}\n  {}\nrows:\n{}",
                    schedule.id,
                    time(later.slot),
                    evidence.during(later.started),
                    earlier.describe(),
                    later.describe(),
                    describe_runs(involved)
                ),
            });
        }
    }
}

/// A slot's job runs to its end at most once, and a row's job at most once
/// (an orphan of a dead node finishing beside its retry ran the slot twice,
/// even when the two did not overlap).
fn each_slot_ran_to_its_end_once(
    evidence: &Evidence,
    schedule: &ScheduleUnderTest,
    findings: &mut Vec<Finding>,
) {
    const CHECK: &str = "each slot's job ran at most once";
    let mut ended: BTreeMap<DateTime<Utc>, Vec<&Execution>> = BTreeMap::new();
    let mut per_run: BTreeMap<i64, Vec<&Execution>> = BTreeMap::new();
    for execution in &schedule.executions {
        per_run.entry(execution.run_id).or_default().push(execution);
        if execution.ended {
            ended.entry(execution.slot).or_default().push(execution);
        }
    }
    for (slot, executions) in ended.iter().filter(|(_, e)| e.len() > 1) {
        findings.push(Finding {
            check: CHECK,
            message: format!(
                "{}: slot {}{}: the job ran to its end {} times:\n{}",
                schedule.id,
                time(*slot),
                evidence.during(executions[0].started),
                executions.len(),
                describe_executions(executions)
            ),
        });
    }
    for (run, executions) in per_run.iter().filter(|(_, e)| e.len() > 1) {
        findings.push(Finding {
            check: CHECK,
            message: format!(
                "{}: run #{run} was executed {} times:\n{}",
                schedule.id,
                executions.len(),
                describe_executions(executions)
            ),
        });
    }
}

/// Every execution belongs to a row of its slot and attempt that says it
/// ran (not `skipped`, `missed` or still `pending`).
fn executions_match_rows(
    evidence: &Evidence,
    schedule: &ScheduleUnderTest,
    runs: &[&Run],
    findings: &mut Vec<Finding>,
) {
    const CHECK: &str = "every execution has its row";
    for execution in &schedule.executions {
        let row = runs.iter().find(|run| run.id == execution.run_id);
        let fine = row.is_some_and(|run| {
            run.scheduled_for == execution.slot
                && run.attempt == execution.attempt
                && run.started_at.is_some()
                && !matches!(
                    run.status,
                    RunStatus::Skipped | RunStatus::Missed | RunStatus::Pending
                )
        });
        if !fine {
            findings.push(Finding {
                check: CHECK,
                message: format!(
                    "{}: {}{} — its row: {}",
                    schedule.id,
                    execution.describe(),
                    evidence.during(execution.started),
                    row.map_or("none".to_string(), |run| describe_run(run))
                ),
            });
        }
    }
}

/// "Every slot ended `succeeded`, or has a row saying why not and a page."
/// A first attempt skipped because an earlier run was really going, and a
/// slot missed by coalescing into a slot that ran, are the schedule's
/// policy at work, not failures.
fn slots_succeeded_or_paged(
    evidence: &Evidence,
    schedule: &ScheduleUnderTest,
    runs: &[&Run],
    findings: &mut Vec<Finding>,
) {
    const CHECK: &str = "every slot succeeded, or says why and paged";
    let mut slots: BTreeMap<DateTime<Utc>, Vec<&Run>> = BTreeMap::new();
    for run in runs {
        slots.entry(run.scheduled_for).or_default().push(run);
    }
    let ran_fine = |slot: DateTime<Utc>| {
        slots
            .get(&slot)
            .is_some_and(|rows| rows.iter().any(|run| run.status == RunStatus::Succeeded))
    };
    for (slot, rows) in &slots {
        if *slot >= evidence.shutdown_at - SETTLING {
            continue;
        }
        let last = rows
            .iter()
            .max_by_key(|run| run.attempt)
            .expect("a slot has rows");
        let settled = match last.status {
            RunStatus::Succeeded => true,
            // Judged by the stuck-row check.
            RunStatus::Running | RunStatus::Pending => true,
            RunStatus::Cancelled => {
                last.error
                    .as_deref()
                    .is_some_and(|error| error.contains("patrol shut down"))
                    && last
                        .finished_at
                        .is_some_and(|at| at >= evidence.shutdown_at)
            }
            RunStatus::Skipped => last.attempt == 1 && skip_was_justified(evidence, last, runs),
            RunStatus::Missed => coalesced_into(last).is_some_and(ran_fine),
            RunStatus::Failed | RunStatus::TimedOut | RunStatus::Crashed => false,
        };
        if settled {
            continue;
        }
        let ended = last.finished_at.unwrap_or(last.created_at);
        let reason = last.error.as_deref().unwrap_or_default().trim();
        let paged = evidence.alerts.iter().any(|alert| {
            alert.schedule_id == schedule.id
                && alert.key.starts_with("patrol/")
                && alert.first_seen_at <= ended + SLACK * 2
                && alert.resolved_at.is_none_or(|at| at >= ended - SLACK)
        });
        if reason.is_empty() || !paged {
            // A `missed` row stands or falls with the slot it names.
            let target = coalesced_into(last).map_or(String::new(), |target| {
                format!(
                    "\nrows of {}, the slot it names:\n{}",
                    time(target),
                    describe_runs(slots.get(&target).into_iter().flatten().copied())
                )
            });
            findings.push(Finding {
                check: CHECK,
                message: format!(
                    "{}: slot {}{} ended {}{}{}; rows of the slot:\n{}{target}",
                    schedule.id,
                    time(*slot),
                    evidence.during(*slot),
                    last.status,
                    if reason.is_empty() {
                        ", with no reason"
                    } else {
                        ""
                    },
                    if paged {
                        ""
                    } else {
                        ", and no `patrol/` alert of the schedule was firing then (no page)"
                    },
                    describe_runs(rows.iter().copied())
                ),
            });
        }
    }
}

/// A first attempt `skipped` is the overlap policy at work when every run
/// it names was really going then, on its row's times, and ended in
/// bounded time (a row left `running` by a dead node justifies nothing).
fn skip_was_justified(evidence: &Evidence, skipped: &Run, runs: &[&Run]) -> bool {
    let reason = skipped.error.as_deref().unwrap_or_default();
    if !reason.contains("still running (overlap: forbid)") {
        return false;
    }
    let named = run_ids_named(reason);
    let bound = chrono::Duration::from_std(evidence.longest_job + evidence.node_ttl)
        .expect("small duration");
    !named.is_empty()
        && named.iter().all(|id| {
            runs.iter().any(|run| {
                run.id == *id
                    && run.scheduled_for < skipped.scheduled_for
                    && run
                        .started_at
                        .is_some_and(|at| at <= skipped.created_at + SLACK)
                    && run.finished_at.is_some_and(|at| {
                        at >= skipped.created_at - SLACK
                            && run.started_at.is_some_and(|start| at - start <= bound)
                    })
            })
        })
}

/// The run ids (`#N`) named in a skip's reason.
fn run_ids_named(reason: &str) -> Vec<i64> {
    reason
        .split('#')
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// The slot a `missed` row says it was coalesced into.
fn coalesced_into(missed: &Run) -> Option<DateTime<Utc>> {
    let reason = missed.error.as_deref()?;
    if !reason.contains("coalesced into") {
        return None;
    }
    let last_word = reason.split_whitespace().last()?;
    DateTime::parse_from_rfc3339(last_word)
        .ok()
        .map(|at| at.to_utc())
}

/// "No `running` row older than the longest job plus `node_ttl`" before
/// the shutdown, and none left `running`, nor a due retry left `pending`,
/// once every node stopped.
fn no_stuck_rows(evidence: &Evidence, findings: &mut Vec<Finding>) {
    const CHECK: &str = "no stuck running or pending rows";
    let limit = evidence.longest_job + evidence.node_ttl;
    for run in &evidence.stale_running {
        findings.push(Finding {
            check: CHECK,
            message: format!(
                "{}: slot {}{}: `running` for longer than the longest job + node_ttl ({limit:?}) \
                 while the nodes were up: {}",
                run.schedule_id,
                time(run.scheduled_for),
                evidence.during(run.scheduled_for),
                describe_run(run)
            ),
        });
    }
    let stale_ids: BTreeSet<i64> = evidence.stale_running.iter().map(|run| run.id).collect();
    for run in &evidence.runs {
        let stuck = match run.status {
            RunStatus::Running => !stale_ids.contains(&run.id),
            RunStatus::Pending => run
                .not_before
                .unwrap_or(run.created_at)
                .lt(&(evidence.shutdown_at - SETTLING)),
            _ => false,
        };
        if stuck {
            findings.push(Finding {
                check: CHECK,
                message: format!(
                    "{}: slot {}{}: left {} after every node stopped: {}",
                    run.schedule_id,
                    time(run.scheduled_for),
                    evidence.during(run.scheduled_for),
                    run.status,
                    describe_run(run)
                ),
            });
        }
    }
}

/// A node the test never killed nor froze is never marked dead, not even
/// after a database outage longer than `node_ttl` (issue 19: nobody is
/// reaped until every node had one heartbeat interval to renew).
fn live_nodes_never_reaped(evidence: &Evidence, findings: &mut Vec<Finding>) {
    const CHECK: &str = "live nodes are not reaped";
    for node in &evidence.undisturbed {
        for instance in evidence
            .instances
            .iter()
            .filter(|instance| instance.pid == node.pid && instance.node == node.label)
        {
            let Some(stopped) = instance.stopped_at else {
                continue;
            };
            if stopped < evidence.shutdown_at {
                findings.push(Finding {
                    check: CHECK,
                    message: format!(
                        "node {} (pid {}, instance {}) was marked stopped at {}{} while it ran \
                         undisturbed",
                        node.label,
                        node.pid,
                        instance.id,
                        time(stopped),
                        evidence.during(stopped)
                    ),
                });
            }
        }
    }
}

impl Evidence {
    /// " (during drill …)" when `at` falls in a drill's window.
    fn during(&self, at: DateTime<Utc>) -> String {
        self.drills
            .iter()
            .find(|drill| at >= drill.started && at <= drill.recovered)
            .map_or(String::new(), |drill| {
                format!(
                    " (during drill `{}`, {}–{})",
                    drill.name,
                    time(drill.started),
                    time(drill.recovered)
                )
            })
    }
}

pub fn time(at: DateTime<Utc>) -> String {
    at.format("%H:%M:%S%.3f").to_string()
}

pub fn describe_run(run: &Run) -> String {
    let at = |at: Option<DateTime<Utc>>| at.map_or("-".to_string(), time);
    format!(
        "#{} slot {} attempt {} {} {} created {} started {} finished {} node {} error {:?}",
        run.id,
        time(run.scheduled_for),
        run.attempt,
        run.trigger.as_str(),
        run.status,
        time(run.created_at),
        at(run.started_at),
        at(run.finished_at),
        run.node.as_deref().unwrap_or("-"),
        run.error,
    )
}

fn describe_runs<'a>(runs: impl Iterator<Item = &'a Run>) -> String {
    runs.map(|run| format!("  {}\n", describe_run(run)))
        .collect()
}

fn describe_executions(executions: &[&Execution]) -> String {
    executions
        .iter()
        .map(|execution| format!("  {}\n", execution.describe()))
        .collect()
}

#[cfg(test)]
mod tests {
    use patrol::ledger::Trigger;

    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-07T12:00:00Z")
            .expect("time")
            .to_utc()
            + chrono::Duration::seconds(seconds)
    }

    fn run(id: i64, slot: i64, attempt: u32, status: RunStatus, times: (i64, Option<i64>)) -> Run {
        Run {
            id,
            schedule_id: "slow".into(),
            job: "command".into(),
            scheduled_for: at(slot),
            attempt,
            trigger: if attempt == 1 {
                Trigger::Schedule
            } else {
                Trigger::Retry
            },
            status,
            not_before: None,
            created_at: at(times.0),
            started_at: Some(at(times.0)),
            finished_at: times.1.map(at),
            node: Some("chaos-a".into()),
            instance_id: None,
            params: serde_json::Value::Null,
            overrides: None,
            dry_run: false,
            force_overlap: false,
            summary: None,
            output: None,
            details: None,
            error: None,
        }
    }

    fn execution(run: &Run, from: i64, to: i64) -> Execution {
        Execution {
            slot: run.scheduled_for,
            attempt: run.attempt,
            run_id: run.id,
            pgid: 100 + run.id as i32,
            started: at(from),
            last_seen: at(to),
            ended: true,
        }
    }

    /// The drills' failure shapes are found, each by its check; the
    /// overlap policy's own skip is not a failure.
    #[test]
    fn checks_find_an_orphan_beside_its_retry_a_stuck_row_and_a_silent_skip() {
        let mut crashed = run(1, 0, 1, RunStatus::Crashed, (0, Some(6)));
        crashed.error = Some("node chaos-a stopped heartbeating".into());
        let retry = run(2, 0, 2, RunStatus::Succeeded, (7, Some(17)));
        // Slot 4: skipped while #1 was (by its row) still going: policy.
        let mut skipped_fairly = run(3, 4, 1, RunStatus::Skipped, (4, Some(4)));
        skipped_fairly.error = Some("previous run #1 still running (overlap: forbid)".into());
        let stuck = run(4, 8, 1, RunStatus::Running, (8, None));
        // Slot 12: skipped behind the stuck row, and nobody paged.
        let mut skipped_behind_stuck = run(5, 12, 1, RunStatus::Skipped, (12, Some(12)));
        skipped_behind_stuck.error = Some("previous run #4 still running (overlap: forbid)".into());
        let executions = vec![execution(&crashed, 0, 10), execution(&retry, 7, 17)];
        let evidence = Evidence {
            schedules: vec![ScheduleUnderTest {
                id: "slow",
                cron: "*/4 * * * * *",
                forbid: true,
                executions,
            }],
            runs: vec![
                crashed,
                retry,
                skipped_fairly,
                stuck.clone(),
                skipped_behind_stuck,
            ],
            alerts: Vec::new(),
            instances: Vec::new(),
            drills: Vec::new(),
            undisturbed: Vec::new(),
            stale_running: vec![stuck],
            longest_job: Duration::from_secs(10),
            node_ttl: Duration::from_secs(5),
            shutdown_at: at(15),
        };
        let mut found: Vec<&str> = check_all(&evidence)
            .iter()
            .map(|finding| finding.check)
            .collect();
        found.sort_unstable();
        assert_eq!(
            found,
            [
                "each slot's job ran at most once",
                "every slot succeeded, or says why and paged",
                "no stuck running or pending rows",
                "no two executions of one slot overlap",
            ]
        );
    }
}
