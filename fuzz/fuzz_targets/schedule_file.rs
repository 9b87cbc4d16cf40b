//! Arbitrary text → `schedules_in_file` with the built-in job registry.
#![no_main]

use libfuzzer_sys::fuzz_target;
use patrol::registry::{JobBuild, JobRegistry};

#[path = "../shared/bodies.rs"]
mod bodies;

fuzz_target!(
    init: {
        let _ = registry();
    },
    |data: &[u8]| {
        bodies::schedule_file(data, registry());
    }
);

fn registry() -> &'static JobBuild {
    static JOBS: std::sync::OnceLock<JobBuild> = std::sync::OnceLock::new();
    JOBS.get_or_init(|| JobBuild::here(JobRegistry::builtin()))
}
