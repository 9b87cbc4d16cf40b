//! `patrol verify release SHA`: one release's chain re-checked from the
//! provmon schedule's ledger state (signatures and Rekor entries verified
//! again, the rules evaluated now), each stage's verdict printed, the
//! result recorded in the ledger and reused for 15 minutes unless
//! `--fresh`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Result};
use chrono::Utc;
use patrol_job_api::JobState;
use patrol_job_provmon::recheck::{
    load_release, recheck_release, RecheckError, ReleaseCheck, StageStatus,
};

use super::super::context::Context;
use super::{FOUND, OK};
use crate::ledger::{ScheduleStateStore, Verification};

/// How long a recorded verification answers a repeat.
const CACHE_FOR: chrono::Duration = chrono::Duration::minutes(15);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The release's commit sha, as the provmon events name it.
    pub sha: String,
    /// The provmon schedule whose state to read (needed when several
    /// schedules run provmon).
    #[arg(long)]
    pub schedule: Option<String>,
    /// Check again even if a verification of this release was recorded in
    /// the last 15 minutes.
    #[arg(long)]
    pub fresh: bool,
    /// Print the result as JSON on stdout (exit codes unchanged).
    #[arg(long)]
    pub json: bool,
}

pub async fn run(config: Option<&Path>, args: &Args) -> Result<u8> {
    match check(config, args).await {
        Ok(code) => Ok(code),
        Err(err) if args.json => {
            // Machines get a JSON answer on stdout whatever happened.
            println!(
                "{}",
                serde_json::json!({"verified": false, "error": format!("{err:#}")})
            );
            Err(err)
        }
        Err(err) => Err(err),
    }
}

