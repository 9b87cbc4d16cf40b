//! An in-memory job state, for tests and the bench: the runner's ledger
//! store without the database (the job API's, which also takes
//! checkpoints).

pub use patrol_job_api::MemoryState;
