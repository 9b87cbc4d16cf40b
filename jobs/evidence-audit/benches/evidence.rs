//! Evidence-audit throughput (issue 23, acceptance 5), a bench binary:
//!
//! 1. `evaluate`: the shipped catalog over one release whose `scans/`
//!    holds 1,000 SARIF files of 100 results each (100k results), every
//!    file gated; median of 5 runs. Next to it, the independent Python
//!    gate (`tests/data/sarif/reference_gate.py`) over the same files, when
//!    python3 is there: the obvious alternative (a script in CI).
//! 2. `audit`: 10,000 releases of one quarter (the bulk fixtures), 10%
//!    drawn and re-verified (evidence, attestation and PDF signatures,
//!    recorded verdicts re-evaluated); the sampled releases are attested
//!    first (setup, not timed).
//!
//! `cargo bench -p patrol-job-evidence-audit --bench evidence`
//! (`-- evaluate` or `-- audit` runs one).

use std::path::Path;
use std::time::Instant;

use chrono::{TimeZone, Utc};
use patrol_job_evidence_audit::evaluate::{evaluate, release_of, Inputs};
use patrol_job_evidence_audit::{attestation, audit, catalog, fixtures};
use patrol_provmon_verify::fixtures::SigningKey;
use serde_json::json;

fn main() {
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let catalog =
        catalog::load(&root.join("policies/compliance/control_catalog.yaml")).expect("catalog");
    let work = root.join("target/evidence-audit-bench");
    if only.as_deref() != Some("audit") {
        bench_evaluate(&catalog, &work.join("evaluate"));
    }
    if only.as_deref() != Some("evaluate") {
        bench_audit(&catalog, &work.join("audit"));
    }
}

