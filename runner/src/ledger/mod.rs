//! The run ledger: the source of truth for what ran, runs and will run.
//!
//! One set of portable SQL serves SQLite (embedded default) and PostgreSQL
//! (teams, several nodes) through sqlx's `Any` driver; the schema lives in
//! `runner/migrations/{sqlite,postgres}` and is applied on connect, then
//! each built-in job's own tables (`jobs/<name>/migrations`, see
//! `job_tables.rs`).

pub mod alert_listing;
pub mod alerts;
mod checkpoints;
mod effects;
mod instances;
mod job_state;
mod job_tables;
mod model;
mod open_failure;
pub mod outbox;
mod runs;
pub mod silences;
mod state;

use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result};
use patrol_job_api::JobTables;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, ConnectOptions, Executor};

pub use checkpoints::LedgerCheckpointLog;
pub use effects::{EffectRow, LedgerEffectLog};
pub use instances::{CrashFollowUp, DeadInstance, HostIdentity, LeaseClock, Renewal};
pub use job_state::ScheduleStateStore;
pub use model::{from_millis, to_millis, Instance, NewRun, Run, RunEnd, RunStatus, Trigger};
pub use runs::{RunEndWrites, RunFilter};
pub use state::ScheduleState;

// Versions this runner no longer ships are ignored, not refused: tables
// that moved into a job (5 and 6, now a job's `verifications`) stay applied
// in older ledgers, and the job's own migration keeps them.
static SQLITE_MIGRATIONS: Migrator = Migrator {
    ignore_missing: true,
    ..sqlx::migrate!("./migrations/sqlite")
};
static POSTGRES_MIGRATIONS: Migrator = Migrator {
    ignore_missing: true,
    ..sqlx::migrate!("./migrations/postgres")
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A handle on the ledger database; cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    pool: AnyPool,
    backend: Backend,
    /// Whose clock judges leases: the database's on PostgreSQL, so nodes
    /// with skewed clocks agree on who is alive.
    lease_clock: LeaseClock,
    /// How it was opened (for a separate pool on the same database).
    url: std::sync::Arc<str>,
}

impl Ledger {
    /// Connects to `url` (`sqlite://PATH` or `postgres://…`), creating an
    /// SQLite file if needed, and brings the schema up to date: the
    /// runner's tables, then those of every built-in job.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with_job_tables(url, &crate::registry::JobRegistry::builtin().tables()).await
    }

    /// [`Ledger::connect`] with the given jobs' tables (by job kind).
    pub async fn connect_with_job_tables(url: &str, jobs: &[(&str, JobTables)]) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            anyhow::bail!("unsupported database URL (expected sqlite://PATH or postgres://…)");
        };
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
            }
            _ => url.to_string(),
        };
        let options = AnyConnectOptions::from_str(&url)
            .with_context(|| format!("bad database URL {}", redact_url(&url)))?
            .disable_statement_logging();
        let pool = AnyPoolOptions::new()
            // One writer connection for SQLite: no lock upgrades inside the
            // process; other processes wait on busy_timeout.
            .max_connections(if backend == Backend::Sqlite { 1 } else { 8 })
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|err| open_failure::open_failure(&url, backend, &err))?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrate_serialized(&pool, migrator).await?;
        job_tables::migrate_job_tables(&pool, backend, jobs).await?;
        Ok(Self {
            pool,
            backend,
            lease_clock: match backend {
                Backend::Sqlite => LeaseClock::Caller,
                Backend::Postgres => LeaseClock::Database,
            },
            url: url.into(),
        })
    }

    /// The same ledger with leases judged on `clock` (tests with a clock
    /// of their own set [`LeaseClock::Caller`]).
    pub fn with_lease_clock(mut self, clock: LeaseClock) -> Self {
        self.lease_clock = clock;
        self
    }

    /// A second handle on the same database with its own small pool, for
    /// work that must not queue behind the main pool (lease renewals): a
    /// slow pool or a long transaction must never make a live node look
    /// dead. SQLite, one node and one writer, shares the main pool.
    pub async fn separate(&self, acquire_timeout: Duration) -> Result<Self> {
        if self.backend == Backend::Sqlite {
            return Ok(self.clone());
        }
        let options = AnyConnectOptions::from_str(&self.url)?.disable_statement_logging();
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(acquire_timeout)
            .connect_lazy_with(options);
        Ok(Self {
            pool,
            ..self.clone()
        })
    }

    /// SQL for the database's current time in epoch milliseconds.
    pub(crate) fn db_now(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
            Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The pool and backend as a job's own code sees them (its commands).
    pub fn job_database(&self) -> patrol_job_api::commands::JobDatabase {
        use patrol_job_api::commands::{DatabaseBackend, JobDatabase};
        JobDatabase {
            pool: self.pool.clone(),
            backend: match self.backend {
                Backend::Sqlite => DatabaseBackend::Sqlite,
                Backend::Postgres => DatabaseBackend::Postgres,
            },
        }
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Several processes may open a new ledger at once.
async fn migrate_serialized(pool: &AnyPool, migrator: &sqlx::migrate::Migrator) -> Result<()> {
    let mut attempts = 0;
    loop {
        match migrator.run(pool).await {
            Ok(()) => return Ok(()),
            // Two first-time starts can race on creating the schema; the
            // loser finds it applied on the next try.
            Err(err) if attempts < 5 => {
                attempts += 1;
                tracing::debug!(error = %err, "migration raced another node; retrying");
                tokio::time::sleep(Duration::from_millis(200 * attempts)).await;
            }
            Err(err) => return Err(err).context("cannot migrate the ledger schema"),
        }
    }
}

/// The URL without its password (the user is kept: it tells which role
/// connects) nor a credential in its query (`?password=…`), for messages.
pub fn redact_url(url: &str) -> String {
    patrol_job_api::secret::redact_query_credentials(&password_masked(url))
}

fn password_masked(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod tests;

/// Creates a fresh, uniquely named database on the PostgreSQL server at
/// `server_url` and returns its URL. For tests and benchmarks.
pub async fn create_scratch_postgres_database(server_url: &str, prefix: &str) -> Result<String> {
    use sqlx::Connection;
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(server_url)
        .await
        .with_context(|| format!("cannot reach PostgreSQL at {}", redact_url(server_url)))?;
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await?;
    conn.close().await?;
    database_url(server_url, &name)
}

/// `server_url` naming database `name` instead. Its query (sslmode,
/// sslrootcert=/a/path…) stays: the new database is reached the way the
/// server was.
fn database_url(server_url: &str, name: &str) -> Result<String> {
    let (location, query) = match server_url.split_once('?') {
        Some((location, query)) => (location, format!("?{query}")),
        None => (server_url, String::new()),
    };
    let (base, _) = location
        .rsplit_once('/')
        .context("PostgreSQL URL has no database part")?;
    Ok(format!("{base}/{name}{query}"))
}
