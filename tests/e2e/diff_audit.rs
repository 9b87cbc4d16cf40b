//! `patrol diff-audit compare` with the real binary: diffs as NDJSON on
//! stdout, the summary on stderr, exit 0 identical, 1 differences, 2 bad
//! input.

use crate::support::{console_pages as pages, patrol, stderr, stdout};

const EU: &str = "tenant,id,note,amount\nacme,1,ok,10\nacme,2,,20\nacme,3,ok,30\nglobex,1,ok,5\n";

#[test]
fn compare_names_each_differing_key_and_exits_by_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let eu = dir.path().join("eu.csv");
    let us = dir.path().join("us.csv");
    std::fs::write(&eu, EU).unwrap();
    std::fs::write(
        &us,
        "tenant,id,note,amount\nacme,1,ok,10\nacme,2,,21\nglobex,1,ok,5\nglobex,1,ok,5\n",
    )
    .unwrap();
    let (eu, us) = (eu.to_str().unwrap(), us.to_str().unwrap());
    let out = patrol(
        dir.path(),
        &[
            "diff-audit",
            "compare",
            "--left",
            eu,
            "--right",
            us,
            "--table",
            "audit",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let found: Vec<(String, i64, String)> = lines
        .iter()
        .map(|l| {
            (
                l["tenant"].as_str().unwrap().to_string(),
                l["id"].as_i64().unwrap(),
                l["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            ("acme".to_string(), 2, "mismatch".to_string()),
            ("acme".to_string(), 3, "missing".to_string()),
            ("globex".to_string(), 1, "duplicate".to_string()),
        ]
    );
    assert!(lines.iter().all(|l| l["kind"] == "audit"));
    assert!(
        stderr(&out).contains("1 equal, 1 missing, 1 mismatch, 1 duplicate"),
        "{}",
        stderr(&out)
    );

    let same = patrol(
        dir.path(),
        &["diff-audit", "compare", "--left", eu, "--right", eu],
    );
    assert_eq!(same.status.code(), Some(0), "{}", stderr(&same));
    assert!(stdout(&same).is_empty());

    let wrong = patrol(
        dir.path(),
        &[
            "diff-audit",
            "compare",
            "--left",
            eu,
            "--right",
            us,
            "--key",
            "tenant,uuid",
        ],
    );
    assert_eq!(wrong.status.code(), Some(2));
    assert!(
        stderr(&wrong).contains("no key column `uuid`"),
        "{}",
        stderr(&wrong)
    );
    assert!(stdout(&wrong).is_empty(), "never a partial listing");
}

#[test]
fn the_shipped_schedule_finds_exactly_the_planted_differences_pages_each_reason_once_and_resolves_when_fixed(
) {
    let dir = tempfile::tempdir().unwrap();
    crate::support::shipped_checkout(dir.path());
    let first = patrol(dir.path(), &["run", "diff-audit", "--wait"]);
    let text = stdout(&first);
    assert_eq!(first.status.code(), Some(1), "{text}{}", stderr(&first));
    let mut paged = pages(&text);
    paged.sort();
    let expected: Vec<(String, String)> =
        ["cross-region-write", "duplicate", "mismatch", "missing"]
            .iter()
            .map(|r| ("TRIGGER".to_string(), format!("diff-audit/audit/{r}")))
            .collect();
    // The change streams' table: late, missing and mismatched changes, and
    // EU tenants' changes made first or only in the US mirror.
    let changes: Vec<(String, String)> = ["cross-region-write", "late", "mismatch", "missing"]
        .iter()
        .map(|r| {
            (
                "TRIGGER".to_string(),
                format!("diff-audit/audit-changes/{r}"),
            )
        })
        .collect();
    // The shipped exception that expired pages too.
    let expiry = (
        "TRIGGER".to_string(),
        "diff-audit/audit/exception-expired/initech/10600/missing".to_string(),
    );
    let mut all = expected.clone();
    all.extend(changes.iter().cloned());
    all.push(expiry);
    all.sort();
    assert_eq!(paged, all, "{text}");
    // The diffs are exactly the generator's ground truth.
    for (truth, diffs) in [("truth.json", "audit"), ("cdc/truth.json", "audit-changes")] {
        let (want, got) = truth_and_diffs(dir.path(), truth, diffs);
        assert_eq!(got, want, "{diffs}");
    }
    let changes_diffs = read_diffs(dir.path(), "audit-changes");
    let late: Vec<i64> = changes_diffs
        .iter()
        .filter(|l| l["reason"] == "late")
        .map(|l| l["lag_ms"].as_i64().unwrap())
        .collect();
    assert_eq!(late, vec![95_000, 180_000], "the planted delays");
    assert!(changes_diffs
        .iter()
        .all(|l| l["lag_ms"].as_i64().is_some_and(|lag| lag > 0)));

    // The day's report: counts per table and reason, the CDC lag.
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join(format!("reports/{today}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(report["runs"], 1, "{report}");
    assert_eq!(
        report["tables"]["audit-changes"]["late"]["last"], 2,
        "{report}"
    );
    assert_eq!(
        report["tables"]["audit"]["duplicate"]["peak"], 1,
        "{report}"
    );
    assert_eq!(report["lag_ms"]["max"], 180_000, "{report}");
    assert_eq!(report["exceptions"]["expired"].as_array().unwrap().len(), 1);
    let markdown = std::fs::read_to_string(dir.path().join(format!("reports/{today}.md"))).unwrap();
    assert!(
        markdown.contains("| audit-changes | late | 2 | 2 |"),
        "{markdown}"
    );

    // Each run leaves a signed proof that `patrol evidence verify` checks.
    let key = dir.path().join("fixtures/provmon/keys/evidence.pub");
    let key = key.to_str().unwrap();
    let verify = patrol(dir.path(), &["evidence", "verify", "proofs", "--key", key]);
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}{}",
        stdout(&verify),
        stderr(&verify)
    );
    let packs: Vec<_> = std::fs::read_dir(dir.path().join("proofs"))
        .unwrap()
        .collect();
    assert_eq!(packs.len(), 1);
    let pack = packs[0].as_ref().unwrap().path();
    let proof: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pack.join("proof.json")).unwrap()).unwrap();
    assert_eq!(proof["counts"]["diff"], 9 + 8);
    assert!(proof["counts"]["ok"].as_u64().unwrap() > 1991);
    let table = &proof["tables"][0];
    assert_eq!(
        (
            table["left"]["rows"].as_u64(),
            table["right"]["rows"].as_u64()
        ),
        (Some(1998), Some(1999))
    );
    assert_eq!(table["left"]["commitment"].as_str().unwrap().len(), 64);
    // Two files: each commitment is the file's SHA-256, which anyone can
    // recompute.
    assert_eq!(table["left"]["commitment_of"], "file");
    let eu_sha = patrol_job_api::effects::file_sha256(
        &dir.path().join("fixtures/diff-audit/eu/audit.parquet"),
    )
    .unwrap();
    assert_eq!(table["left"]["commitment"], eu_sha.as_str());
    assert_ne!(table["left"]["commitment"], table["right"]["commitment"]);
    // One changed byte in the proved diffs and the pack fails.
    let diffs = pack.join("diffs/audit.ndjson");
    let tampered = std::fs::read_to_string(&diffs)
        .unwrap()
        .replacen("initech", "initecH", 1);
    std::fs::write(&diffs, tampered).unwrap();
    let verify = patrol(dir.path(), &["evidence", "verify", "proofs", "--key", key]);
    assert_eq!(verify.status.code(), Some(1), "{}", stdout(&verify));
    std::fs::remove_dir_all(dir.path().join("proofs")).unwrap();

    // A repeat run pages nothing new.
    let again = patrol(dir.path(), &["run", "diff-audit", "--wait"]);
    assert!(pages(&stdout(&again)).is_empty(), "{}", stdout(&again));

    // The exception renewed (dates from today, so the test holds any day):
    // its row is excepted (the missing finding is updated to the two rows
    // left), the expiry resolves, nothing new pages.
    let today = chrono::Utc::now().date_naive();
    let file = dir.path().join("policies/diff-audit/exceptions.yaml");
    let renewed = std::fs::read_to_string(&file)
        .unwrap()
        .replace(
            "created: 2026-09-01",
            &format!("created: {}", today - chrono::Days::new(1)),
        )
        .replace(
            "expires: 2026-11-30",
            &format!("expires: {}", today + chrono::Days::new(30)),
        );
    std::fs::write(&file, renewed).unwrap();
    let renewed = patrol(dir.path(), &["run", "diff-audit", "--wait"]);
    let mut changed = pages(&stdout(&renewed));
    changed.sort();
    assert_eq!(
        changed,
        vec![
            (
                "RESOLVE".to_string(),
                "diff-audit/audit/exception-expired/initech/10600/missing".to_string()
            ),
            ("UPDATE".to_string(), "diff-audit/audit/missing".to_string()),
        ],
        "{}",
        stdout(&renewed)
    );
    assert!(
        stdout(&renewed).contains("2 missing row(s)"),
        "{}",
        stdout(&renewed)
    );
    let diffs = std::fs::read_to_string(dir.path().join("diffs/audit.ndjson")).unwrap();
    let excepted: Vec<serde_json::Value> = diffs
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["excepted"].is_object())
        .collect();
    assert_eq!(excepted.len(), 1, "{diffs}");
    assert_eq!(
        (excepted[0]["tenant"].as_str(), excepted[0]["id"].as_i64()),
        (Some("initech"), Some(10600))
    );
    assert_eq!(
        excepted[0]["excepted"]["owner"],
        "data-protection@example.com"
    );

    // The US copy fixed (replaced by the EU one): every finding resolves.
    std::fs::copy(
        dir.path().join("fixtures/diff-audit/eu/audit.parquet"),
        dir.path().join("fixtures/diff-audit/us/audit.parquet"),
    )
    .unwrap();
    let fixed = patrol(dir.path(), &["run", "diff-audit", "--wait"]);
    let mut resolved = pages(&stdout(&fixed));
    resolved.sort();
    let expected: Vec<(String, String)> = expected
        .into_iter()
        .map(|(_, key)| ("RESOLVE".to_string(), key))
        .collect();
    assert_eq!(resolved, expected);

    // The mirrors catch up: the missing changes arrive, the mismatched row
    // is rewritten, the US-only row reaches the EU. Those findings resolve;
    // the late ones and the cross-region writes stay open for their hour
    // (they do not flap).
    let cdc = dir.path().join("fixtures/diff-audit/cdc");
    let eu = std::fs::read_to_string(cdc.join("eu/audit.ndjson")).unwrap();
    let us = std::fs::read_to_string(cdc.join("us/audit.ndjson")).unwrap();
    let line_of = |text: &str, id: i64| -> serde_json::Value {
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| l["after"]["id"] == id)
            .unwrap()
    };
    // Each copied with a later source time, as a mirror would apply it:
    // the EU tenant's rows to the US, the US tenant's to the EU.
    let mirrored = |from: &str, ids: &[i64]| -> String {
        ids.iter()
            .map(|&id| {
                let mut line = line_of(from, id);
                line["source"]["ts_ms"] =
                    (line["source"]["ts_ms"].as_i64().unwrap() + 10_000).into();
                format!("{line}\n")
            })
            .collect()
    };
    append(
        &cdc.join("us/audit.ndjson"),
        &mirrored(&eu, &[20170, 20110]),
    );
    append(
        &cdc.join("eu/audit.ndjson"),
        &mirrored(&us, &[20070, 20400]),
    );
    let caught_up = patrol(dir.path(), &["run", "diff-audit", "--wait"]);
    let mut resolved = pages(&stdout(&caught_up));
    resolved.sort();
    assert_eq!(
        resolved,
        vec![
            (
                "RESOLVE".to_string(),
                "diff-audit/audit-changes/mismatch".to_string()
            ),
            (
                "RESOLVE".to_string(),
                "diff-audit/audit-changes/missing".to_string()
            ),
        ],
        "{}",
        stdout(&caught_up)
    );
}

fn append(path: &std::path::Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

fn read_diffs(dir: &std::path::Path, table: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join(format!("diffs/{table}.ndjson")))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The generator's ground truth and a table's diffs, both as sorted
/// `tenant/id/reason/side` lines.
fn truth_and_diffs(dir: &std::path::Path, truth: &str, table: &str) -> (Vec<String>, Vec<String>) {
    let truth: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(dir.join("fixtures/diff-audit").join(truth)).unwrap(),
    )
    .unwrap();
    let side = |copy: &str| if copy == "eu" { "left" } else { "right" };
    let line = |l: &serde_json::Value, side: &str| {
        format!(
            "{}/{}/{}/{side}",
            l["tenant"].as_str().unwrap(),
            l["id"],
            l["reason"].as_str().unwrap(),
        )
    };
    let mut want: Vec<String> = truth
        .iter()
        .map(|t| line(t, t["side"].as_str().map_or("", side)))
        .collect();
    let mut got: Vec<String> = read_diffs(dir, table)
        .iter()
        .map(|l| line(l, l["side"].as_str().unwrap_or("")))
        .collect();
    want.sort();
    got.sort();
    (want, got)
}
