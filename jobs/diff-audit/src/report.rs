//! The daily report (seed 002 KR2.3): per UTC day, counts per table and
//! reason, the CDC lag percentiles, open and expired exceptions, and the
//! mean time to repair of diffs and of exceptions — as JSON and Markdown,
//! rewritten by every run of the day (the last run's files are the day's).
//!
//! What it needs from earlier runs is job state: the day's accumulators
//! (`report/today`), when each open diff was first seen (`report/open`,
//! at most [`OPEN_MAX`] tracked) and when each exception appeared.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// Open diffs tracked for their repair time; more are counted, not timed.
pub const OPEN_MAX: usize = 100_000;
/// Lag histogram: bucket `i` holds lags below 2^(i/4) ms.
const LAG_BUCKETS: usize = 120;

/// One day's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Day {
    pub day: String,
    pub runs: u64,
    /// Per table, per reason: the count in the day's last run and its peak.
    pub tables: BTreeMap<String, BTreeMap<String, Count>>,
    pub lag: Lag,
    pub exceptions: Exceptions,
    pub mttr: Mttr,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    pub last: usize,
    pub peak: usize,
}

/// Matched CDC changes of the day: a log histogram and the exact max.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lag {
    pub matched: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    histogram: Vec<u64>,
    pub max_ms: Option<i64>,
}

impl Lag {
    fn add(&mut self, lag_ms: i64) {
        if self.histogram.is_empty() {
            self.histogram = vec![0; LAG_BUCKETS];
        }
        let at = ((lag_ms.max(0) as f64 + 1.0).log2() * 4.0).ceil() as usize;
        self.histogram[at.min(LAG_BUCKETS - 1)] += 1;
        self.matched += 1;
        self.max_ms = Some(self.max_ms.map_or(lag_ms, |m| m.max(lag_ms)));
    }

    /// The upper bound of the bucket holding quantile `q` (within 19%).
    pub fn quantile_ms(&self, q: f64) -> Option<i64> {
        if self.matched == 0 {
            return None;
        }
        let rank = ((q * self.matched as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (at, count) in self.histogram.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let bound = (2f64.powf(at as f64 / 4.0) - 1.0).round() as i64;
                return Some(bound.min(self.max_ms.unwrap_or(bound)));
            }
        }
        self.max_ms
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exceptions {
    /// At the day's last run.
    pub active: usize,
    pub expired: Vec<String>,
}

/// Mean time to repair: from first seen to gone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mttr {
    pub diffs_repaired: u64,
    pub diffs_total_ms: i64,
    pub exceptions_closed: u64,
    pub exceptions_total_ms: i64,
}

impl Mttr {
    pub fn diffs_mean_ms(&self) -> Option<i64> {
        (self.diffs_repaired > 0).then(|| self.diffs_total_ms / self.diffs_repaired as i64)
    }

    pub fn exceptions_mean_ms(&self) -> Option<i64> {
        (self.exceptions_closed > 0)
            .then(|| self.exceptions_total_ms / self.exceptions_closed as i64)
    }
}

/// What the report keeps between runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stored {
    pub today: Day,
    /// `table/reason/key` → first seen (ms).
    pub open: BTreeMap<String, i64>,
    /// Exception scope → when it was created (ms).
    pub exceptions: BTreeMap<String, i64>,
}

/// One run's facts for the report.
pub struct RunFacts<'a> {
    pub now: DateTime<Utc>,
    /// Per table: (reason, key text) of each diff paged or excepted.
    pub diffs: BTreeMap<&'a str, Vec<(&'static str, String)>>,
    pub lags: Vec<i64>,
    /// Scopes of the exceptions in the file, with their `created` day.
    pub exceptions: Vec<(String, NaiveDate)>,
    pub expired: Vec<String>,
}

impl Stored {
    /// Adds a run; returns the day's figures.
    pub fn add(&mut self, run: &RunFacts) -> &Day {
        let now_ms = run.now.timestamp_millis();
        let day = run.now.format("%Y-%m-%d").to_string();
        if self.today.day != day {
            self.today = Day {
                day,
                ..Day::default()
            };
        }
        let today = &mut self.today;
        today.runs += 1;
        let mut current = BTreeSet::new();
        for (table, diffs) in &run.diffs {
            let counts = today.tables.entry(table.to_string()).or_default();
            for count in counts.values_mut() {
                count.last = 0;
            }
            for (reason, key) in diffs {
                counts.entry(reason.to_string()).or_default().last += 1;
                current.insert(format!("{table}/{reason}/{key}"));
            }
            for count in counts.values_mut() {
                count.peak = count.peak.max(count.last);
            }
        }
        // Diffs gone since the last run were repaired.
        let gone: Vec<String> = self
            .open
            .keys()
            .filter(|k| !current.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(first) = self.open.remove(&key) {
                today.mttr.diffs_repaired += 1;
                today.mttr.diffs_total_ms += now_ms - first;
            }
        }
        for key in current {
            if self.open.len() >= OPEN_MAX {
                break;
            }
            self.open.entry(key).or_insert(now_ms);
        }
        for lag in &run.lags {
            today.lag.add(*lag);
        }
        // Exceptions removed from the file were closed.
        let listed: BTreeMap<&String, &NaiveDate> =
            run.exceptions.iter().map(|(s, d)| (s, d)).collect();
        let closed: Vec<String> = self
            .exceptions
            .keys()
            .filter(|s| !listed.contains_key(s))
            .cloned()
            .collect();
        for scope in closed {
            if let Some(created) = self.exceptions.remove(&scope) {
                today.mttr.exceptions_closed += 1;
                today.mttr.exceptions_total_ms += now_ms - created;
            }
        }
        for (scope, created) in listed {
            let created = created
                .and_hms_opt(0, 0, 0)
                .map_or(now_ms, |t| t.and_utc().timestamp_millis());
            self.exceptions.entry(scope.clone()).or_insert(created);
        }
        today.exceptions = Exceptions {
            active: run.exceptions.len().saturating_sub(run.expired.len()),
            expired: run.expired.clone(),
        };
        today
    }
}

