//! patrol's runner: configuration, cron, scheduler, ledger and CLI.

pub mod alerting;
pub mod cli;
pub mod config;
pub mod cron;
pub mod ledger;
pub mod plugins;
pub mod registry;
pub mod reload;
pub mod scheduler;
