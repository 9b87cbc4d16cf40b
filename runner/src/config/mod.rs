//! Configuration files: `patrol.yaml` and `schedules/*.yaml`.
//!
//! Parsing and checking are separate from running: `patrol validate` and
//! the scheduler's reload use the same [`load_schedules`], which reports
//! every problem with file, line and field.

mod diagnostic;
mod global;
mod load;
mod located;
pub mod overrides;
mod schedule;

pub use diagnostic::{Diagnostic, Diagnostics};
pub use global::{LogConfig, LogFormat, PatrolConfig, DEFAULT_DATABASE};
pub use load::{
    check_routes, load_schedules, load_schedules_without_jobs, parse_timezone, schedules_in_file,
};
pub use located::YamlFile;
pub use schedule::{
    BuiltJob, HistoryPolicy, Overlap, RetryPolicy, Schedule, ScheduleSet, ScheduleSpec,
    SourceLocation,
};

#[cfg(test)]
mod tests;
