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
        "runtime-verify-fail",
        "stale-chain",
        "unsigned-bundle",
    ];
    expected.sort_unstable();
    let mut rules_sorted = rules.clone();
    rules_sorted.sort_unstable();
    assert_eq!(rules_sorted, expected, "{out}");
    assert!(out.contains("21 events from 1 sources"), "{out}");
    assert!(out.contains("2 malformed (fixtures: 2)"), "{out}");

    // Nothing new: the same findings hold, nobody is paged again.
    let again = run(dir.path(), &["run", "provmon", "--wait"]);
    let out = stdout(&again);
    assert_eq!(again.status.code(), Some(1), "{out}");
    assert!(pages(&out).is_empty(), "{out}");
    assert!(out.contains("0 events from 1 sources"), "{out}");

    // The missing Rekor entry and the unsigned deploy's signature and entry
    // arrive in a new file.
    let no_rekor = subject(&paged, "missing-rekor");
    let unsigned = subject(&paged, "deployed-unverified");
    let late = format!(
        "{}\n{}\n{}\n",
        format_args!(
            r#"{{"type":"rekor","ts":"2026-11-10T10:00:00Z","bundle_digest":"{no_rekor}","rekor_uuid":"late-1"}}"#
        ),
        format_args!(
            r#"{{"type":"sign","ts":"2026-11-10T10:00:00Z","bundle_digest":"{unsigned}"}}"#
        ),
        format_args!(
            r#"{{"type":"rekor","ts":"2026-11-10T10:00:02Z","bundle_digest":"{unsigned}","rekor_uuid":"late-2"}}"#
        ),
    );
    std::fs::write(
        dir.path().join("fixtures/provmon/events/2026-11-c.ndjson"),
        late,
    )
    .unwrap();
    let closed = run(dir.path(), &["run", "provmon", "--wait"]);
    let out = stdout(&closed);
    assert_eq!(closed.status.code(), Some(1), "two gaps remain: {out}");
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
            format!("provmon/deployed-unverified/{unsigned}"),
            format!("provmon/missing-rekor/{no_rekor}"),
            format!("provmon/unsigned-bundle/{unsigned}"),
        ],
        "{out}"
    );
    assert!(out.contains("3 events from 1 sources"), "{out}");

    let open = run(dir.path(), &["alerts", "--open", "--json"]);
    let open: serde_json::Value = serde_json::from_slice(&open.stdout).unwrap();
    let mut keys: Vec<&str> = open
        .as_array()
        .unwrap()
        .iter()
        .map(|alert| alert["key"].as_str().unwrap())
        .collect();
    keys.sort_unstable();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys[0].starts_with("provmon/runtime-verify-fail/"));
    assert!(keys[1].starts_with("provmon/stale-chain/"));
}
