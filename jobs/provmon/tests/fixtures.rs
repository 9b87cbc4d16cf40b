//! The committed provmon fixtures are exactly what the generator makes
//! from the committed templates: regenerating changes nothing (the
//! generator is deterministic, and nobody edited its output by hand).
#![allow(clippy::unwrap_used)]

use std::path::Path;

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    for folder in ["events", "rekor", "keys"] {
        let mut names: Vec<_> = std::fs::read_dir(dir.join(folder))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            let bytes = std::fs::read(dir.join(folder).join(&name)).unwrap();
            found.push((format!("{folder}/{name}"), bytes));
        }
    }
    found
}

#[test]
fn regenerating_the_fixtures_reproduces_the_committed_files() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/provmon");
    let out = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_provmon-fixtures"))
        .arg(shipped.join("templates"))
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success());
    let generated = files(out.path());
    let committed = files(&shipped);
    let names =
        |files: &[(String, Vec<u8>)]| files.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&generated), names(&committed));
    for ((name, fresh), (_, kept)) in generated.iter().zip(&committed) {
        assert!(
            fresh == kept,
            "{name} differs from what the generator makes"
        );
    }
    assert!(committed.iter().any(|(name, _)| name.starts_with("rekor/")));
}
