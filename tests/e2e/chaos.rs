//! Acceptance 1 of issue 19: fault drills on two `patrol serve` nodes
//! sharing one PostgreSQL, each followed by the same checks (chaos/checks.rs):
//! for every slot of every schedule exactly one attempt-1 row; no two
//! executions of one slot overlapping (by the job's own log); no `running`
//! row older than the longest job plus `node_ttl`; every slot `succeeded`
//! or a row saying why not and a page; live nodes never marked dead.
//!
//! Each test has its own throwaway PostgreSQL cluster (`PgCluster`), which
//! the database drills stop and start; the shared test server is never
//! touched. Nodes `chaos-a` and `chaos-b` run on this host with their own
//! patrol.yaml, and two schedules:
//!
//! - `tick`: every second, `overlap: forbid`, a half-second job;
//! - `slow`: every [`SLOW_PERIOD`] s, `overlap: forbid`, a job sleeping
//!   [`SLOW_JOB`] (longer than its period, so most slots are skipped by the
//!   policy), `retries: {max: 2, backoff: 1s}`.
//!
//! Scaling: the drills ran with `node_ttl` 15 s and `slow` running
//! `sleep 25` every 10 s. Here `node_ttl` is 5 s and every drill keeps its
//! ratio to it: kill -9 of the node running `slow` restarted after
//! 0.2 × ttl (the 3 s) and 1.33 × ttl (20 s); SIGSTOP for 2 × ttl
//! (30–35 s); PostgreSQL stopped 0.8 × ttl (12 s) and 2.7 × ttl (40 s).
//! `slow` sleeps 2 × ttl (the 1.67: a bit longer, so an orphan
//! left by a kill early in its run is still going when the retry starts
//! one ttl later) every 0.8 × ttl. After each drill the nodes get
//! [`RECOVERY`] (one job plus one ttl plus the retry's backoff) before the
//! next, so each test takes 0.5–1.5 minutes; they run one at a time
//! (nextest group `heavy`) because their timing is what they check.

mod checks;
mod executions;

use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use patrol::ledger::{from_millis, Ledger, Run, RunFilter, RunStatus};
use sqlx::Row;

use self::checks::{
    check_all, AlertRow, DrillWindow, Evidence, Finding, InstanceRow, ScheduleUnderTest,
    UndisturbedNode,
};
use self::executions::{read_executions, sleeping_job};
use crate::support::{group_alive, kill_hard, terminate, PgCluster, Project};

const NODE_TTL: Duration = Duration::from_secs(5);
const TICK_CRON: &str = "* * * * * *";
const TICK_JOB: f64 = 0.5;
/// 0.8 × ttl.
const SLOW_PERIOD: u32 = 4;
const SLOW_CRON: &str = "*/4 * * * * *";
/// 2 × ttl.
const SLOW_JOB: f64 = 10.0;
/// One ttl: longer than the period, so a retry written at once by a node
/// restarted early comes due while the next slot runs (the issue's
/// retry recorded `skipped`).
const RETRY_BACKOFF: Duration = NODE_TTL;
/// What `patrol.yaml` gives running jobs at SIGTERM: short, so stopping
/// the nodes does not wait for `slow` (slots it cancels are not judged).
const SHUTDOWN_GRACE: &str = "1s";
/// From a drill's end until the nodes should have repaired everything: the
/// reaper's ttl, the retry's backoff, and a whole `slow` job.
const RECOVERY: Duration = Duration::from_secs(20);
const LABELS: [&str; 2] = ["chaos-a", "chaos-b"];

fn ttl_times(factor: f64) -> Duration {
    NODE_TTL.mul_f64(factor)
}

/// One `patrol serve` process.
struct Node {
    label: &'static str,
    tag: String,
    child: Child,
    /// Killed or frozen by a drill: it may be reaped, and may exit.
    disturbed: bool,
}

/// Two nodes on a throwaway cluster, the drills they went through, and
/// the checks afterwards. Kills whatever is left on drop.
struct Chaos {
    cluster: PgCluster,
    project: Project,
    nodes: Vec<Node>,
    /// Nodes no longer running (killed, exited).
    retired: Vec<Node>,
    drills: Vec<DrillWindow>,
    /// Failures found during the drills themselves.
    failures: Vec<Finding>,
    lives: u32,
}

