//! Plugin jobs with the real binary: test plugins that panic, segfault,
//! abort, hang, allocate without bound or exit without answering each fail
//! (or time out) with their cause named, while another schedule keeps
//! firing and the runner stays up; `patrol validate` refuses a wrong
//! sha256, a protocol version from elsewhere, a missing symbol and a
//! missing file, naming what it expected and found; the shipped residency
//! schedule pages like a built-in job.

use std::path::Path;
use std::time::{Duration, Instant};

use patrol::ledger::RunStatus;

use crate::support::{
    assert_keeps_firing, plugin_library, shipped_checkout, stderr, stdout, terminate,
    wait_for_each, Db, Project,
};

/// patrol.yaml lines pinning `libraries` (copied into the project).
fn pinned(dir: &Path, libraries: &[(&str, Option<&str>)]) -> String {
    let mut yaml = String::from("plugins:\n");
    for (package, sha256) in libraries {
        let library = plugin_library(package, dir);
        let sha256 = sha256.map_or_else(
            || patrol::plugins::file_sha256(&library).unwrap(),
            str::to_string,
        );
        yaml.push_str(&format!(
            "  - path: {}\n    sha256: {sha256}\n    memory_limit: 256MiB\n",
            library.file_name().unwrap().to_str().unwrap()
        ));
    }
    yaml
}

/// Adds `package`'s build, pinned, to the project's patrol.yaml.
fn pin_in_project(project: &Project, package: &str) {
    let plugins = pinned(project.path(), &[(package, None)]);
    let config = project.path().join("patrol.yaml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&plugins);
    std::fs::write(&config, text).unwrap();
}

/// Ended by the job itself, not skipped, missed or cancelled at shutdown.
fn finished(run: &patrol::ledger::Run) -> bool {
    matches!(
        run.status,
        RunStatus::Succeeded | RunStatus::Failed | RunStatus::TimedOut | RunStatus::Crashed
    )
}

#[tokio::test]
async fn misbehaving_plugins_fail_their_runs_and_the_runner_keeps_firing() {
    let project = Project::new(Db::Sqlite, "").await;
    pin_in_project(&project, "patrol-plugin-test-misbehaving");
    let bad = [
        "panics",
        "segfaults",
        "aborts",
        "hangs",
        "allocates",
        "exits",
    ];
    for name in bad {
        project.schedule(
            &format!("{name}.yaml"),
            &format!(
                // Only the hang should meet its timeout, even on a loaded machine.
                "id: {name}\njob: test-{name}\ncron: \"*/3 * * * * *\"\ntimeout: {}\ncatchup: 0\n",
                if name == "hangs" { "2s" } else { "20s" }
            ),
        );
    }
    project.schedule(
        "ok.yaml",
        "id: ok\njob: test-ok\ncron: \"* * * * * *\"\ntimeout: 20s\ncatchup: 0\n",
    );
    project.schedule(
        "tick.yaml",
        "id: tick\njob: command\ncron: \"* * * * * *\"\ncatchup: 0\nparams: {program: \"true\"}\n",
    );
    let validate = project.patrol(&["validate"]);
    assert_eq!(validate.status.code(), Some(0), "{}", stderr(&validate));

    let mut server = project.serve("plugins");
    // Every misbehaving schedule has failed twice, so each crash was
    // followed by more firing.
    wait_for_each(&project, &bad, 2, finished, Duration::from_secs(60)).await;
    assert_keeps_firing(&project, &mut server, "plugins", &["tick", "ok"]).await;
    assert_eq!(
        terminate(&mut server, Duration::from_secs(20)).and_then(|s| s.code()),
        Some(0),
        "{}",
        project.log("plugins")
    );

    let expected = [
        (
            "panics",
            RunStatus::Failed,
            "plugin misbehaving panicked: test-panics was told to panic",
        ),
        (
            "segfaults",
            RunStatus::Failed,
            "plugin misbehaving crashed: SIGSEGV",
        ),
        (
            "aborts",
            RunStatus::Failed,
            "plugin misbehaving aborted: SIGABRT",
        ),
        ("hangs", RunStatus::TimedOut, "timed out after 2s"),
        (
            "allocates",
            RunStatus::Failed,
            "plugin misbehaving ran out of memory (limit 256MiB)",
        ),
        (
            "exits",
            RunStatus::Failed,
            "plugin misbehaving exited without answering",
        ),
    ];
    for (name, status, cause) in expected {
        let runs = project.runs(name).await;
        let ended: Vec<_> = runs.iter().filter(|run| finished(run)).collect();
        assert!(ended.len() >= 2, "{name}: {runs:#?}");
        for run in ended {
            assert_eq!(run.status, status, "{name}: {run:#?}");
            let error = run.error.as_deref().unwrap_or_default();
            assert!(
                error.starts_with(cause),
                "{name}: `{error}` does not start with `{cause}`"
            );
        }
    }
    let oks = project.runs("ok").await;
    assert!(
        oks.iter()
            .filter(|run| run.status == RunStatus::Succeeded)
            .count()
            >= 3,
        "{oks:#?}"
    );
    let ticks = project.runs("tick").await;
    assert!(
        ticks
            .iter()
            .all(|run| matches!(run.status, RunStatus::Succeeded | RunStatus::Cancelled)),
        "{ticks:#?}"
    );
}

#[test]
fn validate_refuses_wrong_digest_protocol_and_symbols_naming_expected_and_found() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = "0".repeat(64);
    let residency = plugin_library("patrol-plugin-residency", dir.path());
    let found = patrol::plugins::file_sha256(&residency).unwrap();
    let mut yaml = pinned(
        dir.path(),
        &[
            ("patrol-plugin-residency", Some(&wrong)),
            ("patrol-plugin-test-bad-version", None),
            ("patrol-plugin-test-no-run-symbol", None),
        ],
    );
    yaml.push_str(&format!("  - path: nowhere.so\n    sha256: {wrong}\n"));
    std::fs::write(dir.path().join("patrol.yaml"), yaml).unwrap();
    std::fs::create_dir_all(dir.path().join("schedules")).unwrap();
    let output = crate::support::patrol(dir.path(), &["validate"]);
    let report = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{report}");
    let lines: Vec<&str> = report.lines().collect();
    let expect = [
        format!("patrol.yaml:3:5: plugins[0].sha256: sha256 mismatch: expected {wrong}, found {found}; if you trust this build"),
        "patrol.yaml:5:5: plugins[1].path: plugin libpatrol_plugin_test_bad_version.so refused: protocol version mismatch: expected 1 to 2 (this patrol), found 999 (the plugin)".to_string(),
        "patrol.yaml:8:5: plugins[2].path: plugin libpatrol_plugin_test_no_run_symbol.so refused: missing symbol: expected `patrol_plugin_run` to be exported".to_string(),
        "patrol.yaml:11:5: plugins[3].path: cannot read plugin library nowhere.so".to_string(),
    ];
    for (line, expected) in lines.iter().zip(&expect) {
        assert!(
            line.starts_with(expected.as_str()),
            "`{line}`\ndoes not start with\n`{expected}`\n{report}"
        );
    }
    assert!(report.contains("4 errors found"), "{report}");
}

