//! The `github` source against the GitHub stand-in (GitHub's wire format,
//! through octocrab): releases and assets become chains, signatures in
//! `.sig` assets are verified, only what changed is read (ETag, cursor),
//! a rate limit degrades the sweep without losing anything, and the token
//! goes to GitHub and nowhere else.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use patrol_job_api::secret::SecretRef;
use patrol_job_api::{CancellationToken, JobState, RunReport};
use patrol_job_provmon::memory::MemoryState;
use patrol_job_provmon::rules::load_rules;
use patrol_job_provmon::verify::VerifySpec;
use patrol_job_provmon::{sweep, SourceSpec, SweepInput};
use patrol_provmon_verify::fixtures::{Artifact, SigningKey};
use patrol_standins::{Failure, GithubStandin};

const TOKEN: &str = "ghp_patrolTestToken0123456789abcdef";
const REPO: &str = "acme/app";

const RULES: &str = r#"rules:
  - id: unsigned-bundle
    description: Bundle built but not signed within 15m
    when: "bundle -> (no sign within 15m)"
    severity: high
    runbook: provmon-unsigned-bundle
  - id: signature-invalid
    description: No signature of a signed digest verifies
    check: signature-invalid
    severity: critical
    runbook: provmon-signature-invalid
"#;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 10, 0, 0).unwrap()
}

struct World {
    dir: tempfile::TempDir,
    github: GithubStandin,
    state: Arc<MemoryState>,
    token: SecretRef,
}

