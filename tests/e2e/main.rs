//! End-to-end tests: the real `patrol` binary against real databases.

mod cron_reference;
mod operations;
mod validate;
mod support;
