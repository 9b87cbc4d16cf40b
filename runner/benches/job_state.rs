//! Job state bench (issue 5): what committing a provmon sweep's state costs
//! in the ledger. A first sweep over 1,000,000 events writes ~500k state
//! rows (one per chain, plus cursors) in the run's end transaction; later
//! sweeps write and read ~10k.
//!
//! For SQLite (temp dir) and PostgreSQL (`PATROL_TEST_POSTGRES_URL`,
//! default the dev server): `finish_run` with `PATROL_BENCH_STATE_ROWS`
//! (500000) new rows, then with `PATROL_BENCH_STATE_UPDATES` (10000)
//! rewrites of existing rows, then one `get_many` of that many keys (what a
//! later sweep loads). Values are chain JSON of the size provmon writes.
//!
//! `cargo bench -p patrol --bench job_state`
//! (`PATROL_BENCH_BACKENDS=sqlite` to skip PostgreSQL).

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use chrono::Utc;
use patrol::ledger::{
    create_scratch_postgres_database, redact_url, Instance, Ledger, NewRun, RunEnd, RunStatus,
    ScheduleStateStore, Trigger,
};
use patrol_job_api::{StateRead, StateWrite};

const DEV_POSTGRES: &str = "postgres://postgres@127.0.0.1:55432/postgres";
const SCHEDULE: &str = "provmon";

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A digest chain as provmon stores it (same fields, same sizes).
fn chain_value(n: usize, revision: usize) -> Vec<u8> {
    let ms = 1_795_000_000_000_i64 + (n as i64) * 1000;
    format!(
        r#"{{"releases":["{n:040x}"],"stages":[["bundle",{{"first":{ms},"last":{ms},"count":1}}],["sign",{{"first":{a},"last":{a},"count":1}}],["rekor",{{"first":{a},"last":{a},"count":1}}],["deploy",{{"first":{b},"last":{b},"count":{revision}}}],["runtime_verify",{{"first":{b},"last":{b},"count":1,"status":"pass"}}]],"rekor_uuids":["24296fb24b8ad77a{n:048x}"],"deploy_revs":["web-{n}"],"signatures":["MEUCIQDx{n:032x}AiBv{n:032x}"]}}"#,
        a = ms + 60_000,
        b = ms + 120_000,
    )
    .into_bytes()
}

fn key(n: usize) -> String {
    format!(
        "digest/sha256:{:064x}",
        n.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    )
}

async fn run_once(ledger: &Ledger, instance: &Instance, writes: &[StateWrite]) -> Result<f64> {
    let now = Utc::now();
    let run = NewRun {
        schedule_id: SCHEDULE.into(),
        job: "provmon".into(),
        scheduled_for: now,
        attempt: 1,
        trigger: Trigger::Manual,
        status: RunStatus::Running,
        not_before: None,
        overrides: None,
        dry_run: false,
        force_overlap: false,
        error: None,
    };
    let run_id = ledger
        .insert_runs(std::slice::from_ref(&run), instance, now)
        .await?
        .first()
        .copied()
        .flatten()
        .context("the run row was not written")?;
    let end = RunEnd {
        status: RunStatus::Succeeded,
        summary: None,
        output: None,
        details: None,
        error: None,
    };
    let started = Instant::now();
    anyhow::ensure!(
        ledger
            .finish_run(run_id, &instance.id, &end, None, None, writes, Utc::now())
            .await?,
        "run {run_id} was no longer running"
    );
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

async fn bench(name: &str, ledger: Ledger, rows: usize, updates: usize) -> Result<()> {
    let instance = Instance {
        id: uuid::Uuid::new_v4().to_string(),
        node: "bench".into(),
    };
    ledger
        .register_instance(
            &instance,
            "serve",
            Utc::now(),
            chrono::Duration::seconds(15),
        )
        .await?;
    let first: Vec<StateWrite> = (0..rows)
        .map(|n| StateWrite::put(key(n), chain_value(n, 1)))
        .collect();
    let bytes: usize = first
        .iter()
        .map(|w| w.value.as_ref().map_or(0, Vec::len))
        .sum();
    let first_ms = run_once(&ledger, &instance, &first).await?;
    drop(first);
    // A later sweep: every 50th chain changes.
    let step = (rows / updates.max(1)).max(1);
    let later: Vec<StateWrite> = (0..rows)
        .step_by(step)
        .take(updates)
        .map(|n| StateWrite::put(key(n), chain_value(n, 2)))
        .collect();
    let later_ms = run_once(&ledger, &instance, &later).await?;
    let keys: Vec<String> = later.iter().map(|w| w.key.clone()).collect();
    let store = ScheduleStateStore::new(ledger.clone(), SCHEDULE);
    let started = Instant::now();
    let found = store.get_many(&keys).await?;
    let load_ms = started.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(
        found.len() == keys.len(),
        "{} of {} keys read back",
        found.len(),
        keys.len()
    );
    anyhow::ensure!(
        found[&keys[0]] == chain_value(0, 2),
        "the later write did not win"
    );
    println!(
        "{name:<10} first sweep: {rows} rows ({:.0} MB) committed in {first_ms:.0} ms ({:.0} rows/s)",
        bytes as f64 / 1e6,
        rows as f64 / (first_ms / 1000.0)
    );
    println!(
        "{name:<10} later sweep: {} rows rewritten in {later_ms:.0} ms; {} rows loaded in {load_ms:.0} ms",
        later.len(),
        keys.len()
    );
    ledger.close().await;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let rows = knob("PATROL_BENCH_STATE_ROWS", 500_000);
    let updates = knob("PATROL_BENCH_STATE_UPDATES", 10_000);
    let backends = std::env::var("PATROL_BENCH_BACKENDS").unwrap_or("sqlite,postgres".into());
    let server = std::env::var("PATROL_TEST_POSTGRES_URL").unwrap_or(DEV_POSTGRES.into());
    let mut failed = false;
    for backend in backends.split(',') {
        let result = async {
            match backend {
                "sqlite" => {
                    let dir = tempfile::tempdir()?;
                    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
                    bench("SQLite", Ledger::connect(&url).await?, rows, updates).await
                }
                "postgres" => {
                    let url = create_scratch_postgres_database(&server, "patrol_bench").await?;
                    println!("PostgreSQL at {}", redact_url(&server));
                    bench("PostgreSQL", Ledger::connect(&url).await?, rows, updates).await
                }
                other => anyhow::bail!("unknown backend {other}"),
            }
        }
        .await;
        if let Err(err) = result {
            eprintln!("{backend}: {err:#}");
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