impl World {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let github = GithubStandin::start(Some(TOKEN)).await.unwrap();
        github.set_now(t0());
        let cosign = SigningKey::p256_from_seed(b"github/cosign");
        std::fs::write(dir.path().join("cosign.pub"), cosign.public_key_pem()).unwrap();
        std::fs::write(dir.path().join("rules.yaml"), RULES).unwrap();
        std::fs::write(dir.path().join("gh.token"), format!("{TOKEN}\n")).unwrap();
        let token = SecretRef::File(dir.path().join("gh.token"));
        Self {
            dir,
            github,
            state: Arc::new(MemoryState::default()),
            token,
        }
    }

    async fn sweep(&self, minutes_after_t0: i64) -> RunReport {
        let path = self.dir.path();
        let verify = VerifySpec {
            signing_keys: vec![path.join("cosign.pub")],
            rekor: None,
            sigstore: None,
        };
        let input = SweepInput {
            evidence: None,
            sources: vec![SourceSpec::Github {
                name: "gh".into(),
                repos: vec![REPO.into()],
                token: Some(self.token.clone()),
                base_url: Some(self.github.base_url()),
                timeout: Some(patrol_job_api::units::HumanDuration::parse("5s").unwrap()),
                max_pages: 10,
            }],
            rules: load_rules(&path.join("rules.yaml")).unwrap(),
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

fn keys(report: &RunReport) -> Vec<String> {
    let mut keys: Vec<String> = report.findings.iter().map(|f| f.key.clone()).collect();
    keys.sort();
    keys
}

fn events(report: &RunReport) -> u64 {
    report.details["sources"]["gh"]["events"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn releases_become_verified_chains_and_only_changes_are_read_again() {
    let world = World::new().await;
    let gh = &world.github;
    let cosign = SigningKey::p256_from_seed(b"github/cosign");
    let intruder = SigningKey::p256_from_seed(b"github/someone-else");

    // v1.0.0: a binary with its cosign signature, plus an old asset with no
    // digest; a draft that must not count.
    let v1 = Artifact::signed(&cosign, "app", b"app v1.0.0 binary");
    let r1 = gh.add_release(REPO, "v1.0.0", &"a1".repeat(20));
    gh.add_asset(r1, "app.tar.gz", &v1.contents, true);
    gh.add_asset(r1, "app.tar.gz.sig", v1.signature_b64().as_bytes(), true);
    gh.add_asset(r1, "NOTES.txt", b"notes", false);
    gh.add_draft(REPO, "v2.0.0-rc1", &"d2".repeat(20));

    let report = world.sweep(20).await;
    assert_eq!(keys(&report), Vec::<String>::new(), "{}", report.summary);
    assert_eq!(
        events(&report),
        3,
        "release, bundle, sign: {}",
        report.summary
    );
    assert_eq!(report.details["verification"]["signatures_checked"], 1);
    let skipped = &report.details["sources"]["gh"];
    assert_eq!(skipped["skipped"], 1);
    assert!(skipped["skipped_samples"][0]
        .as_str()
        .unwrap()
        .contains("acme/app v1.0.0 NOTES.txt: no digest"));
    // The token went to GitHub, on every API call.
    let api_calls: Vec<_> = gh
        .calls()
        .into_iter()
        .filter(|c| c.path.starts_with("/repos/"))
        .collect();
    assert!(!api_calls.is_empty());
    assert!(api_calls
        .iter()
        .all(|c| c.headers["authorization"] == format!("Bearer {TOKEN}")));
    // The signature was downloaded through the asset's redirect.
    assert!(gh.calls().iter().any(|c| c.path.starts_with("/download/")));

    // Nothing changed: one conditional request, answered 304, no events.
    let before = gh.count();
    let report = world.sweep(25).await;
    assert_eq!(events(&report), 0, "{}", report.summary);
    let calls = gh.calls();
    assert_eq!(calls.len() - before, 1);
    assert_eq!(calls[before].status, Some(304));
    assert!(calls[before].headers.contains_key("if-none-match"));

    // v1.1.0 without a signature: only its events are read, and after 15
    // minutes it pages unsigned-bundle.
    gh.set_now(t0() + Duration::minutes(30));
    let v11 = Artifact::signed(&cosign, "app", b"app v1.1.0 binary");
    let r11 = gh.add_release(REPO, "v1.1.0", &"b1".repeat(20));
    gh.add_asset(r11, "app.tar.gz", &v11.contents, true);
    let report = world.sweep(50).await;
    assert_eq!(
        events(&report),
        2,
        "release and bundle only: {}",
        report.summary
    );
    assert_eq!(
        keys(&report),
        vec![format!("provmon/unsigned-bundle/{}", v11.digest())]
    );

    // A signature by the wrong key: signed now, but invalid.
    let forged = Artifact::signed(&intruder, "app", b"app v1.1.0 binary");
    let sig = gh.add_asset(
        r11,
        "app.tar.gz.sig",
        forged.signature_b64().as_bytes(),
        true,
    );
    let report = world.sweep(55).await;
    assert_eq!(events(&report), 1, "{}", report.summary);
    assert_eq!(
        keys(&report),
        vec![format!("provmon/signature-invalid/{}", v11.digest())]
    );

    // The asset is replaced with the real signature: read again, resolved.
    gh.replace_asset(sig, v11.signature_b64().as_bytes());
    let report = world.sweep(60).await;
    assert_eq!(events(&report), 1, "{}", report.summary);
    assert_eq!(keys(&report), Vec::<String>::new(), "{}", report.summary);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limit_degrades_the_sweep_and_nothing_is_lost() {
    let world = World::new().await;
    let gh = &world.github;
    let cosign = SigningKey::p256_from_seed(b"github/cosign");
    let v1 = Artifact::signed(&cosign, "app", b"app v1.0.0 binary");
    let r1 = gh.add_release(REPO, "v1.0.0", &"a1".repeat(20));
    gh.add_asset(r1, "app.tar.gz", &v1.contents, true);

    gh.fail_next(1, Failure::rate_limited(std::time::Duration::from_secs(60)));
    let report = world.sweep(20).await;
    assert!(report.findings_partial, "{}", report.summary);
    assert!(
        report
            .summary
            .contains("sources unreadable: gh: acme/app: GitHub says 403"),
        "{}",
        report.summary
    );
    assert!(report.summary.contains("rate limit"), "{}", report.summary);
    assert_eq!(events(&report), 0);

    // The next sweep reads everything the failed one did not.
    let report = world.sweep(40).await;
    assert!(!report.findings_partial, "{}", report.summary);
    assert_eq!(events(&report), 2, "{}", report.summary);
    assert_eq!(
        keys(&report),
        vec![format!("provmon/unsigned-bundle/{}", v1.digest())]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_token_is_refused_by_github_and_never_repeated() {
    let mut world = World::new().await;
    let wrong = "ghp_wrongTokenThatMustNotLeak42";
    std::fs::write(world.dir.path().join("wrong.token"), wrong).unwrap();
    world.token = SecretRef::File(world.dir.path().join("wrong.token"));
    world.github.add_release(REPO, "v1.0.0", &"a1".repeat(20));
    let report = world.sweep(20).await;
    assert!(
        report.summary.contains("Bad credentials"),
        "{}",
        report.summary
    );
    let everything = format!("{} {}", report.summary, report.details);
    assert!(!everything.contains(wrong) && !everything.contains(TOKEN));
}
