//! Jobs are built once per config load: relative paths in params resolve
//! against patrol.yaml's folder, rules naming a runbook that does not
//! exist are refused at validate, and a rules file broken under a running
//! `serve` keeps the last good build instead of failing every run.

use std::time::Duration;

use patrol::ledger::RunStatus;

use super::support::{
    anomaly_inputs, patrol_bin, stderr, stdout, terminate, Db, Project, EXPORT_RULES,
};

/// An anomaly schedule whose rules and events are named relative to the
/// project (patrol.yaml's folder).
fn anomaly_project(project: &Project, cron: &str) {
    anomaly_inputs(project);
    project.schedule(
        "anomaly.yaml",
        &format!(
            "id: audit\njob: anomaly\ncron: \"{cron}\"\noverlap: forbid\nparams:\n  rules: rules.yaml\n  sources:\n    - {{kind: files, name: audit, path: events}}\n"
        ),
    );
}

/// `patrol --config PROJECT/patrol.yaml validate`, run from another folder.
fn validate_from_elsewhere(project: &Project) -> std::process::Output {
    let elsewhere = tempfile::tempdir().unwrap();
    std::process::Command::new(patrol_bin())
        .arg("--config")
        .arg(project.path().join("patrol.yaml"))
        .arg("validate")
        .current_dir(elsewhere.path())
        .env_remove("PATROL_DATABASE_URL")
        .env_remove("PATROL_CONFIG")
        .output()
        .unwrap()
}

#[tokio::test]
async fn params_paths_resolve_against_the_config_folder_and_rules_name_existing_runbooks() {
    let project = Project::new(Db::Sqlite, "").await;
    anomaly_project(&project, "0 * * * *");
    let ok = validate_from_elsewhere(&project);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "rules.yaml and events/ are next to patrol.yaml: {}",
        stderr(&ok)
    );

    // A rule naming a runbook with no file in runbooks/ is refused, with
    // the rule and the runbook named.
    std::fs::write(
        project.path().join("rules.yaml"),
        format!("{EXPORT_RULES}    runbook: export-spike\n"),
    )
    .unwrap();
    let refused = validate_from_elsewhere(&project);
    assert_eq!(refused.status.code(), Some(2), "{}", stdout(&refused));
    let errors = stderr(&refused);
    assert!(
        errors.contains("anomaly.yaml")
            && errors.contains("params.rules")
            && errors.contains("rule `export-spike`: runbook `export-spike` does not exist"),
        "{errors}"
    );

    std::fs::create_dir_all(project.path().join("runbooks")).unwrap();
    std::fs::write(
        project.path().join("runbooks/export-spike.md"),
        "# Export spike\n",
    )
    .unwrap();
    let fixed = validate_from_elsewhere(&project);
    assert_eq!(fixed.status.code(), Some(0), "{}", stderr(&fixed));
}

#[tokio::test]
async fn a_broken_rules_file_keeps_the_last_good_build_until_it_is_fixed() {
    let project = Project::new(Db::Sqlite, "").await;
    anomaly_project(&project, "* * * * * *");
    let mut server = project.serve("a");
    project.wait_until_serving("a").await;
    let succeeded = |runs: &[patrol::ledger::Run]| {
        runs.iter()
            .filter(|run| run.status == RunStatus::Succeeded)
            .count()
    };
    let runs = project
        .wait_for_runs("audit", Duration::from_secs(20), |runs| {
            succeeded(runs) >= 1
        })
        .await;
    assert!(succeeded(&runs) >= 1, "{}", project.log("a"));

    // Broken under the running server: reported, and the runs go on with
    // the rules read before.
    std::fs::write(project.path().join("rules.yaml"), "rules: [ {id: \n").unwrap();
    project
        .wait_for_log("a", Duration::from_secs(10), |log| {
            log.contains("keeping the last good set") && log.contains("rules.yaml")
        })
        .await;
    let broken_at = project.runs("audit").await.len();
    let runs = project
        .wait_for_runs("audit", Duration::from_secs(20), |runs| {
            runs.len() >= broken_at + 3
        })
        .await;
    let after: Vec<_> = runs[broken_at..]
        .iter()
        .filter(|run| run.status.is_terminal())
        .collect();
    assert!(after.len() >= 2, "{}", project.log("a"));
    assert!(
        after.iter().all(|run| run.status == RunStatus::Succeeded),
        "runs failed on the broken file: {:?}\n{}",
        after
            .iter()
            .map(|run| (&run.status, &run.summary))
            .collect::<Vec<_>>(),
        project.log("a")
    );

    // Fixed: the new rules are built and applied.
    let reloads = |log: &str| log.matches("schedules reloaded").count();
    let applied = reloads(&project.log("a"));
    std::fs::write(
        project.path().join("rules.yaml"),
        EXPORT_RULES.replace("10m", "15m"),
    )
    .unwrap();
    project
        .wait_for_log("a", Duration::from_secs(10), |log| reloads(log) > applied)
        .await;
    assert!(reloads(&project.log("a")) > applied, "{}", project.log("a"));
    terminate(&mut server, Duration::from_secs(10));
}
