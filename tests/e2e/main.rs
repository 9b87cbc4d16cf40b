//! End-to-end tests: the real `patrol` binary against real databases.

// A failed set-up step should stop the test right there.
#![allow(clippy::unwrap_used)]

mod alerting;
mod anomaly;
mod chaos;
mod checkpoints;
mod crash_recovery;
mod cron_reference;
mod delivery_drill;
mod diff_audit;
mod dry_run;
mod evidence_audit;
mod graceful;
mod job_build;
mod ledger_tls;
mod logging;
mod multi_node;
mod operations;
mod plugin_sandbox;
mod plugins;
mod provmon;
mod run_rows;
mod secrets;
mod shipped;
mod support;
mod validate;
mod verify;