impl Drop for Chaos {
    fn drop(&mut self) {
        for node in self.nodes.iter_mut().chain(self.retired.iter_mut()) {
            let _ = kill(Pid::from_raw(node.child.id() as i32), Signal::SIGCONT);
            kill_hard(&mut node.child);
        }
        self.kill_job_groups();
    }
}

impl Chaos {
    /// A fresh cluster, the schedules, and both nodes scheduling.
    async fn start() -> Self {
        let cluster = PgCluster::start_new();
        let project = Project::on_database(cluster.url(), "");
        let dir = project.path().to_path_buf();
        project.schedule(
            "tick.yaml",
            &format!(
                "id: tick\njob: command\ncron: \"{TICK_CRON}\"\noverlap: forbid\ncatchup: 1m\ntimeout: 30s\n\
                 params:\n  shell: '{}'\n",
                sleeping_job(&dir.join("tick.jobs"), TICK_JOB)
            ),
        );
        project.schedule(
            "slow.yaml",
            &format!(
                "id: slow\njob: command\ncron: \"{SLOW_CRON}\"\noverlap: forbid\ncatchup: 1m\ntimeout: 1m\n\
                 retries: {{max: 2, backoff: {}s}}\nparams:\n  shell: '{}'\n",
                RETRY_BACKOFF.as_secs(),
                sleeping_job(&dir.join("slow.jobs"), SLOW_JOB)
            ),
        );
        for label in LABELS {
            std::fs::write(
                dir.join(format!("patrol-{label}.yaml")),
                format!(
                    "database: \"{}\"\nnode: {label}\nnode_ttl: {}s\nshutdown_grace: {SHUTDOWN_GRACE}\n",
                    cluster.url(),
                    NODE_TTL.as_secs()
                ),
            )
            .expect("patrol.yaml of a node");
        }
        // The schema first: nodes racing to migrate is not under test here.
        project.ledger().await.close().await;
        let mut chaos = Self {
            cluster,
            project,
            nodes: Vec::new(),
            retired: Vec::new(),
            drills: Vec::new(),
            failures: Vec::new(),
            lives: 0,
        };
        for label in LABELS {
            chaos.start_node(label).await;
        }
        chaos
    }

    fn config(&self, label: &str) -> PathBuf {
        self.project.path().join(format!("patrol-{label}.yaml"))
    }

    async fn start_node(&mut self, label: &'static str) {
        self.lives += 1;
        let tag = format!("{label}-{}", self.lives);
        let child = self.project.serve_with_config(&tag, &self.config(label));
        self.project.wait_until_serving(&tag).await;
        self.nodes.push(Node {
            label,
            tag,
            child,
            disturbed: false,
        });
    }

