//! `gen-evidence-audit-fixtures DIR`: writes the evidence-audit fixtures
//! (release evidence folders with planted failures, the attestation
//! public key, `truth.json`) under DIR, by default
//! `fixtures/evidence-audit`.

fn main() -> std::process::ExitCode {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fixtures/evidence-audit".into());
    match patrol_job_evidence_audit::fixtures::generate(std::path::Path::new(&dir)) {
        Ok(planted) => {
            println!("{dir}: {} planted failures", planted.len());
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::from(2)
        }
    }
}
