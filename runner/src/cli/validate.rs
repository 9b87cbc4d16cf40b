use std::path::{Path, PathBuf};

use anyhow::Result;

use super::context::config_path;
use super::{ERROR, OK};
use crate::alerting::config::alerting_facts;
use crate::config::{check_routes, load_schedules, Diagnostic, PatrolConfig};
use crate::plugins::registry_with_plugins;
use crate::registry::{JobBuild, JobRegistry};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Schedule files or folders, or a patrol.yaml (default: the configured ones).
    pub paths: Vec<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

pub fn validate(config: Option<&Path>, args: Args) -> Result<u8> {
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
        // Schedule files alone are checked against the configured
        // patrol.yaml: its plugins define job kinds, its routes the names a
        // schedule may use.
        if config_files.is_empty() {
            config_files.extend(config_path(config)?);
        }
    }
    let mut loaded_config = None;
    let mut route_names = vec!["default".to_string()];
    for file in &config_files {
        match PatrolConfig::load(Some(file)) {
            Ok(config) => loaded_config = Some(config),
            Err(errors) => diagnostics.extend(errors.0),
        }
        // Read on their own, so they are reported even beside other errors.
        if let Some(facts) = alerting_facts(file) {
            diagnostics.extend(facts.missing_secrets);
            route_names = facts.route_names;
        }
    }
    // Plugins are loaded (out of process) to learn their jobs; a plugin
    // that cannot be loaded is reported at its entry.
    let registry = match &loaded_config {
        Some(config) => match registry_with_plugins(config) {
            Ok((registry, _)) => registry,
            Err(errors) => {
                diagnostics.extend(errors);
                JobRegistry::builtin()
            }
        },
        None => JobRegistry::builtin(),
    };
    // A broken patrol.yaml is already reported; its schedules folder and
    // the base of relative paths are then the defaults.
    let config = match loaded_config {
        Some(config) => config,
        None => PatrolConfig::load(None).map_err(|d| anyhow::anyhow!("{d}"))?,
    };
    if args.paths.is_empty() {
        schedule_paths.push(config.schedules.clone());
    }
    let mut count = 0;
    if !schedule_paths.is_empty() {
        match load_schedules(&schedule_paths, &JobBuild::new(registry, &config)) {
            Ok(set) => {
                count = set.len();
                diagnostics.extend(check_routes(&set, &route_names));
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
