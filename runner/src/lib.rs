//! patrol's runner: configuration, cron, scheduler, ledger and CLI.

pub mod config;
pub mod ledger;
pub mod cron;
pub mod registry;
