//! The evidence-audit job with the real binary: `patrol evidence-audit
//! evaluate` over a shipped release (exit 0 pass, 1 a control failed, 2
//! bad input) and the shipped schedule paging each planted failure once.

use crate::support::{console_pages as pages, patrol, stderr, stdout};

const CATALOG: &str = "policies/compliance/control_catalog.yaml";
const KEY: &str = "fixtures/evidence-audit/keys/attestation.pub";

#[test]
fn evaluate_prints_the_renderer_output_and_exits_by_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    crate::support::shipped_checkout(dir.path());
    let evaluate = |release: &str| {
        patrol(
            dir.path(),
            &[
                "evidence-audit",
                "evaluate",
                "--catalog",
                CATALOG,
                "--evidence",
                &format!("fixtures/evidence-audit/releases/{release}"),
                "--key",
                KEY,
            ],
        )
    };
    let clean = evaluate("v1.4.0");
    assert_eq!(clean.status.code(), Some(0), "{}", stderr(&clean));
    let report: serde_json::Value = serde_json::from_str(&stdout(&clean)).unwrap();
    assert_eq!(report["release"], "v1.4.0");
    assert_eq!(report["overall"], true);
    assert_eq!(report["controls"].as_array().unwrap().len(), 7);
    assert!(report["created_utc"].as_str().unwrap().ends_with('Z'));

    let cve = evaluate("v1.4.1");
    assert_eq!(cve.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_str(&stdout(&cve)).unwrap();
    let failed: Vec<&str> = report["controls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["pass"] == false)
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["SC-01"]);
    assert!(stderr(&cve).contains("CVE-2026-2002"), "{}", stderr(&cve));

    // Without the key, the attestation cannot verify: fails closed.
    let unkeyed = patrol(
        dir.path(),
        &[
            "evidence-audit",
            "evaluate",
            "--catalog",
            CATALOG,
            "--evidence",
            "fixtures/evidence-audit/releases/v1.4.0",
        ],
    );
    assert_eq!(unkeyed.status.code(), Some(1));
    assert!(
        stderr(&unkeyed).contains("no attestation key"),
        "{}",
        stderr(&unkeyed)
    );

    let missing = patrol(
        dir.path(),
        &[
            "evidence-audit",
            "evaluate",
            "--catalog",
            "nope.yaml",
            "--evidence",
            ".",
        ],
    );
    assert_eq!(missing.status.code(), Some(2));
    assert!(stdout(&missing).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_schedule_pages_each_planted_failure_once_attests_each_release_and_chains_it() {
    let dir = tempfile::tempdir().unwrap();
    crate::support::shipped_checkout(dir.path());
    let first = patrol(dir.path(), &["run", "evidence-audit", "--wait"]);
    let text = stdout(&first);
    assert_eq!(first.status.code(), Some(1), "{text}{}", stderr(&first));
    let mut paged = pages(&text);
    paged.sort();
    let truth: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("fixtures/evidence-audit/truth.json")).unwrap(),
    )
    .unwrap();
    let mut expected: Vec<(String, String)> = truth
        .iter()
        .map(|t| {
            (
                "TRIGGER".to_string(),
                format!(
                    "evidence-audit/{}/{}",
                    t["release"].as_str().unwrap(),
                    t["control"].as_str().unwrap()
                ),
            )
        })
        .collect();
    expected.sort();
    assert_eq!(paged, expected, "{text}");
    assert_eq!(expected.len(), 5);

    let again = patrol(dir.path(), &["run", "evidence-audit", "--wait"]);
    assert!(pages(&stdout(&again)).is_empty(), "{}", stdout(&again));

    // Each release attested once (the second run added nothing), in the
    // chain, signed with the configured key.
    let chain = patrol(dir.path(), &["evidence-audit", "chain", "verify"]);
    assert_eq!(
        chain.status.code(),
        Some(0),
        "{}{}",
        stdout(&chain),
        stderr(&chain)
    );
    assert!(
        stdout(&chain).contains("evidence-audit: 6 entries, chain intact"),
        "{}",
        stdout(&chain)
    );
    let envelope = std::fs::read(
        dir.path()
            .join("attestations/v1.5.0/control-attestation.intoto.json"),
    )
    .unwrap();
    let key =
        std::fs::read_to_string(dir.path().join("fixtures/provmon/keys/evidence.pub")).unwrap();
    let key = patrol_provmon_verify::key::PublicKey::from_pem(&key).unwrap();
    let verified = patrol_job_evidence_audit::dsse::verify(&envelope, &[key]).unwrap();
    assert_eq!(verified.statement["predicate"]["release"], "v1.5.0");
    assert_eq!(verified.statement["predicate"]["overall"], false);
    assert!(dir
        .path()
        .join("attestations/v1.5.0/control-attestation.pdf.sig")
        .is_file());

    // The quarterly audit of 2026Q4 as a scheduled run: the report posted,
    // each failing sampled release paged, the report chained.
    let quarterly = patrol(
        dir.path(),
        &[
            "run",
            "evidence-audit-quarterly",
            "--wait",
            "--param",
            "audit.period=2026Q4",
        ],
    );
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("audits/audit-2026Q4.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report["releases"].as_array().unwrap().len(), 6, "{report}");
    let sampled = report["sampled"].as_array().unwrap();
    assert_eq!(sampled.len(), 1, "10% of 6, at least one");
    let failing: Vec<(String, String)> = sampled
        .iter()
        .filter(|r| !r["problems"].as_array().unwrap().is_empty())
        .map(|r| {
            (
                "TRIGGER".to_string(),
                format!(
                    "evidence-audit/audit/2026Q4/{}",
                    r["release"].as_str().unwrap()
                ),
            )
        })
        .collect();
    assert_eq!(
        pages(&stdout(&quarterly)),
        failing,
        "{}",
        stdout(&quarterly)
    );
    assert_eq!(
        quarterly.status.code(),
        Some(if failing.is_empty() { 0 } else { 1 })
    );
    assert!(dir.path().join("audits/audit-2026Q4.md").is_file());
    let chains = patrol(dir.path(), &["evidence-audit", "chain", "verify"]);
    assert!(
        stdout(&chains).contains("evidence-audit-quarterly: 1 entries, chain intact"),
        "{}",
        stdout(&chains)
    );

    // An edited ledger row, then a removed one: each named.
    let url = format!("sqlite://{}", dir.path().join("patrol.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query(
        "UPDATE job_state SET value = CAST(replace(CAST(value AS TEXT), 'v1.4.1', 'v1.4.9') AS BLOB) \
         WHERE key = 'chain/00000002'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let edited = patrol(dir.path(), &["evidence-audit", "chain", "verify"]);
    assert_eq!(edited.status.code(), Some(1));
    assert!(
        stdout(&edited).contains("chain/00000002: edited"),
        "{}",
        stdout(&edited)
    );
    sqlx::query("DELETE FROM job_state WHERE key IN ('chain/00000002', 'chain/00000006')")
        .execute(&pool)
        .await
        .unwrap();
    let removed = patrol(
        dir.path(),
        &[
            "evidence-audit",
            "chain",
            "verify",
            "--schedule",
            "evidence-audit",
        ],
    );
    assert_eq!(removed.status.code(), Some(1));
    let text = stdout(&removed);
    assert!(
        text.contains("chain/00000003: entry 3 follows entry 1"),
        "{text}"
    );
    assert!(
        text.contains("chain-head: names entry 6 but the chain ends at entry 5"),
        "{text}"
    );
}

#[test]
fn the_audit_draws_the_same_sample_every_time_and_finds_every_problem_in_it() {
    use patrol_job_evidence_audit::{audit, fixtures};
    let dir = tempfile::tempdir().unwrap();
    crate::support::shipped_checkout(dir.path());
    fixtures::generate_bulk(&dir.path().join("bulk"), 60).unwrap();
    std::fs::write(
        dir.path().join("schedules/evidence-audit.yaml"),
        "id: evidence-audit\njob: evidence-audit\ncron: \"0 6 * * *\"\ntimezone: UTC\nparams:\n  catalog: policies/compliance/control_catalog.yaml\n  releases: bulk/releases\n  attestation_keys: [bulk/keys/attestation.pub]\n  attestations:\n    dir: attestations\n    signing_key: file:fixtures/provmon/keys/evidence.key\n",
    )
    .unwrap();
    // Every release attested as it was.
    let attested = patrol(dir.path(), &["run", "evidence-audit", "--wait"]);
    assert!(
        dir.path()
            .join("attestations/v2.59.0/control-attestation.pdf")
            .is_file(),
        "{}",
        stderr(&attested)
    );

    let seed = "2026Q4-quarterly";
    let tags: Vec<String> = (0..60).map(|i| format!("v2.{i}.0")).collect();
    let drawn = audit::sample(&tags, 0.1, seed);
    assert_eq!(drawn.len(), 6);
    // Since then: one drawn release's SLO burn rewritten over the bound,
    // another's PDF signature lost; a release outside the draw broken too.
    let outside = tags.iter().find(|t| !drawn.contains(t)).unwrap();
    for (tag, what) in [(&drawn[0], "burn"), (&drawn[1], "sig"), (outside, "burn")] {
        match what {
            "burn" => std::fs::write(
                dir.path()
                    .join(format!("bulk/releases/{tag}/rollout/slo-burn.json")),
                "{\"burn_pct\": 55}\n",
            )
            .unwrap(),
            _ => std::fs::remove_file(
                dir.path()
                    .join(format!("attestations/{tag}/control-attestation.pdf.sig")),
            )
            .unwrap(),
        }
    }
    let mut expected: Vec<(String, String)> = vec![
        (drawn[0].clone(), "control-regressed".into()),
        (drawn[1].clone(), "attestation-invalid".into()),
    ];
    for tag in &drawn {
        let i: usize = tag
            .trim_start_matches("v2.")
            .trim_end_matches(".0")
            .parse()
            .unwrap();
        if i % 10 == 7 {
            expected.push((tag.clone(), "evidence-missing-artifact".into()));
        }
    }
    expected.sort();

    let run = || {
        patrol(
            dir.path(),
            &[
                "evidence-audit",
                "run",
                "--period",
                "2026Q4",
                "--sample",
                "10%",
                "--seed",
                seed,
            ],
        )
    };
    let first = run();
    assert_eq!(first.status.code(), Some(1), "{}", stderr(&first));
    let report: serde_json::Value = serde_json::from_str(&stdout(&first)).unwrap();
    let sampled: Vec<String> = report["sampled"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["release"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(sampled, drawn, "the documented draw");
    assert_eq!(report["releases"].as_array().unwrap().len(), 60);
    let mut found: Vec<(String, String)> = report["sampled"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r["problems"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        r["release"].as_str().unwrap().to_string(),
                        p["reason"].as_str().unwrap().to_string(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    found.sort();
    found.dedup();
    assert_eq!(found, expected);
    assert!(
        stderr(&first).contains("# Evidence audit 2026Q4"),
        "{}",
        stderr(&first)
    );
    // The same seed, the same sample.
    let second = run();
    let again: serde_json::Value = serde_json::from_str(&stdout(&second)).unwrap();
    assert_eq!(again["sampled"], report["sampled"]);
}

#[test]
fn an_audit_pack_is_deterministic_signed_and_indexes_every_file_with_its_controls() {
    let dir = tempfile::tempdir().unwrap();
    crate::support::shipped_checkout(dir.path());
    let daily = patrol(dir.path(), &["run", "evidence-audit", "--wait"]);
    assert!(
        dir.path().join("attestations/v1.5.1").is_dir(),
        "{}",
        stderr(&daily)
    );
    let pack = |out: &str| {
        patrol(
            dir.path(),
            &["evidence-audit", "pack", "v1.5.1", "--out", out],
        )
    };
    let first = pack("one.tgz");
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert_eq!(pack("two.tgz").status.code(), Some(0));
    let one = std::fs::read(dir.path().join("one.tgz")).unwrap();
    assert_eq!(
        one,
        std::fs::read(dir.path().join("two.tgz")).unwrap(),
        "deterministic"
    );

    // Unpacked by the system's tar, checked by `patrol evidence verify`.
    let listing = std::process::Command::new("tar")
        .args(["-tvzf", "one.tgz", "--numeric-owner"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    assert!(listing.lines().count() > 15, "{listing}");
    assert!(
        listing
            .lines()
            .all(|l| l.starts_with("-rw-r--r-- 0/0") && l.contains("1970-01-01")),
        "{listing}"
    );
    let unpacked = std::process::Command::new("tar")
        .args(["-xzf", "one.tgz"])
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(unpacked.success());
    let root = dir.path().join("audit-pack-v1.5.1");
    let verify = patrol(
        dir.path(),
        &[
            "evidence",
            "verify",
            root.to_str().unwrap(),
            "--key",
            "fixtures/provmon/keys/evidence.pub",
        ],
    );
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}{}",
        stdout(&verify),
        stderr(&verify)
    );

    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("index.json")).unwrap()).unwrap();
    let files = index["files"].as_array().unwrap();
    for file in files {
        let path = file["path"].as_str().unwrap();
        let bytes = std::fs::read(root.join(path)).unwrap();
        assert_eq!(
            file["sha256"],
            patrol_job_api::effects::sha256_hex_of(&bytes[..]).unwrap(),
            "{path}"
        );
    }
    let controls_of = |path: &str| -> Vec<String> {
        files.iter().find(|f| f["path"] == path).unwrap()["controls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(controls_of("evidence/scans/trivy.sarif"), ["SC-01"]);
    assert_eq!(controls_of("evidence/rollout/slo-burn.json"), ["REL-01"]);
    assert!(files
        .iter()
        .any(|f| f["path"] == "attestation/control-attestation.pdf"));
    let csv = std::fs::read_to_string(root.join("summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 8, "{csv}");
    assert!(
        csv.contains("v1.5.1,DR-01,Chaos/DR Drills,false,A1.2 A1.3"),
        "{csv}"
    );
    let map: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("control-map.json")).unwrap()).unwrap();
    assert_eq!(map["SC-01"]["maps"]["soc2"][0], "CC7.1");

    let unknown = patrol(
        dir.path(),
        &["evidence-audit", "pack", "v9.9.9", "--out", "x.tgz"],
    );
    assert_eq!(unknown.status.code(), Some(2));
}
