//! Keeping a job's processes inside its runner's lease.
//!
//! A runner may run a slot only while it holds its lease; once the lease
//! has expired another node may retry the slot. A job's processes must
//! not outlive that: not when the runner is killed (`kill -9` leaves its
//! children running), not when it is frozen (`SIGSTOP`, a VM pause: its
//! children keep running while it cannot renew). So a fenced process is
//! started under a small guard — the patrol binary with [`GUARD_ARG`] —
//! that reads, on a pipe from the runner, how long the lease lets it go on.
//! It kills its whole process group when that time runs out without a
//! renewal, or at once when the pipe closes (the runner died).
//!
//! The guard is transparent otherwise: the program inherits its
//! environment, working directory, stdio and process group, and the
//! guard ends as the program ended (exit code or signal).
//!
//! Unsafe code: fcntl between fork and exec, taking the inherited pipe's
//! fd, and signal handlers; each block says why it is sound.
#![allow(unsafe_code)]

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// The first argument that makes the patrol binary a process guard.
pub const GUARD_ARG: &str = "__patrol-fence";

/// The environment variable naming the guard's control pipe.
const FD_ENV: &str = "PATROL_FENCE_FD";

/// The runner's side: where the guard is, and until when (monotonic) the
/// lease lets runs go on. Cheap to clone; [`ProcessFence::none`] starts
/// processes directly (tests, tools without a lease).
#[derive(Clone, Default)]
pub struct ProcessFence {
    source: Option<Arc<FenceSource>>,
}

struct FenceSource {
    guard: PathBuf,
    lease_until: watch::Receiver<tokio::time::Instant>,
}

impl std::fmt::Debug for ProcessFence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            Some(source) => write!(f, "ProcessFence(guard {})", source.guard.display()),
            None => f.write_str("ProcessFence(none)"),
        }
    }
}

impl ProcessFence {
    pub fn none() -> Self {
        Self::default()
    }

    /// Fences processes with `guard` (the patrol binary) while
    /// `lease_until` says how long the lease holds.
    pub fn new(guard: PathBuf, lease_until: watch::Receiver<tokio::time::Instant>) -> Self {
        Self {
            source: Some(Arc::new(FenceSource { guard, lease_until })),
        }
    }

    pub fn is_fenced(&self) -> bool {
        self.source.is_some()
    }

    /// A command for `program`: under the guard when fenced. Configure it
    /// (args, env, stdio, process group) as usual, then start it with
    /// [`ProcessFence::spawn`].
    pub fn command(&self, program: impl AsRef<OsStr>) -> std::process::Command {
        match &self.source {
            None => std::process::Command::new(program),
            Some(source) => {
                let mut command = std::process::Command::new(&source.guard);
                command.arg(GUARD_ARG).arg(program);
                command
            }
        }
    }

