//! The ledger's queries, run against both SQLite and a real PostgreSQL.

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::json;

use super::*;

/// One ledger per backend. PostgreSQL comes from the server that
/// `scripts/test.sh` starts (`PATROL_TEST_POSTGRES_URL`).
async fn ledgers() -> Vec<(tempfile::TempDir, Ledger)> {
    ledgers_for("patrol_ledger_test").await
}

/// An SQLite ledger in a fresh folder and a fresh PostgreSQL database
/// called `database`, for tests elsewhere in the crate.
pub(crate) async fn ledgers_for(database: &str) -> Vec<(tempfile::TempDir, Ledger)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Ledger::connect(&format!("sqlite://{}", dir.path().join("l.db").display()))
        .await
        .unwrap();
    let server = std::env::var("PATROL_TEST_POSTGRES_URL").expect(
        "PATROL_TEST_POSTGRES_URL is not set: run the suite with scripts/test.sh, which starts PostgreSQL",
    );
    let url = create_scratch_postgres_database(&server, database)
        .await
        .unwrap();
    // These tests pass their own times; leases follow them.
    let postgres = Ledger::connect(&url)
        .await
        .unwrap()
        .with_lease_clock(LeaseClock::Caller);
    vec![(dir, sqlite), (tempfile::tempdir().unwrap(), postgres)]
}

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 10, minute, 0).unwrap()
}

fn me(id: &str) -> Instance {
    Instance {
        id: id.into(),
        node: "node-a".into(),
    }
}

/// `me(id)`, registered with a lease that outlasts the test's times.
pub(crate) async fn registered(ledger: &Ledger, id: &str) -> Instance {
    let instance = me(id);
    ledger
        .register_instance(&instance, "serve", at(0), Duration::days(1))
        .await
        .unwrap();
    instance
}

fn slot(schedule: &str, minute: u32, status: RunStatus) -> NewRun {
    NewRun {
        schedule_id: schedule.into(),
        job: "command".into(),
        scheduled_for: at(minute),
        attempt: 1,
        trigger: Trigger::Schedule,
        status,
        not_before: None,
        overrides: Some(json!({"program": "true"})),
        dry_run: false,
        force_overlap: false,
        error: None,
    }
}

#[tokio::test]
async fn a_slot_is_claimed_once_whoever_asks() {
    for (_dir, ledger) in ledgers().await {
        let first = ledger
            .insert_runs(
                &[
                    slot("a", 1, RunStatus::Running),
                    slot("b", 1, RunStatus::Running),
                ],
                &me("i1"),
                at(1),
            )
            .await
            .unwrap();
        assert!(first.iter().all(Option::is_some), "{:?}", ledger.backend());
        let second = ledger
            .insert_runs(
                &[
                    slot("a", 1, RunStatus::Running),
                    slot("a", 2, RunStatus::Running),
                ],
                &me("i2"),
                at(2),
            )
            .await
            .unwrap();
        assert_eq!(
            second[0],
            None,
            "{:?}: slot a@1 claimed twice",
            ledger.backend()
        );
        assert!(second[1].is_some());
        let run = ledger.run(first[0].unwrap()).await.unwrap().unwrap();
        assert_eq!(run.instance_id.as_deref(), Some("i1"));
        assert_eq!(run.status, RunStatus::Running);
        assert_eq!(run.overrides, Some(json!({"program": "true"})));
        assert_eq!(run.params, serde_json::Value::Null, "no params copy");
    }
}

#[tokio::test]
async fn large_batches_are_written_whole() {
    for (_dir, ledger) in ledgers().await {
        let runs: Vec<NewRun> = (0..1500)
            .map(|n| slot(&format!("s{n}"), 5, RunStatus::Running))
            .collect();
        let ids = ledger.insert_runs(&runs, &me("i1"), at(5)).await.unwrap();
        assert_eq!(ids.iter().flatten().count(), 1500, "{:?}", ledger.backend());
    }
}