fn duration(ms: Option<i64>) -> String {
    match ms {
        None => "–".into(),
        Some(ms) if ms < 1_000 => format!("{ms} ms"),
        Some(ms) if ms < 120_000 => format!("{:.1} s", ms as f64 / 1e3),
        Some(ms) if ms < 7_200_000 => format!("{:.1} min", ms as f64 / 6e4),
        Some(ms) => format!("{:.1} h", ms as f64 / 3.6e6),
    }
}

impl Day {
    /// The report as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "day": self.day,
            "runs": self.runs,
            "tables": self.tables,
            "lag_ms": {
                "matched": self.lag.matched,
                "p50": self.lag.quantile_ms(0.50),
                "p95": self.lag.quantile_ms(0.95),
                "max": self.lag.max_ms,
            },
            "exceptions": self.exceptions,
            "mttr_ms": {
                "diffs": self.mttr.diffs_mean_ms(),
                "diffs_repaired": self.mttr.diffs_repaired,
                "exceptions": self.mttr.exceptions_mean_ms(),
                "exceptions_closed": self.mttr.exceptions_closed,
            },
        })
    }

    /// The report as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut out = format!(
            "# Diff audit — {}\n\n{} run(s).\n\n| table | reason | last run | peak |\n|---|---|---:|---:|\n",
            self.day, self.runs
        );
        for (table, reasons) in &self.tables {
            for (reason, count) in reasons {
                out.push_str(&format!(
                    "| {table} | {reason} | {} | {} |\n",
                    count.last, count.peak
                ));
            }
        }
        out.push_str(&format!(
            "\nCDC lag over {} matched change(s): p50 {}, p95 {}, max {}.\n",
            self.lag.matched,
            duration(self.lag.quantile_ms(0.50)),
            duration(self.lag.quantile_ms(0.95)),
            duration(self.lag.max_ms)
        ));
        out.push_str(&format!(
            "\nExceptions: {} active, {} expired{}.\n",
            self.exceptions.active,
            self.exceptions.expired.len(),
            if self.exceptions.expired.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.exceptions.expired.join(", "))
            }
        ));
        out.push_str(&format!(
            "\nMean time to repair: diffs {} ({} repaired), exceptions {} ({} closed).\n",
            duration(self.mttr.diffs_mean_ms()),
            self.mttr.diffs_repaired,
            duration(self.mttr.exceptions_mean_ms()),
            self.mttr.exceptions_closed
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, hour, 0, 0).unwrap()
    }

    fn facts(hour: u32, diffs: &[(&'static str, &str)], lags: &[i64]) -> RunFacts<'static> {
        RunFacts {
            now: at(hour),
            diffs: BTreeMap::from([(
                "audit",
                diffs.iter().map(|(r, k)| (*r, k.to_string())).collect(),
            )]),
            lags: lags.to_vec(),
            exceptions: vec![(
                "initech/10600/missing".into(),
                NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
            )],
            expired: Vec::new(),
        }
    }

    #[test]
    fn counts_peaks_lag_and_repair_times_accumulate_over_the_day() {
        let mut stored = Stored::default();
        stored.add(&facts(
            1,
            &[("missing", "a"), ("missing", "b")],
            &[1_000, 2_000],
        ));
        stored.add(&facts(2, &[("missing", "b"), ("mismatch", "c")], &[90_000]));
        let day = stored.add(&facts(4, &[], &[]));
        let audit = &day.tables["audit"];
        assert_eq!(audit["missing"], Count { last: 0, peak: 2 });
        assert_eq!(audit["mismatch"], Count { last: 0, peak: 1 });
        // a: 1 h, b: 3 h, c: 2 h.
        assert_eq!(day.mttr.diffs_repaired, 3);
        assert_eq!(day.mttr.diffs_mean_ms(), Some(2 * 3_600_000));
        assert_eq!(day.lag.matched, 3);
        assert_eq!(day.lag.max_ms, Some(90_000));
        let p50 = day.lag.quantile_ms(0.5).unwrap();
        assert!((2_000..=2_400).contains(&p50), "{p50}");
        assert_eq!(day.exceptions.active, 1);
        let text = day.to_markdown();
        assert!(text.contains("| audit | missing | 0 | 2 |"), "{text}");
        assert!(text.contains("diffs 2.0 h (3 repaired)"), "{text}");
        // The exception removed: closed 6 days and 5 hours after it was made.
        let mut removed = facts(5, &[], &[]);
        removed.exceptions.clear();
        let day = stored.add(&removed);
        assert_eq!(day.mttr.exceptions_closed, 1);
        assert_eq!(
            day.mttr.exceptions_mean_ms(),
            Some((6 * 24 + 5) * 3_600_000)
        );
        // A new day starts from nothing.
        let mut tomorrow = facts(1, &[], &[]);
        tomorrow.now = at(1) + chrono::Duration::days(1);
        assert_eq!(stored.add(&tomorrow).runs, 1);
    }
}
