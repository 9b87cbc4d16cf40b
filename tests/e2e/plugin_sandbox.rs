//! Issue 20 item 4, a plugin is boxed: test plugins (plugins/tests/escapes)
//! try to open the ledger for writing and read patrol.yaml, find the
//! runner's secret environment, leave the process group with `setsid()`,
//! fork without bound, write a huge file and report more findings than a
//! run keeps; each attempt fails (or its processes die with the run) while
//! the runner keeps firing. The host loads the bytes it hashed even when
//! the path gives other bytes later, and `patrol validate` refuses read
//! paths that reach the ledger or the configuration.
//!
//! Where the kernel has no Landlock, file access cannot be restricted: the
//! tests then assert that every run says so.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use patrol::ledger::{Run, RunStatus};
use patrol_plugin_protocol::{HostReply, RunRequest, RunResponse};

use crate::support::{
    assert_keeps_firing, patrol_bin, plugin_library, stderr, stdout, terminate, wait_for_each, Db,
    Project,
};

/// A variable of the runner's that no plugin may see.
const SECRET_NAME: &str = "PATROL_TEST_RUNNER_SECRET";
const SECRET_VALUE: &str = "s3cr3t-of-the-runner-0c6f";

const LIBRARY: &str = "patrol-plugin-test-escapes";

/// A project whose patrol.yaml pins the escapes plugin, its entry ending
/// with `extra` lines (`    read_paths: …`).
async fn escapes_project(extra: &str) -> Project {
    let project = Project::new(Db::Sqlite, "").await;
    let library = plugin_library(LIBRARY, project.path());
    let sha256 = patrol::plugins::file_sha256(&library).unwrap();
    let config = project.path().join("patrol.yaml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "plugins:\n  - path: {}\n    sha256: {sha256}\n    memory_limit: 256MiB\n{extra}",
        library.file_name().unwrap().to_str().unwrap()
    ));
    std::fs::write(&config, text).unwrap();
    project
}

/// `patrol run <schedule> --wait` with the secret in the runner's
/// environment (and `env`).
fn run_with_secret(project: &Project, schedule: &str, env: &[(&str, &str)]) -> String {
    let output = Command::new(patrol_bin())
        .args(["run", schedule, "--wait"])
        .current_dir(project.path())
        .env_remove("PATROL_DATABASE_URL")
        .env_remove("PATROL_CONFIG")
        .env(SECRET_NAME, SECRET_VALUE)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    format!("{}{}", stdout(&output), stderr(&output))
}

/// Everything a run recorded, as one text.
fn recorded(run: &Run) -> String {
    format!(
        "{:?} {} {} {} {}",
        run.status,
        run.summary.as_deref().unwrap_or_default(),
        run.error.as_deref().unwrap_or_default(),
        run.output.as_deref().unwrap_or_default(),
        run.details
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default()
    )
}

/// Alive, and not a zombie waiting for its parent.
fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// The pids a run's details list (`setsid`, `fork`).
fn pids_of(details: &serde_json::Value) -> Vec<i64> {
    details["pids"]
        .as_array()
        .map(|pids| pids.iter().filter_map(serde_json::Value::as_i64).collect())
        .unwrap_or_default()
}

