//! `patrol diff-audit compare`: two copies of a table compared from the
//! command line, like reladiff but with the job's canonical digests. Diffs
//! as NDJSON on stdout, a summary on stderr; exit 0 identical, 1
//! differences, 2 bad input (a missing key column, types that cannot be
//! compared, an unreadable file — never a partial "identical").

use std::io::Write;
use std::path::PathBuf;

use async_trait::async_trait;
use clap::{Arg, ArgAction, ArgMatches, Command};
use patrol_job_api::commands::{
    CommandContext, CommandError, JobCommands, EXIT_FOUND, EXIT_OK, EXIT_UNUSABLE,
};

use crate::snapshot::{self, CompareSpec};

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
                            .value_name("FILE")
                            .value_parser(clap::value_parser!(PathBuf))
                            .help("One copy: a .parquet or .csv file"),
                    )
                    .arg(
                        Arg::new("right")
                            .long("right")
                            .required(true)
                            .value_name("FILE")
                            .value_parser(clap::value_parser!(PathBuf))
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
            ("diff-audit", Some(("compare", args))) => Ok(compare(args, &ctx)),
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

fn compare(args: &ArgMatches, ctx: &CommandContext) -> u8 {
    let path = |name: &str| args.get_one::<PathBuf>(name).cloned().unwrap_or_default();
    let (left, right) = (path("left"), path("right"));
    let table = args.get_one::<String>("table").cloned().unwrap_or_default();
    let spec = CompareSpec {
        key: list(args.get_one::<String>("key").map_or("", String::as_str)),
        columns: args.get_one::<String>("columns").map(|c| list(c)),
    };
    if spec.key.is_empty() {
        eprintln!("error: --key names no column");
        return EXIT_UNUSABLE;
    }
    let outcome = snapshot::read_table(&left).and_then(|l| {
        let r = snapshot::read_table(&right)?;
        let names = (left.display().to_string(), right.display().to_string());
        snapshot::compare(&l, &r, &spec, (&names.0, &names.1))
    });
    let (diffs, summary) = match outcome {
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
        eprintln!("{}", serde_json::to_string(&summary).unwrap_or_default());
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
