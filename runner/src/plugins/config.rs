//! `plugins:` in patrol.yaml.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use patrol_job_api::units::ByteSize;
use serde::Deserialize;

use crate::config::Diagnostic;

/// The address space a plugin host may map unless its entry says otherwise.
pub const DEFAULT_MEMORY_LIMIT: u64 = 1 << 30;

/// One `plugins:` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PluginEntry {
    path: PathBuf,
    sha256: String,
    #[serde(default)]
    memory_limit: Option<ByteSize>,
}

/// A plugin patrol.yaml declares, path resolved, not yet loaded.
#[derive(Debug, Clone)]
pub struct DeclaredPlugin {
    /// As written in patrol.yaml.
    pub written_path: PathBuf,
    /// Relative to patrol.yaml's folder.
    pub path: PathBuf,
    /// Lowercase hex.
    pub sha256: String,
    /// RLIMIT_AS of the host child, bytes.
    pub memory_limit: u64,
    /// Where the entry is, for diagnostics: patrol.yaml, `plugins[i]`, and
    /// the line/column of each of its fields.
    pub file: Option<PathBuf>,
    pub field: String,
    pub positions: BTreeMap<String, (usize, usize)>,
}

impl DeclaredPlugin {
    /// A diagnostic at `field` (`path`, `sha256`, or `""` for the entry).
    pub fn diagnostic(&self, field: &str, message: impl Into<String>) -> Diagnostic {
        let position = self
            .positions
            .get(field)
            .or_else(|| self.positions.get(""))
            .copied();
        Diagnostic {
            file: self
                .file
                .clone()
                .unwrap_or_else(|| PathBuf::from("patrol.yaml")),
            line: position.map(|(line, _)| line),
            column: position.map(|(_, column)| column),
            field: if field.is_empty() {
                self.field.clone()
            } else {
                format!("{}.{field}", self.field)
            },
            message: message.into(),
        }
    }
}

/// Reads the `plugins:` value of patrol.yaml; every bad entry is reported.
pub(crate) fn declared_plugins(
    yaml: &crate::config::YamlFile<'_>,
    value: &serde_norway::Value,
    base: &Path,
) -> Result<Vec<DeclaredPlugin>, Vec<Diagnostic>> {
    let entries: Vec<serde_norway::Value> = match yaml.deserialize("plugins", value) {
        Ok(entries) => entries,
        Err(diagnostic) => return Err(vec![diagnostic]),
    };
    let mut plugins = Vec::new();
    let mut errors = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let field = format!("plugins[{index}]");
        let entry: PluginEntry = match yaml.deserialize(&field, entry) {
            Ok(entry) => entry,
            Err(diagnostic) => {
                errors.push(diagnostic);
                continue;
            }
        };
        let sha256 = entry.sha256.trim().to_ascii_lowercase();
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            errors.push(yaml.diagnostic(
                &format!("{field}.sha256"),
                format!(
                    "expected 64 hex digits (the library's sha256; `patrol plugins pin {}` writes it), found `{}`",
                    entry.path.display(),
                    entry.sha256
                ),
            ));
            continue;
        }
        if entry.memory_limit.is_some_and(|limit| limit.0 < 16 << 20) {
            errors.push(yaml.diagnostic(
                &format!("{field}.memory_limit"),
                "must be at least 16MiB (the host itself needs some)",
            ));
            continue;
        }
        let positions = ["", "path", "sha256", "memory_limit"]
            .into_iter()
            .filter_map(|name| {
                let path = if name.is_empty() {
                    field.clone()
                } else {
                    format!("{field}.{name}")
                };
                yaml.index
                    .locate(&path)
                    .map(|position| (name.to_string(), position))
            })
            .collect();
        plugins.push(DeclaredPlugin {
            path: base.join(&entry.path),
            written_path: entry.path,
            sha256,
            memory_limit: entry
                .memory_limit
                .map_or(DEFAULT_MEMORY_LIMIT, |limit| limit.0),
            file: Some(yaml.path.to_path_buf()),
            field,
            positions,
        });
    }
    if errors.is_empty() {
        Ok(plugins)
    } else {
        Err(errors)
    }
}
