//! patrol's runner: configuration, cron, scheduler, ledger and CLI.

pub mod cron;
