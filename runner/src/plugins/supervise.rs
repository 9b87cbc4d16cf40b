//! The plugin host's two processes. The host itself (the supervisor)
//! never maps plugin code: it forks one child that confines itself, loads
//! the library and answers, waits for it, then kills every process the
//! plugin left behind — also those that left the process group with
//! `setsid()`, which the runner's group kill misses: the supervisor is a
//! child subreaper, so orphans of the plugin's processes become its
//! children, and it walks `/proc` for its descendants. It ends as the
//! plugin's process ended (exit code, or the same signal), so the runner
//! names a crash as before. A SIGTERM (the runner cancelling the run) makes
//! it kill every descendant and exit.
//!
//! Unsafe code: `fork` (the host is single threaded here) and resetting a
//! signal's disposition before raising it; each block says why.
#![allow(unsafe_code)]

use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, raise, SigHandler, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

/// How long killing the plugin's processes may take before the
/// supervisor gives up on stragglers (the runner's group kill follows).
const KILL_DEADLINE: Duration = Duration::from_secs(5);

/// How the plugin's process ended, as the supervisor saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Exited(i32),
    Signaled(Signal),
    /// The runner asked the host to stop (SIGTERM).
    Stopped,
}

/// Runs `sandboxed` in a child process and returns (in the supervisor)
/// how it ended; `sandboxed` returns the child's exit code. `failed` is
/// the supervisor's own exit code when it cannot fork.
pub fn run_supervised(sandboxed: impl FnOnce() -> u8, failed: u8) -> ExitCode {
    if let Err(err) = nix::sys::prctl::set_child_subreaper(true) {
        eprintln!("plugin-host: cannot become a subreaper: {err}");
        return ExitCode::from(failed);
    }
    let mut watched = SigSet::empty();
    watched.add(Signal::SIGCHLD);
    watched.add(Signal::SIGTERM);
    if let Err(err) = watched.thread_block() {
        eprintln!("plugin-host: cannot block signals: {err}");
        return ExitCode::from(failed);
    }
    // SAFETY: nothing has started a thread in this process (the host runs
    // before any runtime), so the child is a full copy and may do anything.
    match unsafe { fork() } {
        Err(err) => {
            eprintln!("plugin-host: cannot fork: {err}");
            ExitCode::from(failed)
        }
        Ok(ForkResult::Child) => {
            let _ = watched.thread_unblock();
            // A write past RLIMIT_FSIZE then fails with EFBIG, which the
            // plugin can report, instead of killing it with SIGXFSZ.
            // SAFETY: setting a disposition to "ignore" runs no code of ours.
            let _ = unsafe { nix::sys::signal::signal(Signal::SIGXFSZ, SigHandler::SigIgn) };
            let code = sandboxed();
            std::process::exit(i32::from(code));
        }
        Ok(ForkResult::Parent { child }) => {
            let ended = wait_for(child, &watched);
            kill_descendants();
            end_as(ended)
        }
    }
}

/// Waits (signals blocked, taken with sigwait) until `child` ends or a
/// SIGTERM comes, reaping every orphan that ends meanwhile.
fn wait_for(child: Pid, watched: &SigSet) -> Ended {
    loop {
        if let Ok(Signal::SIGTERM) = watched.wait() {
            return Ended::Stopped;
        }
        if let Some(ended) = reap_ended(child) {
            return ended;
        }
    }
}

/// Reaps every child that has ended; how `child` ended if it has.
fn reap_ended(child: Pid) -> Option<Ended> {
    let mut ended = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == child => {
                ended = Some(Ended::Exited(code));
            }
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == child => {
                ended = Some(Ended::Signaled(signal));
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return ended,
            Ok(_) => {}
        }
    }
}

/// SIGKILLs every descendant of this process until none is left (or the
/// deadline passes), reaping them.
fn kill_descendants() {
    let me = nix::unistd::getpid().as_raw();
    let deadline = Instant::now() + KILL_DEADLINE;
    loop {
        let doomed = descendants_of(me, &process_parents());
        if doomed.is_empty() || Instant::now() > deadline {
            return;
        }
        for pid in doomed {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(5));
        // Killed children become zombies until reaped; their orphans
        // become ours.
        let _ = reap_ended(Pid::from_raw(0));
    }
}

/// Ends this process as the plugin's process ended.
fn end_as(ended: Ended) -> ExitCode {
    match ended {
        Ended::Exited(code) => ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX)),
        Ended::Stopped => ExitCode::from(128 + Signal::SIGTERM as u8),
        Ended::Signaled(signal) => {
            // SAFETY: restoring the default disposition (the Rust runtime
            // handles SIGSEGV and SIGBUS itself) runs no code of ours.
            let _ = unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) };
            let mut only = SigSet::empty();
            only.add(signal);
            let _ = only.thread_unblock();
            let _ = raise(signal);
            // Still here: a signal whose default is not to terminate.
            ExitCode::from(128u8.saturating_add(signal as u8))
        }
    }
}

/// (pid, parent pid) of every process `/proc` shows.
fn process_parents() -> Vec<(i32, i32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some((pid, parent_in_stat(&stat)?))
        })
        .collect()
}

/// The parent pid in a `/proc/N/stat` line: `pid (comm) state ppid …`,
/// where comm may hold spaces and parentheses.
fn parent_in_stat(stat: &str) -> Option<i32> {
    let (_, after) = stat.rsplit_once(')')?;
    after.split_whitespace().nth(1)?.parse().ok()
}

/// Every process below `root` in the (pid, parent) list.
fn descendants_of(root: i32, parents: &[(i32, i32)]) -> Vec<i32> {
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for &(pid, _) in parents
            .iter()
            .filter(|(pid, ppid)| *ppid == parent && *pid != root)
        {
            if !found.contains(&pid) {
                found.push(pid);
                frontier.push(pid);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descendants_are_found_at_any_depth_and_nothing_else() {
        // 10 → 11 → 12 → 13, 10 → 14; 20 is elsewhere, 1 is init.
        let parents = [
            (1, 0),
            (10, 1),
            (11, 10),
            (12, 11),
            (13, 12),
            (14, 10),
            (20, 1),
        ];
        let mut found = descendants_of(10, &parents);
        found.sort_unstable();
        assert_eq!(found, [11, 12, 13, 14]);
        assert!(descendants_of(20, &parents).is_empty());
    }

    #[test]
    fn the_parent_is_read_past_a_command_name_with_spaces_and_parentheses() {
        assert_eq!(parent_in_stat("42 (a (b) c) S 7 42 42 0"), Some(7));
        assert_eq!(parent_in_stat("42 (patrol) R 1 42"), Some(1));
        assert_eq!(parent_in_stat("garbage"), None);
    }
}
