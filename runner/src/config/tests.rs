use std::path::Path;

use super::*;
use crate::registry::{JobBuild, JobRegistry};

fn check(source: &str) -> Vec<String> {
    let registry = JobRegistry::builtin();
    schedules_in_file(Path::new("s.yaml"), source, &JobBuild::here(registry))
        .into_iter()
        .flat_map(|result| result.err().unwrap_or_default())
        .map(|d| d.to_string())
        .collect()
}

const GOOD: &str = "id: nightly\njob: command\ncron: \"0 3 * * *\"\nparams:\n  program: \"true\"\n";

#[test]
fn a_good_schedule_loads_with_defaults() {
    let registry = JobRegistry::builtin();
    let results = schedules_in_file(Path::new("s.yaml"), GOOD, &JobBuild::here(registry));
    let schedule = results.into_iter().next().unwrap().unwrap();
    assert_eq!(schedule.id, "nightly");
    assert_eq!(schedule.timezone, chrono_tz::UTC);
    assert_eq!(schedule.overlap, Overlap::Forbid);
    assert_eq!(schedule.source.line, 1);
}

#[test]
fn each_mistake_names_line_and_field() {
    let cases = [
        ("id: a\njob: command\ncron: \"0 3 * * *\"\ncolour: red\nparams: {program: x}\n", "s.yaml:4:1: colour: unknown field `colour`"),
        ("id: a\njob: command\ncron: \"61 3 * * *\"\nparams: {program: x}\n", "s.yaml:3:1: cron: `61 3 * * *`: minute field"),
        ("id: a\njob: command\ncron: \"0 3 * * *\"\ntimezone: Mars/Olympus\nparams: {program: x}\n", "s.yaml:4:1: timezone: unknown timezone `Mars/Olympus`"),
        ("id: a\njob: command\ncron: \"0 3 * * *\"\ncatchup: 5 parsecs\nparams: {program: x}\n", "s.yaml:4:1: catchup:"),
        ("id: a\njob: command\ncron: \"0 3 * * *\"\nparams:\n  program: x\n  argz: [1]\n", "s.yaml:6:3: params.argz: unknown field `argz`"),
        ("id: Bad_Id\njob: command\ncron: \"0 3 * * *\"\nparams: {program: x}\n", "s.yaml:1:1: id: `Bad_Id` is not a valid id"),
        ("id: a\njob: command\ncron: \"0 3 * * *\"\nretries: {max: 2, backof: 1s}\nparams: {program: x}\n", "s.yaml:4:19: retries.backof: unknown field `backof`"),
        ("id: a\njob: command\nparams: {program: x}\n", "s.yaml:1: missing field `cron`"),
        ("id: a\n  job: [\n", "s.yaml:2:6: invalid YAML"),
    ];
    for (source, expected) in cases {
        let errors = check(source);
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "expected `{expected}` in {errors:?}"
        );
    }
    let known: Vec<&str> = JobRegistry::builtin().kinds().collect();
    let expected = format!(
        "s.yaml:2:1: job: unknown job kind `teleport`; known: {}",
        known.join(", ")
    );
    let errors = check("id: a\njob: teleport\ncron: \"0 3 * * *\"\n");
    assert!(
        known.contains(&"command") && errors.iter().any(|e| e.starts_with(&expected)),
        "expected `{expected}` in {errors:?}"
    );
}

#[test]
fn all_errors_of_one_schedule_are_reported_together() {
    let errors = check("id: a\njob: command\ncron: \"bad\"\ntimezone: Nowhere\nparams: {}\n");
    assert_eq!(errors.len(), 3, "{errors:?}");
}

#[test]
fn timezone_case_slip_gets_a_suggestion() {
    let errors = check(
        "id: a\njob: command\ncron: \"0 3 * * *\"\ntimezone: europe/berlin\nparams: {program: x}\n",
    );
    assert!(
        errors[0].contains("did you mean `Europe/Berlin`"),
        "{errors:?}"
    );
}

#[test]
fn list_files_and_duplicate_ids_across_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        "- id: one\n  job: command\n  cron: \"@hourly\"\n  params: {program: x}\n- id: two\n  job: command\n  cron: \"@daily\"\n  params: {program: x}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.yaml"),
        "id: two\njob: command\ncron: \"@daily\"\nparams: {program: x}\n",
    )
    .unwrap();
    let err = load_schedules(
        &[dir.path().to_path_buf()],
        &JobBuild::here(JobRegistry::builtin()),
    )
    .unwrap_err();
    assert_eq!(err.0.len(), 1);
    let message = err.0[0].to_string();
    assert!(message.contains("b.yaml:1"), "{message}");
    assert!(
        message.contains("duplicate schedule id `two`; first defined at"),
        "{message}"
    );
    assert!(message.contains("a.yaml:5"), "{message}");
}