#[tokio::test]
async fn job_state_is_written_with_the_run_end_and_read_back_per_schedule() {
    use patrol_job_api::{StateRead, StateWrite};

    for (_dir, ledger) in ledgers().await {
        let end = RunEnd {
            status: RunStatus::Succeeded,
            summary: None,
            output: None,
            details: None,
            error: None,
        };
        let run_of = |schedule: &str, minute: u32| slot(schedule, minute, RunStatus::Running);
        let ids = ledger
            .insert_runs(
                &[run_of("a", 1), run_of("b", 1), run_of("a", 2)],
                &registered(&ledger, "i").await,
                at(1),
            )
            .await
            .unwrap();
        let (a1, b1, a2) = (ids[0].unwrap(), ids[1].unwrap(), ids[2].unwrap());
        // 1,000 chains in one run: several statements, each under the bind limits.
        let mut writes: Vec<StateWrite> = (0..1000)
            .map(|n| StateWrite::put(format!("chain/{n:04}"), format!("v{n}").into_bytes()))
            .collect();
        writes.push(StateWrite::put("cursor", b"10".to_vec()));
        writes.push(StateWrite::put("cursor", b"20".to_vec()));
        assert!(ledger
            .finish_run(a1, "i", &end, None, None, &writes, at(2))
            .await
            .unwrap());
        let other = [StateWrite::put("cursor", b"other".to_vec())];
        ledger
            .finish_run(b1, "i", &end, None, None, &other, at(2))
            .await
            .unwrap();

        let a = ScheduleStateStore::new(ledger.clone(), "a");
        let got = a
            .get_many(&["cursor".into(), "chain/0007".into(), "nope".into()])
            .await
            .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got["cursor"], b"20", "the last write of a key wins");
        assert_eq!(got["chain/0007"], b"v7");
        let page = a.scan("chain/", Some("chain/0997"), 10).await.unwrap();
        let keys: Vec<&str> = page.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(keys, ["chain/0998", "chain/0999"]);
        assert_eq!(a.scan("chain/", None, 5000).await.unwrap().len(), 1000);
        assert!(a.scan("cursor/", None, 10).await.unwrap().is_empty());

        // Deletes and a settled run's writes.
        let next = [
            StateWrite::delete("chain/0007"),
            StateWrite::put("cursor", b"30".to_vec()),
        ];
        ledger
            .finish_run(a2, "i", &end, None, None, &next, at(3))
            .await
            .unwrap();
        assert!(!ledger
            .finish_run(
                a2,
                "i",
                &end,
                None,
                None,
                &[StateWrite::put("cursor", b"late".to_vec())],
                at(4)
            )
            .await
            .unwrap());
        let got = a
            .get_many(&["cursor".into(), "chain/0007".into()])
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            got["cursor"], b"30",
            "a run settled elsewhere writes nothing"
        );
        let b = ScheduleStateStore::new(ledger.clone(), "b");
        assert_eq!(
            b.get_many(&["cursor".into()]).await.unwrap()["cursor"],
            b"other"
        );
    }
}

#[tokio::test]
async fn finishing_a_run_writes_its_retry_atomically() {
    for (_dir, ledger) in ledgers().await {
        let id = ledger
            .insert_runs(
                &[slot("a", 1, RunStatus::Running)],
                &registered(&ledger, "i1").await,
                at(1),
            )
            .await
            .unwrap()[0]
            .unwrap();
        let mut retry = slot("a", 1, RunStatus::Pending);
        retry.attempt = 2;
        retry.trigger = Trigger::Retry;
        retry.not_before = Some(at(3));
        let end = RunEnd {
            status: RunStatus::Failed,
            summary: Some("exit 1".into()),
            output: None,
            details: None,
            error: None,
        };
        assert!(ledger
            .finish_run(id, "i1", &end, Some(&retry), None, &[], at(2))
            .await
            .unwrap());
        // A second finish (e.g. after a reaper) changes nothing.
        assert!(!ledger
            .finish_run(id, "i1", &end, None, None, &[], at(2))
            .await
            .unwrap());

        assert!(
            ledger
                .claim_pending(&me("i1"), at(2), 10)
                .await
                .unwrap()
                .is_empty(),
            "retry claimed before its backoff"
        );
        let claimed = ledger
            .claim_pending(&registered(&ledger, "i2").await, at(3), 10)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(
            (claimed[0].attempt, claimed[0].trigger),
            (2, Trigger::Retry)
        );
        assert!(
            ledger
                .claim_pending(&registered(&ledger, "i3").await, at(3), 10)
                .await
                .unwrap()
                .is_empty(),
            "claimed twice"
        );
    }
}

#[tokio::test]
async fn dead_instances_leave_crashed_runs_and_retries() {
    for (_dir, ledger) in ledgers().await {
        let dead = me("dead");
        ledger
            .register_instance(&dead, "serve", at(0), Duration::minutes(5))
            .await
            .unwrap();
        let id = ledger
            .insert_runs(&[slot("a", 1, RunStatus::Running)], &dead, at(1))
            .await
            .unwrap()[0]
            .unwrap();
        let alive = me("alive");
        ledger
            .register_instance(&alive, "serve", at(1), Duration::minutes(5))
            .await
            .unwrap();
        let retry_of = |run: &Run| {
            let mut retry = slot(&run.schedule_id, 1, RunStatus::Pending);
            retry.attempt = run.attempt + 1;
            retry.trigger = Trigger::Retry;
            CrashFollowUp {
                retry: Some(retry),
                page: None,
            }
        };
        // Within the TTL nothing is reaped (the dead instance's pid is ours, alive).
        let reaped = ledger
            .reap_dead_instances(&alive, at(1), Duration::minutes(5), true, &retry_of)
            .await
            .unwrap();
        assert!(reaped.is_empty());
        let reaped = ledger
            .reap_dead_instances(&alive, at(10), Duration::minutes(5), true, &retry_of)
            .await
            .unwrap();
        assert_eq!(reaped.len(), 1);
        assert_eq!(reaped[0].crashed_runs[0].id, id);
        let run = ledger.run(id).await.unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Crashed);
        assert!(run.error.unwrap().contains("did not renew its lease"));
        let pending = ledger
            .runs(&RunFilter {
                status: Some(RunStatus::Pending),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].attempt, 2);
    }
}

