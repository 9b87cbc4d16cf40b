//! The shipped catalog over the shipped fixtures: every control of every
//! release gets the verdict the generator planted (truth.json), each
//! failure explained; a catalog with mistakes is refused with file, line
//! and field for each.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::{TimeZone, Utc};
use patrol_job_evidence_audit::catalog;
use patrol_job_evidence_audit::evaluate::{evaluate, release_of, Inputs};
use patrol_job_evidence_audit::fixtures;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn inputs() -> Inputs {
    Inputs {
        attestation_keys: vec![fixtures::attestation_key().public_key()],
        now: Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap(),
    }
}

#[test]
fn the_seed_catalog_gives_the_planted_verdict_for_every_control_of_every_release() {
    let dir = tempfile::tempdir().unwrap();
    let planted = fixtures::generate(dir.path()).unwrap();
    let catalog = catalog::load(&root().join("policies/compliance/control_catalog.yaml")).unwrap();
    let ids: Vec<&str> = catalog.controls.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        ["SC-01", "SC-02", "PL-01", "REL-01", "DB-01", "FIN-01", "DR-01"]
    );
    assert!(catalog
        .controls
        .iter()
        .all(|c| c.maps.contains_key("soc2") && c.maps.contains_key("iso27001")));
    let want: BTreeSet<(String, String)> = planted
        .iter()
        .map(|p| (p.release.clone(), p.control.to_string()))
        .collect();
    let mut got = BTreeSet::new();
    let mut releases = 0;
    for entry in std::fs::read_dir(dir.path().join("releases")).unwrap() {
        let folder = entry.unwrap().path();
        let release = release_of(&folder).unwrap();
        let report = evaluate(&catalog, &folder, &release, &inputs());
        releases += 1;
        assert_eq!(report.controls.len(), 7);
        assert_eq!(report.overall, report.controls.iter().all(|c| c.pass));
        for control in report.controls.iter().filter(|c| !c.pass) {
            assert!(!control.details.is_empty(), "{control:?}");
            got.insert((release.tag.clone(), control.id.clone()));
        }
    }
    assert_eq!(releases, 6);
    assert_eq!(got, want);
}

#[test]
fn the_shipped_fixtures_are_what_the_generator_writes() {
    let dir = tempfile::tempdir().unwrap();
    fixtures::generate(dir.path()).unwrap();
    let shipped = root().join("fixtures/evidence-audit");
    let mut files = Vec::new();
    collect(dir.path(), dir.path(), &mut files);
    assert!(files.len() > 60);
    for file in files {
        assert_eq!(
            std::fs::read(dir.path().join(&file)).unwrap(),
            std::fs::read(shipped.join(&file)).unwrap_or_default(),
            "{file} differs: run gen-evidence-audit-fixtures"
        );
    }
}

fn collect(base: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(base, &path, out);
        } else {
            out.push(
                path.strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
}

#[test]
fn every_catalog_mistake_is_named_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.yaml");
    std::fs::write(
        &path,
        "schema: 1\ncontrols:\n  - id: SC-01\n    name: a\n    evidence: [../outside.json]\n    assert:\n      - type: sarif_no_levels\n        levels: [SEVERE]\n  - id: SC-01\n    name: b\n    assert:\n      - type: json\n        path: x.json\n        query: \"$..[\"\n        op: \"<\"\n",
    )
    .unwrap();
    let errors = catalog::load(&path).unwrap_err();
    let expect = [
        ":5:",
        "controls[0].evidence[0]: `../outside.json` must stay inside",
        "controls[0].assert[0].levels: `SEVERE` is not CRITICAL",
        ":9:",
        "controls[1].id: control `SC-01` is listed twice",
        "controls[1].assert[0].query: not an RFC 9535 JSONPath",
        "controls[1].assert[0].value: give the value",
    ];
    let text = errors.join("\n");
    for part in expect {
        assert!(text.contains(part), "{part} not in:\n{text}");
    }
    assert_eq!(errors.len(), 5, "{text}");
    std::fs::write(
        &path,
        "schema: 1\ncontrols:\n  - id: A\n    name: a\n    colour: red\n",
    )
    .unwrap();
    let errors = catalog::load(&path).unwrap_err();
    assert!(
        errors[0].contains("catalog.yaml:5:5: controls[0].colour: unknown field `colour`"),
        "{errors:?}"
    );
}

#[test]
fn a_tag_that_could_point_elsewhere_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for tag in ["../../schedules", "/etc/cron.d", "", ".."] {
        std::fs::write(
            dir.path().join("release.json"),
            serde_json::json!({"tag": tag, "artifacts": []}).to_string(),
        )
        .unwrap();
        let err = release_of(dir.path()).unwrap_err();
        assert!(err.contains("is not a release tag"), "{tag}: {err}");
    }
}

#[cfg(unix)]
#[test]
fn evidence_behind_a_symbolic_link_does_not_count_and_max_age_needs_files() {
    let dir = tempfile::tempdir().unwrap();
    fixtures::generate(dir.path()).unwrap();
    let catalog = catalog::load(&root().join("policies/compliance/control_catalog.yaml")).unwrap();
    let folder = dir.path().join("releases/v1.5.1");
    // The missing DR drill "provided" through a link to a file outside.
    let outside = dir.path().join("elsewhere");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::copy(
        dir.path().join("releases/v1.4.0/chaos-dr/run-drill.json"),
        outside.join("run-drill.json"),
    )
    .unwrap();
    std::os::unix::fs::symlink(&outside, folder.join("chaos-dr")).unwrap();
    let release = release_of(&folder).unwrap();
    let report = evaluate(&catalog, &folder, &release, &inputs());
    let dr = report.controls.iter().find(|c| c.id == "DR-01").unwrap();
    assert!(!dr.pass);
    assert!(
        dr.details
            .iter()
            .any(|d| d["missing"] == "chaos-dr/run-*.json"),
        "{:?}",
        dr.details
    );
    // No file for max_age to judge: a failure, never a pass.
    assert!(
        dr.details
            .iter()
            .any(|d| d["max_age"]["missing"].is_string()),
        "{:?}",
        dr.details
    );
}
