//! Processes left behind by a runner that died. A `command` job's processes
//! carry `PATROL_RUN_KEY=<instance>/<run>` in their environment; when a run
//! is reaped as crashed on this host, whatever still carries its key is
//! killed, so its retry never runs beside it.

use std::path::Path;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::{getpgid, getpgrp, Pid};

/// The key a run's processes carry.
pub fn run_key(instance_id: &str, run_id: i64) -> String {
    format!("{instance_id}/{run_id}")
}

/// Kills every process (and its process group) whose environment holds
/// `PATROL_RUN_KEY=key`. Returns the pids found. Linux only: elsewhere it
/// finds nothing.
pub fn kill_run_processes(key: &str) -> Vec<i32> {
    let needle = format!("PATROL_RUN_KEY={key}");
    let own_group = getpgrp();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
        else {
            continue;
        };
        if carries(&entry.path(), &needle) {
            let pid = Pid::from_raw(pid);
            match getpgid(Some(pid)) {
                // The job's group, never patrol's own.
                Ok(group) if group != own_group && group.as_raw() > 1 => {
                    let _ = killpg(group, Signal::SIGKILL);
                }
                _ => {
                    let _ = kill(pid, Signal::SIGKILL);
                }
            }
            found.push(pid.as_raw());
        }
    }
    found
}

fn carries(process: &Path, needle: &str) -> bool {
    std::fs::read(process.join("environ"))
        .map(|environ| {
            environ
                .split(|byte| *byte == 0)
                .any(|var| var == needle.as_bytes())
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;

    use super::*;

    #[test]
    fn finds_and_kills_processes_by_their_run_key() {
        let key = format!("test-{}/1", std::process::id());
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .env("PATROL_RUN_KEY", &key)
            .process_group(0)
            .spawn()
            .expect("spawn");
        std::thread::sleep(std::time::Duration::from_millis(200));
        let found = kill_run_processes(&key);
        assert!(found.contains(&(child.id() as i32)), "found {found:?}");
        let status = child.wait().expect("wait");
        assert!(!status.success());
        std::thread::sleep(std::time::Duration::from_millis(100));
        // The background sleep went with its group.
        assert!(kill_run_processes(&key).is_empty());
        assert!(kill_run_processes("nobody/0").is_empty());
    }
}
