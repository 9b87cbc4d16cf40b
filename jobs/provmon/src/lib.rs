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
pub mod outage;
pub mod recheck;
pub mod rules;
pub mod source;
mod sweep;
pub mod verifications;
pub mod verify;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use github_source::GithubClient;
use patrol_job_api::secret::SecretRef;
use patrol_job_api::units::HumanDuration;
use patrol_job_api::{
    parse_params, BuildContext, JobCommands, JobDescription, JobError, JobInstance, JobKind,
    JobTables, ParamDoc, ParamError, RunContext, RunReport,
};
use patrol_job_kit::http_auth::{anchor_files, check_headers, resolve_headers, SecretHeaders};
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
    /// Events dated more than this ahead of the sweep's clock are malformed.
    #[serde(default = "default_max_clock_skew")]
    pub max_clock_skew: HumanDuration,
    /// Rekor unreachable for longer than this pages `provmon/rekor-unreachable`.
    #[serde(default = "default_rekor_outage_page_after")]
    pub rekor_outage_page_after: HumanDuration,
}

/// Largest `max_clock_skew` accepted: a wider one re-opens the hole it
/// closes (a future-dated event postpones its rules' deadlines).
const MAX_CLOCK_SKEW_LIMIT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

fn default_max_clock_skew() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(5 * 60))
}

fn default_rekor_outage_page_after() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30 * 60))
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
        /// Header name → `env:NAME`/`file:PATH` (a token never goes in the URL).
        #[serde(default)]
        headers: SecretHeaders,
        #[serde(default)]
        timeout: Option<HumanDuration>,
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
        timeout: Option<HumanDuration>,
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
    if let Some(Err(message)) = base_url.as_deref().map(patrol_job_kit::check::http_url) {
        errors.push(ParamError::new(format!("{field}.base_url"), message));
    } else if let (Some(url), Some(_)) = (base_url.as_deref(), token.as_ref()) {
        if let Err(message) = patrol_job_kit::check::credential_url(url, "the token") {
            errors.push(ParamError::new(format!("{field}.base_url"), message));
        }
    }
    let timeout = timeout.map_or(std::time::Duration::from_secs(30), |timeout| timeout.0);
    if *max_pages == 0 {
        errors.push(ParamError::new(
            format!("{field}.max_pages"),
            "must be at least 1",
        ));
    }
    // A relative `file:` token was made relative to the config at build.
    let token = match token
        .as_ref()
        .map(|token| token.resolve(std::path::Path::new("")))
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
/// Relative paths resolve against `base` (patrol.yaml's folder), as in a
/// sweep; the files read are returned for the re-check's cache key.
pub fn rules_and_verifier(
    params: &serde_json::Value,
    base: &std::path::Path,
) -> Result<(Vec<rules::Rule>, verify::Verifier, Vec<PathBuf>), Vec<ParamError>> {
    let mut params: Params = parse_params(params).map_err(|err| vec![err])?;
    params.resolve_paths(&BuildContext::new("", base));
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
        Ok((rules, verifier, params.files_read()))
    } else {
        Err(errors)
    }
}

/// What a sweep needs, read and made once per config load.
struct Built {
    params: Params,
    rules: Vec<rules::Rule>,
    verifier: verify::Verifier,
    evidence: Option<evidence::EvidenceWriter>,
}

