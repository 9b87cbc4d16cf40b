//! The runner's side of one `patrol plugin-host` child: spawned in its own
//! process group with the memory limit and read paths, an empty
//! environment but for the declared variables, fed one request, read with
//! bounds, stopped on cancel (SIGTERM, so the host kills every process the
//! plugin started, then SIGKILL to the group), and every way it can end
//! named.

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use patrol_job_api::units::ByteSize;
use patrol_job_api::{CancellationToken, ProcessFence};
use patrol_plugin_protocol::{HostReply, RunRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A reply larger than this is garbage, not a report.
const MAX_REPLY: u64 = 64 << 20;
/// How much of the child's stderr is kept (its end: where panics and
/// allocation failures are printed).
const STDERR_TAIL: usize = 4096;
/// How long a cancelled host has to kill the plugin's processes (its
/// SIGTERM) before its group is killed (which misses any that left it).
const STOP_GRACE: Duration = Duration::from_secs(3);

/// The program that hosts plugins: this `patrol` binary.
#[derive(Debug, Clone)]
pub struct HostCommand {
    pub program: PathBuf,
}

/// How a host child ended.
#[derive(Debug)]
pub enum HostEnd {
    /// It answered.
    Reply(HostReply),
    /// The run's cancel token fired and the group was killed.
    Cancelled,
    /// It died or answered nothing usable: the cause, in words
    /// (`crashed: SIGSEGV`), to follow `plugin <name> `.
    Died(String),
}

/// One call: which library, with which limits, asking what.
#[derive(Debug, Clone, Copy)]
pub struct HostCall<'a> {
    pub library: &'a Path,
    pub sha256: Option<&'a str>,
    pub memory_limit: u64,
    /// What the plugin may read (Landlock).
    pub read_paths: &'a [PathBuf],
    /// The runner's environment variables the plugin gets, by name.
    pub env: &'a [String],
    /// `None` asks for the manifest.
    pub request: Option<&'a RunRequest>,
}

impl HostCommand {
    /// This process's own executable.
    pub fn current() -> std::io::Result<Self> {
        Ok(Self {
            program: std::env::current_exe()?,
        })
    }

