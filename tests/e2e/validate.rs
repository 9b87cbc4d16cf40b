//! `patrol validate` on broken input: every mistake reported with
//! file:line and field, all at once, exit 2. The cases are files in
//! tests/data/invalid_schedules/, each naming its expected message in a
//! `# expect:` comment, so a new case is a new file.

use std::path::PathBuf;

use crate::support::{patrol, stderr, stdout, Db, Project};

fn cases_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/invalid_schedules")
}

#[test]
fn every_broken_file_is_reported_with_file_line_and_field() {
    let dir = cases_dir();
    let output = patrol(&dir, &["validate", "."]);
    assert_eq!(output.status.code(), Some(2), "stdout: {}", stdout(&output));
    let report = stderr(&output);
    let mut expectations = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let Some(expected) = text
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("# expect: "))
        else {
            continue;
        };
        expectations += 1;
        assert!(
            report
                .lines()
                .any(|line| line.starts_with(&format!("./{expected}"))),
            "no line starting with `./{expected}` in:\n{report}"
        );
    }
    assert!(expectations >= 15, "only {expectations} cases found");
    // One line per problem plus the count; nothing more, nothing less.
    assert!(
        report.contains(&format!("{expectations} errors found")),
        "{report}"
    );
}

#[test]
fn a_valid_folder_passes_and_says_how_many() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ok.yaml"),
        "- id: a\n  job: command\n  cron: \"@hourly\"\n  params: {program: \"true\"}\n- id: b\n  job: command\n  cron: \"*/5 * * * *\"\n  timezone: Australia/Lord_Howe\n  params: {shell: \"echo hi\"}\n",
    )
    .unwrap();
    let output = patrol(dir.path(), &["validate", "ok.yaml"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output).trim(), "ok: 2 schedules valid");
}

#[tokio::test]
async fn a_bad_patrol_yaml_is_reported_with_the_schedules() {
    let project = Project::new(Db::Sqlite, "retention: forever\n").await;
    project.schedule("x.yaml", "id: x\njob: command\ncron: \"@daily\"\ntimezone: Nowhere/Land\nparams: {program: \"true\"}\n");
    let output = project.patrol(&["validate", "--json"]);
    assert_eq!(output.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let errors = report["errors"].as_array().unwrap();
    let messages: Vec<String> = errors
        .iter()
        .map(|e| {
            format!(
                "{}:{}: {}",
                e["file"].as_str().unwrap(),
                e["line"],
                e["message"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("patrol.yaml:4: unknown field `retention`")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("x.yaml:4: unknown timezone `Nowhere/Land`")),
        "{messages:?}"
    );
}

#[test]
fn serve_refuses_to_start_on_invalid_schedules() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("schedules")).unwrap();
    std::fs::write(
        dir.path().join("schedules/bad.yaml"),
        "id: bad\njob: command\ncron: \"* * *\"\n",
    )
    .unwrap();
    let output = patrol(dir.path(), &["serve"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("bad.yaml:3:1: cron:"),
        "{}",
        stderr(&output)
    );
    assert!(
        !dir.path().join("patrol.db").exists(),
        "a ledger was created before the config was checked"
    );
}

/// tests/data/invalid_config: a patrol.yaml with one mistake per notifier,
/// route and window (each named in an `# expect:` line) and a schedule
/// naming an unknown route: all reported at once, located, exit 2, and the
/// inline secret never echoed.
#[test]
fn every_alerting_mistake_in_patrol_yaml_is_reported_with_line_and_field() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/invalid_config");
    let config = std::fs::read_to_string(dir.join("patrol.yaml")).unwrap();
    let expected: Vec<&str> = config
        .lines()
        .filter_map(|line| line.strip_prefix("# expect: "))
        .collect();
    assert!(expected.len() >= 10, "{expected:?}");
    let output = std::process::Command::new(crate::support::patrol_bin())
        .arg("validate")
        .current_dir(&dir)
        .env_remove("PATROL_TEST_MISSING_SLACK_TOKEN")
        .env_remove("PATROL_CONFIG")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    let report = stderr(&output);
    for prefix in &expected {
        assert!(
            report.lines().any(|line| line.starts_with(prefix)),
            "no line starting with `{prefix}` in:\n{report}"
        );
    }
    assert!(
        report.contains(&format!("{} errors found", expected.len())),
        "{report}"
    );
    assert!(!report.contains("hunter2"), "the inline secret was echoed");
}
