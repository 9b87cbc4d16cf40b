//! `patrol evidence-audit evaluate`: a release's evidence folder evaluated
//! against the catalog, the seed's renderer output as JSON (stdout or
//! `--out`) — with `--sign-key`, the signed control attestation instead,
//! and with `--pdf` its PDF — a table on stderr; exit 0 overall pass, 1 a
//! control failed, 2 bad input.

use async_trait::async_trait;
use clap::{Arg, ArgAction, ArgMatches, Command};
use patrol_job_api::commands::{
    CommandContext, CommandError, JobCommands, EXIT_FOUND, EXIT_OK, EXIT_UNUSABLE,
};

use patrol_provmon_verify::fixtures::SigningKey;
use sha2::{Digest, Sha256};

use crate::attestation;
use crate::chain;
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
                        Arg::new("sign-key")
                            .long("sign-key")
                            .value_name("PEM")
                            .help("Sign: the output is the control attestation, a DSSE in-toto Statement signed with this private key"),
                    )
                    .arg(
                        Arg::new("out")
                            .long("out")
                            .value_name("FILE")
                            .help("Write the JSON (or the signed attestation) there instead of stdout"),
                    )
                    .arg(
                        Arg::new("pdf")
                            .long("pdf")
                            .value_name("FILE")
                            .help("Also render the attestation as a PDF (with --sign-key, its signature in FILE.sig)"),
                    )
                    .arg(
                        Arg::new("json")
                            .long("json")
                            .action(ArgAction::SetTrue)
                            .help("No table on stderr: the JSON only"),
                    ),
            )
            .subcommand(
                Command::new("run")
                    .about("The evidence audit: re-verify a reproducible random share of a period's releases")
                    .arg(
                        Arg::new("period")
                            .long("period")
                            .required(true)
                            .value_name("PERIOD")
                            .help("2026Q4, 2026 or previous (the last full quarter)"),
                    )
                    .arg(
                        Arg::new("sample")
                            .long("sample")
                            .value_name("SHARE")
                            .default_value("10%")
                            .help("The share of the period's releases to audit (at least one)"),
                    )
                    .arg(
                        Arg::new("seed")
                            .long("seed")
                            .required(true)
                            .value_name("SEED")
                            .help("The draw's seed, recorded in the report so anyone can redraw the sample"),
                    )
                    .arg(
                        Arg::new("schedule")
                            .long("schedule")
                            .value_name("ID")
                            .help("The evidence-audit schedule whose catalog, releases and keys to use (default: the only one)"),
                    )
                    .arg(
                        Arg::new("out")
                            .long("out")
                            .value_name("DIR")
                            .help("Also write audit-<period>.json and .md there"),
                    ),
            )
            .subcommand(
                Command::new("pack")
                    .about("Audit pack v1 of a release: evidence, attestation, index, control map, summaries; signed, deterministic .tgz")
                    .arg(Arg::new("release").required(true).value_name("TAG").help("The release's tag (its folder's name)"))
                    .arg(
                        Arg::new("out")
                            .long("out")
                            .required(true)
                            .value_name("FILE")
                            .help("Where the .tgz goes"),
                    )
                    .arg(
                        Arg::new("sign-key")
                            .long("sign-key")
                            .value_name("PEM")
                            .help("The private key that signs the pack's manifest (default: the schedule's attestations.signing_key)"),
                    )
                    .arg(
                        Arg::new("schedule")
                            .long("schedule")
                            .value_name("ID")
                            .help("The evidence-audit schedule whose catalog and releases to use"),
                    ),
            )
            .subcommand(
                Command::new("chain")
                    .about("The hash chain of attestations and audit results in the ledger")
                    .subcommand_required(true)
                    .subcommand(
                        Command::new("verify")
                            .about("Check every entry's hash and link; name each edited, removed or reordered one")
                            .arg(
                                Arg::new("schedule")
                                    .long("schedule")
                                    .value_name("ID")
                                    .help("Only this schedule's chain (default: every evidence-audit schedule)"),
                            ),
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
            ("evidence-audit", Some(("run", args))) => Ok(audit_command(args, &ctx)),
            ("evidence-audit", Some(("pack", args))) => Ok(pack_command(args, &ctx)),
            ("evidence-audit", Some(("chain", chain))) => match chain.subcommand() {
                Some(("verify", args)) => Ok(chain_verify(args, &ctx).await),
                _ => Err(CommandError::new(
                    "evidence-audit chain: give a subcommand (verify)",
                )),
            },
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
    let signer = match args.get_one::<String>("sign-key") {
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|err| err.to_string())
            .and_then(|pem| SigningKey::from_pem(&pem))
        {
            Ok(key) => Some(key),
            Err(err) => {
                eprintln!("error: --sign-key {path}: {err}");
                return EXIT_UNUSABLE;
            }
        },
        None => None,
    };
    let catalog_sha256 = match std::fs::read(path("catalog")) {
        Ok(bytes) => hex::encode(Sha256::digest(bytes)),
        Err(err) => {
            eprintln!("error: {err}");
            return EXIT_UNUSABLE;
        }
    };
    let report = evaluate::evaluate(&catalog, &dir, &release, &inputs);
    let (output, pdf) = match &signer {
        Some(key) => {
            let signed = attestation::attest(&report, &release, &catalog, &catalog_sha256, key);
            (
                signed.envelope,
                Some((signed.pdf, Some(signed.pdf_signature))),
            )
        }
        None => {
            let pdf = args.get_one::<String>("pdf").map(|_| {
                let statement =
                    attestation::statement(&report, &release, &catalog, &catalog_sha256);
                (
                    attestation::render_unsigned(&report, &release, &catalog, &statement),
                    None,
                )
            });
            (
                (serde_json::to_string_pretty(&report).unwrap_or_default() + "\n").into_bytes(),
                pdf,
            )
        }
    };
    let write = |path: &str, bytes: &[u8]| -> bool {
        match std::fs::write(path, bytes) {
            Ok(()) => true,
            Err(err) => {
                eprintln!("error: {path}: {err}");
                false
            }
        }
    };
    match args.get_one::<String>("out") {
        Some(out) => {
            if !write(out, &output) {
                return EXIT_UNUSABLE;
            }
        }
        None => {
            use std::io::Write;
            let _ = std::io::stdout().write_all(&output);
        }
    }
    if let (Some(target), Some((bytes, signature))) = (args.get_one::<String>("pdf"), pdf) {
        if !write(target, &bytes) {
            return EXIT_UNUSABLE;
        }
        if let Some(signature) = signature {
            if !write(&format!("{target}.sig"), signature.as_bytes()) {
                return EXIT_UNUSABLE;
            }
        }
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

/// Walks each schedule's chain; exit 0 intact, 1 a break (named), 2 no
/// schedule or an unreadable ledger.
async fn chain_verify(args: &ArgMatches, ctx: &CommandContext) -> u8 {
    let schedules = match ctx.schedules() {
        Ok(schedules) => schedules,
        Err(err) => {
            eprintln!("error: {err}");
            return EXIT_UNUSABLE;
        }
    };
    let wanted = args.get_one::<String>("schedule");
    let chosen: Vec<_> = schedules
        .iter()
        .filter(|s| wanted.is_none_or(|id| &s.id == id))
        .collect();
    if chosen.is_empty() {
        eprintln!(
            "error: {}",
            match wanted {
                Some(id) => format!("no evidence-audit schedule `{id}`"),
                None => "no evidence-audit schedule".into(),
            }
        );
        return EXIT_UNUSABLE;
    }
    let mut broken = false;
    for schedule in chosen {
        let read = async {
            let state = ctx.state(&schedule.id).await.map_err(|e| e.to_string())?;
            // By pages, so a long chain is never one huge query.
            let mut entries = Vec::new();
            loop {
                let after = entries
                    .last()
                    .map(|(key, _): &(String, Vec<u8>)| key.clone());
                let page = state
                    .scan(chain::ENTRIES.prefix(), after.as_deref(), 1_000)
                    .await
                    .map_err(|e| e.to_string())?;
                let done = page.len() < 1_000;
                entries.extend(page);
                if done {
                    break;
                }
            }
            let head = state.load(&chain::HEAD).await.map_err(|e| e.to_string())?;
            Ok::<_, String>((entries.into_iter().collect(), head))
        };
        let (entries, head) = match read.await {
            Ok(found) => found,
            Err(err) => {
                eprintln!("error: {}: {err}", schedule.id);
                return EXIT_UNUSABLE;
            }
        };
        match chain::verify(&entries, head.as_ref()) {
            Ok(count) => println!("{}: {count} entries, chain intact", schedule.id),
            Err(problems) => {
                broken = true;
                for problem in problems {
                    println!("{}: {problem}", schedule.id);
                }
            }
        }
    }
    if broken {
        EXIT_FOUND
    } else {
        EXIT_OK
    }
}

/// `evidence-audit run`: exit 0 every sampled release passes, 1 one
/// failed, 2 bad input.
fn audit_command(args: &ArgMatches, ctx: &CommandContext) -> u8 {
    let text = |name: &str| args.get_one::<String>(name).cloned().unwrap_or_default();
    let fail = |err: String| {
        eprintln!("error: {err}");
        EXIT_UNUSABLE
    };
    let period = match crate::audit::parse_period(&text("period"), ctx.now()) {
        Ok(period) => period,
        Err(err) => return fail(err),
    };
    let share = match crate::audit::parse_share(&text("sample")) {
        Ok(share) => share,
        Err(err) => return fail(err),
    };
    let (_, _, setup) = match schedule_setup(args, ctx) {
        Ok(found) => found,
        Err(err) => return fail(err),
    };
    let report = match crate::audit::audit(&setup, &period, share, &text("seed"), ctx.now()) {
        Ok(report) => report,
        Err(err) => return fail(err),
    };
    let json = serde_json::to_string_pretty(&report).unwrap_or_default() + "\n";
    let markdown = crate::audit::markdown(&report);
    if let Some(dir) = args.get_one::<String>("out") {
        let dir = std::path::Path::new(dir);
        let written = std::fs::create_dir_all(dir).and_then(|()| {
            std::fs::write(dir.join(format!("audit-{}.json", period.name)), &json)?;
            std::fs::write(dir.join(format!("audit-{}.md", period.name)), &markdown)
        });
        if let Err(err) = written {
            return fail(format!("{}: {err}", dir.display()));
        }
    }
    print!("{json}");
    eprint!("{markdown}");
    if report.failed == 0 && report.errors.is_empty() {
        EXIT_OK
    } else {
        EXIT_FOUND
    }
}

/// The params of the evidence-audit schedule `--schedule` names (default:
/// the only one, or the one named `evidence-audit`), and the folder its
/// relative paths start from.
fn schedule_params(
    args: &ArgMatches,
    ctx: &CommandContext,
) -> Result<(crate::Params, std::path::PathBuf), String> {
    let schedules = ctx.schedules().map_err(|err| err.to_string())?;
    let wanted = args.get_one::<String>("schedule");
    let chosen: Vec<_> = schedules
        .iter()
        .filter(|s| wanted.is_none_or(|id| &s.id == id))
        .collect();
    let schedule = match chosen.as_slice() {
        [one] => *one,
        [] => return Err("no evidence-audit schedule (give --schedule ID)".into()),
        several => several
            .iter()
            .find(|s| s.id == "evidence-audit")
            .copied()
            .ok_or("several evidence-audit schedules: give --schedule ID")?,
    };
    let params: crate::Params = serde_json::from_value(schedule.params.clone())
        .map_err(|err| format!("{}: params: {err}", schedule.file.display()))?;
    let base = ctx
        .config_path()
        .and_then(|p| p.parent())
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| std::path::PathBuf::from("."));
    Ok((params, base))
}

/// [`schedule_params`] and the audit's setup from them.
fn schedule_setup(
    args: &ArgMatches,
    ctx: &CommandContext,
) -> Result<(crate::Params, std::path::PathBuf, crate::audit::Setup), String> {
    let (params, base) = schedule_params(args, ctx)?;
    let setup = crate::audit_setup(&params, &base)?;
    Ok((params, base, setup))
}

/// `evidence-audit pack`: exit 0 written, 2 bad input.
fn pack_command(args: &ArgMatches, ctx: &CommandContext) -> u8 {
    let fail = |err: String| {
        eprintln!("error: {err}");
        EXIT_UNUSABLE
    };
    let (params, base, setup) = match schedule_setup(args, ctx) {
        Ok(found) => found,
        Err(err) => return fail(err),
    };
    let key = match args.get_one::<String>("sign-key") {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|err| format!("--sign-key {path}: {err}"))
            .and_then(|pem| SigningKey::from_pem(&pem)),
        None => match &params.attestations {
            Some(spec) => spec
                .signing_key
                .resolve(&base)
                .and_then(|pem| SigningKey::from_pem(pem.expose())),
            None => {
                Err("no signing key: give --sign-key or configure attestations.signing_key".into())
            }
        },
    };
    let key = match key {
        Ok(key) => key,
        Err(err) => return fail(err),
    };
    let inputs = Inputs {
        attestation_keys: setup.evidence_keys.clone(),
        now: ctx.now(),
    };
    let tag = args
        .get_one::<String>("release")
        .cloned()
        .unwrap_or_default();
    let built = crate::pack::build(
        &setup.catalog,
        &setup.releases,
        setup.attestations.as_deref(),
        &tag,
        &inputs,
        &key,
    );
    let bytes = match built {
        Ok(bytes) => bytes,
        Err(err) => return fail(err),
    };
    let out = args.get_one::<String>("out").cloned().unwrap_or_default();
    if let Err(err) = std::fs::write(&out, &bytes) {
        return fail(format!("{out}: {err}"));
    }
    eprintln!(
        "{out}: audit pack of {tag}, {} bytes, sha256 {}",
        bytes.len(),
        hex::encode(Sha256::digest(&bytes))
    );
    EXIT_OK
}
