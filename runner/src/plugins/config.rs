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
    /// Files and folders the plugin may read; relative to patrol.yaml.
    #[serde(default)]
    read_paths: Vec<PathBuf>,
    /// Environment variables passed from the runner to the plugin (by
    /// name; the plugin gets no others).
    #[serde(default)]
    env: Vec<String>,
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
    /// What the plugin may read (Landlock), resolved against patrol.yaml's
    /// folder; nothing else but the system libraries.
    pub read_paths: Vec<PathBuf>,
    /// The runner's environment variables the plugin gets.
    pub env: Vec<String>,
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
        if let Some(name) = entry.env.iter().find(|name| !is_variable_name(name)) {
            errors.push(yaml.diagnostic(
                &format!("{field}.env"),
                format!("`{name}` is not an environment variable name (letters, digits and _, not starting with a digit)"),
            ));
            continue;
        }
        let read_paths: Vec<PathBuf> = entry
            .read_paths
            .iter()
            .map(|path| base.join(path))
            .collect();
        if let Some((written, _)) = entry
            .read_paths
            .iter()
            .zip(&read_paths)
            .find(|(_, resolved)| !resolved.exists())
        {
            errors.push(yaml.diagnostic(
                &format!("{field}.read_paths"),
                format!(
                    "{} does not exist (a read path must, to be allowed)",
                    written.display()
                ),
            ));
            continue;
        }
        let positions = ["", "path", "sha256", "memory_limit", "read_paths", "env"]
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
            read_paths,
            env: entry.env,
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

fn is_variable_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| !c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// One diagnostic per declared read path that is, holds or lies inside a
/// file the plugin must never read: the ledger, patrol.yaml, the
/// schedules, secret files (`protected`).
pub(crate) fn refuse_protected_read_paths(
    plugins: &[DeclaredPlugin],
    protected: &[PathBuf],
) -> Vec<Diagnostic> {
    let protected: Vec<PathBuf> = protected.iter().map(|path| absolute(path)).collect();
    let mut errors = Vec::new();
    for plugin in plugins {
        for read_path in &plugin.read_paths {
            let allowed = absolute(read_path);
            if let Some(secret) = protected
                .iter()
                .find(|secret| secret.starts_with(&allowed) || allowed.starts_with(secret))
            {
                errors.push(plugin.diagnostic(
                    "read_paths",
                    format!(
                        "{} would let the plugin read {}; a plugin never reads the ledger, the configuration or secret files",
                        read_path.display(),
                        secret.display()
                    ),
                ));
            }
        }
    }
    errors
}

/// `path` without symbolic links where it exists (else its parent's,
/// joined with its name), so a link cannot hide what a path reaches.
fn absolute(path: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(path) {
        return real;
    }
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => absolute(parent).join(name),
        _ => std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared(read_paths: Vec<PathBuf>) -> DeclaredPlugin {
        DeclaredPlugin {
            written_path: "lib.so".into(),
            path: "lib.so".into(),
            sha256: "0".repeat(64),
            memory_limit: DEFAULT_MEMORY_LIMIT,
            read_paths,
            env: Vec::new(),
            file: None,
            field: "plugins[0]".into(),
            positions: BTreeMap::new(),
        }
    }

    #[test]
    fn read_paths_reaching_the_ledger_or_config_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("inputs")).unwrap();
        std::fs::write(dir.path().join("patrol.yaml"), "").unwrap();
        let protected = [dir.path().join("patrol.yaml"), dir.path().join("patrol.db")];
        // The ledger need not exist yet to be protected.
        let holding = declared(vec![dir.path().to_path_buf()]);
        let errors = refuse_protected_read_paths(&[holding], &protected);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].message.contains("never reads the ledger"),
            "{errors:?}"
        );
        // Through a symbolic link, too.
        std::os::unix::fs::symlink(dir.path(), data.join("up")).unwrap();
        let linked = declared(vec![data.join("up")]);
        assert_eq!(refuse_protected_read_paths(&[linked], &protected).len(), 1);
        let fine = declared(vec![data.join("inputs")]);
        assert!(refuse_protected_read_paths(&[fine], &protected).is_empty());
    }
}
