//! The provenance monitor job (`provmon`): each sweep reads the events
//! that are new since the last one, folds them into the chains kept in the
//! job's state (release → bundle digest → signature → Rekor → deploy →
//! runtime verify), evaluates the rules on the chains that changed or are
//! being watched, and reports what holds as findings. The runner turns
//! findings into pages and resolves those that stop holding.
//!
//! Cost per sweep grows with new events and open problems, not history:
//! only touched and watched chains are loaded.

pub mod chain;
pub mod commands;
pub mod compact;
pub mod evaluate;
pub mod event;
pub mod evidence;
pub mod github_source;
pub mod http_source;
pub mod ingest;
pub mod memory;
pub mod recheck;
pub mod rules;
pub mod source;
mod sweep;
pub mod verifications;
pub mod verify;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use github_source::GithubClient;
use patrol_job_api::secret::SecretRef;
use patrol_job_api::units::HumanDuration;
use patrol_job_api::{
    parse_params, Job, JobCommands, JobDescription, JobError, JobTables, ParamDoc, ParamError,
    RunContext, RunReport,
};
use serde::Deserialize;

pub use sweep::{sweep, SweepInput};

/// The `provmon` job kind.
#[derive(Debug, Default)]
pub struct ProvmonJob;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The rules file.
    #[serde(default = "default_rules")]
    pub rules: PathBuf,
    pub sources: Vec<SourceSpec>,
    /// Most lines read per sweep; a backlog beyond it is read next sweep.
    #[serde(default = "default_max_events")]
    pub max_events: u64,
    /// Keys and Rekor for verifying signatures and log entries.
    #[serde(default)]
    pub verify: verify::VerifySpec,
    /// Write a signed evidence pack per release (off when absent).
    #[serde(default)]
    pub evidence: Option<evidence::EvidenceSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceSpec {
    /// NDJSON files in a folder (or one file).
    Files { name: String, path: PathBuf },
    /// An endpoint answering NDJSON (see `http_source`).
    Http {
        name: String,
        url: String,
        #[serde(default)]
        timeout: Option<String>,
    },
    /// GitHub releases and their assets (see `github_source`).
    Github {
        name: String,
        /// `owner/name` of each repository.
        repos: Vec<String>,
        /// `env:NAME` or `file:PATH`; without one, anonymous (public
        /// repositories, 60 requests an hour).
        #[serde(default)]
        token: Option<SecretRef>,
        /// The API's base URL; GitHub Enterprise: `https://HOST/api/v3`.
        #[serde(default)]
        base_url: Option<String>,
        #[serde(default)]
        timeout: Option<String>,
        /// Pages of 100 releases read per repository at most.
        #[serde(default = "default_max_pages")]
        max_pages: u32,
    },
}

impl Params {
    /// The files a release re-check reads besides the job's state: the
    /// rules and every key and trusted root of `verify` (what a recorded
    /// verification rests on).
    pub fn files_read(&self) -> Vec<PathBuf> {
        let mut files = vec![self.rules.clone()];
        files.extend(self.verify.signing_keys.iter().cloned());
        if let Some(rekor) = &self.verify.rekor {
            files.push(rekor.public_key.clone());
        }
        if let Some(sigstore) = &self.verify.sigstore {
            files.extend(sigstore.trusted_root.iter().cloned());
            files.extend(sigstore.keys.iter().cloned());
        }
        files
    }
}

impl SourceSpec {
    pub fn name(&self) -> &str {
        match self {
            SourceSpec::Files { name, .. }
            | SourceSpec::Http { name, .. }
            | SourceSpec::Github { name, .. } => name,
        }
    }
}

fn default_max_pages() -> u32 {
    10
}

