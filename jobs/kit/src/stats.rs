//! What reading one source found, for a run's summary and details.

use serde::{Deserialize, Serialize};

/// Malformed lines (or rows) quoted per source.
pub const SAMPLES: usize = 5;

/// What reading one source found. Fields a job does not use stay zero and
/// are left out of its details.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStats {
    /// Lines read (what a per-run line limit counts).
    #[serde(skip)]
    pub lines: u64,
    pub events: u64,
    /// Lines or rows that could not be taken (not an event, too long).
    pub malformed: u64,
    /// The first few of them, as `file:line: problem`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<String>,
    /// Files read.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub files: u64,
    /// Files that shrank since the last read (rotated): read from the start.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restarted_files: u64,
    /// A per-run limit was reached; the rest waits for the next run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub more_waiting: bool,
    /// Items the source could not turn into events (e.g. a release asset
    /// without a digest), and the first few of them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_samples: Vec<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl SourceStats {
    /// Counts one malformed line; `sample` (`file:line: problem`) is only
    /// made while fewer than [`SAMPLES`] are kept.
    pub fn malformed_line(&mut self, sample: impl FnOnce() -> String) {
        self.malformed += 1;
        if self.samples.len() < SAMPLES {
            self.samples.push(sample());
        }
    }

    /// Adds what another part of the same source found (read after this
    /// part: its samples come after these).
    pub fn merge(&mut self, other: SourceStats) {
        self.lines += other.lines;
        self.events += other.events;
        self.malformed += other.malformed;
        self.files += other.files;
        self.restarted_files += other.restarted_files;
        self.more_waiting |= other.more_waiting;
        self.skipped += other.skipped;
        for (mine, theirs) in [
            (&mut self.samples, other.samples),
            (&mut self.skipped_samples, other.skipped_samples),
        ] {
            let room = SAMPLES.saturating_sub(mine.len());
            mine.extend(theirs.into_iter().take(room));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn samples_stop_at_five_but_the_count_goes_on() {
        let mut stats = SourceStats::default();
        for line in 1..=7 {
            stats.malformed_line(|| format!("a.ndjson:{line}: not JSON"));
        }
        assert_eq!(stats.malformed, 7);
        assert_eq!(stats.samples.len(), SAMPLES);
        assert_eq!(stats.samples[4], "a.ndjson:5: not JSON");

        let mut total = SourceStats {
            events: 3,
            ..SourceStats::default()
        };
        total.malformed_line(|| "b.ndjson:1: too long".into());
        total.merge(stats);
        assert_eq!((total.events, total.malformed), (3, 8));
        assert_eq!(total.samples[0], "b.ndjson:1: too long");
        assert_eq!(total.samples.len(), SAMPLES);
    }

    #[test]
    fn unused_fields_stay_out_of_the_details() {
        let stats = SourceStats {
            lines: 4,
            events: 3,
            malformed: 1,
            ..SourceStats::default()
        };
        assert_eq!(
            serde_json::to_value(&stats).unwrap(),
            serde_json::json!({"events": 3, "malformed": 1})
        );
    }
}
