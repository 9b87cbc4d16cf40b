//! `gen-diff-audit-fixtures DIR`: writes the diff-audit fixtures (the
//! `audit` table's EU and US copies with planted differences, and
//! `truth.json`; both mirrors' Debezium streams with planted late, missing
//! and mismatched changes, and `cdc/truth.json`) under DIR, by default
//! `fixtures/diff-audit`.

fn main() -> std::process::ExitCode {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fixtures/diff-audit".into());
    let path = std::path::Path::new(&dir);
    let generated = patrol_job_diff_audit::fixtures::generate(path).and_then(|planted| {
        Ok((
            planted,
            patrol_job_diff_audit::fixtures::generate_streams(path)?,
        ))
    });
    match generated {
        Ok((planted, changes)) => {
            println!(
                "{dir}: {} planted differences, {} planted change-stream differences",
                planted.len(),
                changes.len()
            );
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::from(2)
        }
    }
}
