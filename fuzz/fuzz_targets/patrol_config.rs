//! Arbitrary bytes as `patrol.yaml` → `PatrolConfig::load`.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

#[path = "../shared/bodies.rs"]
mod bodies;

/// One scratch file per fuzzing process (libFuzzer `-jobs` runs several).
fn scratch() -> &'static PathBuf {
    static SCRATCH: OnceLock<PathBuf> = OnceLock::new();
    SCRATCH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("patrol-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create scratch folder");
        dir.join("patrol.yaml")
    })
}

fuzz_target!(|data: &[u8]| {
    bodies::patrol_config(data, scratch());
});