    fn command(&self, call: &HostCall<'_>, fence: &ProcessFence) -> std::process::Command {
        let mut command = fence.command(&self.program);
        command.arg("plugin-host").arg(call.library);
        if call.request.is_none() {
            command.arg("--manifest");
        }
        if let Some(sha256) = call.sha256 {
            command.arg("--sha256").arg(sha256);
        }
        command
            .arg("--memory-limit")
            .arg(call.memory_limit.to_string());
        for path in call.read_paths {
            command.arg("--read-path").arg(path);
        }
        // The runner's environment holds its secrets (database URL, tokens):
        // the plugin gets the variables its entry declares, nothing else.
        command.env_clear();
        for name in call.env {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group: whatever the plugin starts dies with it.
            .process_group(0)
            // A panicking plugin's message is the run's error; symbolizing
            // a backtrace of a debug library can take longer than the
            // run's timeout on a loaded machine (seen in CI).
            .env("RUST_BACKTRACE", "0");
        command
    }

    /// Runs one call to its end, or kills it when `cancel` fires.
    pub async fn call(
        &self,
        call: HostCall<'_>,
        run_key: Option<&str>,
        fence: &ProcessFence,
        cancel: &CancellationToken,
    ) -> HostEnd {
        let mut command = tokio::process::Command::from(self.command(&call, fence));
        command.kill_on_drop(true);
        if let Some(key) = run_key {
            // So a runner that reaps this run can find the child.
            command.env("PATROL_RUN_KEY", key);
        }
        let mut child = match fence.spawn(command) {
            Ok(child) => child,
            Err(err) => {
                return HostEnd::Died(format!(
                    "could not be started ({}: {err})",
                    self.program.display()
                ))
            }
        };
        let group = child.id().map(|pid| Pid::from_raw(pid as i32));
        let request = match call.request.map(serde_json::to_vec).transpose() {
            Ok(request) => request.unwrap_or_default(),
            Err(err) => return HostEnd::Died(format!("request cannot be encoded: {err}")),
        };
        let stdin = child.stdin.take();
        let writer = tokio::spawn(async move {
            if let Some(mut stdin) = stdin {
                // A child that dies early closes the pipe; its exit says why.
                let _ = stdin.write_all(&request).await;
            }
        });
        let stdout = child.stdout.take();
        let reader = tokio::spawn(async move {
            let mut reply = Vec::new();
            if let Some(stdout) = stdout {
                let _ = stdout.take(MAX_REPLY + 1).read_to_end(&mut reply).await;
            }
            reply
        });
        let stderr = child.stderr.take();
        let tail = tokio::spawn(async move {
            let mut tail = Vec::new();
            if let Some(mut stderr) = stderr {
                let mut buffer = [0u8; 8192];
                while let Ok(read) = stderr.read(&mut buffer).await {
                    if read == 0 {
                        break;
                    }
                    keep_tail(&mut tail, &buffer[..read]);
                }
            }
            tail
        });
        let status = tokio::select! {
            status = child.wait() => status,
            () = cancel.cancelled() => {
                stop_group(group);
                if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_err() {
                    kill_group(group);
                    let _ = child.wait().await;
                }
                kill_group(group);
                writer.abort();
                return HostEnd::Cancelled;
            }
        };
        // Anything the plugin left behind in its group ends with the run.
        kill_group(group);
        let _ = writer.await;
        let reply = reader.await.unwrap_or_default();
        let tail = tail.await.unwrap_or_default();
        match status {
            Ok(status) => end_of(status, &reply, &tail, call.memory_limit),
            Err(err) => HostEnd::Died(format!("could not be waited for: {err}")),
        }
    }

    /// A manifest call, synchronously, with a time limit (config loading
    /// runs before anything async).
    pub fn call_blocking(&self, call: HostCall<'_>, timeout: Duration) -> HostEnd {
        let mut child = match self
            .command(&call, &ProcessFence::none())
            .stdin(Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(err) => {
                return HostEnd::Died(format!(
                    "could not be started ({}: {err})",
                    self.program.display()
                ))
            }
        };
        let group = Pid::from_raw(child.id() as i32);
        let stdout = child.stdout.take();
        let reader = std::thread::spawn(move || {
            let mut reply = Vec::new();
            if let Some(stdout) = stdout {
                let _ = stdout.take(MAX_REPLY + 1).read_to_end(&mut reply);
            }
            reply
        });
        let stderr = child.stderr.take();
        let tail = std::thread::spawn(move || {
            let mut tail = Vec::new();
            if let Some(mut stderr) = stderr {
                let mut buffer = [0u8; 8192];
                while let Ok(read) = stderr.read(&mut buffer) {
                    if read == 0 {
                        break;
                    }
                    keep_tail(&mut tail, &buffer[..read]);
                }
            }
            tail
        });
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                Ok(None) => {
                    stop_group(Some(group));
                    let stopping = Instant::now() + STOP_GRACE;
                    while matches!(child.try_wait(), Ok(None)) && Instant::now() < stopping {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    kill_group(Some(group));
                    let _ = child.wait();
                    return HostEnd::Died(format!(
                        "did not answer within {}s and was killed",
                        timeout.as_secs()
                    ));
                }
                Err(err) => break Err(err),
            }
        };
        kill_group(Some(group));
        let reply = reader.join().unwrap_or_default();
        let tail = tail.join().unwrap_or_default();
        match status {
            Ok(status) => end_of(status, &reply, &tail, call.memory_limit),
            Err(err) => HostEnd::Died(format!("could not be waited for: {err}")),
        }
    }
}

/// Asks the host to end the run: it kills every process the plugin
/// started, then exits.
fn stop_group(group: Option<Pid>) {
    if let Some(group) = group {
        let _ = killpg(group, Signal::SIGTERM);
    }
}

fn kill_group(group: Option<Pid>) {
    if let Some(group) = group {
        let _ = killpg(group, Signal::SIGKILL);
    }
}

