//! `patrol cron next` against two independent references, on the table of
//! cases in `tests/data/cron_table.tsv` (expressions × zones, across every DST
//! transition of 2026 in New York, Berlin and Lord Howe, and more):
//!
//! - the PyPI package `crondst` (pinned), an implementation of Vixie cron with
//!   its DST rules, run by `tests/reference/cron_reference.py` in a venv that
//!   is created once under the target directory;
//! - [`brute_force_fires`] below: a scan over real instants, second by second
//!   (minute by minute for 5-field expressions), applying the Vixie rules
//!   literally. It answers for 6-field expressions, which crondst lacks, and
//!   for rows marked `brute`, where crondst is wrong (the table says why).
//!
//! Every 5-field row is also checked against the brute force, and the two
//! references against each other, so each reference is exercised on the DST
//! cases. Nothing here is derived from patrol's own output.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use chrono::{DateTime, Datelike, Duration, NaiveDateTime, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use patrol::cron::CronExpr;
use serde_json::Value;

use crate::support::patrol;

// ---------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the runner crate sits in the workspace")
        .to_path_buf()
}

fn table_path() -> PathBuf {
    workspace_root().join("tests/data/cron_table.tsv")
}

fn reference_script() -> PathBuf {
    workspace_root().join("tests/reference/cron_reference.py")
}

/// One row of the table.
#[derive(Debug, Clone)]
struct Case {
    /// 1-based line number in the table, the key shared with the reference.
    line: usize,
    expression: String,
    timezone: String,
    after: String,
    count: usize,
    /// 5th column `brute`: crondst is known to be wrong here.
    marked_brute: bool,
}

impl Case {
    fn six_fields(&self) -> bool {
        !self.expression.trim_start().starts_with('@')
            && self.expression.split_whitespace().count() == 6
    }

    fn tz(&self) -> Tz {
        self.timezone
            .parse()
            .unwrap_or_else(|e| panic!("line {}: zone {}: {e}", self.line, self.timezone))
    }

    fn after_utc(&self) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&self.after)
            .unwrap_or_else(|e| panic!("line {}: after {}: {e}", self.line, self.after))
            .to_utc()
    }

    fn describe(&self) -> String {
        format!(
            "line {}: `{}` in {} after {}, count {}",
            self.line, self.expression, self.timezone, self.after, self.count
        )
    }
}

/// Same format as the Python reference reads: a header line, `#` comments and
/// blank lines, then `expression<TAB>timezone<TAB>after<TAB>count[<TAB>brute]`.
fn load_cases() -> Vec<Case> {
    let text = std::fs::read_to_string(table_path()).expect("cron table is readable");
    let mut cases = Vec::new();
    let mut header_seen = false;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        if !header_seen {
            header_seen = true;
            if fields[0] == "expression" {
                continue;
            }
        }
        assert!(
            fields.len() == 4 || fields.len() == 5,
            "table line {number}: expected 4 or 5 tab-separated fields: {line:?}"
        );
        let mark = fields.get(4).map(|mark| mark.trim()).unwrap_or("");
        assert!(
            mark.is_empty() || mark == "brute",
            "table line {number}: unknown reference column {mark:?}"
        );
        cases.push(Case {
            line: number,
            expression: fields[0].to_string(),
            timezone: fields[1].to_string(),
            after: fields[2].to_string(),
            count: fields[3]
                .parse()
                .unwrap_or_else(|e| panic!("table line {number}: count: {e}")),
            marked_brute: mark == "brute",
        });
    }
    assert!(
        cases.len() >= 150,
        "the table has only {} cases",
        cases.len()
    );
    cases
}

// ---------------------------------------------------------------------------
// Fire times, compared as (instant, UTC offset)
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Fire {
    instant: DateTime<Utc>,
    offset_seconds: i32,
    /// As the source wrote it, for diffs.
    text: String,
}

/// A reference's or patrol's fires for one case, or why it has none.
type Answer = Result<Vec<Fire>, String>;

