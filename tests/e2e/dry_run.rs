//! A dry run of the shipped provmon and anomaly schedules over the shipped
//! fixtures writes no file anywhere in the project (the ledger lives
//! outside it) and prints the effects it would have had: evidence packs
//! and detection files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::Digest;

use crate::support::{patrol_bin, shipped_checkout, stderr, stdout};

/// Every file under `root`: path → (size, SHA-256).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u64, String)> {
    let mut files = BTreeMap::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                folders.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                let digest = hex::encode(sha2::Sha256::digest(&bytes));
                let relative = path.strip_prefix(root).unwrap().to_path_buf();
                files.insert(relative, (bytes.len() as u64, digest));
            }
        }
    }
    files
}

/// `patrol run <id> --dry-run --wait` in `project`, its ledger in `ledger_dir`.
fn dry_run(project: &Path, ledger_dir: &Path, id: &str) -> String {
    let database = format!("sqlite://{}", ledger_dir.join("ledger.db").display());
    let output = Command::new(patrol_bin())
        .args(["run", id, "--dry-run", "--wait"])
        .current_dir(project)
        .env("PATROL_DATABASE_URL", database)
        .env_remove("PATROL_CONFIG")
        .output()
        .unwrap();
    let out = stdout(&output);
    assert!(
        out.lines()
            .next()
            .is_some_and(|line| line.contains(" succeeded")),
        "{out}{}",
        stderr(&output)
    );
    out
}

#[test]
fn dry_runs_of_the_shipped_jobs_write_nothing_and_list_their_effects() {
    let project = tempfile::tempdir().unwrap();
    let ledger = tempfile::tempdir().unwrap();
    shipped_checkout(project.path());
    let before = snapshot(project.path());

    let provmon = dry_run(project.path(), ledger.path(), "provmon");
    let anomaly = dry_run(project.path(), ledger.path(), "anomaly");

    let after = snapshot(project.path());
    let changed: Vec<&PathBuf> = after
        .iter()
        .filter(|(path, file)| before.get(*path) != Some(*file))
        .map(|(path, _)| path)
        .chain(before.keys().filter(|path| !after.contains_key(*path)))
        .collect();
    assert!(changed.is_empty(), "a dry run changed {changed:?}");

    let packs: Vec<&str> = provmon
        .lines()
        .filter(|line| line.starts_with("effect would: write evidence pack evidence/"))
        .collect();
    assert_eq!(packs.len(), 10, "one pack per fixture release: {provmon}");
    assert!(
        provmon.contains("10 evidence packs would be written (dry run)"),
        "{provmon}"
    );
    let detections: Vec<&str> = anomaly
        .lines()
        .filter(|line| line.starts_with("effect would: write detections/"))
        .collect();
    assert_eq!(
        detections.len(),
        3,
        "a detection file per series column: {anomaly}"
    );
    assert!(
        detections.iter().all(|line| line.ends_with(" bytes)")),
        "{detections:?}"
    );

    // The same run for real writes what the dry run listed, and says so.
    let database = format!("sqlite://{}", ledger.path().join("ledger.db").display());
    let real = Command::new(patrol_bin())
        .args(["run", "anomaly", "--wait"])
        .current_dir(project.path())
        .env("PATROL_DATABASE_URL", database)
        .env_remove("PATROL_CONFIG")
        .output()
        .unwrap();
    let out = stdout(&real);
    for line in detections {
        let did = line.replacen("effect would:", "effect did:", 1);
        assert!(out.contains(&did), "{did} missing from {out}");
        let path = line
            .trim_start_matches("effect would: write ")
            .split(" (")
            .next()
            .unwrap();
        assert!(project.path().join(path).is_file(), "{path} not written");
    }
}
