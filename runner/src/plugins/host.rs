//! `patrol plugin-host`: the child process that loads one plugin library
//! and makes one call, so that whatever the plugin does to its process
//! (panic, segfault, abort, hang, exhausting memory) stays in it.
//!
//! It runs before any async runtime or thread is started. Order: memory
//! limit, move stdout aside (plugin prints go to stderr; the reply gets a
//! private copy of the original stdout), open the file and check its
//! digest, load that same open file, check version and symbols, call, and
//! write one [`HostReply`] as JSON.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use patrol_plugin_protocol::{HostReply, Manifest, Refusal, RunRequest, RunResponse};

use super::library::PluginLibrary;

/// The child's arguments (a hidden subcommand; the runner writes them).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The library to load.
    pub library: PathBuf,
    /// Print the manifest instead of running a request from stdin.
    #[arg(long)]
    pub manifest: bool,
    /// Refuse the library unless its sha256 is this.
    #[arg(long)]
    pub sha256: Option<String>,
    /// RLIMIT_AS in bytes, set before the library is loaded.
    #[arg(long)]
    pub memory_limit: Option<u64>,
}

/// Exit code when the host itself could not work (bad stdin, no stdout).
const HOST_FAILED: u8 = 3;

pub fn main(args: Args) -> std::process::ExitCode {
    if let Some(limit) = args.memory_limit {
        use nix::sys::resource::{setrlimit, Resource};
        if let Err(err) = setrlimit(Resource::RLIMIT_AS, limit, limit) {
            eprintln!("plugin-host: cannot set the memory limit: {err}");
            return std::process::ExitCode::from(HOST_FAILED);
        }
    }
    // The reply goes to a private copy of stdout; fd 1 becomes stderr, so
    // a plugin that prints cannot corrupt the reply.
    let reply_fd = match nix::unistd::dup(std::io::stdout()) {
        Ok(fd) => fd,
        Err(err) => {
            eprintln!("plugin-host: cannot duplicate stdout: {err}");
            return std::process::ExitCode::from(HOST_FAILED);
        }
    };
    if let Err(err) = nix::unistd::dup2_stdout(std::io::stderr()) {
        eprintln!("plugin-host: cannot redirect stdout: {err}");
        return std::process::ExitCode::from(HOST_FAILED);
    }
    let reply = match reply_of(&args) {
        Ok(reply) => reply,
        Err(message) => {
            eprintln!("plugin-host: {message}");
            return std::process::ExitCode::from(HOST_FAILED);
        }
    };
    let mut out = std::fs::File::from(reply_fd);
    let text = serde_json::to_string(&reply).unwrap_or_default();
    if out
        .write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        return std::process::ExitCode::from(HOST_FAILED);
    }
    std::process::ExitCode::SUCCESS
}

fn reply_of(args: &Args) -> Result<HostReply, String> {
    let file = match std::fs::File::open(&args.library) {
        Ok(file) => file,
        Err(err) => {
            return Ok(HostReply::Refused(Refusal::CannotLoad {
                message: format!("{}: {err}", args.library.display()),
            }))
        }
    };
    if let Some(expected) = &args.sha256 {
        let found = super::sha256_of(&file)
            .map_err(|err| format!("cannot read {}: {err}", args.library.display()))?;
        if !found.eq_ignore_ascii_case(expected) {
            return Ok(HostReply::Refused(Refusal::DigestMismatch {
                expected: expected.clone(),
                found,
            }));
        }
    }
    // Load the very file we hashed, not whatever the path names by now.
    let load_path = if cfg!(target_os = "linux") {
        PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
    } else {
        args.library.clone()
    };
    let library = match PluginLibrary::open(&load_path) {
        Ok(library) => library,
        Err(refusal) => return Ok(HostReply::Refused(refusal)),
    };
    let manifest = match serde_json::from_str::<Manifest>(&library.manifest_json()) {
        Ok(manifest) if manifest.protocol_version == library.version => manifest,
        Ok(manifest) => {
            return Ok(HostReply::Refused(Refusal::BadManifest {
                message: format!(
                    "protocol_version {} disagrees with the version function's {}",
                    manifest.protocol_version, library.version
                ),
            }))
        }
        Err(err) => {
            return Ok(HostReply::Refused(Refusal::BadManifest {
                message: err.to_string(),
            }))
        }
    };
    if args.manifest {
        return Ok(HostReply::Manifest(manifest));
    }
    let mut request = String::new();
    std::io::stdin()
        .read_to_string(&mut request)
        .map_err(|err| format!("cannot read the request: {err}"))?;
    let parsed: RunRequest =
        serde_json::from_str(&request).map_err(|err| format!("bad request: {err}"))?;
    if !manifest.jobs.iter().any(|job| job.kind == parsed.job) {
        return Ok(HostReply::Refused(Refusal::UnknownJob {
            job: parsed.job,
            known: manifest.jobs.into_iter().map(|job| job.kind).collect(),
        }));
    }
    let answer = library.run_json(&request);
    Ok(HostReply::Response(
        serde_json::from_str::<RunResponse>(&answer).unwrap_or_else(|err| {
            RunResponse::Error(format!(
                "the plugin answered garbage ({err}): {}",
                answer.chars().take(200).collect::<String>()
            ))
        }),
    ))
}
