use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::cron::CronExpr;

fn fires(expr: &str, tz: &str, after: &str, count: usize) -> Vec<String> {
    let expr = CronExpr::parse(expr).unwrap();
    let tz: Tz = tz.parse().unwrap();
    let mut at: DateTime<Utc> = DateTime::parse_from_rfc3339(after).unwrap().to_utc();
    (0..count)
        .map(|_| {
            at = expr.next_after(at, &tz).unwrap();
            at.with_timezone(&tz).to_rfc3339()
        })
        .collect()
}

#[test]
fn fixed_time_in_spring_gap_fires_when_gap_ends() {
    // Berlin 2026-03-29: 02:00 CET jumps to 03:00 CEST.
    assert_eq!(
        fires(
            "30 2 * * *",
            "Europe/Berlin",
            "2026-03-28T12:00:00+01:00",
            3
        ),
        [
            "2026-03-29T03:00:00+02:00",
            "2026-03-30T02:30:00+02:00",
            "2026-03-31T02:30:00+02:00"
        ]
    );
}

#[test]
fn fixed_time_in_repeated_hour_fires_once() {
    // New York 2026-11-01: 02:00 EDT falls back to 01:00 EST.
    assert_eq!(
        fires(
            "30 1 * * *",
            "America/New_York",
            "2026-10-31T12:00:00-04:00",
            2
        ),
        ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]
    );
}

#[test]
fn wildcard_hour_follows_real_time_through_fall_back() {
    let got = fires(
        "*/30 * * * *",
        "America/New_York",
        "2026-11-01T00:45:00-04:00",
        5,
    );
    assert_eq!(
        got,
        [
            "2026-11-01T01:00:00-04:00",
            "2026-11-01T01:30:00-04:00",
            "2026-11-01T01:00:00-05:00",
            "2026-11-01T01:30:00-05:00",
            "2026-11-01T02:00:00-05:00"
        ]
    );
}

#[test]
fn wildcard_hour_follows_real_time_through_spring_forward() {
    let got = fires(
        "*/20 * * * *",
        "Europe/Berlin",
        "2026-03-29T01:30:00+01:00",
        3,
    );
    assert_eq!(
        got,
        [
            "2026-03-29T01:40:00+01:00",
            "2026-03-29T03:00:00+02:00",
            "2026-03-29T03:20:00+02:00"
        ]
    );
}

#[test]
fn lord_howe_half_hour_shift() {
    // 2026-10-04 02:00 LHST jumps to 02:30 LHDT.
    assert_eq!(
        fires(
            "15 2 * * *",
            "Australia/Lord_Howe",
            "2026-10-03T23:00:00+10:30",
            2
        ),
        ["2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"]
    );
    // 2026-04-05 02:00 LHDT falls back to 01:30 LHST.
    assert_eq!(
        fires(
            "45 1 * * *",
            "Australia/Lord_Howe",
            "2026-04-04T23:00:00+11:00",
            2
        ),
        ["2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30"]
    );
}

#[test]
fn vixie_day_rules() {
    // Both restricted: the 13th OR a Friday.
    let got = fires("0 0 13 * 5", "UTC", "2026-11-01T00:00:00Z", 3);
    assert_eq!(
        got,
        [
            "2026-11-06T00:00:00+00:00",
            "2026-11-13T00:00:00+00:00",
            "2026-11-20T00:00:00+00:00"
        ]
    );
    // Day-of-month starts with `*`: both must match (odd days that are Mondays).
    let got = fires("0 0 */2 * MON", "UTC", "2026-11-01T00:00:00Z", 2);
    assert_eq!(
        got,
        ["2026-11-09T00:00:00+00:00", "2026-11-23T00:00:00+00:00"]
    );
}

#[test]
fn seconds_field_and_macros() {
    assert_eq!(
        fires("*/15 * * * * *", "UTC", "2026-01-01T00:00:07Z", 2),
        ["2026-01-01T00:00:15+00:00", "2026-01-01T00:00:30+00:00"]
    );
    assert_eq!(
        fires("@weekly", "UTC", "2026-11-23T10:00:00Z", 1),
        ["2026-11-29T00:00:00+00:00"]
    );
    assert_eq!(
        fires("@monthly", "Europe/Berlin", "2026-11-23T10:00:00Z", 1),
        ["2026-12-01T00:00:00+01:00"]
    );
}

#[test]
fn leap_day_only_expression_fires_every_four_years() {
    assert_eq!(
        fires("0 12 29 2 *", "UTC", "2026-01-01T00:00:00Z", 1),
        ["2028-02-29T12:00:00+00:00"]
    );
}

#[test]
fn rejects_bad_expressions_with_the_field_named() {
    let cases = [
        ("61 * * * *", "minute field"),
        ("* 24 * * *", "hour field"),
        ("* * 0 * *", "day-of-month field"),
        ("* * * 13 *", "month field"),
        ("* * * * 8", "day-of-week field"),
        ("*/0 * * * *", "step 0"),
        ("5-1 * * * *", "runs backwards"),
        ("* * *", "expected 5 fields"),
        ("0 0 30 2 *", "never fires"),
        ("@fortnightly", "unknown macro"),
        ("0 0 L * *", "not supported"),
        ("", "empty"),
    ];
    for (expr, expected) in cases {
        let err = CronExpr::parse(expr).unwrap_err();
        assert!(err.message.contains(expected), "{expr}: {}", err.message);
    }
}

#[test]
fn names_are_case_insensitive_and_sunday_is_0_or_7() {
    let a = CronExpr::parse("0 0 * jan-mar sun").unwrap();
    let b = CronExpr::parse("0 0 * 1-3 7").unwrap();
    let tz: Tz = "UTC".parse().unwrap();
    let start = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .to_utc();
    assert_eq!(
        a.fires_between(start, start + chrono::Duration::days(120), &tz, 100),
        b.fires_between(start, start + chrono::Duration::days(120), &tz, 100)
    );
}
