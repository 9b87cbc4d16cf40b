//! What the chaos jobs themselves saw: each execution appends lines to its
//! schedule's `<schedule>.jobs` file, so the test knows when a job really
//! ran, whatever the ledger says (a process orphaned by a dead node writes
//! on).
//!
//! Line format, one append each (atomic: shorter than `PIPE_BUF`):
//! `<PATROL_SCHEDULED_FOR> <PATROL_ATTEMPT> <PATROL_RUN_ID> <pgid> <event> <epoch seconds>`
//! where `event` is `start`, `alive` (every half second while it sleeps)
//! or `end`, and `pgid` is the job shell's process group, read from
//! `/proc/$$/stat` (the command job starts each run in a group of its own,
//! led by patrol's process guard, so it is not the shell's `$$`).

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};

/// The shell snippet that appends one `event` line to `file`; `$pgid`
/// must be set (see [`sleeping_job`]).
pub fn log_line(file: &Path, event: &str) -> String {
    format!(
        "echo \"$PATROL_SCHEDULED_FOR $PATROL_ATTEMPT $PATROL_RUN_ID $pgid {event} $(date +%s.%N)\" >> {}",
        file.display()
    )
}

/// A job that logs its start, sleeps `seconds` in half-second steps
/// logging `alive` after each, and logs its end.
pub fn sleeping_job(file: &Path, seconds: f64) -> String {
    // Rounded up: the job never ends before `seconds`.
    let steps = (seconds * 2.0).ceil() as u32;
    format!(
        "read -r _ _ _ _ pgid _ < /proc/$$/stat; {start}; i=0; while [ $i -lt {steps} ]; do sleep 0.5; {alive}; i=$((i+1)); done; {end}",
        start = log_line(file, "start"),
        alive = log_line(file, "alive"),
        end = log_line(file, "end"),
    )
}

/// One execution of a job, as it logged itself.
#[derive(Debug, Clone)]
pub struct Execution {
    pub slot: DateTime<Utc>,
    pub attempt: u32,
    pub run_id: i64,
    pub pgid: i32,
    pub started: DateTime<Utc>,
    /// The last line it wrote: a lower bound of when it stopped.
    pub last_seen: DateTime<Utc>,
    /// Whether it ran to its end (was not killed).
    pub ended: bool,
}

impl Execution {
    /// Whether the two were running at the same time (by their own lines).
    pub fn overlaps(&self, other: &Execution) -> bool {
        self.started < other.last_seen && other.started < self.last_seen
    }

    pub fn describe(&self) -> String {
        format!(
            "execution of run #{} (slot {}, attempt {}, pgid {}) ran {}–{}{}",
            self.run_id,
            self.slot.format("%H:%M:%S"),
            self.attempt,
            self.pgid,
            self.started.format("%H:%M:%S%.3f"),
            self.last_seen.format("%H:%M:%S%.3f"),
            if self.ended {
                ", to its end"
            } else {
                ", never ended (killed)"
            }
        )
    }
}

/// The executions logged in `file` (none if it does not exist), oldest
/// first; panics on a line the job could not have written.
pub fn read_executions(file: &Path) -> Vec<Execution> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let mut by_process: BTreeMap<(i64, i32), Execution> = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [slot, attempt, run_id, pgid, event, at] = fields[..] else {
            panic!("{}: bad line {line:?}", file.display());
        };
        let parse_error = || format!("{}: bad line {line:?}", file.display());
        let slot = DateTime::parse_from_rfc3339(slot)
            .unwrap_or_else(|_| panic!("{}", parse_error()))
            .to_utc();
        let attempt: u32 = attempt
            .parse()
            .unwrap_or_else(|_| panic!("{}", parse_error()));
        let run_id: i64 = run_id
            .parse()
            .unwrap_or_else(|_| panic!("{}", parse_error()));
        let pgid: i32 = pgid.parse().unwrap_or_else(|_| panic!("{}", parse_error()));
        let at = epoch_to_utc(at.parse().unwrap_or_else(|_| panic!("{}", parse_error())));
        let execution = by_process
            .entry((run_id, pgid))
            .or_insert_with(|| Execution {
                slot,
                attempt,
                run_id,
                pgid,
                started: at,
                last_seen: at,
                ended: false,
            });
        execution.started = execution.started.min(at);
        execution.last_seen = execution.last_seen.max(at);
        match event {
            "start" | "alive" => {}
            "end" => execution.ended = true,
            _ => panic!("{}", parse_error()),
        }
    }
    let mut executions: Vec<Execution> = by_process.into_values().collect();
    executions.sort_by_key(|execution| execution.started);
    executions
}

fn epoch_to_utc(seconds: f64) -> DateTime<Utc> {
    let millis = (seconds * 1000.0).round() as i64;
    DateTime::from_timestamp_millis(millis).expect("a time the job wrote")
}
