//! A job's own tables in the ledger: migrations shipped in the job's
//! folder (`migrations/{sqlite,postgres}`, embedded with
//! `sqlx::migrate!`), applied by the ledger on connect for every built-in
//! job and recorded per job (`job_migrations`), so a job's version numbers
//! are its own and never clash with the runner's or another job's.

use std::fmt;

use sqlx::migrate::Migrator;

/// The job's migrations, one set per database.
#[derive(Clone, Copy)]
pub struct JobTables {
    pub sqlite: &'static Migrator,
    pub postgres: &'static Migrator,
}

impl fmt::Debug for JobTables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let versions = |migrator: &Migrator| migrator.iter().map(|m| m.version).collect::<Vec<_>>();
        f.debug_struct("JobTables")
            .field("sqlite", &versions(self.sqlite))
            .field("postgres", &versions(self.postgres))
            .finish()
    }
}
