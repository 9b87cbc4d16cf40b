//! Leases, takeovers and their fences, on SQLite and PostgreSQL.

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::*;
use crate::ledger::tests::{ledgers_for, registered};
use crate::ledger::{RunEnd, RunStatus, Trigger};

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 10, minute, 0).unwrap()
}

fn running_slot(schedule: &str, minute: u32) -> NewRun {
    NewRun {
        schedule_id: schedule.into(),
        job: "command".into(),
        scheduled_for: at(minute),
        attempt: 1,
        trigger: Trigger::Schedule,
        status: crate::ledger::RunStatus::Running,
        not_before: None,
        overrides: None,
        dry_run: false,
        force_overlap: false,
        error: None,
    }
}

fn retry_of(run: &Run) -> CrashFollowUp {
    let mut retry = running_slot(&run.schedule_id, 1);
    retry.scheduled_for = run.scheduled_for;
    retry.status = RunStatus::Pending;
    retry.attempt = run.attempt + 1;
    retry.trigger = Trigger::Retry;
    CrashFollowUp {
        retry: Some(retry),
        page: None,
    }
}

async fn stop_reason(ledger: &Ledger, id: &str) -> Option<String> {
    sqlx::query_scalar("SELECT stop_reason FROM instances WHERE id = $1")
        .bind(id)
        .fetch_one(ledger.pool())
        .await
        .unwrap()
}

/// An instance row as another process (on `host`, with `pid`) wrote it.
async fn foreign_instance(ledger: &Ledger, id: &str, node: &str, host: &str, pid: i64) {
    let here = HostIdentity::current();
    sqlx::query(
        "INSERT INTO instances (id, node, pid, role, started_at, heartbeat_at, host, boot_id, lease_until) \
         VALUES ($1, $2, $3, 'serve', $4, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(node)
    .bind(pid)
    .bind(to_millis(at(0)))
    .bind(host)
    .bind(here.boot_id)
    .bind(to_millis(at(0) + Duration::days(1)))
    .execute(ledger.pool())
    .await
    .unwrap();
}

/// A pid that no process has any more.
fn dead_pid() -> i64 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    i64::from(pid)
}

#[tokio::test]
async fn running_rows_of_an_instance_already_stopped_are_ended_with_their_retry() {
    for (_dir, ledger) in ledgers_for("patrol_lease_stuck_rows").await {
        // The drill: a node frozen, marked dead, woken, then killed: its
        // instance is stopped but a row of its stayed `running`.
        let gone = registered(&ledger, "gone").await;
        let id = ledger
            .insert_runs(&[running_slot("slow", 1)], &gone, at(1))
            .await
            .unwrap()[0]
            .unwrap();
        assert!(ledger
            .stop_instance(&gone, at(2), "marked dead")
            .await
            .unwrap());
        let alive = registered(&ledger, "alive").await;
        let dead = ledger
            .reap_dead_instances(&alive, at(3), Duration::minutes(5), true, &retry_of)
            .await
            .unwrap();
        assert_eq!(dead.len(), 1, "{:?}", ledger.backend());
        let run = ledger.run(id).await.unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Crashed);
        let error = run.error.unwrap_or_default();
        assert!(
            error.contains("already stopped") && error.contains("marked dead"),
            "{error}"
        );
        let pending = ledger.claim_pending(&alive, at(4), 10).await.unwrap();
        assert_eq!(pending.len(), 1, "the retry was enqueued with the crash");
        assert_eq!(pending[0].attempt, 2);
    }
}

