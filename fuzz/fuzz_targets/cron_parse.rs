//! Arbitrary text → `CronExpr::parse` → fire times in several zones.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../shared/bodies.rs"]
mod bodies;

fuzz_target!(|data: &[u8]| {
    bodies::cron_parse(data);
});