/// A SARIF log of `results` results, a tenth of them HIGH when `high`.
fn sarif(file: usize, results: usize, high: bool) -> serde_json::Value {
    let rules: Vec<_> = (0..20)
        .map(|r| json!({"id": format!("R{r}"), "defaultConfiguration": {"level": if r % 2 == 0 {"warning"} else {"note"}},
                         "properties": {"security-severity": format!("{}.{}", 2 + r % 5, r % 10)}}))
        .collect();
    let results: Vec<_> = (0..results)
        .map(|i| {
            let rule = if high && i % 10 == 0 { 19 } else { i % 19 };
            json!({"ruleId": format!("R{rule}"), "ruleIndex": rule, "message": {"text": format!("finding {file}/{i}")},
                   "locations": [{"physicalLocation": {"artifactLocation": {"uri": format!("src/m{file}.rs")}, "region": {"startLine": i + 1}}}]})
        })
        .collect();
    let mut rules = rules;
    rules[19]["properties"]["security-severity"] = "8.5".into();
    json!({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "bench", "rules": rules}}, "results": results}]})
}

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn bench_evaluate(catalog: &catalog::Catalog, dir: &Path) {
    if !dir.join("releases/v2.0.0/scans/scan-0999.sarif").is_file() {
        let _ = std::fs::remove_dir_all(dir);
        fixtures::generate_bulk(dir, 1).expect("release");
        let scans = dir.join("releases/v2.0.0/scans");
        std::fs::remove_file(scans.join("trivy.sarif")).ok();
        for file in 0..1_000 {
            let bytes = serde_json::to_vec(&sarif(file, 100, file == 999)).expect("json");
            std::fs::write(scans.join(format!("scan-{file:04}.sarif")), bytes).expect("write");
        }
    }
    // The catalog's SC-01, over every scan.
    let mut catalog = catalog.clone();
    for control in &mut catalog.controls {
        for evidence in &mut control.evidence {
            if evidence.pattern() == "scans/trivy.sarif" {
                *evidence = catalog::Evidence::Path("scans/*.sarif".into());
            }
        }
    }
    let folder = dir.join("releases/v2.0.0");
    let release = release_of(&folder).expect("release.json");
    let inputs = Inputs {
        attestation_keys: vec![fixtures::attestation_key().public_key()],
        now: Utc.with_ymd_and_hms(2026, 12, 7, 0, 0, 0).unwrap(),
    };
    let bytes: u64 = std::fs::read_dir(folder.join("scans"))
        .expect("scans")
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    let mut times = Vec::new();
    let mut counted = 0;
    for _ in 0..5 {
        let started = Instant::now();
        let report = evaluate(&catalog, &folder, &release, &inputs);
        times.push(started.elapsed().as_secs_f64());
        counted = report.controls[0].details.len();
    }
    // Only scan-0999 has HIGH results: a fast wrong answer is no result.
    if counted != 1 {
        eprintln!("evaluate: expected exactly one failing SARIF file, found {counted}");
        std::process::exit(1);
    }
    println!(
        "evaluate: 1 release, 1000 SARIF files ({:.1} MB), 100000 results: median {:.3} s of 5; failing SARIF files reported: {counted}",
        bytes as f64 / 1e6,
        median(times)
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sarif/reference_gate.py");
    let started = Instant::now();
    let python = std::process::Command::new("python3")
        .arg(&script)
        .args((0..1_000).map(|f| {
            folder
                .join(format!("scans/scan-{f:04}.sarif"))
                .display()
                .to_string()
        }))
        .output();
    match python {
        Ok(out) if out.status.success() => println!(
            "evaluate: the Python reference gate over the same 1000 files: {:.3} s (one run)",
            started.elapsed().as_secs_f64()
        ),
        Ok(out) => println!(
            "evaluate: the Python reference gate failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ),
        Err(err) => println!("evaluate: no python3 for the comparison: {err}"),
    }
}

fn bench_audit(catalog: &catalog::Catalog, dir: &Path) {
    const RELEASES: usize = 10_000;
    let signer = SigningKey::p256_from_seed(b"evidence-audit bench control attestations");
    let seed = "bench:2026Q4";
    let tags: Vec<String> = (0..RELEASES).map(|i| format!("v2.{i}.0")).collect();
    let drawn = audit::sample(&tags, 0.1, seed);
    if !dir
        .join(format!(
            "attestations/{}/control-attestation.pdf.sig",
            drawn[drawn.len() - 1]
        ))
        .is_file()
    {
        let _ = std::fs::remove_dir_all(dir);
        let started = Instant::now();
        fixtures::generate_bulk(dir, RELEASES).expect("releases");
        let inputs = Inputs {
            attestation_keys: vec![fixtures::attestation_key().public_key()],
            now: Utc.with_ymd_and_hms(2026, 12, 7, 0, 0, 0).unwrap(),
        };
        for tag in &drawn {
            let folder = dir.join("releases").join(tag);
            let release = release_of(&folder).expect("release.json");
            let report = evaluate(catalog, &folder, &release, &inputs);
            let signed = attestation::attest(&report, &release, catalog, "bench", &signer);
            let out = dir.join("attestations").join(tag);
            std::fs::create_dir_all(&out).expect("dir");
            std::fs::write(
                out.join("control-attestation.intoto.json"),
                &signed.envelope,
            )
            .expect("write");
            std::fs::write(out.join("control-attestation.pdf"), &signed.pdf).expect("write");
            std::fs::write(
                out.join("control-attestation.pdf.sig"),
                &signed.pdf_signature,
            )
            .expect("write");
        }
        println!(
            "audit: setup (10000 releases written, {} attested) {:.1} s",
            drawn.len(),
            started.elapsed().as_secs_f64()
        );
    }
    let setup = audit::Setup {
        catalog: catalog.clone(),
        releases: dir.join("releases"),
        attestations: Some(dir.join("attestations")),
        evidence_keys: vec![fixtures::attestation_key().public_key()],
        attestation_keys: vec![signer.public_key()],
    };
    let period = audit::parse_period("2026Q4", Utc::now()).expect("period");
    let started = Instant::now();
    let report = audit::audit(
        &setup,
        &period,
        0.1,
        seed,
        Utc.with_ymd_and_hms(2027, 1, 1, 7, 0, 0).unwrap(),
    )
    .expect("audit");
    let elapsed = started.elapsed().as_secs_f64();
    // The bulk fixtures' releases without a DR drill (every tenth from the
    // eighth) are exactly the failing ones.
    let missing_drill = report
        .sampled
        .iter()
        .filter(|r| {
            r.release
                .trim_start_matches("v2.")
                .trim_end_matches(".0")
                .parse::<usize>()
                .is_ok_and(|i| i % 10 == 7)
        })
        .count();
    if report.sampled.len() != RELEASES / 10 || report.failed != missing_drill {
        eprintln!(
            "audit: expected {} sampled and {missing_drill} failing, found {} and {}",
            RELEASES / 10,
            report.sampled.len(),
            report.failed
        );
        std::process::exit(1);
    }
    println!(
        "audit: {} releases in the period, {} sampled and re-verified in {elapsed:.2} s; {} passed, {} failed",
        report.releases.len(),
        report.sampled.len(),
        report.passed,
        report.failed
    );
}
