//! `gen-diff-audit-fixtures DIR`: writes the diff-audit fixtures (the
//! `audit` table's EU and US copies with planted differences, and
//! `truth.json`) under DIR, by default `fixtures/diff-audit`.

fn main() -> std::process::ExitCode {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fixtures/diff-audit".into());
    match patrol_job_diff_audit::fixtures::generate(std::path::Path::new(&dir)) {
        Ok(planted) => {
            println!("{dir}: {} planted differences", planted.len());
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::from(2)
        }
    }
}
