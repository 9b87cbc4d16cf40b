//! Plugin run overhead (issue 7): the residency job as a plugin — a
//! `patrol plugin-host` child spawned per run, which hashes and loads the
//! library, checks its symbols and version, reads the manifest, makes the
//! call and answers in JSON — against the same job called in process.
//!
//! `cargo bench -p patrol --bench plugin` (builds the plugin with
//! `cargo build --release -p patrol-plugin-residency`;
//! `PATROL_BENCH_RUNS` runs of each, default 200).

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::Utc;
use patrol::plugins::{load_plugins, HostCommand, PluginJob};
use patrol_job_api::{BuildContext, CancellationToken, Effects, Job, JobState, RunContext};
use patrol_plugin_sdk::PluginJob as _;

fn main() -> ExitCode {
    match bench() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn release_library() -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "--message-format=json",
            "-p",
            "patrol-plugin-residency",
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .context("cargo runs")?;
    if !output.status.success() {
        bail!("cargo build --release -p patrol-plugin-residency failed");
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        // Proc macros are shared libraries too; only the plugin is a cdylib.
        .filter(|message| {
            message["target"]["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|kind| kind == "cdylib"))
        })
        .flat_map(|message| message["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|name| name.as_str().map(PathBuf::from))
        .find(|name| {
            name.extension()
                .is_some_and(|ext| ext == "so" || ext == "dylib")
        })
        .context("no cdylib built")
}

fn stats(label: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = samples[samples.len() / 2];
    let p95 = samples[samples.len() * 95 / 100];
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!(
        "{label:<34} median {:>8.3} ms  p95 {:>8.3} ms  mean {:>8.3} ms  ({} runs)",
        ms(median),
        ms(p95),
        ms(mean),
        samples.len()
    );
    median
}

fn bench() -> Result<()> {
    let runs: usize = std::env::var("PATROL_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let library = release_library()?;
    let dir = tempfile::tempdir()?;
    let copy = dir.path().join(library.file_name().context("file name")?);
    std::fs::copy(&library, &copy)?;
    let sha256 = patrol::plugins::file_sha256(&copy)?;
    let config_file = dir.path().join("patrol.yaml");
    std::fs::write(
        &config_file,
        format!(
            "plugins:\n  - path: {}\n    sha256: {sha256}\n",
            copy.display()
        ),
    )?;
    let config = patrol::config::PatrolConfig::load(Some(&config_file))
        .map_err(|d| anyhow::anyhow!("{d}"))?;
    let host = HostCommand {
        program: PathBuf::from(env!("CARGO_BIN_EXE_patrol")),
    };
    let (loaded, errors) = load_plugins(&config.plugins, &host);
    if !errors.is_empty() {
        bail!("{}", patrol::config::Diagnostics(errors));
    }
    let plugin = &loaded[0];
    let job = PluginJob::new(plugin, &plugin.manifest.jobs[0], host);
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/plugins/residency");
    let params = serde_json::json!({
        "tenants": format!("{fixtures}/tenants.yaml"),
        "locations": format!("{fixtures}/locations.ndjson"),
    });
    let context = |run_id: i64| RunContext {
        run_id,
        schedule_id: "residency".into(),
        scheduled_for: Utc::now(),
        attempt: 1,
        deadline: None,
        dry_run: false,
        cancel: CancellationToken::new(),
        run_key: format!("bench/{run_id}"),
        state: JobState::empty(),
        checkpoints: patrol_job_api::Checkpoints::dry_run(),
        effects: Effects::in_memory(),
        clock: Arc::new(patrol_job_api::SystemClock),
        fence: patrol_job_api::ProcessFence::none(),
    };
    println!(
        "plugin library {} ({} KiB), host {}",
        copy.display(),
        std::fs::metadata(&copy)?.len() / 1024,
        env!("CARGO_BIN_EXE_patrol")
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let job = Arc::new(job);

    // In process: the same job's code, no child.
    let builtin = patrol_plugin_residency::ResidencyJob;
    let mut samples = Vec::with_capacity(runs);
    for run_id in 0..runs as i64 {
        let request = job.request(&context(run_id), params.clone(), Default::default());
        let started = Instant::now();
        let report = builtin
            .run(&request, params.clone())
            .map_err(|err| anyhow::anyhow!("{err}"))?;
        samples.push(started.elapsed());
        assert_eq!(report.findings.len(), 4);
    }
    let inside = stats("built in (same code, in process)", samples);

    // Built once, as a schedule's job is; each run is a fresh child.
    let instance = job
        .build(&params, &BuildContext::new("bench", ""))
        .map_err(|errors| anyhow::anyhow!("{errors:?}"))?;
    let mut samples = Vec::with_capacity(runs);
    for run_id in 0..runs as i64 {
        let instance = instance.clone();
        let started = Instant::now();
        let report = runtime
            .block_on(async move { instance.run(context(run_id)).await })
            .map_err(|err| anyhow::anyhow!("{err}"))?;
        samples.push(started.elapsed());
        assert_eq!(report.findings.len(), 4);
    }
    let outside = stats("plugin (spawn + load + call)", samples);

    let mut samples = Vec::with_capacity(runs.min(50));
    for _ in 0..runs.min(50) {
        let started = Instant::now();
        let (loaded, errors) = load_plugins(
            &config.plugins,
            &HostCommand {
                program: PathBuf::from(env!("CARGO_BIN_EXE_patrol")),
            },
        );
        samples.push(started.elapsed());
        assert!(errors.is_empty() && loaded.len() == 1);
    }
    stats("manifest read (config load)", samples);
    let mut samples = Vec::with_capacity(50);
    for _ in 0..50 {
        let started = Instant::now();
        patrol::plugins::file_sha256(&copy)?;
        samples.push(started.elapsed());
    }
    stats("of which: sha256 of the library", samples);
    let mut samples = Vec::with_capacity(50);
    for _ in 0..50 {
        let started = Instant::now();
        let status = Command::new(env!("CARGO_BIN_EXE_patrol"))
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .status()?;
        samples.push(started.elapsed());
        assert!(status.success());
    }
    stats("of which: spawn + exit of patrol", samples);
    println!(
        "overhead per run (median): {:.3} ms",
        (outside.saturating_sub(inside)).as_secs_f64() * 1000.0
    );
    Ok(())
}
