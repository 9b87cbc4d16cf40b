//! The shipped fixtures: release evidence folders under
//! `fixtures/evidence-audit/releases/<tag>/` with everything the seed's
//! catalog asks for (SBOM, a Trivy-shaped SARIF scan, a DSSE in-toto
//! provenance attestation signed with the fixture key, policy results,
//! canary and SLO burn metrics, schema lint logs, a cost diff, a DR drill
//! log), and planted failures listed in `truth.json`. Deterministic:
//! `gen-evidence-audit-fixtures DIR` writes the same bytes every time.

use std::path::Path;

use patrol_provmon_verify::fixtures::SigningKey;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The fixture key release attestations are signed with.
pub fn attestation_key() -> SigningKey {
    SigningKey::p256_from_seed(b"evidence-audit attestations")
}

/// Someone else's key (a planted bad signature).
fn stranger_key() -> SigningKey {
    SigningKey::p256_from_seed(b"evidence-audit stranger")
}

/// One planted failure: the release, the control, and the finding reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Planted {
    pub release: String,
    pub control: &'static str,
    pub reason: &'static str,
    pub what: &'static str,
}

/// How a release's evidence deviates from a clean one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flaw {
    None,
    HighCve,
    WrongKeyAttestation,
    NoDrDrill,
    CanaryBurn,
    StaleDrDrill,
}

