//! The diff-audit job (`diff-audit`): two copies of a table that should
//! hold the same rows — the EU and US mirrors of seed 002 OBJ-2 — compared
//! per key (default `(tenant, id)`) by canonical row digests
//! (`canonical.rs`), with every differing key written as a diff line in the
//! seed's schema and one finding per (table, reason).
//!
//! Copies are files (Parquet, CSV, NDJSON), SQLite or PostgreSQL tables
//! (`source.rs`); two PostgreSQL copies are bisected by checksums computed
//! in the databases (`bisect.rs`). A table's Debezium change streams are
//! joined per key across runs (`cdc.rs`). Residency, exceptions and signed
//! proofs apply to both; `report.rs` writes the daily report. Table files
//! are Parquet, CSV or NDJSON (`ndjson.rs`).

pub mod bisect;
pub mod canonical;
pub mod cdc;
mod cdc_run;
pub mod commands;
pub mod debezium;
pub mod events;
pub mod exceptions;
pub mod fixtures;
pub mod ndjson;
pub mod postgres;
pub mod proof;
pub mod report;
pub mod residency;
mod run;
pub mod snapshot;
pub mod source;
pub mod sqlite;
pub mod stream;

use std::path::PathBuf;
use std::sync::Arc;

use patrol_job_api::{
    BuildContext, JobDescription, JobInstance, JobKind, ParamDoc, ParamError, Severity,
};
use serde::Deserialize;

/// The `diff-audit` job kind.
#[derive(Debug, Default)]
pub struct DiffAuditJob;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    pub tables: Vec<TableSpec>,
    /// Where each table's diffs are written (`<dir>/<table>.ndjson`).
    #[serde(default)]
    pub diffs_dir: Option<PathBuf>,
    /// Write them gzipped instead (`<dir>/<table>.ndjson.gz`, seed 002
    /// §6), byte-identical for the same diffs (no time in the header).
    #[serde(default)]
    pub diffs_gzip: bool,
    /// The tenants file (seed 002 KR1.1): each tenant's home region, for
    /// `cross-region-write`; needs each table's `left_region`/`right_region`.
    #[serde(default)]
    pub tenants: Option<PathBuf>,
    /// Known differences with a justification, an owner and an expiry
    /// (`policies/diff-audit/exceptions.yaml`): reported as excepted, not
    /// paged, until they expire.
    #[serde(default)]
    pub exceptions: Option<PathBuf>,
    /// A signed proof of each run (`{dir, signing_key: file:|env:}`), an
    /// evidence pack `patrol evidence verify` checks.
    #[serde(default)]
    pub proofs: Option<proof::ProofsSpec>,
    /// The daily report (`<dir>/<YYYY-MM-DD>.json` and `.md`), rewritten
    /// by every run of the day.
    #[serde(default)]
    pub report_dir: Option<PathBuf>,
}

/// One table and its two copies.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// The table's name (the diff lines' `kind` and `table`).
    pub name: String,
    /// The copies compared as snapshots: a file path, `sqlite://path#table`,
    /// or a PostgreSQL table as `env:NAME#schema.table` / `file:PATH#…`
    /// (the connection URL is a secret).
    #[serde(default)]
    pub left: Option<String>,
    #[serde(default)]
    pub right: Option<String>,
    /// Both mirrors' change streams, joined per key.
    #[serde(default)]
    pub cdc: Option<cdc_run::CdcSpec>,
    #[serde(default = "default_key")]
    pub key: Vec<String>,
    /// Compared columns; default every column both copies have but the key.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    #[serde(default = "default_severity")]
    pub severity: String,
    /// The region of each copy (`EU`, `US`), for residency.
    #[serde(default)]
    pub left_region: Option<String>,
    #[serde(default)]
    pub right_region: Option<String>,
}

fn default_key() -> Vec<String> {
    vec!["tenant".into(), "id".into()]
}

fn default_severity() -> String {
    "high".into()
}

