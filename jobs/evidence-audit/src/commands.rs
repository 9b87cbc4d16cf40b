//! `patrol evidence-audit evaluate`: a release's evidence folder evaluated
//! against the catalog, the seed's renderer output as JSON (stdout or
//! `--out`), a table on stderr; exit 0 overall pass, 1 a control failed, 2
//! bad input.

use async_trait::async_trait;
use clap::{Arg, ArgAction, ArgMatches, Command};
use patrol_job_api::commands::{
    CommandContext, CommandError, JobCommands, EXIT_FOUND, EXIT_OK, EXIT_UNUSABLE,
};

use crate::evaluate::{self, Inputs};

/// The commands evidence-audit adds to `patrol`.
#[derive(Debug, Default)]
pub struct EvidenceAuditCommands;

#[async_trait]
impl JobCommands for EvidenceAuditCommands {
    fn commands(&self) -> Vec<Command> {
        vec![Command::new("evidence-audit")
            .about("Evaluate release evidence against the control catalog (evidence-audit job)")
            .subcommand_required(true)
            .subcommand(
                Command::new("evaluate")
                    .about("Evaluate one release's evidence folder; the renderer output as JSON")
                    .arg(
                        Arg::new("catalog")
                            .long("catalog")
                            .required(true)
                            .value_name("FILE")
                            .help("The control catalog (schema 1)"),
                    )
                    .arg(
                        Arg::new("evidence")
                            .long("evidence")
                            .required(true)
                            .value_name("DIR")
                            .help("The release's evidence folder"),
                    )
                    .arg(Arg::new("release").long("release").value_name("TAG").help(
                        "The release's tag (default: release.json's, else the folder's name)",
                    ))
                    .arg(
                        Arg::new("key")
                            .long("key")
                            .value_name("PEM")
                            .action(ArgAction::Append)
                            .help("A public key attestations may be signed with (repeatable)"),
                    )
                    .arg(
                        Arg::new("out")
                            .long("out")
                            .value_name("FILE")
                            .help("Write the JSON there instead of stdout"),
                    )
                    .arg(
                        Arg::new("json")
                            .long("json")
                            .action(ArgAction::SetTrue)
                            .help("No table on stderr: the JSON only"),
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
            ("evidence-audit", Some(("evaluate", args))) => Ok(evaluate_command(args, &ctx)),
            _ => Err(CommandError::new(format!(
                "evidence-audit has no command `{name}`"
            ))),
        }
    }
}

fn evaluate_command(args: &ArgMatches, ctx: &CommandContext) -> u8 {
    let path = |name: &str| {
        std::path::PathBuf::from(args.get_one::<String>(name).cloned().unwrap_or_default())
    };
    let catalog = match crate::catalog::load(&path("catalog")) {
        Ok(catalog) => catalog,
        Err(errors) => {
            for error in errors {
                eprintln!("error: {error}");
            }
            return EXIT_UNUSABLE;
        }
    };
    let dir = path("evidence");
    if !dir.is_dir() {
        eprintln!("error: {}: no such folder", dir.display());
        return EXIT_UNUSABLE;
    }
    let mut release = match evaluate::release_of(&dir) {
        Ok(release) => release,
        Err(err) => {
            eprintln!("error: {err}");
            return EXIT_UNUSABLE;
        }
    };
    if let Some(tag) = args.get_one::<String>("release") {
        release.tag = tag.clone();
    }
    let mut keys = Vec::new();
    for key in args.get_many::<String>("key").into_iter().flatten() {
        match crate::read_key(std::path::Path::new(key)) {
            Ok(key) => keys.push(key),
            Err(err) => {
                eprintln!("error: --key {err}");
                return EXIT_UNUSABLE;
            }
        }
    }
    let inputs = Inputs {
        attestation_keys: keys,
        now: ctx.now(),
    };
    let report = evaluate::evaluate(&catalog, &dir, &release, &inputs);
    let text = serde_json::to_string_pretty(&report).unwrap_or_default() + "\n";
    match args.get_one::<String>("out") {
        Some(out) => {
            if let Err(err) = std::fs::write(out, &text) {
                eprintln!("error: {out}: {err}");
                return EXIT_UNUSABLE;
            }
        }
        None => print!("{text}"),
    }
    if !args.get_flag("json") {
        for control in &report.controls {
            let verdict = if control.pass { "pass" } else { "FAIL" };
            eprintln!("{:<8} {verdict:<5} {}", control.id, control.name);
            for detail in &control.details {
                eprintln!("         {detail}");
            }
        }
        eprintln!(
            "{}: {}",
            report.release,
            if report.overall {
                "all controls pass"
            } else {
                "a control failed"
            }
        );
    }
    if report.overall {
        EXIT_OK
    } else {
        EXIT_FOUND
    }
}
