//! `patrol plugin-host`: the child process that loads one plugin library
//! and makes one call, so that whatever the plugin does to its process
//! (panic, segfault, abort, hang, exhausting memory) stays in it.
//!
//! It runs before any async runtime or thread is started. Order: move
//! stdout aside (plugin prints go to stderr; the reply gets a private copy
//! of the original stdout), copy the library into a sealed memory file and
//! check the copy's digest, then fork (`supervise.rs`): the child confines
//! itself (`sandbox.rs`: limits, no new privileges, Landlock), loads the
//! sealed copy, checks version and symbols, calls, and writes one
//! [`HostReply`] as JSON; the host waits and kills whatever the plugin
//! left running.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use patrol_plugin_protocol::{HostReply, Manifest, Refusal, RunRequest, RunResponse};

use super::library::PluginLibrary;
use super::sandbox::{Confinement, FileRestriction};
use super::sealed::SealedLibrary;

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
    /// A path the plugin may read (with what is below it); repeated.
    #[arg(long = "read-path")]
    pub read_paths: Vec<PathBuf>,
}

/// Exit code when the host itself could not work (bad stdin, no stdout).
const HOST_FAILED: u8 = 3;

pub fn main(args: Args) -> std::process::ExitCode {
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
    let library = match checked_copy(&args) {
        Ok(library) => library,
        Err(refusal) => {
            return std::process::ExitCode::from(answer(reply_fd, &HostReply::Refused(refusal)))
        }
    };
    let confinement = Confinement {
        memory_limit: args.memory_limit,
        read_paths: args.read_paths.clone(),
    };
    super::supervise::run_supervised(
        move || {
            match confinement.apply() {
                Ok(FileRestriction::Full | FileRestriction::Partial) => {}
                Ok(FileRestriction::None) => eprintln!(
                    "plugin-host: Landlock is not available: file access is not restricted"
                ),
                Err(message) => {
                    eprintln!("plugin-host: {message}");
                    return HOST_FAILED;
                }
            }
            match reply_of(&args, &library) {
                Ok(reply) => answer(reply_fd, &reply),
                Err(message) => {
                    eprintln!("plugin-host: {message}");
                    HOST_FAILED
                }
            }
        },
        HOST_FAILED,
    )
}

/// Writes `reply` on the reply descriptor; the exit code that follows.
fn answer(reply_fd: OwnedFd, reply: &HostReply) -> u8 {
    let mut out = std::fs::File::from(reply_fd);
    let text = serde_json::to_string(reply).unwrap_or_default();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => 0,
        Err(_) => HOST_FAILED,
    }
}

/// The library's sealed copy, if its digest is the pinned one.
fn checked_copy(args: &Args) -> Result<SealedLibrary, Refusal> {
    let cannot_load = |err: std::io::Error| Refusal::CannotLoad {
        message: format!("{}: {err}", args.library.display()),
    };
    let library = SealedLibrary::copy_of(&args.library).map_err(cannot_load)?;
    if let Some(expected) = &args.sha256 {
        let found = library.sha256().map_err(cannot_load)?;
        if !found.eq_ignore_ascii_case(expected) {
            return Err(Refusal::DigestMismatch {
                expected: expected.clone(),
                found,
            });
        }
    }
    Ok(library)
}

fn reply_of(args: &Args, sealed: &SealedLibrary) -> Result<HostReply, String> {
    let library = match PluginLibrary::open(&sealed.load_path()) {
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
