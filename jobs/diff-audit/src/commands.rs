//! `patrol diff-audit compare`: two copies of a table compared from the
//! command line, like reladiff but with the job's canonical digests. Diffs
//! as NDJSON on stdout, a summary on stderr; exit 0 identical, 1
//! differences, 2 bad input (a missing key column, types that cannot be
//! compared, an unreadable file — never a partial "identical").

use std::io::Write;

use async_trait::async_trait;
use clap::{Arg, ArgAction, ArgMatches, Command};
use patrol_job_api::commands::{
    CommandContext, CommandError, JobCommands, EXIT_FOUND, EXIT_OK, EXIT_UNUSABLE,
};

use crate::snapshot::CompareSpec;
use crate::source::{self, Source};

/// The commands diff-audit adds to `patrol`.
#[derive(Debug, Default)]
pub struct DiffAuditCommands;

#[async_trait]
impl JobCommands for DiffAuditCommands {
    fn commands(&self) -> Vec<Command> {
        vec![Command::new("diff-audit")
            .about("Compare two copies of a table (diff-audit job)")
            .subcommand_required(true)
            .subcommand(
                Command::new("compare")
                    .about("Compare two copies of a table per key; diffs as NDJSON on stdout")
                    .arg(
                        Arg::new("left")
                            .long("left")
                            .required(true)
                            .value_name("SRC")
                            .help("One copy: postgres://…/db#schema.table, sqlite://path#table, or a .parquet/.csv file"),
                    )
                    .arg(
                        Arg::new("right")
                            .long("right")
                            .required(true)
                            .value_name("SRC")
                            .help("The other copy"),
                    )
                    .arg(
                        Arg::new("key")
                            .long("key")
                            .value_name("COLS")
                            .default_value("tenant,id")
                            .help("Key columns, comma-separated"),
                    )
                    .arg(
                        Arg::new("columns")
                            .long("columns")
                            .value_name("COLS")
                            .help("Compared columns (default: every column both have but the key)"),
                    )
                    .arg(
                        Arg::new("where")
                            .long("where")
                            .value_name("SQL")
                            .help("Only rows matching this SQL condition (database tables)"),
                    )
                    .arg(
                        Arg::new("table")
                            .long("table")
                            .value_name("NAME")
                            .default_value("table")
                            .help("The table's name in the diff lines (`kind`, `table`)"),
                    )
                    .arg(
                        Arg::new("json")
                            .long("json")
                            .action(ArgAction::SetTrue)
                            .help("The summary on stderr as JSON"),
                    ),
            )]
    }

    async fn run_command(
        &self,
        name: &str,
        matches: &ArgMatches,
        ctx: CommandContext,
    ) -> Result<u8, CommandError> {
        match (name, matches.subcommand()) {
            ("diff-audit", Some(("compare", args))) => Ok(compare(args, &ctx).await),
            _ => Err(CommandError::new(format!(
                "diff-audit has no command `{name}`"
            ))),
        }
    }
}

fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .collect()
}

async fn compare(args: &ArgMatches, ctx: &CommandContext) -> u8 {
    let text = |name: &str| args.get_one::<String>(name).cloned().unwrap_or_default();
    let table = text("table");
    let spec = CompareSpec {
        key: list(&text("key")),
        columns: args.get_one::<String>("columns").map(|c| list(c)),
    };
    if spec.key.is_empty() {
        eprintln!("error: --key names no column");
        return EXIT_UNUSABLE;
    }
    let where_sql = args.get_one::<String>("where").map(String::as_str);
    let outcome = async {
        let left = Source::parse(&text("left"))?;
        let right = Source::parse(&text("right"))?;
        source::compare(&left, &right, &spec, where_sql).await
    };
    let (diffs, summary, bisection) = match outcome.await {
        Ok(done) => done,
        Err(err) => {
            eprintln!("error: {err}");
            return EXIT_UNUSABLE;
        }
    };
    let ts = ctx.now().to_rfc3339();
    let mut out = std::io::stdout().lock();
    for diff in &diffs {
        // A closed pipe (`| head`) ends the listing, not the verdict.
        if writeln!(out, "{}", diff.to_json(&table, &ts)).is_err() {
            break;
        }
    }
    drop(out);
    if args.get_flag("json") {
        let mut shown = serde_json::to_value(&summary).unwrap_or_default();
        if let Some(stats) = &bisection {
            shown["bisection"] = serde_json::to_value(stats).unwrap_or_default();
        }
        eprintln!("{shown}");
    } else {
        eprintln!(
            "{table}: {} left rows, {} right rows; {} equal, {} missing, {} mismatch, {} duplicate (columns: {})",
            summary.left_rows,
            summary.right_rows,
            summary.equal,
            summary.missing,
            summary.mismatch,
            summary.duplicate,
            summary.columns.join(", ")
        );
        if let Some(stats) = &bisection {
            let levels: Vec<String> = stats
                .levels
                .iter()
                .map(|l| format!("{} buckets, {} differing", l.buckets, l.differing))
                .collect();
            eprintln!(
                "checksums in the databases: {}; rows read: {} left, {} right",
                levels.join(" → "),
                stats.fetched_left,
                stats.fetched_right
            );
        }
        for (side, only) in [("left", &summary.only_left), ("right", &summary.only_right)] {
            if !only.is_empty() {
                eprintln!("not compared, only on the {side}: {}", only.join(", "));
            }
        }
    }
    if summary.differences() == 0 {
        EXIT_OK
    } else {
        EXIT_FOUND
    }
}
