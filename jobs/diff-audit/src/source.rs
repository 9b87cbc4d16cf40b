//! Where a copy of a table lives: a file (Parquet, CSV), a PostgreSQL
//! table (`postgres://user@host/db#schema.table`) or a SQLite table
//! (`sqlite://path#table`).

use std::path::PathBuf;

use patrol_job_api::secret::redact_url_credentials;
use polars::prelude::DataFrame;

use crate::bisect::{self, BisectStats};
use crate::postgres::{self, PgTable};
use crate::snapshot::{self, CompareSpec, Diff, Summary};

/// One copy of a table.
#[derive(Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Postgres {
        /// The connection URL; it may carry a password, so it is never shown.
        url: String,
        schema: String,
        table: String,
    },
    Sqlite {
        path: PathBuf,
        table: String,
    },
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Source {
    /// Reads `text`: a database URL with `#table`, or else a file path.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if strip_scheme(text, &["postgres://", "postgresql://"]).is_some() {
            let (url, table) = split_table(text)?;
            let (schema, table) = match table.split_once('.') {
                Some((schema, table)) => (schema.to_string(), table.to_string()),
                None => ("public".to_string(), table.to_string()),
            };
            check_identifier(&schema)?;
            check_identifier(&table)?;
            return Ok(Source::Postgres {
                url: url.to_string(),
                schema,
                table,
            });
        }
        if let Some(rest) = strip_scheme(text, &["sqlite://"]) {
            let (path, table) = split_table(rest)?;
            check_identifier(table)?;
            if path.is_empty() {
                return Err(format!("{text}: no database file before `#`"));
            }
            return Ok(Source::Sqlite {
                path: PathBuf::from(path),
                table: table.to_string(),
            });
        }
        if text.contains("://") {
            return Err(format!(
                "{text}: a source is postgres://…#schema.table, sqlite://path#table or a file path"
            ));
        }
        Ok(Source::File(PathBuf::from(text)))
    }

    /// Reads a source as a schedule writes it: like [`Source::parse`], but a
    /// database URL, which may carry a password, is a secret —
    /// `env:NAME#schema.table` or `file:PATH#schema.table` (relative to
    /// `base`) — never written inline.
    pub fn configured(text: &str, base: &std::path::Path) -> Result<Self, String> {
        let text = text.trim();
        if text.starts_with("env:") || text.starts_with("file:") {
            let (reference, table) = split_table(text)?;
            let url = patrol_job_api::secret::SecretRef::parse(reference)?.resolve(base)?;
            return Self::parse(&format!("{}#{table}", url.expose()));
        }
        let source = Self::parse(text)?;
        if matches!(source, Source::Postgres { .. }) {
            return Err(
                "a database URL is a secret: write env:NAME#schema.table or file:PATH#schema.table"
                    .into(),
            );
        }
        Ok(source)
    }

    /// How the source is named in summaries, errors and proofs: a
    /// database URL with its credentials masked.
    pub fn describe(&self) -> String {
        match self {
            Source::File(path) => path.display().to_string(),
            Source::Postgres { url, schema, table } => {
                format!("{}#{schema}.{table}", redact_url_credentials(url))
            }
            Source::Sqlite { path, table } => format!("sqlite://{}#{table}", path.display()),
        }
    }
}

/// A source opened: a file's rows, or a database table not read yet.
enum Opened {
    Frame(DataFrame),
    Postgres(PgTable),
}

impl Opened {
    fn column_names(&self) -> Vec<String> {
        match self {
            Opened::Frame(frame) => frame
                .get_column_names()
                .iter()
                .map(|c| c.to_string())
                .collect(),
            Opened::Postgres(table) => table.column_names(),
        }
    }

    async fn rows(self, columns: &[String], where_sql: Option<&str>) -> Result<DataFrame, String> {
        match self {
            Opened::Frame(frame) => Ok(frame),
            Opened::Postgres(table) => table.read(columns, None, where_sql, None).await,
        }
    }
}

async fn open(source: &Source, where_sql: Option<&str>) -> Result<Opened, String> {
    let shown = source.describe();
    match source {
        Source::File(path) => {
            if where_sql.is_some() {
                return Err(format!(
                    "{shown}: --where filters database tables, not files"
                ));
            }
            let path = path.clone();
            let frame = tokio::task::spawn_blocking(move || snapshot::read_table(&path))
                .await
                .map_err(|err| format!("{shown}: {err}"))??;
            Ok(Opened::Frame(frame))
        }
        Source::Postgres { url, schema, table } => Ok(Opened::Postgres(
            postgres::open(url, schema, table, &shown).await?,
        )),
        Source::Sqlite { path, table } => Ok(Opened::Frame(
            crate::sqlite::read(path, table, where_sql, &shown).await?,
        )),
    }
}