impl PartialEq for Fire {
    fn eq(&self, other: &Self) -> bool {
        self.instant == other.instant && self.offset_seconds == other.offset_seconds
    }
}

impl Fire {
    fn parse(text: &str) -> Result<Self, String> {
        let at = DateTime::parse_from_rfc3339(text)
            .map_err(|e| format!("`{text}` is not RFC 3339: {e}"))?;
        Ok(Self {
            instant: at.to_utc(),
            offset_seconds: at.offset().local_minus_utc(),
            text: text.to_string(),
        })
    }

    fn from_instant(instant: DateTime<Utc>, tz: &Tz) -> Self {
        let local = instant.with_timezone(tz);
        Self {
            instant,
            offset_seconds: local.offset().fix().local_minus_utc(),
            text: local.to_rfc3339(),
        }
    }
}

/// A readable side-by-side diff of one case; `None` when both agree.
fn diff(
    case: &Case,
    expected_name: &str,
    expected: &Answer,
    actual_name: &str,
    actual: &Answer,
) -> Option<String> {
    let mut out = format!("{}\n", case.describe());
    match (expected, actual) {
        (Ok(expected), Ok(actual)) if expected == actual && expected.len() == case.count => {
            return None
        }
        (Ok(expected), Ok(actual)) => {
            let rows = expected.len().max(actual.len());
            let agreeing = (0..rows)
                .filter(|&i| expected.get(i).is_some() && expected.get(i) == actual.get(i))
                .count();
            let _ = writeln!(
                out,
                "    {agreeing} of {rows} rows agree ({expected_name}: {} fires, {actual_name}: {} fires, asked for {})",
                expected.len(),
                actual.len(),
                case.count
            );
            let _ = writeln!(out, "      {:>3}  {expected_name:<32}{actual_name}", "#");
            // Short lists in full; long ones (a minute-by-minute hour) only
            // where they differ.
            let all_rows = rows <= 40;
            let mut shown = 0;
            for i in 0..rows {
                let (e, a) = (expected.get(i), actual.get(i));
                let same = e.is_some() && e == a;
                if same && !all_rows {
                    continue;
                }
                shown += usize::from(!same);
                if shown > 25 {
                    let _ = writeln!(out, "          … more rows differ");
                    break;
                }
                let text =
                    |fire: Option<&Fire>| fire.map_or("(none)".to_string(), |f| f.text.clone());
                let mark = if same { ' ' } else { '≠' };
                let _ = writeln!(out, "    {mark} {i:>3}  {:<32}{}", text(e), text(a));
            }
            if expected.len() != case.count && shown == 0 {
                let _ = writeln!(
                    out,
                    "    both gave {} fires, {} were asked for",
                    expected.len(),
                    case.count
                );
            }
        }
        (Err(error), _) => {
            let _ = writeln!(out, "    {expected_name} failed: {error}");
        }
        (_, Err(error)) => {
            let _ = writeln!(out, "    {actual_name} failed: {error}");
        }
    }
    Some(out)
}

fn fail_on_diffs(what: &str, total: usize, diffs: &[String]) {
    if !diffs.is_empty() {
        panic!(
            "{what}: {} of {total} cases disagree\n\n{}",
            diffs.len(),
            diffs.join("\n")
        );
    }
}

// ---------------------------------------------------------------------------
// Reference 1: crondst, through tests/reference/cron_reference.py
// ---------------------------------------------------------------------------

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// The venv's python, after creating the venv once (reused across runs). The
/// script serialises parallel test processes with an flock.
fn reference_python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let venv = target_dir().join("cron-reference-venv");
        let python = venv.join("bin/python");
        if venv.join(".crondst-1.0.3-ready").exists() {
            return python;
        }
        let output = Command::new("python3")
            .arg(reference_script())
            .arg("--ensure-venv")
            .arg(&venv)
            .output()
            .expect("python3 runs (needed for the cron reference)");
        assert!(
            output.status.success(),
            "creating the reference venv in {} failed ({}):\n{}\n{}",
            venv.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        python
    })
}

