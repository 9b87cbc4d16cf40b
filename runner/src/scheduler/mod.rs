//! When runs happen: the scheduler loop and its pure planning rules.

mod clock;
mod engine;
mod executor;
mod lease;
mod orphans;
mod plan;
mod scrub;
mod spread;
#[cfg(test)]
pub(crate) mod tests;

pub use clock::{Clock, SystemClock, TokioClock};
pub use engine::{Engine, EngineSettings};
pub use executor::{retry_after, Alerting, CancelReason, Executor, Recorded, RunHandle};
pub use lease::{renewal_period, Lease, LeaseView, Standing};
pub use orphans::{kill_run_processes, run_key};
pub use plan::{decide_overlap, plan_due_slots, OverlapDecision, Phase, SlotPlan};
pub use spread::{jitter, retry_delay};