/// The shipped residency schedule on a fresh clone whose patrol.yaml pins
/// the example plugin's build: one page per planted violation, with its
/// runbook; a repeat run pages nothing new; fixing the data resolves.
#[test]
fn shipped_residency_plugin_pages_like_a_built_in_job() {
    let dir = tempfile::tempdir().unwrap();
    shipped_checkout(dir.path());
    let run = |args: &[&str]| crate::support::patrol(dir.path(), args);
    let listed = run(&["plugins"]);
    assert!(
        stdout(&listed).contains("job residency — tenant data residency"),
        "{}{}",
        stdout(&listed),
        stderr(&listed)
    );
    let first = run(&["run", "residency", "--wait"]);
    let out = stdout(&first);
    assert_eq!(first.status.code(), Some(1), "{out}{}", stderr(&first));
    let mut pages: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("[console] TRIGGER"))
        .collect();
    pages.sort_unstable();
    assert_eq!(
        pages,
        [
            "[console] TRIGGER error residency/region/acme/s3://dr-us-east/acme-audit: Residency: acme audit data stored in US (tenant region EU) (runbook: residency-region)",
            "[console] TRIGGER error residency/unknown-tenant/delta/s3://shared-eu/delta: Residency: data of undeclared tenant `delta` in s3://shared-eu/delta (runbook: residency-unknown-tenant)",
            "[console] TRIGGER warning residency/class/beta/es://us-1/beta-search: Residency: beta agents data classified internal in es://us-1/beta-search (tenant allows up to public) (runbook: residency-class)",
            "[console] TRIGGER warning residency/label/beta/es://us-1/beta-search: Residency: beta data labelled `pii` in es://us-1/beta-search (tenant allows internal) (runbook: residency-label)",
        ],
        "{out}"
    );
    let again = run(&["run", "residency", "--wait"]);
    assert!(!stdout(&again).contains("TRIGGER"), "{}", stdout(&again));
    // The DR copy is deleted from the inventory: its page resolves.
    let locations = dir
        .path()
        .join("fixtures/plugins/residency/locations.ndjson");
    let text = std::fs::read_to_string(&locations).unwrap();
    let kept: String = text
        .lines()
        .filter(|l| !l.contains("dr-us-east"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&locations, kept).unwrap();
    let fixed = run(&["run", "residency", "--wait"]);
    let out = stdout(&fixed);
    assert!(
        out.contains("[console] RESOLVE error residency/region/acme/s3://dr-us-east/acme-audit"),
        "{out}"
    );
    assert_eq!(out.matches("RESOLVE").count(), 1, "{out}");
}