/// What the reference script says about each case, by table line.
fn crondst_answers(ignore_marks: bool) -> BTreeMap<usize, Value> {
    let mut command = Command::new(reference_python());
    command.arg(reference_script());
    if ignore_marks {
        command.arg("--ignore-marks");
    }
    let output = command
        .arg(table_path())
        .output()
        .expect("the reference script runs");
    assert!(
        output.status.success(),
        "the reference script failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("reference output is UTF-8")
        .lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("reference printed a bad line {line:?}: {e}"));
            let number = value["line"].as_u64().expect("reference line number") as usize;
            (number, value)
        })
        .collect()
}

/// The fires crondst gave for a case, or why there are none.
fn crondst_fires(answer: Option<&Value>) -> Answer {
    let answer = answer.ok_or("the reference script skipped this case")?;
    if let Some(error) = answer.get("error") {
        return Err(format!("crondst: {error}"));
    }
    answer["fires"]
        .as_array()
        .ok_or_else(|| format!("no fires from crondst: {answer}"))?
        .iter()
        .map(|fire| Fire::parse(fire.as_str().ok_or("a fire is not a string")?))
        .collect()
}

// ---------------------------------------------------------------------------
// Reference 2: brute force over real instants
// ---------------------------------------------------------------------------

/// An expression as sets of allowed values, parsed here independently of
/// patrol's parser (only the syntax the table uses needs to be right).
struct Pattern {
    seconds: Vec<bool>,
    minutes: Vec<bool>,
    hours: Vec<bool>,
    days_of_month: Vec<bool>,
    months: Vec<bool>,
    /// 0-7, both 0 and 7 Sunday.
    days_of_week: Vec<bool>,
    dom_star: bool,
    dow_star: bool,
    /// No `*` starting the seconds, minute or hour field.
    fixed_time: bool,
    has_seconds: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Pattern {
    fn parse(expression: &str) -> Self {
        let expanded = match expression.trim().to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *".to_string(),
            "@monthly" => "0 0 1 * *".to_string(),
            "@weekly" => "0 0 * * 0".to_string(),
            "@daily" | "@midnight" => "0 0 * * *".to_string(),
            "@hourly" => "0 * * * *".to_string(),
            other => other.to_string(),
        };
        let mut fields: Vec<&str> = expanded.split_whitespace().collect();
        let has_seconds = fields.len() == 6;
        if fields.len() == 5 {
            fields.insert(0, "0");
        }
        assert_eq!(
            fields.len(),
            6,
            "brute force: bad expression {expression:?}"
        );
        let star = |field: &str| field.starts_with('*');
        Self {
            seconds: field_set(fields[0], 0, 59, &[]),
            minutes: field_set(fields[1], 0, 59, &[]),
            hours: field_set(fields[2], 0, 23, &[]),
            days_of_month: field_set(fields[3], 1, 31, &[]),
            months: field_set(fields[4], 1, 12, &MONTHS),
            days_of_week: field_set(fields[5], 0, 7, &WEEKDAYS),
            dom_star: star(fields[3]),
            dow_star: star(fields[5]),
            fixed_time: !(star(fields[0]) || star(fields[1]) || star(fields[2])),
            has_seconds,
        }
    }

    fn matches(&self, wall: NaiveDateTime) -> bool {
        let weekday = wall.weekday().num_days_from_sunday() as usize;
        let dom = self.days_of_month[wall.day() as usize];
        let dow = self.days_of_week[weekday] || (weekday == 0 && self.days_of_week[7]);
        let day = if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        };
        self.seconds[wall.second() as usize]
            && self.minutes[wall.minute() as usize]
            && self.hours[wall.hour() as usize]
            && self.months[wall.month() as usize]
            && day
    }
}

