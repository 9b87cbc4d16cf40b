//! Helpers shared by the end-to-end tests: a scratch project folder with
//! its own patrol.yaml and schedules, the real `patrol` binary, and the
//! ledger (SQLite in the folder, or a fresh PostgreSQL database).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use patrol::ledger::{Ledger, Run, RunFilter};

mod pg_cluster;
mod test_ca;
pub use pg_cluster::{PgCluster, ServerTls};
pub use test_ca::TestCa;

/// The `patrol` binary cargo built for these tests.
pub fn patrol_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_patrol"))
}

/// Runs `patrol` with `args` in `dir` and returns its output.
pub fn patrol(dir: &Path, args: &[&str]) -> Output {
    Command::new(patrol_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("PATROL_DATABASE_URL")
        .env_remove("PATROL_CONFIG")
        .output()
        .expect("patrol binary runs")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Which ledger a test project uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A scratch project: `patrol.yaml`, `schedules/`, and a ledger.
pub struct Project {
    pub dir: tempfile::TempDir,
    pub database: String,
}

impl Project {
    /// A project whose patrol.yaml adds `extra_config` lines.
    pub async fn new(db: Db, extra_config: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = match db {
            Db::Sqlite => format!("sqlite://{}", dir.path().join("patrol.db").display()),
            Db::Postgres => {
                let server = std::env::var("PATROL_TEST_POSTGRES_URL").expect(
                    "PATROL_TEST_POSTGRES_URL is not set: run the suite with scripts/test.sh, which starts PostgreSQL",
                );
                patrol::ledger::create_scratch_postgres_database(&server, "patrol_e2e")
                    .await
                    .expect("scratch database")
            }
        };
        Self::in_dir(dir, database, extra_config)
    }

    /// A project on the ledger at `database` (e.g. a [`PgCluster`]'s).
    pub fn on_database(database: String, extra_config: &str) -> Self {
        Self::in_dir(
            tempfile::tempdir().expect("temp dir"),
            database,
            extra_config,
        )
    }

    fn in_dir(dir: tempfile::TempDir, database: String, extra_config: &str) -> Self {
        std::fs::create_dir_all(dir.path().join("schedules")).expect("schedules dir");
        std::fs::write(
            dir.path().join("patrol.yaml"),
            format!("database: \"{database}\"\nnode_ttl: 3s\nshutdown_grace: 5s\n{extra_config}"),
        )
        .expect("patrol.yaml");
        Self { dir, database }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `schedules/<name>`.
    pub fn schedule(&self, name: &str, yaml: &str) {
        std::fs::write(self.path().join("schedules").join(name), yaml).expect("schedule file");
    }

    pub fn patrol(&self, args: &[&str]) -> Output {
        patrol(self.path(), args)
    }

    /// Starts `patrol serve` in the background; logs go to `serve-N.log`.
    pub fn serve(&self, tag: &str) -> Child {
        self.spawn_serve(tag, &[])
    }

    /// Starts `patrol serve` as node `node` (patrol.yaml plus `node:`, in
    /// `patrol-<node>.yaml` beside it): nodes sharing a host need labels of
    /// their own.
    pub fn serve_as_node(&self, tag: &str, node: &str) -> Child {
        let base = std::fs::read_to_string(self.path().join("patrol.yaml")).expect("patrol.yaml");
        let config = self.path().join(format!("patrol-{node}.yaml"));
        std::fs::write(&config, format!("{base}node: {node}\n")).expect("node's patrol.yaml");
        self.serve_with_config(tag, &config)
    }

    /// Starts `patrol --config <config> serve` in the background; logs go
    /// to `serve-<tag>.log`.
    pub fn serve_with_config(&self, tag: &str, config: &Path) -> Child {
        self.spawn_serve(tag, &[std::ffi::OsStr::new("--config"), config.as_os_str()])
    }

    fn spawn_serve(&self, tag: &str, global_args: &[&std::ffi::OsStr]) -> Child {
        let log =
            std::fs::File::create(self.path().join(format!("serve-{tag}.log"))).expect("log file");
        Command::new(patrol_bin())
            .args(global_args)
            .arg("serve")
            .current_dir(self.path())
            .env_remove("PATROL_DATABASE_URL")
            .env_remove("PATROL_CONFIG")
            .env("PATROL_LOG", "info,patrol=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("patrol serve starts")
    }

    pub fn log(&self, tag: &str) -> String {
        std::fs::read_to_string(self.path().join(format!("serve-{tag}.log"))).unwrap_or_default()
    }

    pub async fn ledger(&self) -> Ledger {
        Ledger::connect(&self.database).await.expect("ledger")
    }

    /// Every run of `schedule`, oldest first.
    pub async fn runs(&self, schedule: &str) -> Vec<Run> {
        let ledger = self.ledger().await;
        let mut runs = ledger
            .runs(&RunFilter {
                schedule_id: Some(schedule.into()),
                status: None,
                limit: 100_000,
            })
            .await
            .expect("runs");
        ledger.close().await;
        runs.reverse();
        runs
    }

    /// Polls `check` on the runs of `schedule` until it holds or `timeout` passes.
    pub async fn wait_for_runs(
        &self,
        schedule: &str,
        timeout: Duration,
        check: impl Fn(&[Run]) -> bool,
    ) -> Vec<Run> {
        let deadline = Instant::now() + timeout;
        loop {
            let runs = self.runs(schedule).await;
            if check(&runs) || Instant::now() > deadline {
                return runs;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Project {
    /// Starts `patrol` with `args` in the background, its output piped
    /// (read it with `wait_with_output`).
    pub fn spawn_patrol(&self, args: &[&str]) -> Child {
        Command::new(patrol_bin())
            .args(args)
            .current_dir(self.path())
            .env_remove("PATROL_DATABASE_URL")
            .env_remove("PATROL_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("patrol starts")
    }

    /// Polls the log of `serve <tag>` until `check` holds; panics with the
    /// log after `timeout`.
    pub async fn wait_for_log(
        &self,
        tag: &str,
        timeout: Duration,
        check: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log(tag);
            if check(&log) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "waited {timeout:?} for serve-{tag}.log:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `serve <tag>` has registered and scheduled its first set.
    pub async fn wait_until_serving(&self, tag: &str) {
        self.wait_for_log(tag, Duration::from_secs(20), |log| {
            log.contains("patrol is scheduling")
        })
        .await;
    }
}

/// Polls `check` until it holds or `timeout` passes; returns whether it held.
/// Waits up to `timeout` until each schedule of `names` has at least
/// `count` runs that `ended` counts.
pub async fn wait_for_each(
    project: &Project,
    names: &[&str],
    count: usize,
    ended: impl Fn(&Run) -> bool,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let mut done = true;
        for name in names {
            let runs = project.runs(name).await;
            done &= runs.iter().filter(|run| ended(run)).count() >= count;
        }
        if done || Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The runner behind `server` (logging to `serve-<tag>.log`) is alive and
/// each of `names` fires at least twice more within 3 s: what misbehaving
/// jobs must never take away.
pub async fn assert_keeps_firing(project: &Project, server: &mut Child, tag: &str, names: &[&str]) {
    assert!(
        server.try_wait().unwrap().is_none(),
        "the runner died: {}",
        project.log(tag)
    );
    let mut before = Vec::new();
    for name in names {
        before.push(project.runs(name).await.len());
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (name, before) in names.iter().zip(before) {
        assert!(
            project.runs(name).await.len() >= before + 2,
            "{name} stopped firing"
        );
    }
}

pub async fn wait_until(timeout: Duration, check: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends SIGTERM and waits for the process to exit (or kills it after `timeout`).
pub fn terminate(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `kill -9`.
pub fn kill_hard(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Whether any live (non-zombie) process is in group `pgid`. Zombies
/// count as gone: in a container whose pid 1 does not reap, killed
/// orphans stay listed as `<defunct>`.
pub fn group_alive(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // `pid (comm) state ppid pgrp …`; comm may hold spaces and parens.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
    })
}

/// The repository's root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Copies `from` into `to`, folders included.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// What a fresh clone runs on after the README's set-up: the shipped
/// schedules, fixtures, policies and runbooks, copied into `dir`, and a
/// patrol.yaml pinning this build of the residency example plugin, allowed
/// to read the residency fixtures (as `scripts/run.sh` pins it).
pub fn shipped_checkout(dir: &Path) {
    for folder in ["schedules", "fixtures", "policies", "runbooks"] {
        copy_dir(&repo_root().join(folder), &dir.join(folder));
    }
    let library = plugin_library("patrol-plugin-residency", dir);
    let output = patrol(
        dir,
        &[
            "plugins",
            "pin",
            library.to_str().unwrap(),
            "--read-path",
            "fixtures/plugins/residency",
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
}

/// Builds the cdylib of workspace package `package` (once per test
/// process: `cargo test` does not build members' cdylibs) and copies it
/// into `dir`, so a later build cannot change the bytes a test pinned.
/// Returns the copy's path.
pub fn plugin_library(package: &str, dir: &Path) -> PathBuf {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let built = {
        let mut built = BUILT.get_or_init(Default::default).lock().unwrap();
        built
            .entry(package.to_string())
            .or_insert_with(|| build_cdylib(package))
            .clone()
    };
    let copy = dir.join(built.file_name().unwrap());
    std::fs::copy(&built, &copy).unwrap();
    copy
}

fn build_cdylib(package: &str) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["build", "--quiet", "--message-format=json", "-p", package])
        .current_dir(repo_root())
        .stderr(Stdio::inherit())
        .output()
        .expect("cargo runs");
    assert!(output.status.success(), "cargo build -p {package} failed");
    // Only the package itself is a cdylib; its dependencies are rlibs.
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .filter(|message| {
            message["target"]["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "cdylib"))
        })
        .flat_map(|message| {
            message["filenames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|name| name.as_str().map(PathBuf::from))
                .collect::<Vec<_>>()
        })
        .find(|name| {
            name.extension()
                .is_some_and(|ext| ext == "so" || ext == "dylib")
        })
        .unwrap_or_else(|| panic!("cargo built no cdylib for {package}"))
}

/// One anomaly rule: exports per tenant in 10-minute windows.
pub const EXPORT_RULES: &str = "rules:
  - id: export-spike
    description: exports per tenant
    kind: rate
    match: { action: \"export.*\" }
    group_by: [tenant]
    window: 10m
    severity: high
";

/// An anomaly job's inputs in the project's folder: `rules.yaml`
/// ([`EXPORT_RULES`]) and `events/` with one export event.
pub fn anomaly_inputs(project: &Project) {
    let dir = project.path();
    std::fs::write(dir.join("rules.yaml"), EXPORT_RULES).expect("rules.yaml");
    std::fs::create_dir_all(dir.join("events")).expect("events/");
    std::fs::write(
        dir.join("events/audit.ndjson"),
        "{\"ts\":\"2026-11-02T10:00:00Z\",\"subject\":\"u1\",\"action\":\"export.csv\",\"decision\":\"allow\",\"region\":\"eu\",\"tenant\":\"acme\"}\n",
    )
    .expect("events/audit.ndjson");
}

/// `(action, key)` of each console page in a run's output
/// (`[console] TRIGGER error <key>: …`).
pub fn console_pages(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|line| line.strip_prefix("[console] "))
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let action = words.next()?.to_string();
            let _severity = words.next()?;
            Some((action, words.next()?.trim_end_matches(':').to_string()))
        })
        .collect()
}
