//! Helpers shared by the end-to-end tests.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The `patrol` binary cargo built for these tests.
pub fn patrol_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_patrol"))
}

/// Runs `patrol` with `args` in `dir` and returns its output.
pub fn patrol(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(patrol_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("PATROL_DATABASE_URL")
        .output()
        .expect("patrol binary runs")
}