#[tokio::test]
async fn a_crashed_run_out_of_retries_raises_its_alert_with_the_crash() {
    use crate::alerting::config::{AlertingConfig, AlertingSpec};
    use crate::alerting::policy::AlertPolicy;
    use crate::alerting::record::CrashPage;
    use patrol_job_api::{Finding, Severity};

    for (_dir, ledger) in ledgers().await {
        let dead = me("dead");
        ledger
            .register_instance(&dead, "serve", at(0), Duration::minutes(5))
            .await
            .unwrap();
        let id = ledger
            .insert_runs(&[slot("a", 1, RunStatus::Running)], &dead, at(1))
            .await
            .unwrap()[0]
            .unwrap();
        let policy = std::sync::Arc::new(AlertPolicy::new(
            &AlertingConfig::check(AlertingSpec::default(), std::path::Path::new(""), None)
                .unwrap(),
        ));
        let follow_up = |run: &Run| CrashFollowUp {
            retry: None,
            page: Some(
                CrashPage {
                    policy: policy.clone(),
                    finding: Finding::new(
                        format!("patrol/run-failed/{}", run.schedule_id),
                        Severity::Error,
                        "a crashed",
                    ),
                    named_route: None,
                    node: "alive-node".into(),
                }
                .of(run),
            ),
        };
        let reaped = ledger
            .reap_dead_instances(&me("alive"), at(10), Duration::minutes(5), true, &follow_up)
            .await
            .unwrap();
        assert_eq!(reaped[0].crashed_runs[0].id, id);
        let open = ledger.alerts(true, 10).await.unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].key, "patrol/run-failed/a");
        let deliveries: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE action = 'trigger'")
                .fetch_one(ledger.pool())
                .await
                .unwrap();
        assert_eq!(deliveries, 1, "paged on the console notifier");
    }
}

#[tokio::test]
async fn last_slots_pause_state_and_pruning() {
    for (_dir, ledger) in ledgers().await {
        let runs: Vec<NewRun> = (1..=9).map(|m| slot("a", m, RunStatus::Skipped)).collect();
        ledger.insert_runs(&runs, &me("i"), at(10)).await.unwrap();
        let slots = ledger.last_slots().await.unwrap();
        assert_eq!(slots["a"], at(9));

        ledger.set_paused("a", true, "ops", at(11)).await.unwrap();
        assert!(ledger.schedule_states().await.unwrap()["a"].paused);
        ledger.set_paused("a", false, "ops", at(12)).await.unwrap();
        assert!(!ledger.schedule_states().await.unwrap()["a"].paused);

        let deleted = ledger.prune("a", Some(3), None).await.unwrap();
        assert_eq!(deleted, 6);
        let left = ledger
            .runs(&RunFilter {
                schedule_id: Some("a".into()),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            left.iter().map(|r| r.scheduled_for).collect::<Vec<_>>(),
            vec![at(9), at(8), at(7)]
        );
        // Age pruning keeps the newest row whatever its age.
        ledger.prune("a", None, Some(at(59))).await.unwrap();
        let left = ledger
            .runs(&RunFilter {
                schedule_id: Some("a".into()),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(ledger.last_slots().await.unwrap()["a"], at(9));
    }
}

#[test]
fn passwords_are_redacted_from_urls() {
    assert_eq!(
        redact_url("postgres://u:secret@h:5432/db"),
        "postgres://u:***@h:5432/db"
    );
    assert_eq!(redact_url("sqlite://patrol.db"), "sqlite://patrol.db");
    assert_eq!(
        redact_url("postgres://u@h/db?sslmode=require&password=secret"),
        "postgres://u@h/db?sslmode=require&password=[redacted]"
    );
}

#[test]
fn a_scratch_database_is_reached_with_the_servers_tls_settings() {
    assert_eq!(
        database_url(
            "postgres://u@h:5432/postgres?sslmode=verify-full&sslrootcert=/etc/pg/ca.pem",
            "scratch"
        )
        .unwrap(),
        "postgres://u@h:5432/scratch?sslmode=verify-full&sslrootcert=/etc/pg/ca.pem"
    );
    assert_eq!(
        database_url("postgres://u@h:5432/postgres", "scratch").unwrap(),
        "postgres://u@h:5432/scratch"
    );
}
