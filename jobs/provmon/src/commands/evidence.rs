//! `patrol evidence verify PATH --key PEM`: checks evidence packs written
//! by provmon (manifest digest, signature, every file's SHA-256, nothing
//! unlisted). PATH is one pack or a folder of packs.

use std::path::{Path, PathBuf};

use clap::{FromArgMatches, Subcommand};
use patrol_job_api::commands::{
    CommandError, EXIT_FOUND as FOUND, EXIT_OK as OK, EXIT_UNUSABLE as ERROR,
};
use patrol_provmon_verify::evidence::{verify_pack, MANIFEST};
use patrol_provmon_verify::key::PublicKey;

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Check evidence packs against the public key that signs them.
    Verify(VerifyArgs),
}

#[derive(Debug, clap::Args)]
struct VerifyArgs {
    /// A pack (`evidence/<release_sha>`) or a folder of packs.
    pub path: PathBuf,
    /// The public key (PEM) of the configured evidence signing key.
    #[arg(long)]
    pub key: PathBuf,
    #[arg(long)]
    pub json: bool,
}

/// `patrol evidence`, as `patrol --help` lists it.
pub fn command() -> clap::Command {
    Command::augment_subcommands(
        clap::Command::new("evidence")
            .about("Evidence pack tools")
            .subcommand_required(true)
            .arg_required_else_help(true),
    )
}

/// Runs `patrol evidence …` from its matches.
pub fn evidence(matches: &clap::ArgMatches) -> Result<u8, CommandError> {
    let command =
        Command::from_arg_matches(matches).map_err(|err| CommandError::new(err.to_string()))?;
    match command {
        Command::Verify(args) => verify(args),
    }
}

fn verify(args: VerifyArgs) -> Result<u8, CommandError> {
    let key = match std::fs::read_to_string(&args.key)
        .map_err(|err| err.to_string())
        .and_then(|pem| PublicKey::from_pem(&pem).map_err(|err| err.to_string()))
    {
        Ok(key) => key,
        Err(err) => {
            eprintln!("error: --key {}: {err}", args.key.display());
            return Ok(ERROR);
        }
    };
    let packs = match packs_under(&args.path) {
        Ok(packs) if packs.is_empty() => {
            eprintln!(
                "error: {} holds no evidence pack (no {MANIFEST})",
                args.path.display()
            );
            return Ok(ERROR);
        }
        Ok(packs) => packs,
        Err(err) => {
            eprintln!("error: {}: {err}", args.path.display());
            return Ok(ERROR);
        }
    };
    let mut failed = 0;
    let mut results = Vec::new();
    for pack in &packs {
        match verify_pack(pack, &key) {
            Ok(info) => {
                if !args.json {
                    println!(
                        "ok      {}  {} ({} files, {})",
                        pack.display(),
                        info.subject,
                        info.files,
                        info.created_at
                    );
                }
                results.push(serde_json::json!({
                    "pack": pack, "verified": true, "subject": info.subject,
                    "files": info.files, "created_at": info.created_at,
                }));
            }
            Err(problems) => {
                failed += 1;
                if !args.json {
                    println!("FAILED  {}", pack.display());
                }
                for problem in &problems {
                    eprintln!("{}: {problem}", pack.display());
                }
                results.push(serde_json::json!({
                    "pack": pack, "verified": false, "problems": problems,
                }));
            }
        }
    }
    if args.json {
        let text = serde_json::to_string_pretty(&results)
            .map_err(|err| CommandError::new(err.to_string()))?;
        println!("{text}");
    } else if packs.len() > 1 {
        println!("{} packs, {failed} failed", packs.len());
    }
    Ok(if failed == 0 { OK } else { FOUND })
}

/// `path` itself if it is a pack, else its subfolders that are.
fn packs_under(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if path.join(MANIFEST).exists() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut packs = Vec::new();
    for item in std::fs::read_dir(path)? {
        let item = item?.path();
        let hidden = item
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with('.'));
        // Hidden folders are packs being written or replaced.
        if !hidden && item.join(MANIFEST).exists() {
            packs.push(item);
        }
    }
    packs.sort();
    Ok(packs)
}
