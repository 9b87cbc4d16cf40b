//! Arbitrary text → `schedules_in_file` with the built-in job registry.
#![no_main]

use libfuzzer_sys::fuzz_target;
use patrol::registry::JobRegistry;

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

fn registry() -> &'static JobRegistry {
    static REGISTRY: std::sync::OnceLock<JobRegistry> = std::sync::OnceLock::new();
    REGISTRY.get_or_init(JobRegistry::builtin)
}