fn keep_tail(tail: &mut Vec<u8>, bytes: &[u8]) {
    tail.extend_from_slice(bytes);
    if tail.len() > STDERR_TAIL {
        tail.drain(..tail.len() - STDERR_TAIL);
    }
}

/// Names how the child ended, from its status, reply and stderr's end.
pub(crate) fn end_of(
    status: ExitStatus,
    reply: &[u8],
    stderr: &[u8],
    memory_limit: u64,
) -> HostEnd {
    let stderr = String::from_utf8_lossy(stderr);
    let last_line = stderr
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .map(|line| line.trim().chars().take(300).collect::<String>());
    let with_stderr = |cause: String| match &last_line {
        Some(line) => format!("{cause} (stderr: {line})"),
        None => cause,
    };
    let out_of_memory = stderr.contains("memory allocation of") || stderr.contains("out of memory");
    let limit = ByteSize(memory_limit);
    if let Some(signal) = status.signal() {
        let name = Signal::try_from(signal)
            .map_or_else(|_| format!("signal {signal}"), |s| s.as_str().to_string());
        return HostEnd::Died(match signal {
            _ if out_of_memory => with_stderr(format!(
                "ran out of memory (limit {limit}) and was killed by {name}"
            )),
            libc_sig::SIGSEGV | libc_sig::SIGBUS | libc_sig::SIGILL | libc_sig::SIGFPE => {
                with_stderr(format!("crashed: {name}"))
            }
            libc_sig::SIGABRT => with_stderr(format!("aborted: {name}")),
            libc_sig::SIGKILL => with_stderr(format!(
                "was killed by {name} (not by patrol: the kernel's OOM killer, or an operator)"
            )),
            _ => with_stderr(format!("was killed by {name}")),
        });
    }
    if status.code() != Some(0) {
        return HostEnd::Died(with_stderr(format!(
            "host exited with code {}",
            status.code().unwrap_or(-1)
        )));
    }
    if reply.len() as u64 > MAX_REPLY {
        return HostEnd::Died(format!("answered more than {}", ByteSize(MAX_REPLY)));
    }
    if reply.iter().all(u8::is_ascii_whitespace) {
        return HostEnd::Died(with_stderr("exited without answering".to_string()));
    }
    match serde_json::from_slice::<HostReply>(reply) {
        Ok(reply) => HostEnd::Reply(reply),
        Err(err) => HostEnd::Died(format!(
            "answered garbage ({err}): {}",
            String::from_utf8_lossy(&reply[..reply.len().min(200)])
        )),
    }
}

/// Signal numbers as `i32`, for matching.
mod libc_sig {
    use nix::sys::signal::Signal;
    pub const SIGSEGV: i32 = Signal::SIGSEGV as i32;
    pub const SIGBUS: i32 = Signal::SIGBUS as i32;
    pub const SIGILL: i32 = Signal::SIGILL as i32;
    pub const SIGFPE: i32 = Signal::SIGFPE as i32;
    pub const SIGABRT: i32 = Signal::SIGABRT as i32;
    pub const SIGKILL: i32 = Signal::SIGKILL as i32;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn died(end: HostEnd) -> String {
        match end {
            HostEnd::Died(cause) => cause,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn signals_and_garbage_are_named() {
        let segv = ExitStatus::from_raw(Signal::SIGSEGV as i32);
        assert_eq!(died(end_of(segv, b"", b"", 1 << 30)), "crashed: SIGSEGV");
        let abort = ExitStatus::from_raw(Signal::SIGABRT as i32);
        assert_eq!(
            died(end_of(abort, b"", b"memory allocation of 67108864 bytes failed\n", 1 << 30)),
            "ran out of memory (limit 1GiB) and was killed by SIGABRT (stderr: memory allocation of 67108864 bytes failed)"
        );
        let ok = ExitStatus::from_raw(0);
        assert!(died(end_of(ok, b"{not json", b"", 1 << 30)).starts_with("answered garbage"));
        assert_eq!(
            died(end_of(ok, b"", b"", 1 << 30)),
            "exited without answering"
        );
    }
}
