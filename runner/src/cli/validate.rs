use std::path::{Path, PathBuf};

use anyhow::Result;

use super::context::config_path;
use super::context::secret_diagnostics;
use super::{ERROR, OK};
use crate::config::{check_routes, load_schedules, Diagnostic, PatrolConfig};
use crate::registry::JobRegistry;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Schedule files or folders, or a patrol.yaml (default: the configured ones).
    pub paths: Vec<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

pub fn validate(config: Option<&Path>, args: Args) -> Result<u8> {
    let registry = JobRegistry::builtin();
    let mut diagnostics: Vec<Diagnostic> = Vec::new();
    let mut schedule_paths = Vec::new();
    let mut config_files = Vec::new();
    if args.paths.is_empty() {
        config_files.extend(config_path(config)?);
    } else {
        for path in &args.paths {
            let name = path
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or("");
            if matches!(name, "patrol.yaml" | "patrol.yml") {
                config_files.push(path.clone());
            } else {
                schedule_paths.push(path.clone());
            }
        }
    }
    let mut loaded_config = None;
    for file in &config_files {
        match PatrolConfig::load(Some(file)) {
            Ok(config) => {
                diagnostics.extend(secret_diagnostics(&config));
                loaded_config = Some(config);
            }
            Err(errors) => diagnostics.extend(errors.0),
        }
    }
    let alerting = loaded_config.as_ref().map(|config| config.alerting.clone());
    if args.paths.is_empty() {
        // A broken patrol.yaml is already reported; its schedules folder is
        // then the default one.
        let config = match loaded_config {
            Some(config) => config,
            None => PatrolConfig::load(None).map_err(|d| anyhow::anyhow!("{d}"))?,
        };
        schedule_paths.push(config.schedules);
    }
    let mut count = 0;
    if !schedule_paths.is_empty() {
        match load_schedules(&schedule_paths, &registry) {
            Ok(set) => {
                count = set.len();
                let alerting = alerting.unwrap_or_default();
                diagnostics.extend(check_routes(&set, &alerting));
            }
            Err(errors) => diagnostics.extend(errors.0),
        }
    }
    if args.json {
        let out = serde_json::json!({ "ok": diagnostics.is_empty(), "schedules": count, "errors": diagnostics });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if diagnostics.is_empty() {
        println!(
            "ok: {count} schedule{} valid",
            if count == 1 { "" } else { "s" }
        );
    } else {
        for diagnostic in &diagnostics {
            eprintln!("{diagnostic}");
        }
        eprintln!(
            "{} error{} found",
            diagnostics.len(),
            if diagnostics.len() == 1 { "" } else { "s" }
        );
    }
    Ok(if diagnostics.is_empty() { OK } else { ERROR })
}
