//! Replays the kept fuzz corpus (`fuzz/corpus/<target>/*`) through the same
//! bodies the cargo-fuzz targets run, on stable Rust and without libFuzzer:
//! CI checks that no corpus input panics or breaks an invariant.
//!
//! To grow the corpus, see `fuzz/README.md`.

use std::path::{Path, PathBuf};

use patrol::registry::{JobBuild, JobRegistry};

#[path = "../../fuzz/shared/bodies.rs"]
mod bodies;

/// Fewer inputs than this in a target's corpus means the corpus went
/// missing or was truncated, and the test would pass (nearly) vacuously.
/// The kept corpora hold several hundred to a few thousand inputs.
const MIN_INPUTS: usize = 200;
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()));
    let mut inputs: Vec<(PathBuf, Vec<u8>)> = entries
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|path| path.is_file())
        .map(|path| {
            let data = std::fs::read(&path)
                .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
            (path, data)
        })
        .collect();
    inputs.sort();
    inputs
}

/// Runs `body` on every input of `target` and names every input that
/// panicked. At least `min_accepted` inputs must get past parsing (`body`
/// returns a parsed cron expression, loaded schedules or a loaded config
/// as a count > 0), so the deep paths run too; the kept corpora have about
/// twice as many.
fn replay(target: &str, min_accepted: usize, mut body: impl FnMut(&[u8]) -> usize) {
    let inputs = corpus(target);
    let mut failed = Vec::new();
    let mut accepted = 0;
    for (path, data) in &inputs {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(data))) {
            Ok(count) => accepted += usize::from(count > 0),
            Err(_) => failed.push(path.display().to_string()),
        }
    }
    eprintln!(
        "{target}: {} corpus inputs replayed, {accepted} accepted",
        inputs.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {} {target} corpus inputs panicked (reproduce with `cargo fuzz run {target} <file>`):\n{}",
        failed.len(),
        inputs.len(),
        failed.join("\n")
    );
    assert!(
        inputs.len() >= MIN_INPUTS,
        "fuzz/corpus/{target} holds {} inputs, expected at least {MIN_INPUTS}",
        inputs.len()
    );
    assert!(
        accepted >= min_accepted,
        "only {accepted} of {} {target} corpus inputs were accepted, expected at least {min_accepted}",
        inputs.len()
    );
}

#[test]
fn cron_parse_corpus_does_not_panic() {
    replay("cron_parse", 150, |data| {
        usize::from(bodies::cron_parse(data))
    });
}

#[test]
fn schedule_file_corpus_does_not_panic() {
    let jobs = JobBuild::here(JobRegistry::builtin());
    replay("schedule_file", 35, |data| {
        bodies::schedule_file(data, &jobs)
    });
}

#[test]
fn patrol_config_corpus_does_not_panic() {
    let scratch = tempfile::tempdir().expect("scratch folder");
    let file = scratch.path().join("patrol.yaml");
    replay("patrol_config", 12, |data| {
        usize::from(bodies::patrol_config(data, &file))
    });
}
