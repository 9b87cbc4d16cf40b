//! The README's run command on a fresh clone: the shipped schedules over the
//! shipped fixtures fire and are recorded within a minute, and succeed.

use std::time::Duration;

use patrol::ledger::{Ledger, RunFilter, RunStatus};

use crate::support::{patrol_bin, shipped_checkout, stderr, terminate};

#[test]
fn shipped_schedules_are_valid() {
    // A checkout whose patrol.yaml pins this build of the residency plugin,
    // as the README's set-up leaves it.
    let dir = tempfile::tempdir().unwrap();
    shipped_checkout(dir.path());
    let output = std::process::Command::new(patrol_bin())
        .arg("validate")
        .current_dir(dir.path())
        .env_remove("PATROL_DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[tokio::test]
async fn defaults_record_fires_within_a_minute() {
    // A copy of the clone's schedules and fixtures, with a patrol.yaml that
    // only pins the residency plugin: the embedded defaults (./patrol.db,
    // ./schedules) apply.
    let dir = tempfile::tempdir().unwrap();
    shipped_checkout(dir.path());
    let mut server = std::process::Command::new(patrol_bin())
        .arg("serve")
        .current_dir(dir.path())
        .env_remove("PATROL_DATABASE_URL")
        .env_remove("PATROL_CONFIG")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let database = format!("sqlite://{}", dir.path().join("patrol.db").display());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !dir.path().join("patrol.db").exists() {
            continue;
        }
        let ledger = Ledger::connect(&database).await.unwrap();
        seen = ledger
            .runs(&RunFilter {
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        ledger.close().await;
        let done = |id: &str| {
            seen.iter()
                .any(|r| r.schedule_id == id && r.status == RunStatus::Succeeded)
        };
        if done("heartbeat") && done("fixtures-integrity") {
            break;
        }
    }
    assert_eq!(
        terminate(&mut server, Duration::from_secs(10)).and_then(|s| s.code()),
        Some(0)
    );
    for id in ["heartbeat", "fixtures-integrity"] {
        assert!(
            seen.iter()
                .any(|r| r.schedule_id == id && r.status == RunStatus::Succeeded),
            "{id} did not succeed within a minute: {seen:#?}"
        );
    }
    assert!(
        seen.iter().all(|r| r.status != RunStatus::Failed),
        "{seen:#?}"
    );
}

/// The shipped fixtures-integrity schedule on the console defaults: a
/// tampered fixture pages (one alert per file, with its runbook), and
/// restoring the file resolves it.
#[test]
fn a_tampered_fixture_pages_on_the_console_and_resolves_when_restored() {
    let dir = tempfile::tempdir().unwrap();
    shipped_checkout(dir.path());
    let readme = dir.path().join("fixtures/README.md");
    let original = std::fs::read(&readme).unwrap();
    std::fs::write(&readme, b"tampered\n").unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(patrol_bin())
            .args(args)
            .current_dir(dir.path())
            .env_remove("PATROL_DATABASE_URL")
            .env_remove("PATROL_CONFIG")
            .output()
            .unwrap()
    };
    let tampered = run(&["run", "fixtures-integrity", "--wait"]);
    let out = String::from_utf8_lossy(&tampered.stdout).into_owned();
    assert_eq!(
        tampered.status.code(),
        Some(1),
        "{out}{}",
        stderr(&tampered)
    );
    assert!(
        out.contains(
            "[console] TRIGGER error fixtures-integrity/README.md: Fixture README.md changed"
        ),
        "{out}"
    );
    std::fs::write(&readme, original).unwrap();
    let restored = run(&["run", "fixtures-integrity", "--wait"]);
    let out = String::from_utf8_lossy(&restored.stdout).into_owned();
    assert_eq!(restored.status.code(), Some(0), "{out}");
    assert!(
        out.contains("[console] RESOLVE error fixtures-integrity/README.md"),
        "{out}"
    );
    let alerts = run(&["alerts", "--json"]);
    let alerts: serde_json::Value = serde_json::from_slice(&alerts.stdout).unwrap();
    assert_eq!(alerts[0]["status"], "resolved");
}