/// A `github` source's client, every problem reported.
pub fn github_client(spec: &SourceSpec, field: &str) -> Result<GithubClient, Vec<ParamError>> {
    let SourceSpec::Github {
        repos,
        token,
        base_url,
        timeout,
        max_pages,
        ..
    } = spec
    else {
        return Err(vec![ParamError::new(field, "not a github source")]);
    };
    let mut errors = Vec::new();
    if repos.is_empty() {
        errors.push(ParamError::new(
            format!("{field}.repos"),
            "at least one `owner/name` is needed",
        ));
    }
    let mut parsed = Vec::new();
    for (n, repo) in repos.iter().enumerate() {
        match github_source::parse_repo(repo) {
            Ok(repo) => parsed.push(repo),
            Err(message) => errors.push(ParamError::new(format!("{field}.repos[{n}]"), message)),
        }
    }
    if let Some(url) = base_url {
        let http = url.starts_with("http://") || url.starts_with("https://");
        if !http || url.parse::<reqwest::Url>().is_err() {
            errors.push(ParamError::new(
                format!("{field}.base_url"),
                format!("`{url}` is not an http(s) URL"),
            ));
        }
    }
    let timeout = match timeout.as_deref().map(HumanDuration::parse) {
        None => std::time::Duration::from_secs(30),
        Some(Ok(timeout)) => timeout.0,
        Some(Err(message)) => {
            errors.push(ParamError::new(format!("{field}.timeout"), message));
            std::time::Duration::from_secs(30)
        }
    };
    if *max_pages == 0 {
        errors.push(ParamError::new(
            format!("{field}.max_pages"),
            "must be at least 1",
        ));
    }
    let token = match token
        .as_ref()
        .map(|token| token.resolve(std::path::Path::new(".")))
    {
        None => None,
        Some(Ok(secret)) => Some(secret),
        Some(Err(message)) => {
            errors.push(ParamError::new(format!("{field}.token"), message));
            None
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(GithubClient {
        repos: parsed,
        base_url: base_url.clone(),
        token,
        timeout,
        max_pages: *max_pages,
    })
}

fn default_rules() -> PathBuf {
    PathBuf::from("policies/provmon/rules.yaml")
}

fn default_max_events() -> u64 {
    1_000_000
}

/// The rules and verifier a schedule's params configure, for re-checking
/// one release outside a sweep (`patrol verify release`). Only what a
/// re-check uses is read: not the sources, and not the evidence signing
/// key (a secret the re-check has no use for).
pub fn rules_and_verifier(
    params: &serde_json::Value,
) -> Result<(Vec<rules::Rule>, verify::Verifier), Vec<ParamError>> {
    let params: Params = parse_params(params).map_err(|err| vec![err])?;
    let mut errors = Vec::new();
    let rules = rules::load_rules(&params.rules)
        .map_err(|problems| {
            errors.extend(
                problems
                    .into_iter()
                    .map(|problem| ParamError::new("rules", problem)),
            )
        })
        .unwrap_or_default();
    let verifier = params
        .verify
        .build()
        .map_err(|problems| errors.extend(problems))
        .unwrap_or_default();
    if errors.is_empty() {
        Ok((rules, verifier))
    } else {
        Err(errors)
    }
}

struct Checked {
    params: Params,
    rules: Vec<rules::Rule>,
    verifier: verify::Verifier,
    evidence: Option<evidence::EvidenceWriter>,
}

fn check(params: &serde_json::Value) -> Result<Checked, Vec<ParamError>> {
    let params: Params = parse_params(params).map_err(|err| vec![err])?;
    let mut errors = Vec::new();
    if params.sources.is_empty() {
        errors.push(ParamError::new("sources", "at least one source is needed"));
    }
    let mut names = std::collections::HashSet::new();
    for (n, source) in params.sources.iter().enumerate() {
        let name = source.name();
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            errors.push(ParamError::new(
                format!("sources[{n}].name"),
                format!("`{name}` is not a source name (letters, digits, - and _)"),
            ));
        } else if !names.insert(name.to_string()) {
            errors.push(ParamError::new(
                format!("sources[{n}].name"),
                format!("source `{name}` is named twice (each keeps its own cursor)"),
            ));
        }
        match source {
            SourceSpec::Files { path, .. } if !path.exists() => errors.push(ParamError::new(
                format!("sources[{n}].path"),
                format!("{} does not exist", path.display()),
            )),
            SourceSpec::Files { .. } => {}
            SourceSpec::Github { .. } => {
                if let Err(problems) = github_client(source, &format!("sources[{n}]")) {
                    errors.extend(problems);
                }
            }
            SourceSpec::Http { url, timeout, .. } => {
                let http = url.starts_with("http://") || url.starts_with("https://");
                if !http || url.parse::<reqwest::Url>().is_err() {
                    errors.push(ParamError::new(
                        format!("sources[{n}].url"),
                        format!("`{url}` is not an http(s) URL"),
                    ));
                }
                if let Some(Err(message)) = timeout.as_deref().map(HumanDuration::parse) {
                    errors.push(ParamError::new(format!("sources[{n}].timeout"), message));
                }
            }
        }
    }
    if params.max_events == 0 {
        errors.push(ParamError::new("max_events", "must be at least 1"));
    }
    let rules = match rules::load_rules(&params.rules) {
        Ok(rules) => rules,
        Err(problems) => {
            errors.extend(
                problems
                    .into_iter()
                    .map(|problem| ParamError::new("rules", problem)),
            );
            Vec::new()
        }
    };
    let verifier = params.verify.build().unwrap_or_else(|problems| {
        errors.extend(problems);
        verify::Verifier::default()
    });
    for rule in &rules {
        let needs = match rule.condition {
            rules::Condition::SignatureInvalid
                if params.verify.signing_keys.is_empty() && params.verify.sigstore.is_none() =>
            {
                "verify.signing_keys or params.verify.sigstore"
            }
            rules::Condition::RekorMismatch if params.verify.rekor.is_none() => "verify.rekor",
            _ => continue,
        };
        errors.push(ParamError::new(
            "rules",
            format!("rule `{}` needs params.{needs} to check anything", rule.id),
        ));
    }
    let evidence = params.evidence.as_ref().and_then(|spec| {
        spec.build()
            .map_err(|problems| errors.extend(problems))
            .ok()
    });
    if errors.is_empty() {
        Ok(Checked {
            params,
            rules,
            verifier,
            evidence,
        })
    } else {
        Err(errors)
    }
}

#[async_trait]
impl Job for ProvmonJob {
    fn kind(&self) -> &'static str {
        "provmon"
    }

    fn describe(&self) -> JobDescription {
        JobDescription {
            kind: "provmon",
            summary: "Correlates release → bundle → signature → Rekor → deploy → runtime verify events and reports gaps as findings",
            params: vec![
                ParamDoc {
                    name: "sources",
                    type_name: "list of {kind: files, name, path}, {kind: http, name, url, timeout} or {kind: github, name, repos, token, base_url, timeout, max_pages}",
                    required: true,
                    default: None,
                    description: "Where events come from; each source keeps its own cursor",
                },
                ParamDoc {
                    name: "rules",
                    type_name: "path",
                    required: false,
                    default: Some("policies/provmon/rules.yaml"),
                    description: "The rules file",
                },
                ParamDoc {
                    name: "verify",
                    type_name: "{signing_keys: [pem paths], rekor: {public_key, url, offline_dir, timeout}, sigstore: {trusted_root, identities: [{identity, issuer}], keys: [pem paths]}}",
                    required: false,
                    default: None,
                    description: "Verify cosign signatures, Sigstore bundles and Rekor entries (fail closed); needed by signature-invalid and rekor-mismatch",
                },
                ParamDoc {
                    name: "evidence",
                    type_name: "{dir: path, signing_key: file:PATH | env:NAME}",
                    required: false,
                    default: None,
                    description: "Write a signed evidence pack per release to <dir>/<release_sha>/ (check with `patrol evidence verify`)",
                },
                ParamDoc {
                    name: "max_events",
                    type_name: "integer",
                    required: false,
                    default: Some("1000000"),
                    description: "Most lines read per sweep; the rest waits for the next",
                },
            ],
        }
    }

    fn check_params(&self, params: &serde_json::Value) -> Result<(), Vec<ParamError>> {
        check(params).map(|_| ())
    }

    async fn run(&self, ctx: RunContext, params: serde_json::Value) -> Result<RunReport, JobError> {
        let checked = check(&params).map_err(JobError::InvalidParams)?;
        let input = SweepInput {
            sources: checked.params.sources,
            rules: checked.rules,
            verifier: checked.verifier,
            evidence: checked
                .evidence
                .map(|writer| writer.with_effects(ctx.effects.clone())),
            max_events: checked.params.max_events,
            now: ctx.now(),
        };
        sweep(&ctx.state, input, &ctx.cancel).await
    }

    fn commands(&self) -> Option<Arc<dyn JobCommands>> {
        Some(Arc::new(commands::ProvmonCommands))
    }

    fn tables(&self) -> Option<JobTables> {
        Some(verifications::tables())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recorded `patrol verify release` rests on these files: exactly
    /// the rules and verification material, not the sources' files, the
    /// evidence key or other strings that happen to name a file.
    #[test]
    fn a_recheck_reads_the_rules_and_every_key_and_trusted_root() {
        let params: Params = parse_params(&serde_json::json!({
            "rules": "policies/provmon/rules.yaml",
            "sources": [{"kind": "files", "name": "events", "path": "Cargo.toml"}],
            "verify": {
                "signing_keys": ["k1.pem", "k2.pem"],
                "rekor": {"public_key": "rekor.pem", "offline_dir": "rekor"},
                "sigstore": {"trusted_root": "root.json", "keys": ["managed.pem"]},
            },
            "evidence": {"dir": "evidence", "signing_key": "file:Cargo.toml"},
        }))
        .unwrap();
        let files: Vec<String> = params
            .files_read()
            .iter()
            .map(|path| path.display().to_string())
            .collect();
        assert_eq!(
            files,
            [
                "policies/provmon/rules.yaml",
                "k1.pem",
                "k2.pem",
                "rekor.pem",
                "root.json",
                "managed.pem"
            ]
        );
    }

    #[test]
    fn a_github_source_reports_every_bad_field_at_once() {
        let params = serde_json::json!({
            "rules": "../../policies/provmon/rules.yaml",
            "sources": [{
                "kind": "github",
                "name": "gh",
                "repos": ["acme/app", "not-a-repo"],
                "token": "env:PATROL_TEST_UNSET_GITHUB_TOKEN",
                "base_url": "ftp://example.com",
                "timeout": "soon",
                "max_pages": 0
            }]
        });
        let errors = ProvmonJob.check_params(&params).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        for expected in [
            "sources[0].repos[1]",
            "sources[0].base_url",
            "sources[0].timeout",
            "sources[0].max_pages",
            "sources[0].token",
        ] {
            assert!(
                paths.contains(&expected),
                "{expected} missing from {errors:?}"
            );
        }
        let token = errors
            .iter()
            .find(|e| e.path == "sources[0].token")
            .unwrap();
        assert!(token
            .message
            .contains("PATROL_TEST_UNSET_GITHUB_TOKEN is not set"));
    }

    #[test]
    fn an_inline_github_token_is_refused_without_echoing_it() {
        let params = serde_json::json!({
            "sources": [{"kind": "github", "name": "gh", "repos": ["a/b"], "token": "ghp_inline123456"}]
        });
        let errors = ProvmonJob.check_params(&params).unwrap_err();
        let text = format!("{errors:?}");
        assert!(
            text.contains("inline secrets are refused") && !text.contains("ghp_inline"),
            "{text}"
        );
    }
}