#[tokio::test]
async fn a_node_taken_over_writes_nothing_for_its_runs() {
    for (_dir, ledger) in ledgers_for("patrol_lease_fenced_end").await {
        let frozen = registered(&ledger, "frozen").await;
        let id = ledger
            .insert_runs(&[running_slot("slow", 1)], &frozen, at(1))
            .await
            .unwrap()[0]
            .unwrap();
        assert!(ledger
            .stop_instance(&frozen, at(2), "marked dead by b")
            .await
            .unwrap());
        let end = RunEnd {
            status: RunStatus::Succeeded,
            summary: Some("exit 0".into()),
            output: None,
            details: None,
            error: None,
        };
        assert!(
            !ledger
                .finish_run(id, "frozen", &end, None, None, &[], at(3))
                .await
                .unwrap(),
            "{:?}: a taken-over node recorded a run's end",
            ledger.backend()
        );
        assert_eq!(
            ledger
                .renew_lease(&frozen, at(3), Duration::minutes(5))
                .await
                .unwrap(),
            Renewal::Taken {
                reason: Some("marked dead by b".into())
            }
        );
        // Nor may it claim anything.
        let mut pending = running_slot("other", 2);
        pending.status = RunStatus::Pending;
        let pending_id = ledger.enqueue(&pending, at(3)).await.unwrap().unwrap();
        assert!(ledger
            .claim_one(pending_id, &frozen, at(3))
            .await
            .unwrap()
            .is_none());
    }
}

#[tokio::test]
async fn a_clean_stop_keeps_the_record_of_being_marked_dead() {
    for (_dir, ledger) in ledgers_for("patrol_lease_stop_kept").await {
        let frozen = registered(&ledger, "frozen").await;
        sqlx::query("UPDATE instances SET lease_until = $1 WHERE id = 'frozen'")
            .bind(to_millis(at(1)))
            .execute(ledger.pool())
            .await
            .unwrap();
        let alive = registered(&ledger, "alive").await;
        let dead = ledger
            .reap_dead_instances(&alive, at(5), Duration::minutes(1), true, &retry_of)
            .await
            .unwrap();
        assert_eq!(dead.len(), 1, "{:?}", ledger.backend());
        let verdict = stop_reason(&ledger, "frozen").await.unwrap_or_default();
        assert!(
            verdict.contains("marked dead by node-a (alive)"),
            "{verdict}"
        );
        let stopped_at: i64 =
            sqlx::query_scalar("SELECT stopped_at FROM instances WHERE id = 'frozen'")
                .fetch_one(ledger.pool())
                .await
                .unwrap();
        assert!(!ledger
            .stop_instance(&frozen, at(9), "shut down cleanly")
            .await
            .unwrap());
        assert_eq!(
            stop_reason(&ledger, "frozen").await.unwrap_or_default(),
            verdict
        );
        let kept: i64 = sqlx::query_scalar("SELECT stopped_at FROM instances WHERE id = 'frozen'")
            .fetch_one(ledger.pool())
            .await
            .unwrap();
        assert_eq!(kept, stopped_at, "the time it was marked dead is kept");
    }
}

#[tokio::test]
async fn a_lease_renewed_in_time_is_not_taken() {
    for (_dir, ledger) in ledgers_for("patrol_lease_renewed").await {
        let node = Instance {
            id: "b".into(),
            node: "node-b".into(),
        };
        ledger
            .register_instance(&node, "serve", at(0), Duration::seconds(60))
            .await
            .unwrap();
        assert_eq!(
            ledger
                .renew_lease(&node, at(0) + Duration::seconds(50), Duration::seconds(60))
                .await
                .unwrap(),
            Renewal::Renewed
        );
        let alive = registered(&ledger, "alive").await;
        let late = at(1) + Duration::seconds(40);
        assert!(ledger
            .reap_dead_instances(&alive, late, Duration::seconds(60), true, &retry_of)
            .await
            .unwrap()
            .is_empty());
        // Not judging leases (this node's own are not steady): nothing
        // expired is taken either.
        assert!(ledger
            .reap_dead_instances(&alive, at(30), Duration::seconds(60), false, &retry_of)
            .await
            .unwrap()
            .is_empty());
        assert!(ledger
            .reap_dead_instances(&alive, at(30), Duration::seconds(60), true, &retry_of)
            .await
            .unwrap()
            .iter()
            .any(|dead| dead.id == "b"));
    }
}