/// Which of `pids` are still alive after a short while (what a run's end
/// must have killed gets a moment to be reaped); the survivors are killed
/// so that a failing test leaves nothing running.
fn survivors(pids: &[i64]) -> Vec<i64> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|&pid| alive(pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left: Vec<i64> = pids.iter().copied().filter(|&pid| alive(pid)).collect();
    for &pid in &left {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    left
}

const NO_LANDLOCK: &str = "Landlock not applied";

#[tokio::test]
async fn escaping_plugins_fail_their_runs_and_the_runner_keeps_firing() {
    let landlock = patrol::plugins::landlock_available();
    let project = escapes_project("").await;
    let dir = project.path();
    let big = dir.join("big.bin");
    let schedules = [
        (
            "ledger",
            format!(
                "{{ledger: \"{}\", config: \"{}\"}}",
                dir.join("patrol.db").display(),
                dir.join("patrol.yaml").display()
            ),
        ),
        ("environ", format!("{{needle: {SECRET_NAME}}}")),
        ("setsid", "{}".to_string()),
        (
            "fsize",
            format!(
                "{{path: \"{}\", count: {}}}",
                big.display(),
                2 * patrol::plugins::MAX_FILE_SIZE
            ),
        ),
    ];
    for (name, params) in &schedules {
        project.schedule(
            &format!("{name}.yaml"),
            &format!("id: {name}\njob: test-escape-{name}\ncron: \"*/3 * * * * *\"\ntimeout: 20s\ncatchup: 0\nparams: {params}\n"),
        );
    }
    project.schedule(
        "tick.yaml",
        "id: tick\njob: command\ncron: \"* * * * * *\"\ncatchup: 0\nparams: {program: \"true\"}\n",
    );
    let validate = project.patrol(&["validate"]);
    assert_eq!(validate.status.code(), Some(0), "{}", stderr(&validate));

    let log = std::fs::File::create(dir.join("serve-escapes.log")).unwrap();
    let mut server = Command::new(patrol_bin())
        .arg("serve")
        .current_dir(dir)
        .env_remove("PATROL_DATABASE_URL")
        .env_remove("PATROL_CONFIG")
        .env(SECRET_NAME, SECRET_VALUE)
        .env("PATROL_LOG", "info,patrol=debug")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let names: Vec<&str> = schedules.iter().map(|(name, _)| *name).collect();
    let finished = |run: &Run| matches!(run.status, RunStatus::Succeeded | RunStatus::Failed);
    wait_for_each(&project, &names, 2, finished, Duration::from_secs(60)).await;
    assert_keeps_firing(&project, &mut server, "escapes", &["tick"]).await;
    assert_eq!(
        terminate(&mut server, Duration::from_secs(20)).and_then(|s| s.code()),
        Some(0),
        "{}",
        project.log("escapes")
    );

    let mut pids = Vec::new();
    for (name, _) in &schedules {
        let runs = project.runs(name).await;
        let ended: Vec<&Run> = runs
            .iter()
            .filter(|run| matches!(run.status, RunStatus::Succeeded | RunStatus::Failed))
            .collect();
        assert!(ended.len() >= 2, "{name}: {runs:#?}");
        for run in ended {
            let text = recorded(run);
            assert!(
                !text.contains(SECRET_VALUE),
                "{name}: the secret leaked: {text}"
            );
            if *name == "setsid" {
                assert_eq!(run.status, RunStatus::Succeeded, "{text}");
                pids.extend(pids_of(run.details.as_ref().unwrap()));
                continue;
            }
            assert_eq!(run.status, RunStatus::Failed, "{name}: {text}");
            let error = run.error.as_deref().unwrap_or_default();
            assert!(
                error.starts_with("plugin escapes failed: held: "),
                "{name}: {error}"
            );
            if landlock {
                assert!(!error.contains(NO_LANDLOCK), "{error}");
            } else {
                assert!(error.contains(NO_LANDLOCK), "{error}");
            }
        }
    }
    // Landlock allows no write at all; without it RLIMIT_FSIZE stops the
    // file at the limit.
    let written = std::fs::metadata(&big).map_or(0, |m| m.len());
    if landlock {
        assert!(!big.exists(), "{written} bytes written");
    } else {
        assert!(written <= patrol::plugins::MAX_FILE_SIZE, "{written}");
    }
    assert!(pids.len() >= 4, "{pids:?}");
    assert_eq!(
        survivors(&pids),
        Vec::<i64>::new(),
        "processes that left the group outlived their runs"
    );
}

#[tokio::test]
async fn a_plugin_gets_only_the_environment_variables_its_entry_declares() {
    let project = escapes_project("    env: [PATROL_TEST_DECLARED]\n").await;
    for (name, needle) in [
        ("declared", "PATROL_TEST_DECLARED"),
        ("secret", SECRET_NAME),
    ] {
        project.schedule(
            &format!("{name}.yaml"),
            &format!("id: {name}\njob: test-escape-environ\ncron: \"@daily\"\nparams: {{needle: {needle}}}\n"),
        );
    }
    let declared = [("PATROL_TEST_DECLARED", "given-to-the-plugin")];
    run_with_secret(&project, "declared", &declared);
    run_with_secret(&project, "secret", &declared);
    let runs = project.runs("declared").await;
    assert_eq!(
        runs[0].summary.as_deref().unwrap_or_default(),
        "escaped: PATROL_TEST_DECLARED=given-to-the-plugin in my own environment",
        "{runs:#?}"
    );
    let runs = project.runs("secret").await;
    let text = recorded(&runs[0]);
    assert_eq!(runs[0].status, RunStatus::Failed, "{text}");
    assert!(!text.contains("in my own environment"), "{text}");
    if patrol::plugins::landlock_available() {
        assert!(!text.contains(SECRET_VALUE), "{text}");
    }
}

#[tokio::test]
async fn a_plugin_run_keeps_at_most_10000_findings_and_says_how_many_it_dropped() {
    let project = escapes_project("").await;
    project.schedule(
        "many.yaml",
        "id: many\njob: test-escape-findings\ncron: \"@daily\"\nparams: {count: 10005}\n",
    );
    let out = run_with_secret(&project, "many", &[]);
    let runs = project.runs("many").await;
    let run = &runs[0];
    assert_eq!(run.status, RunStatus::Succeeded, "{out}");
    assert!(
        run.summary
            .as_deref()
            .unwrap_or_default()
            .starts_with("10005 findings (5 findings over the limit of 10000 were dropped)"),
        "{:?}",
        run.summary
    );
    assert_eq!(run.details.as_ref().unwrap()["findings_over_limit"], 5);
}

/// The host run by hand, as the runner runs it, with a request on stdin.
fn host(library: &Path, sha256: &str, request: Option<&RunRequest>) -> Command {
    let mut command = Command::new(patrol_bin());
    command
        .arg("plugin-host")
        .arg(library)
        .args([
            "--sha256",
            sha256,
            "--memory-limit",
            &(256u64 << 20).to_string(),
        ])
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if request.is_none() {
        command.arg("--manifest");
    }
    command
}

fn request(job: &str, params: serde_json::Value) -> RunRequest {
    serde_json::from_value(serde_json::json!({
        "job": job, "params": params, "run_id": 1, "schedule_id": "s",
        "scheduled_for": "2026-01-01T00:00:00Z", "attempt": 1, "deadline": null,
        "dry_run": false, "run_key": "k", "state": {}
    }))
    .unwrap()
}

/// RLIMIT_NPROC does not apply to root, so as root the host runs as
/// `nobody` here (it is the same code whoever runs it).
#[test]
fn a_fork_bomb_stops_at_the_process_limit_and_dies_with_its_run() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let library = plugin_library(LIBRARY, dir.path());
    let sha256 = patrol::plugins::file_sha256(&library).unwrap();
    let tries = 300;
    let run = request("test-escape-fork", serde_json::json!({ "count": tries }));
    let mut command = host(&library, &sha256, Some(&run));
    let root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0;
    if root {
        command.uid(65534).gid(65534);
    }
    let mut child = command.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&serde_json::to_vec(&run).unwrap())
        .unwrap();
    // The first JSON value, not the pipe's end: processes that outlive
    // the host (what this test looks for) would hold the pipe open.
    let reply_out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        serde_json::Deserializer::from_reader(reply_out)
            .into_iter::<HostReply>()
            .next()
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let reply = reader.join().unwrap();
    let Some(Ok(HostReply::Response(RunResponse::Report(report)))) = reply else {
        panic!("{reply:?}");
    };
    let pids = pids_of(&report.details);
    let left = survivors(&pids);
    assert!(
        (1..=patrol::plugins::MORE_PROCESSES as usize).contains(&pids.len()),
        "forked {} of {tries}",
        pids.len()
    );
    assert_eq!(
        left,
        Vec::<i64>::new(),
        "forked processes outlived the host"
    );
}

