//! `patrol verify release SHA`: one release's chain re-checked from the
//! provmon schedule's ledger state (signatures and Rekor entries verified
//! again, the rules evaluated now), each stage's verdict printed, the
//! result recorded in the ledger and reused for 15 minutes unless
//! `--fresh`.

use std::path::PathBuf;

use patrol_job_api::commands::{CommandContext, CommandError};

use super::{FOUND, OK};
use crate::recheck::{load_release, recheck_release, RecheckError, ReleaseCheck, StageStatus};
use crate::verifications::{Verification, Verifications};

/// How long a recorded verification answers a repeat.
const CACHE_FOR: chrono::Duration = chrono::Duration::minutes(15);

macro_rules! bail {
    ($($arg:tt)*) => {
        return Err(CommandError::new(format!($($arg)*)))
    };
}

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

pub async fn run(ctx: &CommandContext, args: &Args) -> Result<u8, CommandError> {
    match check(ctx, args).await {
        Ok(code) => Ok(code),
        Err(err) if args.json => {
            // Machines get a JSON answer on stdout whatever happened.
            println!(
                "{}",
                serde_json::json!({"verified": false, "error": err.to_string()})
            );
            Err(err)
        }
        Err(err) => Err(err),
    }
}

async fn check(ctx: &CommandContext, args: &Args) -> Result<u8, CommandError> {
    // The provmon params are checked below, by the code that uses them.
    let schedules = ctx.schedules()?;
    let provmon: Vec<_> = schedules
        .iter()
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
    let unusable = |errors: Vec<patrol_job_api::ParamError>| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        CommandError::new(format!(
            "schedule {}'s provmon params are unusable: {}",
            schedule.id,
            lines.join("; ")
        ))
    };
    let base = ctx
        .config_path()
        .and_then(std::path::Path::parent)
        .unwrap_or(std::path::Path::new(""));
    let (rules, verifier, files_read) =
        crate::rules_and_verifier(&schedule.params, base).map_err(unusable)?;
    let store = Verifications::new(ctx.database().await?);
    let state = ctx.state(&schedule.id).await?;
    let loaded = match load_release(&state, &args.sha).await {
        Ok(loaded) => loaded,
        Err(RecheckError::UnknownRelease(sha)) => {
            bail!("{}", RecheckError::UnknownRelease(sha))
        }
        Err(err @ RecheckError::Job(_)) => bail!("{err}"),
    };
    let basis = basis_of(&loaded.basis, &schedule.params, &files_read);
    let now = ctx.now();
    if !args.fresh {
        if let Some(cached) = store
            .latest("release", &schedule.id, &args.sha, &basis, now - CACHE_FOR)
            .await
            .map_err(CommandError::new)?
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
        result: serde_json::to_value(&check).map_err(|err| CommandError::new(err.to_string()))?,
        node: ctx.node()?,
        checked_at: now,
        basis,
    };
    // The verdict stands even if it cannot be recorded.
    let note = match store.record(&record).await {
        Ok(id) => format!("recorded as verification #{id}"),
        Err(err) => format!("NOT recorded in the ledger: {err}"),
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
/// params, and the bytes of every file the re-check reads (rules, keys,
/// trusted root: [`Params::files_read`]), so a rotated key or an edited
/// rule is never answered from a record made before.
fn basis_of(state_basis: &str, params: &serde_json::Value, files: &[PathBuf]) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update(state_basis.as_bytes());
    hasher.update(params.to_string().as_bytes());
    for path in files {
        hasher.update(path.to_string_lossy().as_bytes());
        match std::fs::read(path) {
            Ok(bytes) => hasher.update(sha2::Sha256::digest(&bytes)),
            Err(_) => hasher.update(b"unreadable"),
        }
    }
    hex::encode(hasher.finalize())
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
