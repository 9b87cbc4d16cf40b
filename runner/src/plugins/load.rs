//! From declared plugins to jobs in the registry. The manifest is read by
//! a `patrol plugin-host --manifest` child, so even a plugin that crashes
//! while loading cannot take the runner (or `patrol validate`) down.

use std::sync::Arc;
use std::time::Duration;

use patrol_plugin_protocol::{HostReply, Manifest, Refusal};

use super::config::DeclaredPlugin;
use super::job::PluginJob;
use super::spawn::{HostCall, HostCommand, HostEnd};
use crate::config::{Diagnostic, PatrolConfig};
use crate::registry::JobRegistry;

/// How long reading a manifest may take.
const MANIFEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A plugin whose digest, symbols, version and manifest were checked.
#[derive(Debug, Clone)]
pub struct LoadedPlugin {
    pub declared: DeclaredPlugin,
    pub manifest: Manifest,
}

/// Loads every declared plugin; each problem is a diagnostic at its entry.
pub fn load_plugins(
    declared: &[DeclaredPlugin],
    host: &HostCommand,
) -> (Vec<LoadedPlugin>, Vec<Diagnostic>) {
    let mut loaded = Vec::new();
    let mut errors = Vec::new();
    for plugin in declared {
        match load_plugin(plugin, host) {
            Ok(manifest) => loaded.push(LoadedPlugin {
                declared: plugin.clone(),
                manifest,
            }),
            Err(diagnostic) => errors.push(diagnostic),
        }
    }
    (loaded, errors)
}

fn load_plugin(plugin: &DeclaredPlugin, host: &HostCommand) -> Result<Manifest, Diagnostic> {
    // Checked here too (the host checks again, on the file it loads), so
    // the message can point at the right field.
    let found = super::file_sha256(&plugin.path).map_err(|err| {
        plugin.diagnostic(
            "path",
            format!(
                "cannot read plugin library {}: {err} (build it: `cargo build --workspace`)",
                plugin.path.display()
            ),
        )
    })?;
    if found != plugin.sha256 {
        return Err(plugin.diagnostic(
            "sha256",
            format!(
                "{}; if you trust this build of {}, run `patrol plugins pin {}`",
                Refusal::DigestMismatch {
                    expected: plugin.sha256.clone(),
                    found,
                },
                plugin.written_path.display(),
                plugin.written_path.display()
            ),
        ));
    }
    let call = HostCall {
        library: &plugin.path,
        sha256: Some(&plugin.sha256),
        memory_limit: plugin.memory_limit,
        read_paths: &plugin.read_paths,
        env: &plugin.env,
        request: None,
    };
    let field = |refusal: &Refusal| match refusal {
        Refusal::DigestMismatch { .. } => "sha256",
        _ => "path",
    };
    match host.call_blocking(call, MANIFEST_TIMEOUT) {
        HostEnd::Reply(HostReply::Manifest(manifest)) => check_manifest(plugin, manifest),
        HostEnd::Reply(HostReply::Refused(refusal)) => Err(plugin.diagnostic(
            field(&refusal),
            format!("plugin {} refused: {refusal}", plugin.path.display()),
        )),
        HostEnd::Reply(other) => Err(plugin.diagnostic(
            "path",
            format!(
                "plugin {}: unexpected answer to a manifest request: {other:?}",
                plugin.path.display()
            ),
        )),
        HostEnd::Died(cause) => Err(plugin.diagnostic(
            "path",
            format!(
                "plugin {} {cause} while its manifest was read",
                plugin.path.display()
            ),
        )),
        HostEnd::Cancelled => Err(plugin.diagnostic("path", "manifest reading was cancelled")),
    }
}

fn check_manifest(plugin: &DeclaredPlugin, manifest: Manifest) -> Result<Manifest, Diagnostic> {
    if !patrol_plugin_protocol::speaks(manifest.protocol_version) {
        return Err(plugin.diagnostic(
            "path",
            format!(
                "plugin {}: {}",
                manifest.name,
                Refusal::ProtocolMismatch {
                    expected: patrol_plugin_protocol::PROTOCOL_VERSION,
                    found: manifest.protocol_version,
                }
            ),
        ));
    }
    if manifest.jobs.is_empty() {
        return Err(plugin.diagnostic("path", format!("plugin {} provides no jobs", manifest.name)));
    }
    Ok(manifest)
}

/// The built-in jobs plus every job of `config`'s plugins, or the
/// diagnostics of the plugins that could not be loaded (and of job kinds
/// declared twice).
pub fn registry_with_plugins(
    config: &PatrolConfig,
) -> Result<(JobRegistry, Vec<LoadedPlugin>), Vec<Diagnostic>> {
    let mut registry = JobRegistry::builtin();
    if config.plugins.is_empty() {
        return Ok((registry, Vec::new()));
    }
    let host = HostCommand::current().map_err(|err| {
        vec![Diagnostic::file_level(
            config
                .file
                .as_deref()
                .unwrap_or(std::path::Path::new("patrol.yaml")),
            format!("cannot find the patrol executable to host plugins: {err}"),
        )]
    })?;
    let (loaded, mut errors) = load_plugins(&config.plugins, &host);
    for plugin in &loaded {
        for job in &plugin.manifest.jobs {
            if registry.get(&job.kind).is_some() {
                errors.push(plugin.declared.diagnostic(
                    "path",
                    format!(
                        "plugin {} provides job `{}`, which is already defined (built in or by an earlier plugin)",
                        plugin.manifest.name, job.kind
                    ),
                ));
                continue;
            }
            registry.register(Arc::new(PluginJob::new(plugin, job, host.clone())));
        }
    }
    if errors.is_empty() {
        Ok((registry, loaded))
    } else {
        Err(errors)
    }
}
