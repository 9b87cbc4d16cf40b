//! The process guard (`patrol __patrol-fence`, patrol_job_api::fence): a
//! job's processes end when the runner's lease runs out or the runner
//! dies, and are otherwise untouched.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use patrol_job_api::ProcessFence;
use tokio::sync::watch;

fn guard() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_patrol"))
}

/// A shell command under the fence, in its own process group.
fn fenced_shell(fence: &ProcessFence, script: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::from(fence.command("sh"));
    command.arg("-c").arg(script).process_group(0);
    command
}

fn alive(pid: i32) -> bool {
    // A zombie has no cmdline; it is gone for our purpose.
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|line| !line.is_empty())
}

fn read_pid(path: &std::path::Path) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| text.trim().parse().ok())
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "the program never wrote its pid");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn the_program_ends_as_it_would_unguarded() {
    let (_renewals, lease) = watch::channel(tokio::time::Instant::now() + Duration::from_secs(60));
    let fence = ProcessFence::new(guard(), lease);
    let status = fence
        .spawn(fenced_shell(&fence, "echo out; echo err >&2; exit 3"))
        .unwrap()
        .wait_with_output()
        .await
        .unwrap();
    assert_eq!(status.status.code(), Some(3));
    let mut killed = fence.spawn(fenced_shell(&fence, "kill -TERM $$")).unwrap();
    assert_eq!(killed.wait().await.unwrap().signal(), Some(15));
    let mut missing = tokio::process::Command::from(fence.command("/nonexistent/program"));
    missing
        .stderr(std::process::Stdio::piped())
        .process_group(0);
    let missing = fence
        .spawn(missing)
        .unwrap()
        .wait_with_output()
        .await
        .unwrap();
    assert_eq!(missing.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot start"));
}

#[tokio::test]
async fn a_lease_that_is_not_renewed_ends_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let (renewals, lease) =
        watch::channel(tokio::time::Instant::now() + Duration::from_millis(1500));
    let fence = ProcessFence::new(guard(), lease);
    let started = Instant::now();
    let mut child = fence
        .spawn(fenced_shell(
            &fence,
            &format!("sleep 60 & echo $! > {}; wait", pidfile.display()),
        ))
        .unwrap();
    let grandchild = read_pid(&pidfile);
    // Renewed once: the window moves on.
    renewals
        .send(tokio::time::Instant::now() + Duration::from_millis(1500))
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the guard did not end its group")
        .unwrap();
    assert_eq!(status.signal(), Some(9));
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !alive(grandchild),
        "the background sleep outlived the lease"
    );
    drop(renewals);
}

#[tokio::test]
async fn a_runner_that_dies_takes_its_jobs_processes_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let (renewals, lease) = watch::channel(tokio::time::Instant::now() + Duration::from_secs(600));
    let fence = ProcessFence::new(guard(), lease);
    let mut child = fence
        .spawn(fenced_shell(
            &fence,
            &format!("sleep 60 & echo $! > {}; wait", pidfile.display()),
        ))
        .unwrap();
    let grandchild = read_pid(&pidfile);
    // What a killed runner leaves: its end of the pipe closed (here, the
    // lease's sender goes, which ends the feeder that holds it).
    drop(renewals);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the guard did not notice its runner was gone")
        .unwrap();
    assert_eq!(status.signal(), Some(9));
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !alive(grandchild),
        "the background sleep outlived its runner"
    );
}