    /// Starts `command` (made by [`ProcessFence::command`]). When fenced,
    /// it must be a process group of its own (`process_group(0)`): the
    /// guard kills its group.
    pub fn spawn(
        &self,
        mut command: tokio::process::Command,
    ) -> std::io::Result<tokio::process::Child> {
        let Some(source) = &self.source else {
            return command.spawn();
        };
        let (reader, writer) = pipe()?;
        let read_fd = reader.as_raw_fd();
        command.env(FD_ENV, read_fd.to_string());
        // SAFETY: only fcntl, which is async-signal-safe, runs between
        // fork and exec: it lets the guard inherit the pipe's read end.
        unsafe {
            command.pre_exec(move || {
                let flags = libc::fcntl(read_fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(read_fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut writer = std::fs::File::from(writer);
        // The first window goes in before the guard starts its program.
        write_window(&mut writer, *source.lease_until.borrow())?;
        let child = command.spawn()?;
        drop(reader);
        tokio::spawn(feed(writer, source.lease_until.clone()));
        Ok(child)
    }
}

/// A pipe whose ends are closed on exec (the guard is handed its end
/// explicitly), as `(read, write)`.
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe writes two new fds into the array on success.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and nothing else owns them.
    let ends = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    set_cloexec(fds[0]);
    set_cloexec(fds[1]);
    Ok(ends)
}

/// Tells the guard how long the lease holds, at every renewal, until the
/// guard is gone (its end of the pipe closed) or the lease's sender is.
async fn feed(mut writer: std::fs::File, mut lease_until: watch::Receiver<tokio::time::Instant>) {
    loop {
        // A quiet period also notices a guard that has ended (the write
        // fails once its end of the pipe is closed).
        let changed = tokio::time::timeout(Duration::from_secs(5), lease_until.changed()).await;
        if matches!(changed, Ok(Err(_))) {
            // The lease is gone: dropping the pipe ends the guard's program.
            return;
        }
        let until = *lease_until.borrow_and_update();
        // Eight bytes into a pipe the guard drains: never blocks.
        if write_window(&mut writer, until).is_err() {
            return;
        }
    }
}

fn write_window(writer: &mut std::fs::File, until: tokio::time::Instant) -> std::io::Result<()> {
    let left = until.saturating_duration_since(tokio::time::Instant::now());
    let millis = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
    writer.write_all(&millis.to_le_bytes())
}

/// The guard: runs `args` (program, then its arguments) and returns only
/// by ending this process as the program ended, or by killing its group.
pub fn guard_main(args: Vec<OsString>) -> ! {
    let Some((program, rest)) = args.split_first() else {
        eprintln!("patrol {GUARD_ARG}: no program given");
        std::process::exit(127);
    };
    let Some(control) = std::env::var(FD_ENV)
        .ok()
        .and_then(|fd| fd.parse::<RawFd>().ok())
    else {
        eprintln!("patrol {GUARD_ARG}: no control pipe ({FD_ENV}); this is patrol's process guard");
        std::process::exit(127);
    };
    // SAFETY: the runner passed this fd for the guard alone.
    let mut control = unsafe { std::fs::File::from_raw_fd(control) };
    set_cloexec(control.as_raw_fd());
    become_group_leader();
    ignore_termination_signals();
    let Some(first) = read_window(&mut control) else {
        // The runner is already gone: nothing may start.
        std::process::exit(137);
    };
    let deadline = Arc::new(Mutex::new(Instant::now() + first));
    let orphaned = Arc::new(AtomicBool::new(false));
    let mut child = match std::process::Command::new(program)
        .args(rest)
        .env_remove(FD_ENV)
        .spawn()
    {
        Ok(child) => child,
        Err(err) => {
            eprintln!("cannot start `{}`: {err}", program.to_string_lossy());
            std::process::exit(127);
        }
    };
    {
        let deadline = deadline.clone();
        let orphaned = orphaned.clone();
        std::thread::spawn(move || loop {
            match read_window(&mut control) {
                Some(left) => {
                    if let Ok(mut deadline) = deadline.lock() {
                        *deadline = Instant::now() + left;
                    }
                }
                None => {
                    orphaned.store(true, Ordering::SeqCst);
                    return;
                }
            }
        });
    }
    loop {
        match child.try_wait() {
            Ok(Some(status)) => end_as(status),
            Ok(None) => {}
            Err(_) => kill_group(),
        }
        let expired = deadline
            .lock()
            .map_or(true, |deadline| Instant::now() >= *deadline);
        if expired || orphaned.load(Ordering::SeqCst) {
            kill_group();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_window(control: &mut std::fs::File) -> Option<Duration> {
    let mut bytes = [0u8; 8];
    control.read_exact(&mut bytes).ok()?;
    Some(Duration::from_millis(u64::from_le_bytes(bytes)))
}

fn set_cloexec(fd: RawFd) {
    // SAFETY: plain fcntl on an fd this process owns.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
        }
    }
}

fn become_group_leader() {
    // The runner starts the guard as its own group's leader; make sure,
    // for killing the group must never reach the runner's.
    let _ = nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0));
}

/// The runner's SIGTERM to the group is for the program (its grace period
/// to wind down): the guard stays to report how the program ended. A
/// handler, not SIG_IGN, so the program does not inherit it.
fn ignore_termination_signals() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    extern "C" fn noop(_: libc::c_int) {}
    let action = SigAction::new(
        SigHandler::Handler(noop),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        // SAFETY: the handler does nothing, so it is async-signal-safe.
        let _ = unsafe { sigaction(signal, &action) };
    }
}

fn kill_group() -> ! {
    use nix::sys::signal::{killpg, Signal};
    use nix::unistd::{getpgrp, getpid};
    if getpgrp() == getpid() {
        let _ = killpg(getpgrp(), Signal::SIGKILL);
    }
    std::process::exit(137);
}

fn end_as(status: std::process::ExitStatus) -> ! {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        std::process::exit(code);
    }
    if let Some(signal) = status.signal() {
        if let Ok(signal) = nix::sys::signal::Signal::try_from(signal) {
            use nix::sys::signal::{signal as set_handler, SigHandler};
            // SAFETY: restoring the default action.
            let _ = unsafe { set_handler(signal, SigHandler::SigDfl) };
            let _ = nix::sys::signal::raise(signal);
        }
        std::process::exit(128 + signal);
    }
    std::process::exit(1);
}
