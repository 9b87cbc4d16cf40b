//! Cron expressions and their fire times in a time zone.
//!
//! Syntax: 5 fields (`min hour dom month dow`), 6 fields with leading
//! seconds, or `@hourly|@daily|@midnight|@weekly|@monthly|@yearly|@annually`.
//! Semantics follow Vixie cron, including its DST rules; see
//! `docs/scheduling.md` and [`next`].

mod fields;
mod next;
mod parse;

pub use parse::{CronError, CronExpr};

#[cfg(test)]
mod tests;