/// The shipped residency schedule fires under `serve` like a built-in one:
/// its fires are recorded and its four violations page on the console
/// once, not once per fire. Its cron is made every two seconds so the test
/// does not wait for a five-minute mark; everything else is as shipped.
#[tokio::test]
async fn shipped_residency_schedule_fires_under_serve_and_pages_once() {
    use patrol::ledger::{Ledger, RunFilter};

    let dir = tempfile::tempdir().unwrap();
    shipped_checkout(dir.path());
    // provmon and anomaly have tests of their own; a five- or ten-minute
    // mark during this one would only slow it down.
    for other in ["provmon.yaml", "anomaly.yaml"] {
        std::fs::remove_file(dir.path().join("schedules").join(other)).unwrap();
    }
    let schedule = dir.path().join("schedules/residency.yaml");
    let shipped = std::fs::read_to_string(&schedule).unwrap();
    assert!(shipped.contains("cron: \"*/5 * * * *\""), "{shipped}");
    std::fs::write(
        &schedule,
        shipped.replace("cron: \"*/5 * * * *\"", "cron: \"*/2 * * * * *\""),
    )
    .unwrap();
    let log = dir.path().join("serve.log");
    let mut server = std::process::Command::new(crate::support::patrol_bin())
        .arg("serve")
        .current_dir(dir.path())
        .env_remove("PATROL_DATABASE_URL")
        .env_remove("PATROL_CONFIG")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let database = format!("sqlite://{}", dir.path().join("patrol.db").display());
    let fires = || async {
        if !dir.path().join("patrol.db").exists() {
            return Vec::new();
        }
        let ledger = Ledger::connect(&database).await.unwrap();
        let filter = RunFilter {
            schedule_id: Some("residency".into()),
            limit: 100,
            ..Default::default()
        };
        let runs = ledger.runs(&filter).await.unwrap();
        ledger.close().await;
        runs.into_iter()
            .filter(|run| run.status == RunStatus::Succeeded)
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut done = Vec::new();
    while Instant::now() < deadline && done.len() < 3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        done = fires().await;
    }
    assert_eq!(
        terminate(&mut server, Duration::from_secs(20)).and_then(|s| s.code()),
        Some(0)
    );
    let out = std::fs::read_to_string(&log).unwrap();
    assert!(done.len() >= 3, "{done:#?}\n{out}");
    for run in &done {
        assert!(
            run.summary
                .as_deref()
                .unwrap_or_default()
                .contains("4 violation"),
            "{run:#?}"
        );
    }
    let pages: Vec<&str> = out
        .lines()
        .filter(|line| line.starts_with("[console] TRIGGER") && line.contains(" residency/"))
        .collect();
    assert_eq!(pages.len(), 4, "{out}");
}

