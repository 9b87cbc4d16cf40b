//! A plugin whose jobs try to get out of the plugin sandbox, one way each,
//! for the tests that show they cannot (docs/plugins.md, "The sandbox").
//!
//! A job whose attempt was stopped fails with `held: …` (what it tried and
//! the error it got); one that got through succeeds with `escaped: …`, so
//! a test only has to look at the run's status and text. The jobs that
//! start processes (`setsid`, `fork`) succeed and list the pids in their
//! details: whether those outlive the run is for the test to check.

use std::io::Write;

use patrol_plugin_sdk::{
    export_plugin, param, Finding, JobError, Outcome, ParamManifest, PluginContext, PluginJob,
    RunReport, Severity,
};

struct Escape(&'static str);

impl PluginJob for Escape {
    fn kind(&self) -> &str {
        self.0
    }

    fn summary(&self) -> &str {
        "a test job that tries to leave the plugin sandbox as its name says"
    }

    fn params(&self) -> Vec<ParamManifest> {
        vec![
            param(
                "ledger",
                "string",
                false,
                "the ledger file to open for writing",
            ),
            param("config", "string", false, "patrol.yaml, to read"),
            param(
                "needle",
                "string",
                false,
                "an environment variable to look for",
            ),
            param("path", "string", false, "a file to write"),
            param(
                "count",
                "integer",
                false,
                "how many processes, bytes or findings",
            ),
        ]
    }

    fn run(&self, _ctx: &PluginContext, params: serde_json::Value) -> Result<RunReport, JobError> {
        let text = |name: &str| params[name].as_str().unwrap_or_default().to_string();
        let count = params["count"].as_u64().unwrap_or(0);
        match self.0 {
            "test-escape-ledger" => open_ledger_and_config(&text("ledger"), &text("config")),
            "test-escape-environ" => find_in_environments(&text("needle")),
            "test-escape-setsid" => Ok(started(&setsid_pair())),
            "test-escape-fork" => Ok(started(&fork_sleepers(count))),
            "test-escape-fsize" => write_file(&text("path"), count),
            "test-escape-findings" => Ok(many_findings(count)),
            _ => Err(JobError::Failed(format!("unknown job {}", self.0))),
        }
    }
}

fn escaped(what: String) -> Result<RunReport, JobError> {
    Ok(RunReport::new(
        Outcome::Succeeded,
        format!("escaped: {what}"),
    ))
}

fn held(what: Vec<String>) -> Result<RunReport, JobError> {
    Err(JobError::Failed(format!("held: {}", what.join("; "))))
}

/// The ledger for writing, patrol.yaml for reading, and the ledger again
/// through the working directory and through the parent's.
fn open_ledger_and_config(ledger: &str, config: &str) -> Result<RunReport, JobError> {
    let mut errors = Vec::new();
    let parent = std::os::unix::process::parent_id();
    let ledgers = [
        ledger.to_string(),
        "patrol.db".to_string(),
        format!("/proc/{parent}/cwd/patrol.db"),
    ];
    for path in ledgers {
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
        {
            Ok(_) => return escaped(format!("opened {path} for writing")),
            Err(err) => errors.push(format!("{path}: {err}")),
        }
    }
    match std::fs::read_to_string(config) {
        Ok(text) => return escaped(format!("read {config} ({} bytes)", text.len())),
        Err(err) => errors.push(format!("{config}: {err}")),
    }
    held(errors)
}

/// `needle` in this process's environment, its ancestors' and any other
/// process's whose environment can be read.
fn find_in_environments(needle: &str) -> Result<RunReport, JobError> {
    if let Ok(value) = std::env::var(needle) {
        return escaped(format!("{needle}={value} in my own environment"));
    }
    let mut pids = ancestors();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        pids.extend(
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok()),
        );
    }
    let prefix = format!("{needle}=");
    let mut errors = Vec::new();
    for pid in pids {
        let path = format!("/proc/{pid}/environ");
        match std::fs::read(&path) {
            Ok(bytes) => {
                if let Some(found) = bytes
                    .split(|byte| *byte == 0)
                    .find(|entry| entry.starts_with(prefix.as_bytes()))
                {
                    return escaped(format!("{} in {path}", String::from_utf8_lossy(found)));
                }
            }
            Err(err) if errors.len() < 3 => errors.push(format!("{path}: {err}")),
            Err(_) => {}
        }
    }
    errors.push(format!("{needle} found nowhere"));
    held(errors)
}

