//! `patrol plugins`: the configured plugins and their jobs;
//! `patrol plugins pin PATH`: trust one build of a plugin library.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use super::{Context, OK};
use crate::plugins::pin::{path_for_config, pinned_text, Pinned};
use crate::plugins::{file_sha256, HostCommand, HostEnd};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Write PATH's sha256 into patrol.yaml (created if absent), after
    /// checking out of process that it is a plugin this patrol speaks.
    Pin {
        /// The plugin library (`.so`/`.dylib`).
        path: PathBuf,
        /// A file or folder the plugin may read (repeat for more); written
        /// with a new entry, an existing entry keeps its `read_paths`.
        #[arg(long = "read-path")]
        read_paths: Vec<PathBuf>,
    },
}

pub fn plugins(config: Option<&Path>, args: Args) -> Result<u8> {
    match args.command {
        Some(Command::Pin { path, read_paths }) => pin(config, &path, &read_paths),
        None => list(config, args.json),
    }
}

fn list(config: Option<&Path>, json: bool) -> Result<u8> {
    let context = Context::load(config)?;
    let (_, loaded) = crate::plugins::registry_with_plugins(&context.config)
        .map_err(|errors| anyhow::anyhow!(crate::config::Diagnostics(errors)))?;
    if json {
        let out: Vec<_> = loaded
            .iter()
            .map(|plugin| {
                serde_json::json!({
                    "path": plugin.declared.path,
                    "sha256": plugin.declared.sha256,
                    "memory_limit": plugin.declared.memory_limit,
                    "read_paths": plugin.declared.read_paths,
                    "env": plugin.declared.env,
                    "manifest": plugin.manifest,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(OK);
    }
    if loaded.is_empty() {
        println!("no plugins configured (patrol.yaml `plugins:`; see docs/plugins.md)");
    }
    for plugin in &loaded {
        let manifest = &plugin.manifest;
        println!(
            "{} {} (protocol v{}) — {}",
            manifest.name,
            manifest.version,
            manifest.protocol_version,
            plugin.declared.path.display()
        );
        println!(
            "  sha256 {}  memory limit {}",
            plugin.declared.sha256,
            patrol_job_api::units::ByteSize(plugin.declared.memory_limit)
        );
        for job in &manifest.jobs {
            println!("  job {} — {}", job.kind, job.summary);
        }
    }
    Ok(OK)
}

fn pin(config: Option<&Path>, library: &Path, read_paths: &[PathBuf]) -> Result<u8> {
    let sha256 =
        file_sha256(library).with_context(|| format!("cannot read {}", library.display()))?;
    let host = HostCommand::current().context("cannot find the patrol executable")?;
    let call = crate::plugins::HostCall {
        library,
        sha256: Some(&sha256),
        memory_limit: crate::plugins::DEFAULT_MEMORY_LIMIT,
        read_paths: &[],
        env: &[],
        request: None,
    };
    let manifest = match host.call_blocking(call, std::time::Duration::from_secs(10)) {
        HostEnd::Reply(patrol_plugin_protocol::HostReply::Manifest(manifest)) => manifest,
        HostEnd::Reply(patrol_plugin_protocol::HostReply::Refused(refusal)) => {
            bail!(
                "{} is not a plugin this patrol can load: {refusal}",
                library.display()
            )
        }
        HostEnd::Reply(other) => bail!("unexpected answer from the plugin host: {other:?}"),
        HostEnd::Died(cause) => bail!(
            "plugin {} {cause} while its manifest was read",
            library.display()
        ),
        HostEnd::Cancelled => bail!("cancelled"),
    };
    let config_file = config.map_or_else(|| PathBuf::from("patrol.yaml"), Path::to_path_buf);
    let written = path_for_config(library, &config_file);
    let written = written
        .to_str()
        .context("the library's path is not UTF-8")?;
    let current = match std::fs::read_to_string(&config_file) {
        Ok(text) => Some(text),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => {
            return Err(err).with_context(|| format!("cannot read {}", config_file.display()))
        }
    };
    let read_paths: Vec<PathBuf> = read_paths
        .iter()
        .map(|path| path_for_config(path, &config_file))
        .collect();
    let read_paths: Vec<&str> = read_paths
        .iter()
        .map(|path| path.to_str().context("a read path is not UTF-8"))
        .collect::<Result<_>>()?;
    let (text, outcome) = pinned_text(current.as_deref(), written, &sha256, &read_paths)
        .map_err(|message| anyhow::anyhow!("{}: {message}", config_file.display()))?;
    if outcome != Pinned::Unchanged {
        crate::plugins::pin::write_replacing(&config_file, &text)
            .with_context(|| format!("cannot write {}", config_file.display()))?;
    }
    let jobs: Vec<&str> = manifest.jobs.iter().map(|job| job.kind.as_str()).collect();
    let what = match outcome {
        Pinned::Created => "created with".to_string(),
        Pinned::Added => "now pins".to_string(),
        Pinned::Updated { previous } => format!("updated (was {previous}):"),
        Pinned::Unchanged => "already pins".to_string(),
    };
    println!(
        "{} {what} {written} sha256 {sha256} — plugin {} {} (jobs: {})",
        config_file.display(),
        manifest.name,
        manifest.version,
        jobs.join(", ")
    );
    Ok(OK)
}