/// Compares two sources: two PostgreSQL tables by bisection (`bisect.rs`,
/// stats returned), any other pair by reading both copies' rows.
pub async fn compare(
    left: &Source,
    right: &Source,
    spec: &CompareSpec,
    where_sql: Option<&str>,
) -> Result<(Vec<Diff>, Summary, Option<BisectStats>), String> {
    let names = (left.describe(), right.describe());
    if let (Source::File(l), Source::File(r)) = (left, right) {
        if where_sql.is_some() {
            return Err("--where filters database tables, not files".into());
        }
        let (l, r, spec) = (l.clone(), r.clone(), spec.clone());
        let (diffs, summary, _) = tokio::task::spawn_blocking(move || {
            crate::stream::compare(&l, &r, &spec, (&names.0, &names.1))
        })
        .await
        .map_err(|err| err.to_string())??;
        return Ok((diffs, summary, None));
    }
    let (l, r) = tokio::try_join!(open(left, where_sql), open(right, where_sql))?;
    if let (Opened::Postgres(l), Opened::Postgres(r)) = (&l, &r) {
        let (diffs, summary, stats) =
            bisect::compare(l, r, spec, where_sql, bisect::Tuning::default()).await?;
        return Ok((diffs, summary, Some(stats)));
    }
    let resolved = snapshot::resolve_columns(
        &l.column_names(),
        &r.column_names(),
        spec,
        (&names.0, &names.1),
    )?;
    let mut read = spec.key.clone();
    read.extend(resolved.columns.iter().cloned());
    let (l, r) = tokio::try_join!(l.rows(&read, where_sql), r.rows(&read, where_sql))?;
    let spec = CompareSpec {
        key: spec.key.clone(),
        columns: Some(resolved.columns),
    };
    let (diffs, mut summary) =
        tokio::task::spawn_blocking(move || snapshot::compare(&l, &r, &spec, (&names.0, &names.1)))
            .await
            .map_err(|err| err.to_string())??;
    (summary.only_left, summary.only_right) = (resolved.only_left, resolved.only_right);
    Ok((diffs, summary, None))
}

fn strip_scheme<'a>(text: &'a str, schemes: &[&str]) -> Option<&'a str> {
    schemes.iter().find_map(|scheme| {
        text.get(..scheme.len())
            .filter(|head| head.eq_ignore_ascii_case(scheme))
            .map(|_| &text[scheme.len()..])
    })
}

fn split_table(text: &str) -> Result<(&str, &str), String> {
    match text.rsplit_once('#') {
        Some((url, table)) if !table.is_empty() => Ok((url, table)),
        _ => Err(format!(
            "{}: name the table after `#` (postgres://…/db#schema.table, sqlite://path#table)",
            redact_url_credentials(text)
        )),
    }
}

/// A table or schema name is used in SQL text, so only plain identifiers
/// are taken (letters, digits, `_`, not starting with a digit).
fn check_identifier(name: &str) -> Result<(), String> {
    let plain = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a plain table name (letters, digits and _)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_name_their_table_and_never_show_a_password() {
        let pg = Source::parse("postgres://audit:s3cret@db.eu:5432/mirror#sales.orders").unwrap();
        assert_eq!(
            pg,
            Source::Postgres {
                url: "postgres://audit:s3cret@db.eu:5432/mirror".into(),
                schema: "sales".into(),
                table: "orders".into(),
            }
        );
        assert_eq!(
            pg.describe(),
            "postgres://[redacted]@db.eu:5432/mirror#sales.orders"
        );
        assert!(!format!("{pg:?}").contains("s3cret"));
        let default_schema = Source::parse("postgresql://db/m#orders").unwrap();
        assert!(
            matches!(default_schema, Source::Postgres { ref schema, .. } if schema == "public")
        );
        assert_eq!(
            Source::parse("sqlite:///tmp/m.db#orders").unwrap(),
            Source::Sqlite {
                path: "/tmp/m.db".into(),
                table: "orders".into()
            }
        );
        assert_eq!(
            Source::parse("eu/audit.parquet").unwrap(),
            Source::File("eu/audit.parquet".into())
        );
    }

    #[test]
    fn a_schedule_names_a_database_by_a_secret_never_inline() {
        let base = std::path::Path::new("/");
        std::env::set_var(
            "PATROL_TEST_DIFF_AUDIT_EU_URL",
            "postgres://audit:pw@db.eu/m",
        );
        let source =
            Source::configured("env:PATROL_TEST_DIFF_AUDIT_EU_URL#sales.orders", base).unwrap();
        assert_eq!(
            source.describe(),
            "postgres://[redacted]@db.eu/m#sales.orders"
        );
        // A password in libpq's query form is masked too.
        let query = Source::parse("postgres://db.eu/m?sslmode=require&password=pw#orders").unwrap();
        assert!(!query.describe().contains("pw"), "{}", query.describe());
        let err = Source::configured("postgres://audit:pw@db.eu/m#orders", base).unwrap_err();
        assert!(err.contains("is a secret") && !err.contains("pw"), "{err}");
        let err = Source::configured("env:PATROL_TEST_DIFF_AUDIT_UNSET#orders", base).unwrap_err();
        assert!(err.contains("is not set"), "{err}");
        assert_eq!(
            Source::configured("eu/audit.parquet", base).unwrap(),
            Source::File("eu/audit.parquet".into())
        );
    }

    #[test]
    fn a_url_without_a_table_or_with_sql_in_it_is_refused() {
        let err = Source::parse("postgres://audit:s3cret@db/m").unwrap_err();
        assert!(err.contains("name the table"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        let err = Source::parse("postgres://db/m#orders;drop table x").unwrap_err();
        assert!(err.contains("not a plain table name"), "{err}");
        assert!(Source::parse("mysql://db/m#t").is_err());
    }
}
