//! A plugin whose jobs go wrong in every way a plugin can, for the tests
//! that show the runner survives them. `ok` behaves, for comparison;
//! `counts` keeps job state between runs (protocol v2), `strays` writes
//! state it did not declare.

use patrol_plugin_sdk::{
    export_plugin, Finding, JobError, Outcome, PluginContext, PluginJob, RunReport, Severity,
    StateWrite,
};

/// Counts its runs in the job state key `count`; `strays` also writes a
/// key it does not declare.
struct Counter(&'static str);

impl PluginJob for Counter {
    fn kind(&self) -> &str {
        self.0
    }

    fn summary(&self) -> &str {
        "a test job that counts its runs in job state"
    }

    fn state_keys(&self) -> Vec<String> {
        vec!["count".into()]
    }

    fn run(&self, ctx: &PluginContext, _params: serde_json::Value) -> Result<RunReport, JobError> {
        let before: u64 = match ctx.state.get("count") {
            None => 0,
            Some(text) => text
                .parse()
                .map_err(|_| JobError::Failed(format!("count `{text}` is not a number")))?,
        };
        let mut report = RunReport::new(Outcome::Succeeded, format!("count {}", before + 1));
        report.state.push(StateWrite::put(
            "count",
            (before + 1).to_string().into_bytes(),
        ));
        if self.0 == "test-strays" {
            report
                .state
                .push(StateWrite::put("elsewhere", b"1".to_vec()));
        }
        Ok(report)
    }
}

/// One job per way of going wrong, picked by kind.
struct Misbehaving(&'static str);

impl PluginJob for Misbehaving {
    fn kind(&self) -> &str {
        self.0
    }

    fn summary(&self) -> &str {
        "a test job that misbehaves as its name says"
    }

    fn run(&self, ctx: &PluginContext, _params: serde_json::Value) -> Result<RunReport, JobError> {
        match self.0 {
            "test-panics" => panic!("test-panics was told to panic"),
            "test-segfaults" => {
                #[allow(unsafe_code)]
                // SAFETY: none — writing through a null pointer is the
                // point: the host process must die of SIGSEGV.
                unsafe {
                    std::ptr::null_mut::<u8>().write_volatile(1);
                }
                unreachable!("the write above segfaults")
            }
            "test-aborts" => std::process::abort(),
            "test-hangs" => loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
            },
            "test-allocates" => {
                // Touch every page, so the memory is really used.
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 64 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "test-exits" => std::process::exit(0),
            _ => {
                let mut report =
                    RunReport::new(Outcome::Succeeded, format!("ok, run {}", ctx.run_id));
                report.findings.push(Finding::new(
                    "test/ok",
                    Severity::Info,
                    "the well-behaved test job ran",
                ));
                Ok(report)
            }
        }
    }
}

export_plugin!(
    name: "misbehaving",
    jobs: [
        Misbehaving("test-ok"),
        Misbehaving("test-panics"),
        Misbehaving("test-segfaults"),
        Misbehaving("test-aborts"),
        Misbehaving("test-hangs"),
        Misbehaving("test-allocates"),
        Misbehaving("test-exits"),
        Counter("test-counts"),
        Counter("test-strays"),
    ]
);