/// `*`, `n`, `a-b`, each optionally `/step` (`n/step` runs to `max`), lists
/// with `,`; names (lower-cased) index from `min`.
fn field_set(field: &str, min: usize, max: usize, names: &[&str]) -> Vec<bool> {
    let value = |text: &str| -> usize {
        names
            .iter()
            .position(|name| *name == text)
            .map(|index| index + min)
            .unwrap_or_else(|| {
                text.parse()
                    .unwrap_or_else(|_| panic!("brute force: bad value {text:?}"))
            })
    };
    let mut set = vec![false; max + 1];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, step.parse::<usize>().expect("brute force: step")),
            None => (item, 1),
        };
        let (low, high) = if range == "*" {
            (min, max)
        } else if let Some((low, high)) = range.split_once('-') {
            (value(low), value(high))
        } else if item.contains('/') {
            (value(range), max)
        } else {
            (value(range), value(range))
        };
        for v in (low..=high).step_by(step) {
            set[v] = true;
        }
    }
    set
}

/// Scans at most this many instants per case (about 11 years in minutes).
const BRUTE_FORCE_MAX_STEPS: i64 = 6_000_000;
/// The scan starts this long before `after` to learn which wall times have
/// already happened (for the repeated hour of a fall-back); longer than any
/// clock change.
const BRUTE_FORCE_WARM_UP_SECONDS: i64 = 6 * 3600;

/// The first `count` fires strictly after `after`, found by walking real time
/// instant by instant and applying Vixie cron's rules literally:
/// - a wildcard job fires at every instant whose local time matches;
/// - a fixed-time job fires at an instant whose local time matches and has
///   not been shown before (so a repeated hour fires once), and at the first
///   instant after the clocks jumped forward over a matching local time.
///
/// 5-field expressions only fire at second 0, so they are scanned minute by
/// minute; that is checked (every scanned local time must be at second 0).
fn brute_force_fires(expression: &str, tz: &Tz, after: DateTime<Utc>, count: usize) -> Answer {
    let pattern = Pattern::parse(expression);
    let step: i64 = if pattern.has_seconds { 1 } else { 60 };
    let start = after.timestamp().div_euclid(step) * step - BRUTE_FORCE_WARM_UP_SECONDS;
    let mut fires = Vec::new();
    let mut previous_wall: Option<NaiveDateTime> = None;
    let mut latest_wall: Option<NaiveDateTime> = None;
    for n in 0..BRUTE_FORCE_MAX_STEPS {
        let instant = Utc
            .timestamp_opt(start + n * step, 0)
            .single()
            .ok_or("instant out of range")?;
        let wall = instant.with_timezone(tz).naive_local();
        if step == 60 && wall.second() != 0 {
            return Err(format!(
                "local time {wall} is not on a whole minute; scan by seconds"
            ));
        }
        let mut fires_now = pattern.matches(wall);
        if pattern.fixed_time {
            // Once only: a local time shown before (clocks went back) is skipped.
            if latest_wall.is_some_and(|latest| wall <= latest) {
                fires_now = false;
            }
            // Local times jumped over since the previous instant fire now.
            if let Some(previous) = previous_wall {
                let mut skipped = previous + Duration::seconds(step);
                while skipped < wall {
                    fires_now |= pattern.matches(skipped);
                    skipped += Duration::seconds(step);
                }
            }
        }
        if fires_now && instant > after {
            fires.push(Fire::from_instant(instant, tz));
            if fires.len() == count {
                return Ok(fires);
            }
        }
        previous_wall = Some(wall);
        latest_wall = latest_wall.max(Some(wall));
    }
    Err(format!(
        "brute force found only {} of {count} fires within {BRUTE_FORCE_MAX_STEPS} steps of {step}s",
        fires.len()
    ))
}

fn brute_force_for(case: &Case) -> Answer {
    brute_force_fires(&case.expression, &case.tz(), case.after_utc(), case.count)
}

/// `f` over `items` on two threads (the machine has two cores), in order.
fn on_two_threads<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let (first, second) = items.split_at(items.len() / 2);
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| first.iter().map(&f).collect::<Vec<_>>());
        let mut rest: Vec<R> = second.iter().map(&f).collect();
        let mut all = worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        all.append(&mut rest);
        all
    })
}