/// The parent, grandparent, … as far as /proc tells (the parent at least).
fn ancestors() -> Vec<u32> {
    let mut pids = vec![std::os::unix::process::parent_id()];
    while let Some(&pid) = pids.last() {
        let parent = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                // `pid (comm) state ppid …`; comm may hold spaces.
                let after = stat.rsplit_once(')')?.1;
                after.split_whitespace().nth(1)?.parse::<u32>().ok()
            });
        match parent {
            Some(parent) if parent > 1 && pids.len() < 16 => pids.push(parent),
            _ => break,
        }
    }
    pids
}

fn started(pids: &[i32]) -> RunReport {
    let mut report = RunReport::new(
        Outcome::Succeeded,
        format!("started {} processes", pids.len()),
    );
    report.details = serde_json::json!({ "pids": pids });
    report
}

fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// A child that leaves the process group (`setsid`) and a grandchild of
/// its, both sleeping forever: a kill of the host's group misses both.
#[allow(unsafe_code)]
fn setsid_pair() -> Vec<i32> {
    let mut fds = [0; 2];
    // SAFETY: a two-int array for pipe(2) to fill.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Vec::new();
    }
    // SAFETY: the host is single-threaded while it runs a plugin; the
    // child only calls async-signal-safe functions and sleeps.
    let child = unsafe { libc::fork() };
    if child == 0 {
        // SAFETY: plain system calls in the child.
        unsafe {
            libc::setsid();
            let grandchild = libc::fork();
            if grandchild == 0 {
                sleep_forever();
            }
            let bytes = grandchild.to_ne_bytes();
            libc::write(fds[1], bytes.as_ptr().cast(), bytes.len());
        }
        sleep_forever();
    }
    let mut pids = vec![child];
    let mut bytes = [0u8; 4];
    // SAFETY: the pipe's read end and a buffer of its length.
    let read = unsafe { libc::read(fds[0], bytes.as_mut_ptr().cast(), bytes.len()) };
    if read == 4 {
        pids.push(i32::from_ne_bytes(bytes));
    }
    pids
}

/// Up to `count` children that sleep forever; as many as fork allows.
#[allow(unsafe_code)]
fn fork_sleepers(count: u64) -> Vec<i32> {
    let mut pids = Vec::new();
    for _ in 0..count {
        // SAFETY: as in `setsid_pair`: the child only sleeps.
        match unsafe { libc::fork() } {
            0 => sleep_forever(),
            pid if pid > 0 => pids.push(pid),
            _ => break,
        }
    }
    pids
}

/// `count` bytes into `path`, a MiB at a time.
fn write_file(path: &str, count: u64) -> Result<RunReport, JobError> {
    let mut file = match std::fs::File::create(path) {
        Ok(file) => file,
        Err(err) => return held(vec![format!("{path}: {err}")]),
    };
    let chunk = vec![b'x'; 1 << 20];
    let mut written = 0u64;
    while written < count {
        let size = chunk.len().min((count - written) as usize);
        if let Err(err) = file.write_all(&chunk[..size]) {
            return held(vec![format!("{path} after {written} bytes: {err}")]);
        }
        written += size as u64;
    }
    let _ = file.flush();
    escaped(format!("wrote {written} bytes to {path}"))
}

fn many_findings(count: u64) -> RunReport {
    let mut report = RunReport::new(Outcome::Succeeded, format!("{count} findings"));
    report.findings = (0..count)
        .map(|n| {
            Finding::new(
                format!("test/many/{n}"),
                Severity::Info,
                format!("finding {n}"),
            )
        })
        .collect();
    report
}

export_plugin!(
    name: "escapes",
    jobs: [
        Escape("test-escape-ledger"),
        Escape("test-escape-environ"),
        Escape("test-escape-setsid"),
        Escape("test-escape-fork"),
        Escape("test-escape-fsize"),
        Escape("test-escape-findings"),
    ]
);
