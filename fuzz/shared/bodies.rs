//! The bodies of patrol's fuzz targets, shared by the cargo-fuzz binaries
//! (`fuzz/fuzz_targets/*.rs`) and the corpus replay test
//! (`runner/tests/fuzz_corpus.rs`), which includes this file with
//! `#[path]` so CI checks every kept corpus input on stable Rust.
//!
//! Each body takes arbitrary bytes and must not panic. Besides "no panic",
//! they assert a few invariants that hold for every input:
//! - a parsed cron expression's source parses again to the same expression;
//! - `next_after(t)` is strictly after `t`; `fires_between` is strictly
//!   increasing, inside its window and within its limit;
//! - a rejected schedule or config always comes with at least one
//!   diagnostic, and diagnostics' lines and columns are 1-based.

#![allow(dead_code)]

use std::path::Path;

use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Tz;
use patrol::config::{schedules_in_file, Diagnostic, Diagnostics, PatrolConfig};
use patrol::cron::CronExpr;
use patrol::registry::JobBuild;

/// Zones with interesting transitions: 1 h DST both ways (Berlin, New York),
/// a 30-minute DST shift (Lord Howe), a skipped calendar day (Apia, 2011),
/// a 2 h DST shift (Troll), and none (UTC).
pub const ZONES: [Tz; 6] = [
    chrono_tz::UTC,
    chrono_tz::Europe::Berlin,
    chrono_tz::America::New_York,
    chrono_tz::Australia::Lord_Howe,
    chrono_tz::Pacific::Apia,
    chrono_tz::Antarctica::Troll,
];

fn utc(year: i32, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(year, month, day, hour, minute, second)
        .single()
        .expect("valid constant instant")
}

/// Fixed starting instants, most of them just before a DST transition in
/// one of [`ZONES`].
pub fn instants() -> [DateTime<Utc>; 9] {
    [
        utc(2000, 1, 1, 0, 0, 0),
        // Europe/Berlin: spring forward 2024-03-31 01:00Z, fall back 2024-10-27 01:00Z.
        utc(2024, 3, 31, 0, 30, 0),
        utc(2024, 10, 27, 0, 30, 0),
        // America/New_York: 2024-03-10 07:00Z and 2024-11-03 06:00Z.
        utc(2024, 3, 10, 6, 30, 0),
        utc(2024, 11, 3, 5, 30, 59),
        // Australia/Lord_Howe: back 30 min 2024-04-06 15:00Z, forward 2024-10-05 15:30Z.
        utc(2024, 4, 6, 14, 45, 0),
        utc(2024, 10, 5, 15, 15, 0),
        // Pacific/Apia skipped 2011-12-30 entirely.
        utc(2011, 12, 29, 9, 0, 0),
        // A leap day, end of a month and of a year.
        utc(2028, 2, 28, 23, 59, 59),
    ]
}

/// A further instant derived from the input, so different inputs also
/// start from different moments (1970-01-01 .. ~2100).
fn derived_instant(data: &[u8]) -> DateTime<Utc> {
    // FNV-1a: stable across runs and platforms.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in data {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let span = 130 * 365 * 24 * 3600;
    let seconds = i64::try_from(hash % span).expect("below 2^63");
    DateTime::from_timestamp(seconds, 0).expect("in range")
}

/// `cron_parse`: bytes → `CronExpr::parse`; when it parses, fire times in
/// several zones from several instants. Returns whether it parsed.
pub fn cron_parse(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let expr = match CronExpr::parse(text) {
        Ok(expr) => expr,
        Err(err) => {
            assert!(!err.to_string().is_empty(), "empty error for {text:?}");
            return false;
        }
    };
    let again = CronExpr::parse(expr.source()).unwrap_or_else(|err| {
        panic!(
            "source {:?} of {text:?} does not parse again: {err}",
            expr.source()
        )
    });
    assert_eq!(
        again,
        expr,
        "source {:?} of {text:?} parses differently",
        expr.source()
    );
    let _ = (expr.to_string(), expr.is_fixed_time());

    let derived = derived_instant(data);
    for zone in &ZONES {
        for after in instants().into_iter().chain([derived]) {
            if let Some(fire) = expr.next_after(after, zone) {
                assert!(
                    fire > after,
                    "{text:?} in {zone}: next_after({after}) = {fire} is not after it"
                );
            }
        }
        let after = derived;
        let until = after + Duration::days(400);
        let limit = 6;
        let fires = expr.fires_between(after, until, zone, limit);
        assert!(
            fires.len() <= limit,
            "{text:?} in {zone}: {} fires over limit {limit}",
            fires.len()
        );
        let mut previous = after;
        for fire in fires {
            assert!(
                fire > previous && fire <= until,
                "{text:?} in {zone}: fire {fire} out of order or window ({previous}, {until}]"
            );
            previous = fire;
        }
    }
    true
}

fn check_diagnostic(diagnostic: &Diagnostic, what: &str) {
    let shown = diagnostic.to_string();
    assert!(!shown.is_empty());
    assert!(
        !diagnostic.message.is_empty(),
        "{what}: diagnostic without message: {shown}"
    );
    assert!(diagnostic.line != Some(0), "{what}: line 0 in {shown}");
    assert!(diagnostic.column != Some(0), "{what}: column 0 in {shown}");
}

/// `schedule_file`: bytes → `schedules_in_file`; every schedule that loads
/// is asked for its next fire, every diagnostic is displayed. Returns how
/// many schedules loaded.
pub fn schedule_file(data: &[u8], jobs: &JobBuild) -> usize {
    let Ok(text) = std::str::from_utf8(data) else {
        return 0;
    };
    let mut loaded = 0;
    let path = Path::new("fuzz.yaml");
    let derived = derived_instant(data);
    for result in schedules_in_file(path, text, jobs) {
        match result {
            Ok(schedule) => {
                loaded += 1;
                let _ = format!("{schedule:?}");
                if let Some(fire) = schedule.cron.next_after(derived, &schedule.timezone) {
                    assert!(
                        fire > derived,
                        "{}: next_after({derived}) = {fire}",
                        schedule.id
                    );
                }
            }
            Err(diagnostics) => {
                assert!(
                    !diagnostics.is_empty(),
                    "a schedule was rejected without a diagnostic: {text:?}"
                );
                for diagnostic in &diagnostics {
                    check_diagnostic(diagnostic, "schedule file");
                }
                let _ = Diagnostics(diagnostics).to_string();
            }
        }
    }
    loaded
}

/// `patrol_config`: bytes → a scratch `patrol.yaml` at `scratch` →
/// `PatrolConfig::load`. Writes `scratch` (the loader reads a file).
/// Returns whether the config loaded.
pub fn patrol_config(data: &[u8], scratch: &Path) -> bool {
    // Non-UTF-8 files are worth loading too: the loader must reject them.
    std::fs::write(scratch, data).expect("write the scratch patrol.yaml");
    match PatrolConfig::load(Some(scratch)) {
        Ok(config) => {
            let _ = format!("{config:?}");
            true
        }
        Err(diagnostics) => {
            assert!(
                !diagnostics.0.is_empty(),
                "a config was rejected without a diagnostic"
            );
            for diagnostic in &diagnostics.0 {
                check_diagnostic(diagnostic, "patrol.yaml");
            }
            let _ = diagnostics.to_string();
            false
        }
    }
}