#[tokio::test]
async fn a_pid_is_checked_only_on_the_host_that_has_it() {
    for (_dir, ledger) in ledgers_for("patrol_lease_hosts").await {
        let here = HostIdentity::current();
        let pid = dead_pid();
        // Same label, another host: that pid means nothing here.
        foreign_instance(&ledger, "elsewhere", "node-a", "some-other-host", pid).await;
        foreign_instance(&ledger, "here", "node-z", &here.host, pid).await;
        let alive = registered(&ledger, "alive").await;
        let dead = ledger
            .reap_dead_instances(&alive, at(1), Duration::seconds(15), false, &retry_of)
            .await
            .unwrap();
        let ids: Vec<&str> = dead.iter().map(|dead| dead.id.as_str()).collect();
        assert_eq!(ids, ["here"], "{:?}", ledger.backend());
        assert!(dead[0].reason.contains("died"), "{}", dead[0].reason);
    }
}

#[tokio::test]
async fn a_second_serve_with_one_label_on_one_host_is_refused() {
    for (_dir, ledger) in ledgers_for("patrol_lease_twins").await {
        let here = HostIdentity::current();
        let mut other = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        foreign_instance(
            &ledger,
            "first",
            "node-a",
            &here.host,
            i64::from(other.id()),
        )
        .await;
        let twin = Instance {
            id: "second".into(),
            node: "node-a".into(),
        };
        let refused = ledger
            .register_instance(&twin, "serve", at(1), Duration::seconds(15))
            .await;
        let message = format!("{:#}", refused.unwrap_err());
        assert!(
            message.contains("node `node-a`") && message.contains(&other.id().to_string()),
            "{message}"
        );
        // Another label, or a manual run under the same one, is fine.
        let sibling = Instance {
            id: "third".into(),
            node: "node-b".into(),
        };
        ledger
            .register_instance(&sibling, "serve", at(1), Duration::seconds(15))
            .await
            .unwrap();
        ledger
            .register_instance(&twin, "cli", at(1), Duration::seconds(15))
            .await
            .unwrap();
        other.kill().unwrap();
        other.wait().unwrap();
    }
}

/// Nodes' clocks disagree; the database's decides who is alive.
#[tokio::test]
async fn leases_are_judged_on_the_database_clock() {
    let server = std::env::var("PATROL_TEST_POSTGRES_URL").expect(
        "PATROL_TEST_POSTGRES_URL is not set: run the suite with scripts/test.sh, which starts PostgreSQL",
    );
    let url = crate::ledger::create_scratch_postgres_database(&server, "patrol_lease_db_clock")
        .await
        .unwrap();
    let ledger = Ledger::connect(&url).await.unwrap();
    // Node b's clock is ten minutes slow; a's is right.
    let slow = Utc::now() - Duration::minutes(10);
    let b = Instance {
        id: "b".into(),
        node: "node-b".into(),
    };
    ledger
        .register_instance(&b, "serve", slow, Duration::seconds(15))
        .await
        .unwrap();
    ledger
        .renew_lease(&b, slow, Duration::seconds(15))
        .await
        .unwrap();
    let a = Instance {
        id: "a".into(),
        node: "node-a".into(),
    };
    ledger
        .register_instance(&a, "serve", Utc::now(), Duration::seconds(15))
        .await
        .unwrap();
    assert!(ledger
        .live_server(Some(&a), Utc::now(), Duration::seconds(15))
        .await
        .unwrap());
    let dead = ledger
        .reap_dead_instances(&a, Utc::now(), Duration::seconds(15), true, &retry_of)
        .await
        .unwrap();
    assert!(
        dead.is_empty(),
        "a live node with a slow clock was reaped: {dead:?}"
    );
    // And its lease does run out on that clock.
    sqlx::query("UPDATE instances SET lease_until = lease_until - 16000 WHERE id = 'b'")
        .execute(ledger.pool())
        .await
        .unwrap();
    let dead = ledger
        .reap_dead_instances(&a, Utc::now(), Duration::seconds(15), true, &retry_of)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
}