fn validate(params: &Params) -> Result<(), Vec<ParamError>> {
    let mut errors = Vec::new();
    if params.tables.is_empty() {
        errors.push(ParamError::new(
            "tables",
            "nothing to compare: give at least one table",
        ));
    }
    let mut names = std::collections::HashSet::new();
    for (n, table) in params.tables.iter().enumerate() {
        let field = |name: &str| format!("tables[{n}].{name}");
        if table.name.is_empty() || !names.insert(table.name.clone()) {
            errors.push(ParamError::new(
                field("name"),
                "must be non-empty and unique",
            ));
        }
        if table.name.contains(['/', '\\']) || table.name.starts_with('.') {
            errors.push(ParamError::new(
                field("name"),
                "names a file: no `/`, `\\` or leading `.`",
            ));
        }
        if table.key.is_empty() {
            errors.push(ParamError::new(field("key"), "needs at least one column"));
        }
        match (&table.left, &table.right) {
            (Some(_), Some(_)) => {}
            (None, None) if table.cdc.is_some() => {}
            (None, None) => errors.push(ParamError::new(
                field("left"),
                "give the copies to compare (left and right) or their change streams (cdc)",
            )),
            (Some(_), None) => errors.push(ParamError::new(field("right"), "is missing")),
            (None, Some(_)) => errors.push(ParamError::new(field("left"), "is missing")),
        }
        if let Some(cdc) = &table.cdc {
            errors.extend(cdc.validate(&field("cdc")));
        }
        if let Err(message) = Severity::parse_with_seed_names(&table.severity) {
            errors.push(ParamError::new(field("severity"), message));
        }
        // Residency judges snapshot rows (a CDC table needs no regions).
        if params.tenants.is_some() && table.left.is_some() {
            for (side, region) in [
                ("left_region", &table.left_region),
                ("right_region", &table.right_region),
            ] {
                if region.as_deref().is_none_or(|r| r.trim().is_empty()) {
                    errors.push(ParamError::new(
                        field(side),
                        "is needed with `tenants`: which region this copy is in",
                    ));
                }
            }
            if let (Some(l), Some(r)) = (&table.left_region, &table.right_region) {
                if l.trim().eq_ignore_ascii_case(r.trim()) {
                    errors.push(ParamError::new(
                        field("right_region"),
                        "is the left copy's region too",
                    ));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The runbook of each reason.
pub(crate) const RUNBOOKS: [(&str, &str); 6] = [
    ("missing", "diff-audit-missing"),
    ("mismatch", "diff-audit-mismatch"),
    ("duplicate", "diff-audit-duplicate"),
    ("cross-region-write", "diff-audit-cross-region-write"),
    ("exception-expired", "diff-audit-exception-expired"),
    ("late", "diff-audit-late"),
];

impl JobKind for DiffAuditJob {
    type Config = Params;

    fn kind(&self) -> &'static str {
        "diff-audit"
    }

    fn describe(&self) -> JobDescription {
        JobDescription {
            kind: "diff-audit",
            summary: "Compares two copies of each table (EU and US mirrors) per key by canonical row digests and pages missing, mismatched and duplicate rows",
            params: vec![
                ParamDoc {
                    name: "tables",
                    type_name: "list of {name, left, right, cdc, key, columns, severity, left_region, right_region}",
                    required: true,
                    default: None,
                    description: "Tables and their two copies (Parquet/CSV files, sqlite://path#table, or env:URL_VAR#schema.table for PostgreSQL) and/or their Debezium change streams (cdc: {left, right: files, folders or http(s) NDJSON endpoints; headers, lag_window, missing_after}); key default [tenant, id]",
                },
                ParamDoc {
                    name: "tenants",
                    type_name: "path",
                    required: false,
                    default: None,
                    description: "tenants.yaml (tenant → home region): a row only in a copy outside its tenant's region is a cross-region write",
                },
                ParamDoc {
                    name: "exceptions",
                    type_name: "path",
                    required: false,
                    default: None,
                    description: "exceptions.yaml: known differences (table, tenant, id or id_prefix, reason) with justification, owner, created, expires (at most 90 days)",
                },
                ParamDoc {
                    name: "proofs",
                    type_name: "{dir, signing_key: file:PATH | env:NAME}",
                    required: false,
                    default: None,
                    description: "Write a signed proof of each run (counts, both copies' row commitments, diffs, exceptions applied) as an evidence pack",
                },
                ParamDoc {
                    name: "report_dir",
                    type_name: "path",
                    required: false,
                    default: None,
                    description: "Write the daily report (counts per table and reason, CDC lag p50/p95/max, exceptions, MTTR of diffs and exceptions) to <dir>/<day>.json and .md",
                },
                ParamDoc {
                    name: "diffs_dir",
                    type_name: "path",
                    required: false,
                    default: None,
                    description: "Write each table's diffs as NDJSON to <dir>/<table>.ndjson",
                },
                ParamDoc {
                    name: "diffs_gzip",
                    type_name: "bool",
                    required: false,
                    default: Some("false"),
                    description: "Gzip the diffs files (<dir>/<table>.ndjson.gz)",
                },
            ],
        }
    }

    fn validate(&self, params: &Params) -> Result<(), Vec<ParamError>> {
        validate(params)
    }

    fn build(
        &self,
        mut params: Params,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn JobInstance>, Vec<ParamError>> {
        let mut errors = Vec::new();
        let mut sources = Vec::new();
        for (n, table) in params.tables.iter_mut().enumerate() {
            let mut pair = Vec::new();
            for (side, text) in [("left", &table.left), ("right", &table.right)] {
                let Some(text) = text else { continue };
                match source::Source::configured(text, ctx.base_dir()) {
                    Ok(source::Source::File(path)) => {
                        let path = ctx.path(&path);
                        if !path.is_file() {
                            errors.push(ParamError::new(
                                format!("tables[{n}].{side}"),
                                format!("{} is not a file", path.display()),
                            ));
                        }
                        pair.push(source::Source::File(path));
                    }
                    Ok(source::Source::Sqlite { path, table }) => {
                        pair.push(source::Source::Sqlite {
                            path: ctx.path(&path),
                            table,
                        });
                    }
                    Ok(other) => pair.push(other),
                    Err(message) => {
                        errors.push(ParamError::new(format!("tables[{n}].{side}"), message))
                    }
                }
            }
            sources.push(match <[source::Source; 2]>::try_from(pair) {
                Ok([left, right]) => Some((left, right)),
                Err(_) => None,
            });
            if let Some(cdc) = &mut table.cdc {
                errors.extend(cdc.build(ctx, &format!("tables[{n}].cdc")));
            }
        }
        for (_, runbook) in RUNBOOKS {
            if let Err(error) = ctx.check_runbook("tables", runbook) {
                errors.push(error);
            }
        }
        if let Some(dir) = &mut params.diffs_dir {
            *dir = ctx.path(dir);
        }
        if let Some(dir) = &mut params.report_dir {
            *dir = ctx.path(dir);
        }
        let homes = match &params.tenants {
            Some(path) => {
                let path = ctx.path(path);
                ctx.depends_on(&path);
                match residency::load(&path) {
                    Ok(homes) => Some(homes),
                    Err(problems) => {
                        errors.extend(problems.into_iter().map(|p| ParamError::new("tenants", p)));
                        None
                    }
                }
            }
            None => None,
        };
        let exceptions = match &params.exceptions {
            Some(path) => {
                let path = ctx.path(path);
                ctx.depends_on(&path);
                exceptions::load(&path).unwrap_or_else(|problems| {
                    errors.extend(
                        problems
                            .into_iter()
                            .map(|p| ParamError::new("exceptions", p)),
                    );
                    Vec::new()
                })
            }
            None => Vec::new(),
        };
        let proofs = match &mut params.proofs {
            Some(spec) => {
                spec.dir = ctx.path(&spec.dir);
                spec.build(ctx.base_dir())
                    .map_err(|message| errors.push(ParamError::new("proofs.signing_key", message)))
                    .ok()
            }
            None => None,
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Arc::new(run::DiffAuditInstance {
            params,
            sources,
            homes,
            exceptions,
            proofs,
        }))
    }

    fn commands(&self) -> Option<Arc<dyn patrol_job_api::JobCommands>> {
        Some(Arc::new(commands::DiffAuditCommands))
    }
}
