//! What the process that runs plugin code may do, set by that process on
//! itself before the library is loaded (so the library's initialisers are
//! confined too): resource limits, no new privileges, and — where the
//! kernel has Landlock — read access to the declared paths and the system
//! libraries only, no writes anywhere, no signals or abstract sockets
//! beyond its own processes (ABI 6), and no access to other processes'
//! `/proc` files, which also keeps the runner's environment and working
//! directory out of reach.

use std::path::PathBuf;

use landlock::{
    Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, Scope, ABI,
};
use nix::sys::resource::{setrlimit, Resource};

/// Open files a plugin process may hold.
pub const MAX_OPEN_FILES: u64 = 256;
/// The largest file a plugin process may write (where it may write at
/// all: under Landlock it may not).
pub const MAX_FILE_SIZE: u64 = 64 << 20;
/// Processes (threads included) a plugin may start, beyond those its user
/// already runs: RLIMIT_NPROC counts every task of the user, the runner's
/// included. Not enforced for root.
pub const MORE_PROCESSES: u64 = 64;

/// Read-only, not secret, and needed by the dynamic loader or by common
/// library code (time zones, random numbers).
const SYSTEM_READ_PATHS: &[&str] = &[
    "/lib",
    "/lib64",
    "/usr/lib",
    "/usr/lib64",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/usr/share/zoneinfo",
    "/dev/null",
    "/dev/urandom",
];

/// The newest Landlock ABI this code asks for; older kernels get what
/// they have (best effort), and the run says when that is nothing.
const WANTED_ABI: ABI = ABI::V7;

/// The limits of one plugin process.
#[derive(Debug, Clone)]
pub struct Confinement {
    /// RLIMIT_AS, bytes.
    pub memory_limit: Option<u64>,
    /// The plugin's declared read paths.
    pub read_paths: Vec<PathBuf>,
}

/// How much of the file system restriction the kernel applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileRestriction {
    /// Everything asked for.
    Full,
    /// Part of it (an older Landlock ABI: e.g. no signal scoping).
    Partial,
    /// None: this kernel has no Landlock (or it is disabled).
    None,
}

impl Confinement {
    /// Applies every limit to the calling process, which must be single
    /// threaded (Landlock restricts the calling thread and its future
    /// children). An error means the plugin must not run.
    pub fn apply(&self) -> Result<FileRestriction, String> {
        self.set_limits()?;
        nix::sys::prctl::set_no_new_privs()
            .map_err(|err| format!("cannot set no_new_privs: {err}"))?;
        self.restrict_files()
    }

    fn set_limits(&self) -> Result<(), String> {
        let processes = tasks_of_this_user().saturating_add(MORE_PROCESSES);
        let mut limits = vec![
            (Resource::RLIMIT_CORE, 0),
            (Resource::RLIMIT_NOFILE, MAX_OPEN_FILES),
            (Resource::RLIMIT_FSIZE, MAX_FILE_SIZE),
            (Resource::RLIMIT_NPROC, processes),
        ];
        if let Some(memory) = self.memory_limit {
            limits.push((Resource::RLIMIT_AS, memory));
        }
        for (resource, limit) in limits {
            setrlimit(resource, limit, limit)
                .map_err(|err| format!("cannot set {resource:?} to {limit}: {err}"))?;
        }
        Ok(())
    }

    fn restrict_files(&self) -> Result<FileRestriction, String> {
        let read = AccessFs::ReadFile | AccessFs::ReadDir;
        let system = SYSTEM_READ_PATHS.iter().map(PathBuf::from);
        let declared = self.read_paths.iter().cloned();
        let rules = landlock::path_beneath_rules(system.chain(declared), read);
        let status = Ruleset::default()
            .handle_access(AccessFs::from_all(WANTED_ABI))
            .and_then(|ruleset| ruleset.scope(Scope::from_all(WANTED_ABI)))
            .and_then(|ruleset| ruleset.create())
            .and_then(|ruleset| ruleset.add_rules(rules))
            .and_then(|ruleset| ruleset.restrict_self())
            .map_err(|err| format!("cannot restrict file access (Landlock): {err}"))?;
        Ok(match status.ruleset {
            RulesetStatus::FullyEnforced => FileRestriction::Full,
            RulesetStatus::PartiallyEnforced => FileRestriction::Partial,
            RulesetStatus::NotEnforced => FileRestriction::None,
        })
    }
}

/// Whether this kernel restricts file access with Landlock, asked without
/// restricting anything (the runner asks, to say so in a run when not).
pub fn landlock_available() -> bool {
    Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(ABI::V1))
        .and_then(|ruleset| ruleset.create())
        .is_ok()
}

/// Tasks (threads) whose real user is this process's: what RLIMIT_NPROC
/// is compared with.
fn tasks_of_this_user() -> u64 {
    let Some(uid) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .as_deref()
        .and_then(real_uid)
        .map(str::to_string)
    else {
        return 0;
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("status")).ok())
        .filter_map(|status| threads_of_user(&status, &uid))
        .sum()
}

/// The real uid (first of `Uid:`) in a `/proc/N/status`.
fn real_uid(status: &str) -> Option<&str> {
    status_field(status, "Uid:")?.split_whitespace().next()
}

fn status_field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .map(str::trim)
}

/// `Threads:` of a `/proc/N/status` whose real uid is `uid`.
fn threads_of_user(status: &str, uid: &str) -> Option<u64> {
    if real_uid(status)? != uid {
        return None;
    }
    status_field(status, "Threads:")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_count_only_for_the_real_user() {
        let status = "Name:\tpatrol\nUid:\t1000\t1000\t1000\t1000\nThreads:\t9\n";
        assert_eq!(threads_of_user(status, "1000"), Some(9));
        assert_eq!(threads_of_user(status, "0"), None);
        let setuid = "Uid:\t0\t1000\t1000\t1000\nThreads:\t1\n";
        assert_eq!(threads_of_user(setuid, "1000"), None);
    }
}
