//! Plugin jobs: third-party jobs in shared libraries, loaded only inside
//! a `patrol plugin-host` child process, one per run (docs/plugins.md,
//! docs/adr/0003-plugins.md).
//!
//! - `config.rs`: the `plugins:` list of patrol.yaml (path, sha256,
//!   memory_limit, read_paths, env), located for diagnostics; read paths
//!   that would expose the ledger, config or secret files are refused.
//! - `host.rs` + `library.rs`: the child side, `patrol plugin-host`:
//!   digest check, `dlopen`, symbol and protocol version checks, one call,
//!   one JSON reply. The only code in patrol that touches plugin memory.
//! - `sealed.rs`: the library copied once into a sealed memory file; the
//!   digest is of the copy, and the copy is what is loaded.
//! - `supervise.rs`: the host forks the process that runs plugin code,
//!   waits for it, and kills every process it left behind (a subreaper).
//! - `sandbox.rs`: what that process may do: resource limits, no new
//!   privileges, Landlock (declared read paths only) where the kernel has it.
//! - `spawn.rs`: the runner side of one child: spawn with limits, write the
//!   request, read the bounded reply, kill the group on cancel, and turn
//!   every way a child can end into a reply or a named cause.
//! - `load.rs`: declared plugins → loaded manifests (out of process) →
//!   jobs in the registry; problems become `patrol validate` diagnostics.
//! - `job.rs`: `PluginJob`, the `Job` the registry holds for each plugin job.
//! - `pin.rs`: `patrol plugins pin`, writing a build's digest into patrol.yaml.

mod config;
pub mod host;
mod job;
mod library;
mod load;
pub mod pin;
mod sandbox;
mod sealed;
mod spawn;
mod supervise;

pub(crate) use config::{declared_plugins, refuse_protected_read_paths};
pub use config::{DeclaredPlugin, DEFAULT_MEMORY_LIMIT};
pub use job::PluginJob;
pub use load::{load_plugins, registry_with_plugins, LoadedPlugin};
pub use sandbox::{landlock_available, MAX_FILE_SIZE, MORE_PROCESSES};
pub use spawn::{HostCall, HostCommand, HostEnd};

/// sha256 of a file, lowercase hex.
pub use patrol_job_api::effects::file_sha256;

/// sha256 of everything `reader` gives, lowercase hex.
pub(crate) use patrol_job_api::effects::sha256_hex_of as sha256_of;