const RELEASES: [(&str, &str, Flaw); 6] = [
    ("v1.4.0", "2026-10-05T09:00:00Z", Flaw::None),
    ("v1.4.1", "2026-10-19T09:00:00Z", Flaw::HighCve),
    ("v1.5.0", "2026-11-02T09:00:00Z", Flaw::WrongKeyAttestation),
    ("v1.5.1", "2026-11-09T09:00:00Z", Flaw::NoDrDrill),
    ("v1.6.0", "2026-11-16T09:00:00Z", Flaw::CanaryBurn),
    ("v1.6.1", "2026-11-30T09:00:00Z", Flaw::StaleDrDrill),
];

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn pretty(value: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// A Trivy-shaped SARIF log: one medium finding, and with `high` one
/// CVE scored 8.1.
fn trivy_sarif(high: bool) -> Value {
    let mut rules = vec![json!({
        "id": "CVE-2026-1001", "name": "OsPackageVulnerability",
        "shortDescription": {"text": "zlib: out-of-bounds read"},
        "defaultConfiguration": {"level": "warning"},
        "properties": {"security-severity": "5.3", "tags": ["vulnerability", "security", "MEDIUM"]},
    })];
    let mut results = vec![json!({
        "ruleId": "CVE-2026-1001", "ruleIndex": 0, "level": "warning",
        "message": {"text": "Package: zlib\nInstalled Version: 1.3.0\nFixed Version: 1.3.1"},
        "locations": [{"physicalLocation": {"artifactLocation": {"uri": "app/Dockerfile"}, "region": {"startLine": 1}}}],
    })];
    if high {
        rules.push(json!({
            "id": "CVE-2026-2002", "name": "LanguageSpecificPackageVulnerability",
            "shortDescription": {"text": "openssl: remote code execution"},
            "defaultConfiguration": {"level": "error"},
            "properties": {"security-severity": "8.1", "tags": ["vulnerability", "security", "HIGH"]},
        }));
        results.push(json!({
            "ruleId": "CVE-2026-2002", "ruleIndex": 1, "level": "error",
            "message": {"text": "Package: openssl\nInstalled Version: 3.0.1\nFixed Version: 3.0.9"},
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": "app/go.mod"}, "region": {"startLine": 12}}}],
        }));
    }
    json!({
        "version": "2.1.0",
        "$schema": "https://raw.githubusercontent.com/oasis-tcs/sarif-spec/main/sarif-2.1/schema/sarif-schema-2.1.0.json",
        "runs": [{
            "tool": {"driver": {"name": "Trivy", "informationUri": "https://github.com/aquasecurity/trivy",
                                "version": "0.58.1", "rules": rules}},
            "results": results,
        }],
    })
}

/// Writes the releases, the attestation public key and `truth.json` under
/// `dir`; returns the planted failures.
pub fn generate(dir: &Path) -> Result<Vec<Planted>, String> {
    let key = attestation_key();
    write(
        &dir.join("keys/attestation.pub"),
        key.public_key_pem().as_bytes(),
    )?;
    let releases = dir.join("releases");
    if releases.exists() {
        std::fs::remove_dir_all(&releases)
            .map_err(|err| format!("{}: {err}", releases.display()))?;
    }
    let mut planted = Vec::new();
    for release in RELEASES {
        write_release(&releases, release, &key, &mut planted)?;
    }
    planted.sort_by(|a, b| (&a.release, a.control).cmp(&(&b.release, b.control)));
    write(
        &dir.join("truth.json"),
        &pretty(&serde_json::to_value(&planted).map_err(|err| err.to_string())?),
    )?;
    Ok(planted)
}

/// `count` releases `v2.<i>.0` spread over 2026Q4 under `dir/releases`
/// (for the audit's tests and bench): every tenth from the fourth has a
/// HIGH CVE, every tenth from the eighth no DR drill; the rest are clean.
pub fn generate_bulk(dir: &Path, count: usize) -> Result<Vec<Planted>, String> {
    let key = attestation_key();
    write(
        &dir.join("keys/attestation.pub"),
        key.public_key_pem().as_bytes(),
    )?;
    let releases = dir.join("releases");
    let start =
        chrono::DateTime::parse_from_rfc3339("2026-10-01T00:00:00Z").map_err(|e| e.to_string())?;
    let step = chrono::Duration::minutes(90 * 24 * 60 / count.max(1) as i64);
    let mut planted = Vec::new();
    for i in 0..count {
        let tag = format!("v2.{i}.0");
        let created = (start + step * i as i32).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let flaw = match i % 10 {
            3 => Flaw::HighCve,
            7 => Flaw::NoDrDrill,
            _ => Flaw::None,
        };
        write_release(&releases, (&tag, &created, flaw), &key, &mut planted)?;
    }
    Ok(planted)
}

/// Writes one release folder under `releases`, noting its planted failure.
fn write_release(
    releases: &Path,
    (tag, created, flaw): (&str, &str, Flaw),
    key: &SigningKey,
    planted: &mut Vec<Planted>,
) -> Result<(), String> {
    let root = releases.join(tag);
    let mut plant = |control, reason, what| {
        planted.push(Planted {
            release: tag.into(),
            control,
            reason,
            what,
        })
    };
    let artifact = format!("patrol-app-{tag}.tar.gz contents\n").into_bytes();
    let artifact_sha = sha256_hex(&artifact);
    write(
        &root.join("release.json"),
        &pretty(&json!({"tag": tag, "created": created,
                        "artifacts": [{"name": format!("patrol-app-{tag}.tar.gz"), "sha256": artifact_sha}]})),
    )?;
    write(
        &root.join("sbom/sbom-app.json"),
        &pretty(
            &json!({"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
                        "metadata": {"component": {"type": "application", "name": "patrol-app", "version": tag}},
                        "components": [{"type": "library", "name": "zlib", "version": "1.3.0"}]}),
        ),
    )?;
    if flaw == Flaw::HighCve {
        plant(
            "SC-01",
            "control-failed",
            "the scan has a HIGH CVE (security-severity 8.1)",
        );
    }
    write(
        &root.join("scans/trivy.sarif"),
        &pretty(&trivy_sarif(flaw == Flaw::HighCve)),
    )?;
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": format!("patrol-app-{tag}.tar.gz"), "digest": {"sha256": artifact_sha}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {"buildDefinition": {"buildType": "https://patrol.example/build/v1",
                                          "externalParameters": {"ref": format!("refs/tags/{tag}")}},
                      "runDetails": {"builder": {"id": "https://patrol.example/builders/hermetic"}}},
    });
    let signer = if flaw == Flaw::WrongKeyAttestation {
        plant(
            "SC-02",
            "attestation-invalid",
            "the provenance is signed by an unknown key",
        );
        stranger_key()
    } else {
        key.clone()
    };
    write(
        &root.join("provenance/app.intoto.json"),
        &crate::dsse::sign(&signer, &statement),
    )?;
    write(
        &root.join("policies/conftest-results.json"),
        &pretty(
            &json!([{"filename": "deploy/app.yaml", "namespace": "main", "successes": 14,
                         "failures": [], "warnings": []}]),
        ),
    )?;
    write(
        &root.join("rollout/canary-metrics.json"),
        &pretty(&json!({"release": tag, "canary_percent": 10, "error_rate": 0.002, "p95_ms": 180})),
    )?;
    let burn = if flaw == Flaw::CanaryBurn {
        plant(
            "REL-01",
            "control-failed",
            "the canary burned 34% of the error budget",
        );
        34.0
    } else {
        6.5
    };
    write(
        &root.join("rollout/slo-burn.json"),
        &pretty(&json!({"slo": "api-availability", "window": "28d", "burn_pct": burn})),
    )?;
    write(
        &root.join("schema/migrate-lint.txt"),
        b"squawk: 0 violations in 3 migrations\n",
    )?;
    write(
        &root.join("schema/shadow-read.txt"),
        b"shadow reads: 10000 compared, 0 mismatched\n",
    )?;
    write(
        &root.join("finops/cost-diff.json"),
        &pretty(
            &json!({"monthly_usd_before": 12840.0, "monthly_usd_after": 12910.0, "over_budget": false}),
        ),
    )?;
    match flaw {
        Flaw::NoDrDrill => plant("DR-01", "evidence-missing-artifact", "no DR drill log"),
        _ => {
            let finished = if flaw == Flaw::StaleDrDrill {
                plant(
                    "DR-01",
                    "control-failed",
                    "the last DR drill is 60 days older than the release",
                );
                "2026-10-01T04:00:00Z".to_string()
            } else {
                drill_before(created)
            };
            write(
                &root.join("chaos-dr/run-drill.json"),
                &pretty(
                    &json!({"scenario": "region-evacuation", "finished_at": finished,
                                "rpo_minutes": 9, "rto_minutes": 41, "passed": true}),
                ),
            )?;
        }
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|err| format!("{}: {err}", parent.display()))?;
    }
    std::fs::write(path, bytes).map_err(|err| format!("{}: {err}", path.display()))
}

/// A drill three days before the release.
fn drill_before(created: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(created)
        .map(|t| (t - chrono::Duration::days(3)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|_| created.to_string())
}
