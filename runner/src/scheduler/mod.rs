//! When runs happen: the scheduler loop and its pure planning rules.

mod clock;
mod engine;
mod executor;
mod orphans;
mod plan;
mod spread;

pub use clock::{Clock, SystemClock};
pub use engine::{Engine, EngineSettings};
pub use executor::{retry_after, Alerting, CancelReason, Executor, RunHandle};
pub use orphans::{kill_run_processes, run_key};
pub use plan::{plan_due_slots, Phase, SlotPlan};
pub use spread::{jitter, retry_delay};
