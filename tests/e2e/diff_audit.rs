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
    // The shipped exception that expired pages too.
    let expiry = (
        "TRIGGER".to_string(),
        "diff-audit/audit/exception-expired/initech/10600/missing".to_string(),
    );
    let mut all = expected.clone();
    all.push(expiry);
    all.sort();
    assert_eq!(paged, all, "{text}");
    // The diffs are exactly the generator's ground truth.
    let truth: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("fixtures/diff-audit/truth.json")).unwrap(),
    )
    .unwrap();
    let side = |copy: &str| if copy == "eu" { "left" } else { "right" };
    let mut want: Vec<String> = truth
        .iter()
        .map(|t| {
            format!(
                "{}/{}/{}/{}",
                t["tenant"].as_str().unwrap(),
                t["id"],
                t["reason"].as_str().unwrap(),
                t["side"].as_str().map_or("", side)
            )
        })
        .collect();
    let diffs = std::fs::read_to_string(dir.path().join("diffs/audit.ndjson")).unwrap();
    let mut got: Vec<String> = diffs
        .lines()
        .map(|l| {
            let l: serde_json::Value = serde_json::from_str(l).unwrap();
            format!(
                "{}/{}/{}/{}",
                l["tenant"].as_str().unwrap(),
                l["id"],
                l["reason"].as_str().unwrap(),
                l["side"].as_str().unwrap_or("")
            )
        })
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);

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
    assert_eq!(proof["counts"]["diff"], 9);
    assert_eq!(proof["counts"]["ok"], 1991);
    let table = &proof["tables"][0];
    assert_eq!(
        (
            table["left"]["rows"].as_u64(),
            table["right"]["rows"].as_u64()
        ),
        (Some(1998), Some(1999))
    );
    assert_eq!(table["left"]["commitment"].as_str().unwrap().len(), 64);
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
    assert_eq!(fixed.status.code(), Some(0), "{}", stdout(&fixed));
    let mut resolved = pages(&stdout(&fixed));
    resolved.sort();
    let expected: Vec<(String, String)> = expected
        .into_iter()
        .map(|(_, key)| ("RESOLVE".to_string(), key))
        .collect();
    assert_eq!(resolved, expected);
}
