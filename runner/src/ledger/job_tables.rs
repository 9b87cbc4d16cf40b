//! Jobs' own tables: each job's migrations (`jobs/<name>/migrations`),
//! applied on connect after the runner's and recorded per job in
//! `job_migrations`, so a job's version numbers are its own.
//!
//! `job_migrations` is made here, not by a runner migration, for the same
//! reason sqlx makes `_sqlx_migrations` itself: it is the bookkeeping of
//! this code, needed before any job migration can be recorded.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use patrol_job_api::JobTables;
use sqlx::migrate::Migration;
use sqlx::{AnyPool, Executor, Row};

use super::model::to_millis;
use super::Backend;

const CREATE_JOB_MIGRATIONS: &str = "CREATE TABLE IF NOT EXISTS job_migrations (
    job         TEXT   NOT NULL,
    version     BIGINT NOT NULL,
    description TEXT   NOT NULL,
    checksum    TEXT   NOT NULL,
    applied_at  BIGINT NOT NULL,
    PRIMARY KEY (job, version)
)";

/// Applies every job's migrations not yet applied, in version order; an
/// applied migration whose text changed since is an error naming the job
/// and version. Several nodes may connect at once: the loser of a race
/// finds the migration applied on its next try.
pub(super) async fn migrate_job_tables(
    pool: &AnyPool,
    backend: Backend,
    jobs: &[(&str, JobTables)],
) -> Result<()> {
    let mut attempts = 0;
    loop {
        match apply_all(pool, backend, jobs).await {
            Ok(()) => return Ok(()),
            Err(err) if attempts < 5 && !err.is::<ChangedMigration>() => {
                attempts += 1;
                tracing::debug!(error = %format!("{err:#}"), "job migration raced another node; retrying");
                tokio::time::sleep(Duration::from_millis(200 * attempts)).await;
            }
            Err(err) => return Err(err).context("cannot migrate the jobs' tables"),
        }
    }
}

/// An applied migration that is not the one shipped any more.
#[derive(Debug, thiserror::Error)]
#[error("job {job}'s migration {version} ({description}) was changed after it was applied to this ledger (checksum {applied}… applied, {shipped}… shipped); add a new migration instead of editing an applied one")]
struct ChangedMigration {
    job: String,
    version: i64,
    description: String,
    applied: String,
    shipped: String,
}

async fn apply_all(pool: &AnyPool, backend: Backend, jobs: &[(&str, JobTables)]) -> Result<()> {
    sqlx::query(CREATE_JOB_MIGRATIONS)
        .execute(pool)
        .await
        .context("creating job_migrations")?;
    for (job, tables) in jobs {
        let migrator = match backend {
            Backend::Sqlite => tables.sqlite,
            Backend::Postgres => tables.postgres,
        };
        let applied = applied_checksums(pool, job).await?;
        for migration in migrator
            .iter()
            .filter(|migration| migration.migration_type.is_up_migration())
        {
            let shipped = hex::encode(&*migration.checksum);
            match applied.get(&migration.version) {
                Some(sum) if *sum == shipped => {}
                Some(sum) => {
                    return Err(ChangedMigration {
                        job: job.to_string(),
                        version: migration.version,
                        description: migration.description.to_string(),
                        applied: short(sum),
                        shipped: short(&shipped),
                    }
                    .into())
                }
                None => apply(pool, job, migration, &shipped).await?,
            }
        }
    }
    Ok(())
}

/// The start of a checksum, enough to tell two apart in a message.
fn short(checksum: &str) -> String {
    checksum.get(..16).unwrap_or(checksum).to_string()
}

async fn applied_checksums(pool: &AnyPool, job: &str) -> Result<HashMap<i64, String>> {
    let rows = sqlx::query("SELECT version, checksum FROM job_migrations WHERE job = $1")
        .bind(job)
        .fetch_all(pool)
        .await
        .with_context(|| format!("reading job {job}'s applied migrations"))?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}

/// One migration and its record, in one transaction.
async fn apply(pool: &AnyPool, job: &str, migration: &Migration, checksum: &str) -> Result<()> {
    let failed = || {
        format!(
            "applying job {job}'s migration {} ({})",
            migration.version, migration.description
        )
    };
    if migration.no_tx {
        bail!(
            "{}: job migrations run in a transaction (remove `-- no-transaction`)",
            failed()
        );
    }
    let mut tx = pool.begin().await.with_context(failed)?;
    // As sqlx runs its own migrations: the whole text, several statements.
    (&mut *tx)
        .execute(&*migration.sql)
        .await
        .with_context(failed)?;
    sqlx::query(
        "INSERT INTO job_migrations (job, version, description, checksum, applied_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(job)
    .bind(migration.version)
    .bind(migration.description.to_string())
    .bind(checksum)
    .bind(to_millis(chrono::Utc::now()))
    .execute(&mut *tx)
    .await
    .with_context(failed)?;
    tx.commit().await.with_context(failed)?;
    Ok(())
}

#[cfg(test)]
mod tests;