/// Checks that need no I/O.
fn validate(params: &Params) -> Result<(), Vec<ParamError>> {
    let mut errors = Vec::new();
    if params.sources.is_empty() {
        errors.push(ParamError::new("sources", "at least one source is needed"));
    }
    let mut names = std::collections::HashSet::new();
    for (n, source) in params.sources.iter().enumerate() {
        if let Err(message) = patrol_job_kit::check::unique_name(source.name(), &mut names) {
            errors.push(ParamError::new(format!("sources[{n}].name"), message));
        }
        if let SourceSpec::Http { url, headers, .. } = source {
            match patrol_job_kit::check::http_url(url) {
                Err(message) => errors.push(ParamError::new(format!("sources[{n}].url"), message)),
                Ok(()) => errors.extend(check_headers(url, headers, &format!("sources[{n}]"))),
            }
        }
    }
    if params.max_events == 0 {
        errors.push(ParamError::new("max_events", "must be at least 1"));
    }
    if params.max_clock_skew.0 > MAX_CLOCK_SKEW_LIMIT {
        errors.push(ParamError::new(
            "max_clock_skew",
            format!(
                "{} is more than the 24h accepted: an event dated that far ahead would postpone its rules' deadlines",
                params.max_clock_skew
            ),
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

impl Params {
    /// Every relative path (sources, rules, keys, `file:` secrets, the
    /// evidence folder) made relative to the config's folder.
    fn resolve_paths(&mut self, ctx: &BuildContext) {
        let resolve = |path: &mut PathBuf| *path = ctx.path(path);
        let resolve_secret = |secret: &mut SecretRef| {
            if let SecretRef::File(path) = secret {
                *path = ctx.path(path);
            }
        };
        resolve(&mut self.rules);
        for source in &mut self.sources {
            match source {
                SourceSpec::Files { path, .. } => resolve(path),
                SourceSpec::Github {
                    token: Some(token), ..
                } => resolve_secret(token),
                SourceSpec::Http { headers, .. } => anchor_files(headers, ctx),
                _ => {}
            }
        }
        self.verify.signing_keys.iter_mut().for_each(resolve);
        if let Some(rekor) = &mut self.verify.rekor {
            resolve(&mut rekor.public_key);
            rekor.offline_dir.iter_mut().for_each(resolve);
        }
        if let Some(sigstore) = &mut self.verify.sigstore {
            sigstore.trusted_root.iter_mut().for_each(resolve);
            sigstore.keys.iter_mut().for_each(resolve);
        }
        if let Some(evidence) = &mut self.evidence {
            resolve(&mut evidence.dir);
            resolve_secret(&mut evidence.signing_key);
        }
    }
}

/// Reads the rules and keys and makes the clients, every problem reported.
fn build(mut params: Params, ctx: &BuildContext) -> Result<Built, Vec<ParamError>> {
    params.resolve_paths(ctx);
    for file in params.files_read() {
        ctx.depends_on(&file);
    }
    if let Some(evidence) = &params.evidence {
        if let SecretRef::File(key) = &evidence.signing_key {
            ctx.depends_on(key);
        }
    }
    let mut errors = Vec::new();
    for (n, source) in params.sources.iter().enumerate() {
        match source {
            SourceSpec::Files { path, .. } if !path.exists() => errors.push(ParamError::new(
                format!("sources[{n}].path"),
                format!("{} does not exist", path.display()),
            )),
            SourceSpec::Github { .. } => {
                if let Err(problems) = github_client(source, &format!("sources[{n}]")) {
                    errors.extend(problems);
                }
            }
            SourceSpec::Http { headers, .. } => {
                let field = format!("sources[{n}]");
                if let Err(problems) = resolve_headers(headers, &field, Path::new("")) {
                    errors.extend(problems);
                }
            }
            _ => {}
        }
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
            rules::Condition::RekorForeignSigner
                if params.verify.rekor.is_none() || params.verify.signing_keys.is_empty() =>
            {
                "verify.rekor and params.verify.signing_keys"
            }
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
        Ok(Built {
            params,
            rules,
            verifier,
            evidence,
        })
    } else {
        Err(errors)
    }
}

impl JobKind for ProvmonJob {
    type Config = Params;

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
                ParamDoc {
                    name: "max_clock_skew",
                    type_name: "duration (at most 24h)",
                    required: false,
                    default: Some("5m"),
                    description: "Events dated more than this ahead of the sweep's clock are malformed (counted and skipped): a future date would postpone its rules' deadlines",
                },
                ParamDoc {
                    name: "rekor_outage_page_after",
                    type_name: "duration",
                    required: false,
                    default: Some("30m"),
                    description: "Rekor unreachable for longer than this pages provmon/rekor-unreachable; missing-rekor and deployed-unverified wait for Rekor and are judged once it answers",
                },
            ],
        }
    }

    fn validate(&self, params: &Params) -> Result<(), Vec<ParamError>> {
        validate(params)
    }

    fn build(
        &self,
        params: Params,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn JobInstance>, Vec<ParamError>> {
        Ok(Arc::new(build(params, ctx)?))
    }

    fn commands(&self) -> Option<Arc<dyn JobCommands>> {
        Some(Arc::new(commands::ProvmonCommands))
    }

    fn tables(&self) -> Option<JobTables> {
        Some(verifications::tables())
    }

    /// A manual run shares the schedule's state: with other keys, rules or
    /// sources it would write verdicts and chains the schedule then trusts.
    fn pinned_params(&self) -> &'static [&'static str] {
        &["verify", "rules", "sources", "evidence"]
    }
}

#[async_trait]
impl JobInstance for Built {
    async fn run(&self, ctx: RunContext) -> Result<RunReport, JobError> {
        let input = SweepInput {
            sources: self.params.sources.clone(),
            rules: self.rules.clone(),
            verifier: self.verifier.clone(),
            evidence: self
                .evidence
                .clone()
                .map(|writer| writer.with_effects(ctx.effects.clone())),
            max_events: self.params.max_events,
            now: ctx.now(),
            max_clock_skew: self.params.max_clock_skew.0,
            rekor_outage_page_after: self.params.rekor_outage_page_after.0,
        };
        sweep(&ctx.state, input, &ctx.cancel).await
    }
}

#[cfg(test)]
mod tests {
    use patrol_job_api::{Job, Typed};

    use super::*;

    /// Issue 20 item 9: a token goes to GitHub over https only (or to a
    /// stand-in on this machine); anonymous reads may use plain http.
    #[test]
    fn a_github_token_is_sent_over_https_only() {
        let source = |base_url: &str, token: bool| -> SourceSpec {
            let mut spec = serde_json::json!({
                "kind": "github", "name": "gh", "repos": ["acme/app"], "base_url": base_url,
            });
            if token {
                spec["token"] = "env:PATROL_TEST_GH_TOKEN_UNSET".into();
            }
            serde_json::from_value(spec).unwrap()
        };
        let base_url_errors = |spec: &SourceSpec| match github_client(spec, "sources[0]") {
            Ok(_) => Vec::new(),
            Err(errors) => errors
                .into_iter()
                .filter(|error| error.to_string().contains("base_url"))
                .map(|error| error.to_string())
                .collect(),
        };
        let plain = base_url_errors(&source("http://ghe.example/api/v3", true));
        assert!(
            plain.iter().any(|error| error.contains("unencrypted")),
            "{plain:?}"
        );
        assert!(base_url_errors(&source("https://ghe.example/api/v3", true)).is_empty());
        assert!(base_url_errors(&source("http://127.0.0.1:9000", true)).is_empty());
        assert!(base_url_errors(&source("http://ghe.example/api/v3", false)).is_empty());
    }

    fn built(params: &serde_json::Value) -> Result<(), Vec<ParamError>> {
        Typed(ProvmonJob)
            .build(params, &BuildContext::new("provmon", ""))
            .map(|_| ())
    }

    #[test]
    fn a_timeout_is_a_duration_checked_without_io() {
        let params = serde_json::json!({
            "sources": [{"kind": "http", "name": "h", "url": "http://127.0.0.1:9/x", "timeout": "soon"}]
        });
        let errors = Typed(ProvmonJob).check_params(&params).unwrap_err();
        // serde reads a tagged source whole: the error names the source.
        assert_eq!(errors[0].path, "sources[0]", "{errors:?}");
        assert!(
            errors[0].message.contains("`soon` is not a duration"),
            "{errors:?}"
        );
    }

    #[test]
    fn relative_paths_resolve_against_the_config_folder_and_are_watched() {
        let params = serde_json::json!({
            "rules": "policies/provmon/rules.yaml",
            "sources": [{"kind": "files", "name": "f", "path": "fixtures/provmon/events"}],
            "verify": {
                "signing_keys": ["fixtures/provmon/keys/cosign.pub"],
                "rekor": {
                    "public_key": "fixtures/provmon/keys/rekor.pub",
                    "offline_dir": "fixtures/provmon/rekor"
                }
            }
        });
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let ctx = BuildContext::new("provmon", &root);
        Typed(ProvmonJob)
            .build(&params, &ctx)
            .expect("builds from the checkout's root");
        assert_eq!(
            ctx.dependencies(),
            [
                root.join("fixtures/provmon/keys/cosign.pub"),
                root.join("fixtures/provmon/keys/rekor.pub"),
                root.join("policies/provmon/rules.yaml"),
            ]
        );
        // From another folder the same params name nothing.
        let errors = built(&params).unwrap_err();
        assert!(
            errors.iter().any(|e| e.path == "sources[0].path"),
            "{errors:?}"
        );
    }

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
                "max_pages": 0
            }]
        });
        let errors = built(&params).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        for expected in [
            "sources[0].repos[1]",
            "sources[0].base_url",
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
        let errors = Typed(ProvmonJob).check_params(&params).unwrap_err();
        let text = format!("{errors:?}");
        assert!(
            text.contains("inline secrets are refused") && !text.contains("ghp_inline"),
            "{text}"
        );
    }
}
