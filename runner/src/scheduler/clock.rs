//! Time as the scheduler sees it: the job API's one [`Clock`] trait, so
//! the engine, the executor, the delivery worker and the jobs all read the
//! same time, and tests substitute one clock for all of them.

pub use patrol_job_api::{Clock, SystemClock, TokioClock};
