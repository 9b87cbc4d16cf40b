//! End-to-end tests: the real `patrol` binary against real databases.

mod cron_reference;
mod operations;
mod shipped;
mod validate;
mod crash_recovery;
mod graceful;
mod multi_node;
mod support;