/// Brute-force answers for every 5-field row, computed once per test process
/// (two tests need them; the scan is the slow part of these tests).
fn five_field_brute_force() -> &'static [(Case, Answer)] {
    static ANSWERS: OnceLock<Vec<(Case, Answer)>> = OnceLock::new();
    ANSWERS.get_or_init(|| {
        let cases: Vec<Case> = load_cases()
            .into_iter()
            .filter(|case| !case.six_fields())
            .collect();
        let answers = on_two_threads(&cases, brute_force_for);
        cases.into_iter().zip(answers).collect()
    })
}

// ---------------------------------------------------------------------------
// patrol
// ---------------------------------------------------------------------------

/// `patrol cron next EXPR --tz TZ --after AFTER --count N --json`.
fn patrol_cli_fires(case: &Case) -> Answer {
    let count = case.count.to_string();
    let output = patrol(
        &std::env::temp_dir(),
        &[
            "cron",
            "next",
            &case.expression,
            "--tz",
            &case.timezone,
            "--after",
            &case.after,
            "--count",
            &count,
            "--json",
        ],
    );
    if !output.status.success() {
        return Err(format!(
            "patrol exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let value: Value = serde_json::from_slice(&output.stdout).map_err(|e| {
        format!(
            "stdout is not one JSON object ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })?;
    if value["expression"] != case.expression.as_str()
        || value["timezone"] != case.timezone.as_str()
    {
        return Err(format!(
            "expression/timezone echoed as {} / {}",
            value["expression"], value["timezone"]
        ));
    }
    value["fires"]
        .as_array()
        .ok_or_else(|| format!("no `fires` array in {value}"))?
        .iter()
        .map(|fire| Fire::parse(fire.as_str().ok_or("a fire is not a string")?))
        .collect()
}

/// The library's answer, `next_after` repeatedly.
fn patrol_library_fires(case: &Case) -> Answer {
    let expr = CronExpr::parse(&case.expression).map_err(|e| e.to_string())?;
    let tz = case.tz();
    let mut at = case.after_utc();
    let mut fires = Vec::new();
    for _ in 0..case.count {
        match expr.next_after(at, &tz) {
            Some(next) => {
                fires.push(Fire::from_instant(next, &tz));
                at = next;
            }
            None => break,
        }
    }
    Ok(fires)
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// The acceptance test: the CLI against crondst, or against the brute force
/// for 6-field expressions and rows marked `brute`.
#[test]
fn cron_next_cli_agrees_with_reference_table() {
    let cases = load_cases();
    let answers = crondst_answers(false);
    let expected = on_two_threads(&cases, |case| {
        if case.six_fields() || case.marked_brute {
            ("brute force", brute_force_for(case))
        } else {
            ("crondst", crondst_fires(answers.get(&case.line)))
        }
    });
    let actual = on_two_threads(&cases, patrol_cli_fires);
    let diffs: Vec<String> = cases
        .iter()
        .zip(expected.iter().zip(&actual))
        .filter_map(|(case, ((name, expected), actual))| {
            diff(case, name, expected, "patrol cron next", actual)
        })
        .collect();
    fail_on_diffs("`patrol cron next` vs the references", cases.len(), &diffs);
}

/// The cron library against the brute force on every 5-field row (the CLI
/// test covers the 6-field rows), so the DST cases are checked against a
/// second reference as well.
#[test]
fn cron_library_agrees_with_brute_force_on_five_field_rows() {
    let five = five_field_brute_force();
    let diffs: Vec<String> = five
        .iter()
        .filter_map(|(case, expected)| {
            diff(
                case,
                "brute force",
                expected,
                "patrol library",
                &patrol_library_fires(case),
            )
        })
        .collect();
    fail_on_diffs("patrol::cron vs the brute force", five.len(), &diffs);
}

/// The references agree with each other wherever the table trusts crondst,
/// and disagree on each row marked `brute` (a mark that is no longer needed
/// should go, so that crondst checks that row again).
#[test]
fn references_agree_except_where_crondst_is_marked_wrong() {
    let answers = crondst_answers(true);
    let five = five_field_brute_force();
    let mut diffs = Vec::new();
    for (case, expected) in five {
        let crondst = crondst_fires(answers.get(&case.line));
        let disagreement = diff(case, "brute force", expected, "crondst", &crondst);
        match (case.marked_brute, disagreement) {
            (false, Some(disagreement)) => diffs.push(disagreement),
            (true, None) => diffs.push(format!(
                "{}\n    marked `brute`, but crondst now agrees with the brute force: drop the mark\n",
                case.describe()
            )),
            _ => {}
        }
    }
    fail_on_diffs("crondst vs the brute force", five.len(), &diffs);
}

/// The brute force itself on the documented Vixie examples, so a bug in it
/// cannot make the references agree with a wrong patrol.
#[test]
fn brute_force_reference_follows_vixie_dst_rules() {
    let fires = |expression: &str, zone: &str, after: &str, count: usize| -> Vec<String> {
        let tz: Tz = zone.parse().expect("zone");
        let after = DateTime::parse_from_rfc3339(after).expect("after").to_utc();
        brute_force_fires(expression, &tz, after, count)
            .expect("brute force")
            .into_iter()
            .map(|fire| fire.text)
            .collect()
    };
    // Spring forward, fixed time in the gap: once, when the gap ends.
    assert_eq!(
        fires(
            "15,45 2 * * *",
            "America/New_York",
            "2026-03-07T12:00:00-05:00",
            3
        ),
        [
            "2026-03-08T03:00:00-04:00",
            "2026-03-09T02:15:00-04:00",
            "2026-03-09T02:45:00-04:00"
        ]
    );
    // Spring forward, wildcard: nothing in the gap.
    assert_eq!(
        fires(
            "*/30 * * * *",
            "Australia/Lord_Howe",
            "2026-10-04T01:15:00+10:30",
            2
        ),
        ["2026-10-04T01:30:00+10:30", "2026-10-04T02:30:00+11:00"]
    );
    // Fall back, fixed time: first occurrence only, even asked from inside
    // the second pass.
    assert_eq!(
        fires(
            "45 1 * * *",
            "Australia/Lord_Howe",
            "2026-04-05T00:00:00+11:00",
            2
        ),
        ["2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30"]
    );
    assert_eq!(
        fires(
            "30 2 * * *",
            "Europe/Berlin",
            "2026-10-25T02:10:00+01:00",
            1
        ),
        ["2026-10-26T02:30:00+01:00"]
    );
    // Fall back, fixed times in a list: each once.
    assert_eq!(
        fires(
            "0,30 2 * * *",
            "Europe/Berlin",
            "2026-10-25T00:00:00+02:00",
            3
        ),
        [
            "2026-10-25T02:00:00+02:00",
            "2026-10-25T02:30:00+02:00",
            "2026-10-26T02:00:00+01:00"
        ]
    );
    // Fall back, wildcard: twice.
    assert_eq!(
        fires(
            "*/30 2 * * *",
            "Europe/Berlin",
            "2026-10-25T00:00:00+02:00",
            5
        ),
        [
            "2026-10-25T02:00:00+02:00",
            "2026-10-25T02:30:00+02:00",
            "2026-10-25T02:00:00+01:00",
            "2026-10-25T02:30:00+01:00",
            "2026-10-26T02:00:00+01:00"
        ]
    );
    // Day rules: both restricted = OR, one starting with `*` = AND.
    assert_eq!(
        fires("0 0 13 * 5", "UTC", "2026-11-01T00:00:00Z", 3),
        [
            "2026-11-06T00:00:00+00:00",
            "2026-11-13T00:00:00+00:00",
            "2026-11-20T00:00:00+00:00"
        ]
    );
    assert_eq!(
        fires("0 0 */2 * MON", "UTC", "2026-11-01T00:00:00Z", 2),
        ["2026-11-09T00:00:00+00:00", "2026-11-23T00:00:00+00:00"]
    );
    // Seconds, and strictly after.
    assert_eq!(
        fires("*/20 * * * * *", "UTC", "2026-01-01T00:00:20Z", 2),
        ["2026-01-01T00:00:40+00:00", "2026-01-01T00:01:00+00:00"]
    );
}