async fn check(config: Option<&Path>, args: &Args) -> Result<u8> {
    let context = Context::load(config)?;
    // The provmon params are checked below, by the code that uses them.
    let schedules = context.schedules_without_jobs()?;
    let provmon: Vec<_> = schedules
        .schedules
        .values()
        .filter(|schedule| schedule.job == "provmon")
        .filter(|schedule| args.schedule.as_ref().is_none_or(|id| &schedule.id == id))
        .collect();
    let schedule = match (provmon.as_slice(), &args.schedule) {
        ([one], _) => *one,
        ([], Some(id)) => bail!("no provmon schedule `{id}` (see `patrol schedules`)"),
        ([], None) => bail!("no schedule runs the provmon job, so no release chains are recorded"),
        (many, _) => bail!(
            "several schedules run provmon ({}): choose one with --schedule",
            many.iter()
                .map(|schedule| schedule.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let (rules, verifier) =
        patrol_job_provmon::rules_and_verifier(&schedule.params).map_err(|errors| {
            let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
            anyhow::anyhow!(
                "schedule {}'s provmon params are unusable: {}",
                schedule.id,
                lines.join("; ")
            )
        })?;
    let ledger = context.ledger().await?;
    let state = JobState::new(Arc::new(ScheduleStateStore::new(
        ledger.clone(),
        schedule.id.clone(),
    )));
    let loaded = match load_release(&state, &args.sha).await {
        Ok(loaded) => loaded,
        Err(RecheckError::UnknownRelease(sha)) => {
            bail!("{}", RecheckError::UnknownRelease(sha))
        }
        Err(err @ RecheckError::Job(_)) => bail!("{err}"),
    };
    let basis = basis_of(&loaded.basis, &schedule.params);
    let now = Utc::now();
    if !args.fresh {
        if let Some(cached) = ledger
            .latest_verification("release", &schedule.id, &args.sha, &basis, now - CACHE_FOR)
            .await?
        {
            // A record this version cannot read, or one that was not
            // settled (pending, Rekor down), is checked again.
            if let Ok(check) = serde_json::from_value::<ReleaseCheck>(cached.result) {
                if settled(&check) {
                    let age = (now - cached.checked_at).num_seconds().max(0);
                    let note = format!(
                        "recorded {age}s ago by {} as verification #{}, nothing it rests on has changed; --fresh checks again",
                        cached.node, cached.id
                    );
                    return Ok(print(&check, &note, args.json));
                }
            }
        }
    }
    let check = recheck_release(loaded, &rules, &verifier, now).await;
    let record = Verification {
        id: 0,
        kind: "release".into(),
        schedule_id: schedule.id.clone(),
        subject: args.sha.clone(),
        verified: check.verified,
        result: serde_json::to_value(&check)?,
        node: context.config.node.clone(),
        checked_at: now,
        basis,
    };
    // The verdict stands even if it cannot be recorded.
    let note = match ledger.record_verification(&record).await {
        Ok(id) => format!("recorded as verification #{id}"),
        Err(err) => format!("NOT recorded in the ledger: {err:#}"),
    };
    Ok(print(&check, &note, args.json))
}

/// Whether a result can answer a repeat: nothing was pending and Rekor
/// could be asked.
fn settled(check: &ReleaseCheck) -> bool {
    check.outage.is_none()
        && check
            .stages
            .iter()
            .all(|stage| stage.status != StageStatus::Pending)
}

/// What a re-check rests on: the provmon state it read, the schedule's
/// params, and the bytes of every file they name (keys, trusted root,
/// rules), so a rotated key or an edited rule is never answered from a
/// record made before.
fn basis_of(state_basis: &str, params: &serde_json::Value) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update(state_basis.as_bytes());
    hasher.update(params.to_string().as_bytes());
    let mut files = Vec::new();
    named_files(params, &mut files);
    for path in files {
        hasher.update(path.as_bytes());
        match std::fs::read(&path) {
            Ok(bytes) => hasher.update(sha2::Sha256::digest(&bytes)),
            Err(_) => hasher.update(b"unreadable"),
        }
    }
    hex::encode(hasher.finalize())
}

/// Every string in `value` that names an existing file.
fn named_files(value: &serde_json::Value, files: &mut Vec<String>) {
    match value {
        serde_json::Value::String(text) if Path::new(text).is_file() => files.push(text.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|item| named_files(item, files)),
        serde_json::Value::Object(map) => map.values().for_each(|item| named_files(item, files)),
        _ => {}
    }
}

fn print(check: &ReleaseCheck, note: &str, json: bool) -> u8 {
    if json {
        let mut out = serde_json::to_value(check).unwrap_or_default();
        if let Some(map) = out.as_object_mut() {
            map.insert("note".into(), note.into());
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&out).unwrap_or_else(|_| "{}".into())
        );
    } else {
        println!(
            "release {} (checked {})",
            check.release_sha, check.checked_at
        );
        for stage in &check.stages {
            println!("  {} {}", stage.status.label(), stage.stage);
            for line in &stage.detail {
                println!("            {line}");
            }
            for failure in &stage.failures {
                println!("            ! {failure}");
            }
        }
        if let Some(outage) = &check.outage {
            println!("  Rekor could not be asked: {outage}");
        }
        println!("  ({note})");
    }
    if check.verified {
        return OK;
    }
    let mut unfinished: Vec<&str> = check
        .stages
        .iter()
        .filter(|stage| matches!(stage.status, StageStatus::Failed | StageStatus::Pending))
        .map(|stage| stage.stage.as_str())
        .collect();
    if unfinished.is_empty() {
        // Only the outage stands in the way.
        unfinished.push("rekor");
    }
    let reason = check
        .stages
        .iter()
        .find_map(|stage| {
            stage
                .failures
                .first()
                .or(stage.detail.iter().find(|line| line.contains("FAILED")))
        })
        .cloned()
        .or_else(|| {
            check
                .outage
                .clone()
                .map(|outage| format!("Rekor could not be asked: {outage}"))
        })
        .unwrap_or_else(|| "a stage is still pending".into());
    eprintln!(
        "verification failed: release {} at {}: {reason}",
        check.release_sha,
        unfinished.join(", ")
    );
    FOUND
}