/// Issue 18: a plugin whose file no longer matches its pin (replaced by a
/// rebuild, or by someone else) must not lock on-call out of the ledger in
/// the middle of an incident. Only commands that run or list jobs load
/// plugins; `validate` names the plugin.
#[test]
fn a_broken_plugin_pin_blocks_only_the_commands_that_load_plugins() {
    let dir = tempfile::tempdir().unwrap();
    shipped_checkout(dir.path());
    let run = |args: &[&str]| crate::support::patrol(dir.path(), args);
    let library = dir.path().join("libpatrol_plugin_residency.so");
    let mut bytes = std::fs::read(&library).unwrap();
    bytes.extend_from_slice(b"replaced");
    std::fs::write(&library, bytes).unwrap();

    let everyday: [&[&str]; 7] = [
        &["runs"],
        &["schedules"],
        &["pause", "residency"],
        &["resume", "residency"],
        &[
            "silence",
            "add",
            "--match",
            "job=residency",
            "--for",
            "1h",
            "--reason",
            "rebuild",
        ],
        &["silence", "list"],
        &["alerts"],
    ];
    for args in everyday {
        let output = run(args);
        assert_eq!(
            output.status.code(),
            Some(0),
            "patrol {}: {}{}",
            args.join(" "),
            stdout(&output),
            stderr(&output)
        );
    }
    // A built-in job's command reads its schedules and the ledger, never
    // the plugins: it gets as far as its own answer (no sweep has run).
    let recheck = run(&[
        "verify",
        "release",
        "0000000000000000000000000000000000000000",
    ]);
    assert_eq!(recheck.status.code(), Some(2), "{}", stderr(&recheck));
    assert!(
        stderr(&recheck).contains("is not in this provmon schedule's state"),
        "{}",
        stderr(&recheck)
    );
    let validate = run(&["validate"]);
    let report = stderr(&validate);
    assert_eq!(validate.status.code(), Some(2), "{report}");
    assert!(
        report.contains("plugins[0].sha256: sha256 mismatch"),
        "{report}"
    );
    let refused = run(&["run", "heartbeat", "--wait"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("sha256 mismatch"),
        "{}",
        stderr(&refused)
    );
}

/// Issue 18: `patrol validate schedules` (a path given) checks the files
/// against the configured patrol.yaml, so a pinned plugin's job kind is
/// known there as it is in `patrol validate`.
#[test]
fn validate_with_paths_knows_the_configured_plugins() {
    let dir = tempfile::tempdir().unwrap();
    shipped_checkout(dir.path());
    for args in [&["validate"][..], &["validate", "schedules"][..]] {
        let output = crate::support::patrol(dir.path(), args);
        assert_eq!(
            output.status.code(),
            Some(0),
            "patrol {}: {}",
            args.join(" "),
            stderr(&output)
        );
    }
}

/// Issue 18: plugin protocol v2 gave the protocol wire types of its own and
/// job state; a plugin built against v1 (its request type denies unknown
/// fields, its report is the job API's shape of the time) must keep
/// running, paging like any job.
#[tokio::test]
async fn a_protocol_v1_plugin_keeps_running() {
    let project = Project::new(Db::Sqlite, "").await;
    pin_in_project(&project, "patrol-plugin-test-v1-frozen");
    project.schedule("v1.yaml", "id: v1\njob: test-v1\ncron: \"@daily\"\n");
    let validate = project.patrol(&["validate"]);
    assert_eq!(validate.status.code(), Some(0), "{}", stderr(&validate));
    let run = project.patrol(&["run", "v1", "--wait"]);
    let out = stdout(&run);
    assert_eq!(run.status.code(), Some(1), "{out}{}", stderr(&run));
    assert!(
        out.contains("[console] TRIGGER warning test/v1: a finding from a protocol v1 plugin"),
        "{out}"
    );
    let runs = project.runs("v1").await;
    assert_eq!(runs[0].status, RunStatus::Succeeded, "{:?}", runs[0]);
    assert!(
        runs[0]
            .summary
            .as_deref()
            .is_some_and(|s| s.starts_with("v1 ran test-v1")),
        "{:?}",
        runs[0]
    );
}

/// Issue 18: plugins could neither read nor write job state. A v2 job
/// declares its keys, gets their values and writes them back; a write to a
/// key it did not declare fails the run.
#[tokio::test]
async fn a_protocol_v2_plugin_keeps_its_declared_job_state_between_runs() {
    let project = Project::new(Db::Sqlite, "").await;
    pin_in_project(&project, "patrol-plugin-test-misbehaving");
    project.schedule(
        "counts.yaml",
        "id: counts\njob: test-counts\ncron: \"@daily\"\n",
    );
    project.schedule(
        "strays.yaml",
        "id: strays\njob: test-strays\ncron: \"@daily\"\n",
    );
    for _ in 0..3 {
        let run = project.patrol(&["run", "counts", "--wait"]);
        assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    }
    let mut summaries: Vec<String> = project
        .runs("counts")
        .await
        .into_iter()
        .filter_map(|run| run.summary)
        .collect();
    summaries.sort();
    assert_eq!(summaries, ["count 1", "count 2", "count 3"]);

    let run = project.patrol(&["run", "strays", "--wait"]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    let strays = project.runs("strays").await;
    assert_eq!(strays[0].status, RunStatus::Failed);
    let error = strays[0].error.clone().unwrap_or_default();
    assert!(
        error.contains("state key `elsewhere`") && error.contains("does not declare"),
        "{error}"
    );
}
