//! The shipped provmon schedule over the shipped fixtures, as on a fresh
//! clone: each gap pages once, a repeat sweep pages nothing new, and a gap
//! that closes (its missing events arrive) resolves.

use std::path::Path;
use std::process::Output;

use crate::support::{patrol_bin, shipped_checkout, stderr, stdout};

fn run(dir: &Path, args: &[&str]) -> Output {
    std::process::Command::new(patrol_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("PATROL_DATABASE_URL")
        .env_remove("PATROL_CONFIG")
        .output()
        .unwrap()
}

/// `(action, key)` of each console page, e.g. `("TRIGGER", "provmon/stale-chain/…")`.
fn pages(out: &str) -> Vec<(String, String)> {
    let mut pages: Vec<(String, String)> = out
        .lines()
        .filter_map(|line| line.strip_prefix("[console] "))
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let action = words.next()?.to_string();
            let _severity = words.next()?;
            let key = words.next()?.trim_end_matches(':').to_string();
            Some((action, key))
        })
        .collect();
    pages.sort();
    pages
}

fn subject(pages: &[(String, String)], rule: &str) -> String {
    let prefix = format!("provmon/{rule}/");
    pages
        .iter()
        .find_map(|(_, key)| key.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {rule} page in {pages:?}"))
        .to_string()
}

#[test]
fn fixture_gaps_page_once_and_resolve_when_the_missing_events_arrive() {
    let dir = tempfile::tempdir().unwrap();
    shipped_checkout(dir.path());

    let first = run(dir.path(), &["run", "provmon", "--wait"]);
    let out = stdout(&first);
    assert_eq!(first.status.code(), Some(1), "{out}{}", stderr(&first));
    let paged = pages(&out);
    let rules: Vec<&str> = paged
        .iter()
        .map(|(action, key)| {
            assert_eq!(action, "TRIGGER");
            key.split('/').nth(1).unwrap()
        })
        .collect();
    let mut expected = [
        "deployed-unverified",
        "missing-rekor",
        "rekor-mismatch",
        "rekor-mismatch",
        "runtime-verify-fail",
        "signature-invalid",
        "stale-chain",
        "unsigned-bundle",
    ];
    expected.sort_unstable();
    let mut rules_sorted = rules.clone();
    rules_sorted.sort_unstable();
    assert_eq!(rules_sorted, expected, "{out}");
    assert!(out.contains("33 events from 1 sources"), "{out}");
    assert!(out.contains("2 malformed (fixtures: 2)"), "{out}");

    // Nothing new: the same findings hold, nobody is paged again.
    let again = run(dir.path(), &["run", "provmon", "--wait"]);
    let out = stdout(&again);
    assert_eq!(again.status.code(), Some(1), "{out}");
    assert!(pages(&out).is_empty(), "{out}");
    assert!(out.contains("0 events from 1 sources"), "{out}");

    // The stale release gets its bundle (just now: its signing window is
    // still open) and the failed runtime verify passes on a retry.
    let stale = subject(&paged, "stale-chain");
    let failed = subject(&paged, "runtime-verify-fail");
    let now = chrono::Utc::now().to_rfc3339();
    let late = format!(
        "{}\n{}\n",
        format_args!(
            r#"{{"type":"bundle","ts":"{now}","release_sha":"{stale}","bundle_digest":"sha256:{}"}}"#,
            "ab".repeat(32)
        ),
        format_args!(
            r#"{{"type":"runtime_verify","ts":"{now}","bundle_digest":"{failed}","status":"pass"}}"#
        ),
    );
    std::fs::write(
        dir.path().join("fixtures/provmon/events/2026-11-c.ndjson"),
        late,
    )
    .unwrap();
    let closed = run(dir.path(), &["run", "provmon", "--wait"]);
    let out = stdout(&closed);
    assert_eq!(closed.status.code(), Some(1), "six gaps remain: {out}");
    let resolved: Vec<String> = pages(&out)
        .into_iter()
        .map(|(action, key)| {
            assert_eq!(action, "RESOLVE", "{out}");
            key
        })
        .collect();
    assert_eq!(
        resolved,
        [
            format!("provmon/runtime-verify-fail/{failed}"),
            format!("provmon/stale-chain/{stale}"),
        ],
        "{out}"
    );
    assert!(out.contains("2 events from 1 sources"), "{out}");
    assert!(
        out.contains("1 windows open"),
        "the new bundle's signing window: {out}"
    );

    let open = run(dir.path(), &["alerts", "--open", "--json"]);
    let open: serde_json::Value = serde_json::from_slice(&open.stdout).unwrap();
    assert_eq!(open.as_array().unwrap().len(), 6);
}
