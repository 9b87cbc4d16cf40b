//! `patrol verify bundle` end to end (issue 8: < 50 ms offline, process
//! start included): the release `patrol` binary spawned per verification
//! on vendored conformance cases — a managed key with its own trusted
//! root, and a keyless bundle against the public-good root shipped in the
//! binary — beside the same check in process, which shows what the process
//! costs on top.
//!
//! `cargo bench -p patrol --bench verify` (`PATROL_BENCH_RUNS` runs of
//! each, default 100).

// Missing vendored cases should stop the bench right there.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use patrol_provmon_verify::bundle::{check_bundle, Signer, Subject, TrustRoot};

const IDENTITY: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
const ISSUER: &str = "https://token.actions.githubusercontent.com";

fn suite() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../jobs/provmon/verify/tests/conformance/bundle-verify")
}

fn summary(label: &str, mut times: Vec<Duration>) {
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "{label:<58} min {:>6.2} ms  median {:>6.2} ms  p95 {:>6.2} ms  max {:>6.2} ms  ({} runs)",
        at(0.0).as_secs_f64() * 1e3,
        at(0.5).as_secs_f64() * 1e3,
        at(0.95).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3,
        times.len()
    );
}

fn main() -> ExitCode {
    let runs: usize = std::env::var("PATROL_BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    let patrol = env!("CARGO_BIN_EXE_patrol");
    let suite = suite();
    let artifact = suite.join("a.txt");
    let managed = suite.join("managed-key-and-trusted-root");
    let keyless = suite.join("happy-path-v0.3");
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let cases: [(&str, Vec<String>); 2] = [
        (
            "managed key + --trusted-root (fully offline)",
            vec![
                "--key".into(),
                path(&managed.join("key.pub")),
                "--trusted-root".into(),
                path(&managed.join("trusted_root.json")),
                "--bundle".into(),
                path(&managed.join("bundle.sigstore.json")),
            ],
        ),
        (
            "keyless, embedded public-good root",
            vec![
                "--certificate-identity".into(),
                IDENTITY.into(),
                "--certificate-oidc-issuer".into(),
                ISSUER.into(),
                "--bundle".into(),
                path(&keyless.join("bundle.sigstore.json")),
            ],
        ),
    ];
    println!("patrol verify bundle, {runs} runs each ({patrol})");
    for (label, flags) in &cases {
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let started = Instant::now();
            let status = Command::new(patrol)
                .args(["verify", "bundle"])
                .args(flags)
                .arg(&artifact)
                .stdout(std::process::Stdio::null())
                .status()
                .expect("patrol runs");
            times.push(started.elapsed());
            if !status.success() {
                eprintln!("{label}: patrol verify bundle failed ({status})");
                return ExitCode::FAILURE;
            }
        }
        summary(&format!("process: {label}"), times);
    }
    let bytes = std::fs::read(&artifact).unwrap();
    let in_process = [
        (
            "in process: managed key + trusted root (parse root + verify)",
            managed.clone(),
            true,
        ),
        (
            "in process: keyless, embedded root (parse root + verify)",
            keyless.clone(),
            false,
        ),
    ];
    for (label, case, managed_key) in in_process {
        let bundle = std::fs::read(case.join("bundle.sigstore.json")).unwrap();
        let key = std::fs::read_to_string(case.join("key.pub")).ok();
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let started = Instant::now();
            let root = if managed_key {
                TrustRoot::from_file(&case.join("trusted_root.json")).unwrap()
            } else {
                TrustRoot::public_good().unwrap()
            };
            let signer = match &key {
                Some(pem) if managed_key => Signer::key_from_pem(pem).unwrap(),
                _ => Signer::Identity {
                    identity: IDENTITY.into(),
                    issuer: ISSUER.into(),
                },
            };
            check_bundle(&bundle, Subject::Bytes(&bytes), &signer, &root).unwrap();
            times.push(started.elapsed());
        }
        summary(label, times);
    }
    ExitCode::SUCCESS
}