/// The swap the digest check could not see: the loader opened the
/// library's path again after the digest was taken, and mapped whatever
/// the path held by then. The library here is a FIFO that gives the
/// pinned bytes to its first reader only: a host that opens the path a
/// second time waits there for a writer that never comes.
#[test]
fn the_host_loads_the_bytes_it_hashed_and_never_opens_the_path_again() {
    let dir = tempfile::tempdir().unwrap();
    let pinned = std::fs::read(plugin_library(LIBRARY, dir.path())).unwrap();
    let sha256 = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&pinned))
    };
    let fifo = dir.path().join("libonce.so");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut child = host(&fifo, &sha256, None).spawn().unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .and_then(|mut file| file.write_all(&pinned))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let reopened = child.try_wait().unwrap().is_none();
    if reopened {
        let _ = child.kill();
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        !reopened,
        "the host opened the library's path again after taking its digest: {}",
        stderr(&output)
    );
    match serde_json::from_slice::<HostReply>(&output.stdout) {
        Ok(HostReply::Manifest(manifest)) => assert_eq!(manifest.name, "escapes"),
        other => panic!("{other:?} {}", stderr(&output)),
    }
}

#[test]
fn validate_refuses_read_paths_that_reach_the_ledger_or_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let library = plugin_library(LIBRARY, dir.path());
    let sha256 = patrol::plugins::file_sha256(&library).unwrap();
    std::fs::create_dir_all(dir.path().join("schedules")).unwrap();
    std::fs::create_dir_all(dir.path().join("inputs")).unwrap();
    std::fs::write(
        dir.path().join("patrol.yaml"),
        format!(
            "plugins:\n  - path: {}\n    sha256: {sha256}\n    read_paths: [inputs, .]\n",
            library.file_name().unwrap().to_str().unwrap()
        ),
    )
    .unwrap();
    let output = crate::support::patrol(dir.path(), &["validate"]);
    let report = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{report}");
    assert!(
        report.contains("plugins[0].read_paths: . would let the plugin read")
            && report
                .contains("a plugin never reads the ledger, the configuration or secret files"),
        "{report}"
    );
    assert!(!report.contains("inputs would"), "{report}");
}
