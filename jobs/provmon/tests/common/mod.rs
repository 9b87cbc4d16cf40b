//! What the scenario and re-check tests share: a folder of event files, a
//! Rekor stand-in with a real Merkle log, real cosign keys, an in-memory
//! job state, and sweeps over them.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use patrol_job_api::{CancellationToken, JobState, RunReport};
use patrol_job_provmon::evidence::EvidenceSpec;
use patrol_job_provmon::memory::MemoryState;
use patrol_job_provmon::rules::load_rules;
use patrol_job_provmon::verify::{RekorSpec, VerifySpec};
use patrol_job_provmon::{sweep, SourceSpec, SweepInput};
use patrol_provmon_verify::fixtures::{Artifact, SigningKey};
use patrol_standins::RekorStandin;

pub struct World {
    pub dir: tempfile::TempDir,
    pub rekor: RekorStandin,
    pub cosign: SigningKey,
    pub state: Arc<MemoryState>,
    pub files: usize,
    pub evidence: Option<EvidenceSpec>,
}

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 10, 0, 0).unwrap()
}

pub fn ts(minutes: i64) -> String {
    (t0() + Duration::minutes(minutes)).to_rfc3339()
}

impl World {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cosign = SigningKey::p256_from_seed(b"scenarios/cosign");
        let rekor = RekorStandin::start(b"scenarios/rekor").await.unwrap();
        rekor.set_now(t0().timestamp());
        std::fs::create_dir(dir.path().join("events")).unwrap();
        std::fs::write(dir.path().join("cosign.pub"), cosign.public_key_pem()).unwrap();
        std::fs::write(dir.path().join("rekor.pub"), rekor.public_key_pem()).unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        // The shipped rules, signature-invalid and rekor-mismatch included.
        let rules = std::fs::read_to_string(root.join("policies/provmon/rules.yaml")).unwrap();
        std::fs::write(dir.path().join("rules.yaml"), rules).unwrap();
        Self {
            dir,
            rekor,
            cosign,
            state: Arc::new(MemoryState::default()),
            files: 0,
            evidence: None,
        }
    }

    pub fn events(&mut self, lines: &[String]) {
        self.files += 1;
        let path = self
            .dir
            .path()
            .join(format!("events/{:03}.ndjson", self.files));
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }

    /// Logs the artifact's signed hashedrekord in the stand-in; its uuid.
    pub fn log(&self, artifact: &Artifact) -> String {
        self.rekor
            .add_body(artifact.hashedrekord_body(&self.cosign.public_key_pem()))
    }

    /// The verification settings every sweep here uses.
    pub fn verify_spec(&self) -> VerifySpec {
        let path = self.dir.path();
        VerifySpec {
            signing_keys: vec![path.join("cosign.pub")],
            rekor: Some(RekorSpec {
                public_key: path.join("rekor.pub"),
                url: Some(self.rekor.base_url()),
                offline_dir: None,
                timeout: Some("5s".into()),
            }),
            sigstore: None,
        }
    }

    pub fn rules(&self) -> Vec<patrol_job_provmon::rules::Rule> {
        load_rules(&self.dir.path().join("rules.yaml")).unwrap()
    }

    pub async fn sweep(&self, minutes_after_t0: i64) -> RunReport {
        let path = self.dir.path();
        let verify = self.verify_spec();
        let input = SweepInput {
            evidence: self.evidence.as_ref().map(|spec| spec.build().unwrap()),
            sources: vec![SourceSpec::Files {
                name: "ci".into(),
                path: path.join("events"),
            }],
            rules: self.rules(),
            verifier: verify.build().unwrap(),
            max_events: 1_000_000,
            now: t0() + Duration::minutes(minutes_after_t0),
            max_clock_skew: std::time::Duration::from_secs(300),
            rekor_outage_page_after: std::time::Duration::from_secs(1800),
        };
        let state = JobState::new(self.state.clone());
        let report = sweep(&state, input, &CancellationToken::new())
            .await
            .unwrap();
        self.state.apply(&report.state);
        report
    }
}

pub fn keys(report: &RunReport) -> Vec<String> {
    let mut keys: Vec<String> = report.findings.iter().map(|f| f.key.clone()).collect();
    keys.sort();
    keys
}

/// `artifact`'s chain as `chain` writes it without a Rekor entry, plus a
/// `rekor` event that names no entry (malformed: it vouches for nothing).
pub fn chain_with_uuidless_rekor(artifact: &Artifact, name: &str) -> Vec<String> {
    let mut lines = chain(artifact, name, None, &artifact.signature_b64());
    lines.push(format!(
        r#"{{"type":"rekor","ts":"{}","bundle_digest":"{}"}}"#,
        ts(2),
        artifact.digest()
    ));
    lines
}

/// A `rekor` event naming `uuid` for `artifact`, `minutes` after t0.
pub fn rekor_event(artifact: &Artifact, uuid: &str, minutes: i64) -> String {
    format!(
        r#"{{"type":"rekor","ts":"{}","bundle_digest":"{}","rekor_uuid":"{uuid}"}}"#,
        ts(minutes),
        artifact.digest()
    )
}

pub fn chain(artifact: &Artifact, name: &str, uuid: Option<&str>, signature: &str) -> Vec<String> {
    let digest = artifact.digest();
    let mut lines = vec![
        format!(
            r#"{{"type":"release","ts":"{}","release_sha":"{name}"}}"#,
            ts(0)
        ),
        format!(
            r#"{{"type":"bundle","ts":"{}","release_sha":"{name}","bundle_digest":"{digest}"}}"#,
            ts(1)
        ),
        format!(
            r#"{{"type":"sign","ts":"{}","bundle_digest":"{digest}","signature":"{signature}"}}"#,
            ts(2)
        ),
    ];
    if let Some(uuid) = uuid {
        lines.push(rekor_event(artifact, uuid, 2));
    }
    lines
}
