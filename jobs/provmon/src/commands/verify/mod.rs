//! `patrol verify`: re-check one artifact or release by hand, with the
//! same verification code the provmon sweep uses (the seeds' "quick
//! verify"). Exit 0 verified, 1 verification failed (the failing check on
//! stderr), 2 usage or unreadable input. Anything that is not a proof of
//! validity — an internal error included — is a failure, never a pass.
//!
//! - `bundle.rs`: a Sigstore bundle for an artifact or a `sha256:` digest,
//!   with the Sigstore clients' conformance flags.
//! - `blob.rs`: a cosign-style keyed signature over a blob.
//! - `release.rs`: one release's whole chain from the provmon ledger state.

mod blob;
mod bundle;
mod release;

use std::path::Path;

use clap::{FromArgMatches, Subcommand};
use patrol_job_api::commands::{
    CommandContext, CommandError, EXIT_FOUND as FOUND, EXIT_OK as OK, EXIT_UNUSABLE as ERROR,
};

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Verify a Sigstore bundle (message signature or DSSE) for an artifact.
    Bundle(bundle::Args),
    /// Verify a cosign-style signature (`cosign sign-blob`) with a public key.
    Blob(blob::Args),
    /// Re-check one release's chain (signature, bundle, Rekor, deploys) from the ledger.
    Release(release::Args),
}

/// `patrol verify`, as `patrol --help` lists it.
pub fn command() -> clap::Command {
    Command::augment_subcommands(
        clap::Command::new("verify")
            .about("Verify a Sigstore bundle, a cosign blob signature, or one release's chain, now (exit 0 verified, 1 failed, 2 unusable input)")
            .subcommand_required(true)
            .arg_required_else_help(true),
    )
}

/// Runs `patrol verify …` from its matches.
pub async fn verify(matches: &clap::ArgMatches, ctx: &CommandContext) -> Result<u8, CommandError> {
    let command =
        Command::from_arg_matches(matches).map_err(|err| CommandError::new(err.to_string()))?;
    match command {
        Command::Bundle(args) => Ok(bundle::run(&args)),
        Command::Blob(args) => Ok(blob::run(&args)),
        Command::Release(args) => release::run(ctx, &args).await,
    }
}

/// An input the operator named that cannot be used: exit 2.
#[derive(Debug)]
struct Unusable(String);

/// How one verification ended, printed for people or as JSON.
#[derive(Debug, serde::Serialize)]
struct Report {
    verified: bool,
    /// The check that failed (`bundle`, `signature`, `key`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    check: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// What was verified: `sha256:<hex>`, and the file when one was given.
    subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
    /// What a successful check established (signer, log time, …).
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    facts: serde_json::Map<String, serde_json::Value>,
}

impl Report {
    fn exit(&self, json: bool) -> u8 {
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
            );
        }
        if self.verified {
            if !json {
                let facts: Vec<String> = self
                    .facts
                    .iter()
                    .map(|(name, value)| match value {
                        serde_json::Value::String(text) => format!("{name}: {text}"),
                        other => format!("{name}: {other}"),
                    })
                    .collect();
                let what = self.file.as_deref().unwrap_or(&self.subject);
                println!("verified: {what} ({})", self.subject);
                for fact in facts {
                    println!("  {fact}");
                }
            }
            OK
        } else {
            eprintln!(
                "verification failed: {}: {}",
                self.check.unwrap_or("verify"),
                self.reason.as_deref().unwrap_or("no reason given")
            );
            FOUND
        }
    }
}

/// Prints a verification's end and gives its exit code.
fn finish(json: bool, result: Result<Report, Unusable>) -> u8 {
    match result {
        Ok(report) => report.exit(json),
        Err(problem) => unusable(json, problem),
    }
}

/// Reports an unusable input on stderr: exit 2.
fn unusable(json: bool, Unusable(message): Unusable) -> u8 {
    if json {
        println!(
            "{}",
            serde_json::json!({"verified": false, "error": message})
        );
    }
    eprintln!("error: {message}");
    ERROR
}

/// An artifact named as a path or as `sha256:<hex>`.
#[derive(Debug)]
enum Artifact {
    /// Its bytes (read whole up to [`MAX_IN_MEMORY`]) and digest.
    File {
        path: String,
        bytes: Option<Vec<u8>>,
        sha256: [u8; 32],
    },
    Digest([u8; 32]),
}

/// Artifacts up to this size are read into memory (a message signature
/// can then be checked over the bytes themselves); larger ones are hashed
/// as a stream and checked by digest.
const MAX_IN_MEMORY: u64 = 64 << 20;

impl Artifact {
    fn parse(text: &str) -> Result<Self, Unusable> {
        if text.starts_with("sha256:") {
            return patrol_provmon_verify::bundle::parse_sha256_digest(text)
                .map(Artifact::Digest)
                .map_err(|err| Unusable(format!("artifact digest {err}")));
        }
        let unreadable = |err: std::io::Error| Unusable(format!("artifact {text}: {err}"));
        let file = std::fs::File::open(text).map_err(unreadable)?;
        let len = file.metadata().map_err(unreadable)?.len();
        if len <= MAX_IN_MEMORY {
            use sha2::Digest;
            let bytes = std::fs::read(text).map_err(unreadable)?;
            let sha256 = sha2::Sha256::digest(&bytes).into();
            return Ok(Artifact::File {
                path: text.to_string(),
                bytes: Some(bytes),
                sha256,
            });
        }
        let sha256 = file_sha256(file).map_err(unreadable)?;
        Ok(Artifact::File {
            path: text.to_string(),
            bytes: None,
            sha256,
        })
    }

    fn sha256(&self) -> [u8; 32] {
        match self {
            Artifact::File { sha256, .. } | Artifact::Digest(sha256) => *sha256,
        }
    }

    fn subject(&self) -> String {
        format!("sha256:{}", hex::encode(self.sha256()))
    }

    fn file(&self) -> Option<String> {
        match self {
            Artifact::File { path, .. } => Some(path.clone()),
            Artifact::Digest(_) => None,
        }
    }

    fn report(&self) -> Report {
        Report {
            verified: false,
            check: None,
            reason: None,
            subject: self.subject(),
            file: self.file(),
            facts: serde_json::Map::new(),
        }
    }
}

/// The SHA-256 of a file read as a stream.
fn file_sha256(mut file: std::fs::File) -> std::io::Result<[u8; 32]> {
    use sha2::Digest;
    use std::io::Read;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            return Ok(hasher.finalize().into());
        }
        hasher.update(&buffer[..read]);
    }
}

/// Reads a small input file (a bundle, key, signature), bounded.
fn read_input(what: &str, path: &Path) -> Result<Vec<u8>, Unusable> {
    const MAX: u64 = patrol_provmon_verify::bundle::MAX_DOCUMENT as u64;
    let unreadable = |err: std::io::Error| Unusable(format!("{what} {}: {err}", path.display()));
    let len = std::fs::metadata(path).map_err(unreadable)?.len();
    if len > MAX {
        return Err(Unusable(format!(
            "{what} {}: {len} bytes, more than the {MAX} a {what} can be",
            path.display()
        )));
    }
    std::fs::read(path).map_err(unreadable)
}