    fn node_mut(&mut self, label: &str) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|node| node.label == label)
            .unwrap_or_else(|| panic!("no running node {label}"))
    }

    fn retire(&mut self, label: &str) {
        let at = self
            .nodes
            .iter()
            .position(|node| node.label == label)
            .expect("a running node");
        let node = self.nodes.remove(at);
        self.retired.push(node);
    }

    /// A node that exited by itself is restarted, so two keep running; a
    /// disturbed one may exit (a reaped node may choose to), but not by a
    /// signal or a panic.
    async fn keep_nodes_running(&mut self) {
        let mut exited = Vec::new();
        for node in &mut self.nodes {
            if let Ok(Some(status)) = node.child.try_wait() {
                exited.push((node.label, node.tag.clone(), node.disturbed, status));
            }
        }
        for (label, tag, disturbed, status) in exited {
            let log = self.project.log(&tag);
            eprintln!("serve {tag} exited by itself with {status}");
            if !disturbed || status.code().is_none() || log.contains("panicked") {
                self.failures.push(Finding {
                    check: "nodes keep running",
                    message: format!(
                        "serve {tag} ({}) exited with {status}:\n{}",
                        if disturbed {
                            "after a drill"
                        } else {
                            "never disturbed"
                        },
                        log_tail(&log)
                    ),
                });
            }
            self.retire(label);
            self.start_node(label).await;
        }
    }

    fn slow_executions(&self) -> Vec<executions::Execution> {
        read_executions(&self.project.path().join("slow.jobs"))
    }

    /// Waits for a `slow` run that started its job less than a second
    /// ago; returns the label of the node running it.
    async fn node_starting_slow(&self) -> &'static str {
        let deadline = Instant::now() + Duration::from_secs(3 * u64::from(SLOW_PERIOD) + 15);
        loop {
            let fresh = self.slow_executions().into_iter().find(|execution| {
                !execution.ended && Utc::now() - execution.started < chrono::Duration::seconds(1)
            });
            if let Some(execution) = fresh {
                let runs = self.project.runs("slow").await;
                if let Some(run) = runs
                    .iter()
                    .find(|run| run.id == execution.run_id && run.status == RunStatus::Running)
                {
                    let node = run.node.as_deref().unwrap_or_default();
                    if let Some(label) = LABELS.into_iter().find(|label| *label == node) {
                        return label;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no fresh `slow` run to drill on; runs:\n{:#?}",
                self.project.runs("slow").await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Records a drill from `started` to now, and waits out its recovery.
    async fn recover(&mut self, name: String, started: DateTime<Utc>) {
        let recovered = Utc::now() + chrono::Duration::from_std(RECOVERY).expect("small");
        self.drills.push(DrillWindow {
            name,
            started,
            recovered,
        });
        tokio::time::sleep(RECOVERY).await;
        self.keep_nodes_running().await;
    }

    /// kill -9 of the node running `slow` early in its run; the same node
    /// starts again after `down`.
    async fn kill_9_slow_node_then_restart(&mut self, down: Duration) {
        self.keep_nodes_running().await;
        let label = self.node_starting_slow().await;
        let started = Utc::now();
        let node = self.node_mut(label);
        node.disturbed = true;
        kill_hard(&mut node.child);
        self.retire(label);
        tokio::time::sleep(down).await;
        self.start_node(label).await;
        self.recover(
            format!("kill -9 of {label} running `slow`, restarted after {down:?}"),
            started,
        )
        .await;
    }

    /// kill -9 of `label` once it has a run going (any schedule); it starts
    /// again after `down`.
    async fn kill_9_while_it_runs(&mut self, label: &'static str, down: Duration) {
        self.keep_nodes_running().await;
        let tag = self.node_mut(label).tag.clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut nudge_at = Instant::now() + Duration::from_secs(5);
        loop {
            let busy =
                self.all_runs().await.iter().any(|run| {
                    run.status == RunStatus::Running && run.node.as_deref() == Some(label)
                });
            if busy {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{label} ran nothing for 30 s:\n{}",
                log_tail(&self.project.log(&tag))
            );
            if Instant::now() >= nudge_at {
                // Which node wins a slot is a race, and a node just
                // restarted can lose every one for a while: hold the others
                // for well under ttl/2 (no lease effect) so it wins some.
                self.pause_others(label, NODE_TTL.mul_f64(0.25)).await;
                nudge_at = Instant::now() + Duration::from_secs(5);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let started = Utc::now();
        let node = self.node_mut(label);
        node.disturbed = true;
        kill_hard(&mut node.child);
        self.retire(label);
        tokio::time::sleep(down).await;
        self.start_node(label).await;
        self.recover(
            format!("kill -9 of {label} while it runs, restarted after {down:?}"),
            started,
        )
        .await;
    }

    /// SIGSTOP of every node but `label` for `pause`, then SIGCONT.
    async fn pause_others(&self, label: &str, pause: Duration) {
        let others: Vec<Pid> = self
            .nodes
            .iter()
            .filter(|node| node.label != label)
            .map(|node| Pid::from_raw(node.child.id() as i32))
            .collect();
        for pid in &others {
            let _ = kill(*pid, Signal::SIGSTOP);
        }
        tokio::time::sleep(pause).await;
        for pid in &others {
            let _ = kill(*pid, Signal::SIGCONT);
        }
    }

    /// SIGSTOP of the node running `slow` for `frozen`, then SIGCONT; the
    /// label of the node frozen.
    async fn freeze_slow_node(&mut self, frozen: Duration) -> &'static str {
        self.keep_nodes_running().await;
        let label = self.node_starting_slow().await;
        let started = Utc::now();
        let node = self.node_mut(label);
        node.disturbed = true;
        let pid = Pid::from_raw(node.child.id() as i32);
        kill(pid, Signal::SIGSTOP).expect("SIGSTOP");
        tokio::time::sleep(frozen).await;
        kill(pid, Signal::SIGCONT).expect("SIGCONT");
        self.recover(
            format!("SIGSTOP of {label} running `slow` for {frozen:?}, then SIGCONT"),
            started,
        )
        .await;
        label
    }

    /// PostgreSQL stopped (`-m immediate`) for `down` while `slow` runs.
    async fn stop_postgres(&mut self, down: Duration) {
        self.keep_nodes_running().await;
        self.node_starting_slow().await;
        let started = Utc::now();
        self.cluster.stop();
        tokio::time::sleep(down).await;
        self.cluster.start();
        self.recover(format!("PostgreSQL stopped for {down:?}"), started)
            .await;
    }

    /// A third node with `label`, on this host, while that node is alive:
    /// it must refuse to start (exit 2, an `error:` line naming the label).
    async fn start_a_twin_of(&mut self, label: &'static str) {
        let started = Utc::now();
        let tag = format!("{label}-twin");
        let mut twin = self.project.serve_with_config(&tag, &self.config(label));
        let deadline = Instant::now() + 2 * NODE_TTL;
        let status = loop {
            if let Ok(Some(status)) = twin.try_wait() {
                break Some(status);
            }
            if Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let log = self.project.log(&tag);
        match status {
            None => {
                // Stopped as gently as a twin can be, to disturb the rest
                // of the run as little as possible.
                let status = terminate(&mut twin, Duration::from_secs(10));
                self.failures.push(Finding {
                    check: "a second node with a live node's label is refused",
                    message: format!(
                        "`serve` with `node: {label}` (already live on this host) was still running \
                         after {:?} — not refused; stopped with SIGTERM ({status:?}). Its log:\n{}",
                        2 * NODE_TTL,
                        log_tail(&log)
                    ),
                });
            }
            Some(status) => {
                // How `patrol` reports an error it stops on: `error: …`, exit 2.
                let named = log
                    .lines()
                    .any(|line| line.starts_with("error:") && line.contains(label));
                if status.code() != Some(2) || !named {
                    self.failures.push(Finding {
                        check: "a second node with a live node's label is refused",
                        message: format!(
                            "`serve` with `node: {label}` (already live on this host) exited with \
                             {status}; expected exit code 2 and an `error:` line naming `{label}`:\n{}",
                            log_tail(&log)
                        ),
                    });
                }
            }
        }
        self.recover(format!("a second node labelled {label}"), started)
            .await;
    }

    /// Lets the nodes run for `time` with no drill.
    async fn run_for(&mut self, time: Duration) {
        tokio::time::sleep(time).await;
        self.keep_nodes_running().await;
    }

    /// Stops the nodes (SIGTERM), gathers the evidence and runs the
    /// checks; panics with every broken guarantee.
    async fn stop_and_check(mut self) {
        self.keep_nodes_running().await;
        let limit = SLOW_JOB + NODE_TTL.as_secs_f64();
        let stale_running: Vec<Run> = self
            .all_runs()
            .await
            .into_iter()
            .filter(|run| {
                run.status == RunStatus::Running
                    && run.started_at.is_some_and(|at| {
                        (Utc::now() - at).num_milliseconds() as f64 > limit * 1000.0
                    })
            })
            .collect();

        let shutdown_at = Utc::now();
        for node in &self.nodes {
            let _ = kill(Pid::from_raw(node.child.id() as i32), Signal::SIGTERM);
        }
        let nodes = std::mem::take(&mut self.nodes);
        for mut node in nodes {
            let status = terminate(&mut node.child, Duration::from_secs(20));
            if status.and_then(|status| status.code()) != Some(0) {
                self.failures.push(Finding {
                    check: "nodes keep running",
                    message: format!(
                        "serve {} did not exit 0 after SIGTERM ({status:?}):\n{}",
                        node.tag,
                        log_tail(&self.project.log(&node.tag))
                    ),
                });
            }
            self.retired.push(node);
        }
        let outlived = self.kill_job_groups();
        if !outlived.is_empty() {
            self.failures.push(Finding {
                check: "no job outlives its node",
                message: format!(
                    "job process groups still running after every node stopped (killed now): {outlived:?}"
                ),
            });
        }

        let ledger = self.project.ledger().await;
        let evidence = Evidence {
            schedules: vec![
                ScheduleUnderTest {
                    id: "tick",
                    cron: TICK_CRON,
                    forbid: true,
                    executions: read_executions(&self.project.path().join("tick.jobs")),
                },
                ScheduleUnderTest {
                    id: "slow",
                    cron: SLOW_CRON,
                    forbid: true,
                    executions: self.slow_executions(),
                },
            ],
            runs: self.all_runs().await,
            alerts: alert_rows(&ledger).await,
            instances: instance_rows(&ledger).await,
            drills: self.drills.clone(),
            undisturbed: self
                .retired
                .iter()
                .filter(|node| !node.disturbed)
                .map(|node| UndisturbedNode {
                    label: node.label.to_string(),
                    pid: i64::from(node.child.id()),
                })
                .collect(),
            stale_running,
            longest_job: Duration::from_secs_f64(SLOW_JOB),
            node_ttl: NODE_TTL,
            shutdown_at,
        };
        ledger.close().await;
        // The harness itself: a run with nothing to judge must not pass.
        for schedule in &evidence.schedules {
            let succeeded = evidence
                .runs
                .iter()
                .filter(|run| run.schedule_id == schedule.id && run.status == RunStatus::Succeeded)
                .count();
            assert!(
                succeeded >= 1 && schedule.executions.iter().any(|execution| execution.ended),
                "{}: the job never ran to its end ({succeeded} rows succeeded): nothing to check",
                schedule.id
            );
        }
        let mut findings = std::mem::take(&mut self.failures);
        findings.extend(check_all(&evidence));
        if !findings.is_empty() {
            panic!("{}", self.report(&findings));
        }
    }

    async fn all_runs(&self) -> Vec<Run> {
        let ledger = self.project.ledger().await;
        let runs = ledger
            .runs(&RunFilter {
                schedule_id: None,
                status: None,
                limit: 1_000_000,
            })
            .await
            .expect("runs");
        ledger.close().await;
        runs
    }

    /// Every broken guarantee, grouped by check, then what the nodes
    /// warned about.
    fn report(&self, findings: &[Finding]) -> String {
        const SHOWN: usize = 6;
        let mut checks: Vec<&str> = findings.iter().map(|finding| finding.check).collect();
        checks.dedup();
        checks.sort_unstable();
        checks.dedup();
        let mut report = format!(
            "BUG: {} broken guarantees in {} check(s). Drills:\n",
            findings.len(),
            checks.len()
        );
        for drill in &self.drills {
            report.push_str(&format!(
                "  {}–{} {}\n",
                checks::time(drill.started),
                checks::time(drill.recovered),
                drill.name
            ));
        }
        for check in checks {
            let of_check: Vec<&Finding> = findings
                .iter()
                .filter(|finding| finding.check == check)
                .collect();
            report.push_str(&format!("\n=== {check}: {} finding(s)\n", of_check.len()));
            for finding in of_check.iter().take(SHOWN) {
                report.push_str(&format!("- {}\n", finding.message));
            }
            if of_check.len() > SHOWN {
                report.push_str(&format!("… and {} more\n", of_check.len() - SHOWN));
            }
        }
        for node in &self.retired {
            let log = self.project.log(&node.tag);
            let warnings: Vec<&str> = log
                .lines()
                .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
                .collect();
            let from = warnings.len().saturating_sub(15);
            report.push_str(&format!(
                "\n--- serve-{}.log: last warnings and errors\n{}\n",
                node.tag,
                warnings[from..].join("\n")
            ));
        }
        report
    }

    /// Kills the job process groups still alive (only groups whose leader
    /// still names this project's folder); returns them.
    fn kill_job_groups(&self) -> Vec<i32> {
        let marker = self.project.path().display().to_string();
        let mut pgids: Vec<i32> = ["tick.jobs", "slow.jobs"]
            .iter()
            .flat_map(|file| read_executions(&self.project.path().join(file)))
            .map(|execution| execution.pgid)
            .collect();
        pgids.sort_unstable();
        pgids.dedup();
        pgids
            .into_iter()
            .filter(|pgid| {
                let cmdline = std::fs::read(format!("/proc/{pgid}/cmdline")).unwrap_or_default();
                String::from_utf8_lossy(&cmdline).contains(&marker) && group_alive(*pgid)
            })
            .inspect(|pgid| {
                let _ = killpg(Pid::from_raw(*pgid), Signal::SIGKILL);
            })
            .collect()
    }
}

fn log_tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

async fn alert_rows(ledger: &Ledger) -> Vec<AlertRow> {
    sqlx::query("SELECT alert_key, schedule_id, first_seen_at, resolved_at FROM alerts")
        .fetch_all(ledger.pool())
        .await
        .expect("alerts")
        .iter()
        .map(|row| AlertRow {
            key: row.get(0),
            schedule_id: row.get(1),
            first_seen_at: from_millis(row.get(2)),
            resolved_at: row.get::<Option<i64>, _>(3).map(from_millis),
        })
        .collect()
}

async fn instance_rows(ledger: &Ledger) -> Vec<InstanceRow> {
    sqlx::query("SELECT id, node, pid, stopped_at FROM instances")
        .fetch_all(ledger.pool())
        .await
        .expect("instances")
        .iter()
        .map(|row| InstanceRow {
            id: row.get(0),
            node: row.get(1),
            pid: row.get(2),
            stopped_at: row.get::<Option<i64>, _>(3).map(from_millis),
        })
        .collect()
}

/// The harness itself: with no drill, every check holds.
#[tokio::test]
async fn chaos_baseline_two_nodes_pass_every_check() {
    let mut chaos = Chaos::start().await;
    chaos.run_for(Duration::from_secs(25)).await;
    chaos.stop_and_check().await;
}

/// "kill -9 of the node running `slow`, restarted after 3 s" and "… after
/// 20 s" (0.2 and 1.33 × ttl).
#[tokio::test]
async fn chaos_kill_9_of_the_slow_node_restarted_early_and_late() {
    let mut chaos = Chaos::start().await;
    chaos.kill_9_slow_node_then_restart(ttl_times(0.2)).await;
    chaos.kill_9_slow_node_then_restart(ttl_times(1.33)).await;
    chaos.stop_and_check().await;
}

/// "SIGSTOP the `slow` node for 35 s, then SIGCONT" (2 × ttl), and "when
/// that node was later killed" (restarted after 1.33 × ttl).
#[tokio::test]
async fn chaos_sigstop_of_the_slow_node_for_two_ttls() {
    let mut chaos = Chaos::start().await;
    let frozen = chaos.freeze_slow_node(ttl_times(2.0)).await;
    chaos.kill_9_while_it_runs(frozen, ttl_times(1.33)).await;
    chaos.stop_and_check().await;
}

/// "PostgreSQL stopped for 12 s (< node_ttl)" and "… for 40 s" (0.8 and
/// 2.7 × ttl).
#[tokio::test]
async fn chaos_postgres_stopped_shorter_and_longer_than_ttl() {
    let mut chaos = Chaos::start().await;
    chaos.stop_postgres(ttl_times(0.8)).await;
    chaos.stop_postgres(ttl_times(2.7)).await;
    chaos.stop_and_check().await;
}

/// "Two nodes with the same `node:` name" on one host: the second is
/// refused at start, and the first runs on undisturbed.
#[tokio::test]
async fn chaos_a_second_node_with_a_live_label_is_refused() {
    let mut chaos = Chaos::start().await;
    chaos.start_a_twin_of(LABELS[0]).await;
    chaos.stop_and_check().await;
}
