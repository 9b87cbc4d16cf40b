//! Evidence packs, one per release, rewritten whenever the release's chain
//! changes: `evidence/<release_sha>/` holds the chain (`chain.json`), each
//! verification result with the digests of its inputs
//! (`verification.json`), the findings that hold (`findings.json`), the
//! Rekor entries with their proofs (`rekor/<uuid>.json`), and a signed
//! manifest (see `patrol_provmon_verify::evidence`). `patrol evidence
//! verify` checks a pack.
//!
//! A pack is built in a hidden folder and renamed into place, so a reader
//! sees the old pack or the new one, never half of one. Writing a pack is
//! an effect of the run (`ctx.effects`): a dry run writes none and lists
//! them; a retry of the same slot does not rewrite a pack with the same
//! content.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use patrol_job_api::effects::{kind, replace_dir_atomically, thousands};
use patrol_job_api::secret::SecretRef;
use patrol_job_api::{Effects, Finding, Intent, ParamError, Performed};
use patrol_provmon_verify::evidence::write_pack;
use patrol_provmon_verify::fixtures::SigningKey;
use patrol_provmon_verify::rekor::LogEntry;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::chain::{DigestChain, ReleaseChain, StageLog};
use crate::verify::{Check, Verifier};

/// `params.evidence`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceSpec {
    /// Where the packs go: `<dir>/<release_sha>/`.
    pub dir: PathBuf,
    /// The private key (PEM) that signs each manifest, as `file:PATH` or
    /// `env:NAME` (the variable holds the PEM text). Never inline.
    pub signing_key: SecretRef,
}

/// Ready to write packs.
#[derive(Clone)]
pub struct EvidenceWriter {
    pub dir: PathBuf,
    key: SigningKey,
    /// Packs are written through here; the job hands it the run's handle.
    effects: Effects,
}

// The key is a secret: never printed.
impl std::fmt::Debug for EvidenceWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvidenceWriter")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl EvidenceSpec {
    pub fn build(&self) -> Result<EvidenceWriter, Vec<ParamError>> {
        let mut errors = Vec::new();
        if self.dir.exists() && !self.dir.is_dir() {
            errors.push(ParamError::new(
                "evidence.dir",
                format!("{} is not a folder", self.dir.display()),
            ));
        }
        let key = read_signing_key(&self.signing_key)
            .map_err(|message| errors.push(ParamError::new("evidence.signing_key", message)))
            .ok();
        match key {
            Some(key) if errors.is_empty() => Ok(EvidenceWriter {
                dir: self.dir.clone(),
                key,
                // Tests and tools that sweep outside a run write for real;
                // a run replaces it with its own (see `with_effects`).
                effects: Effects::in_memory(),
            }),
            _ => Err(errors),
        }
    }
}

fn read_signing_key(reference: &SecretRef) -> Result<SigningKey, String> {
    // Resolving registers the PEM with the redactor: it never reaches a
    // log line or the ledger, even inside an error.
    let pem = reference.resolve(Path::new("."))?;
    SigningKey::from_pem(pem.expose()).map_err(|err| format!("{reference}: {err}"))
}

/// A release sha can name a folder: no separators, no dot files.
pub fn folder_name(sha: &str) -> Option<&str> {
    let ok = !sha.is_empty()
        && sha.len() <= 128
        && !sha.starts_with('.')
        && sha
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    ok.then_some(sha)
}

/// Everything a pack is made from.
pub struct PackInput<'a> {
    pub sha: &'a str,
    pub release: &'a ReleaseChain,
    pub digests: BTreeMap<&'a str, &'a DigestChain>,
    pub findings: Vec<&'a Finding>,
    /// Rekor entries by UUID, as fetched; a missing one is noted in the pack.
    pub entries: &'a BTreeMap<String, (String, LogEntry)>,
}

#[derive(Serialize)]
struct StageView<'a> {
    stage: &'static str,
    first: String,
    last: String,
    count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn stages<'a>(
    logs: impl Iterator<Item = (crate::event::Stage, &'a StageLog)>,
) -> Vec<StageView<'a>> {
    logs.map(|(stage, log)| StageView {
        stage: stage.as_str(),
        first: rfc3339(log.first),
        last: rfc3339(log.last),
        count: log.count,
        status: log.status.as_deref(),
        detail: log.detail.as_deref(),
    })
    .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn to_json(value: &impl Serialize) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// The files of one release's pack.
pub fn pack_files(input: &PackInput<'_>, verifier: &Verifier) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let digests: Vec<serde_json::Value> = input
        .digests
        .iter()
        .map(|(digest, chain)| {
            serde_json::json!({
                "digest": digest,
                "stages": stages(chain.stages.iter()),
                "releases": chain.releases.iter().collect::<Vec<_>>(),
                "rekor_uuids": chain.rekor_uuids.iter().collect::<Vec<_>>(),
                "deploy_revs": chain.deploy_revs.iter().collect::<Vec<_>>(),
                "signatures_sha256": chain.signatures.iter().map(|s| sha256_hex(s.as_bytes())).collect::<Vec<_>>(),
            })
        })
        .collect();
    let missing: Vec<&String> = input
        .release
        .digests
        .iter()
        .filter(|digest| !input.digests.contains_key(digest.as_str()))
        .collect();
    files.push((
        "chain.json".to_string(),
        to_json(&serde_json::json!({
            "release_sha": input.sha,
            "stages": stages(input.release.stages.iter()),
            "digests": digests,
            "digests_not_recorded": missing,
        })),
    ));

    let mut results = Vec::new();
    let mut rekor_files = Vec::new();
    for (digest, chain) in &input.digests {
        for (signature, check) in chain.checks_of("sig:") {
            results.push(serde_json::json!({
                "check": "signature",
                "artifact_digest": digest,
                "inputs": {
                    "signature_sha256": sha256_hex(signature.as_bytes()),
                    "key_ids": verifier.signing_key_ids(),
                },
                "result": result(check),
            }));
        }
        for (bundle_sha256, check) in chain.checks_of("bundle:") {
            // The bundle itself is not kept (it is verified as it is read);
            // its digest ties this result to the bundle as published.
            results.push(serde_json::json!({
                "check": "sigstore_bundle",
                "artifact_digest": digest,
                "inputs": {
                    "bundle_sha256": bundle_sha256,
                    "policy": verifier.bundles.as_ref().map(|bundles| bundles.policy()),
                },
                "result": result(check),
            }));
        }
        for (uuid, check) in chain.checks_of("rekor:") {
            let entry = input.entries.get(uuid).map(|(uuid, entry)| {
                let bytes = to_json(&BTreeMap::from([(uuid, entry)]));
                (format!("rekor/{}.json", uuid_file(uuid)), bytes)
            });
            results.push(serde_json::json!({
                "check": "rekor_entry",
                "artifact_digest": digest,
                "inputs": {
                    "uuid": uuid,
                    "entry_file": entry.as_ref().map(|(path, _)| path),
                    "entry_sha256": entry.as_ref().map(|(_, bytes)| sha256_hex(bytes)),
                    "rekor_key_id": verifier.rekor_key_id(),
                },
                "result": result(check),
            }));
            rekor_files.extend(entry);
        }
    }
    files.push((
        "verification.json".to_string(),
        to_json(&serde_json::json!({ "results": results })),
    ));
    files.push((
        "findings.json".to_string(),
        to_json(&serde_json::json!({ "findings": input.findings })),
    ));
    rekor_files.sort();
    rekor_files.dedup_by(|a, b| a.0 == b.0);
    files.extend(rekor_files);
    files
}

/// A UUID only of hex digits names its file as is; anything else is hashed.
fn uuid_file(uuid: &str) -> String {
    if !uuid.is_empty() && uuid.len() <= 128 && uuid.chars().all(|c| c.is_ascii_hexdigit()) {
        uuid.to_string()
    } else {
        sha256_hex(uuid.as_bytes())
    }
}

fn result(check: &Check) -> serde_json::Value {
    serde_json::json!({
        "verified": check.ok,
        "reason": check.reason,
        "checked_at": rfc3339(check.at),
        "asked_again_next_sweep": check.again,
    })
}

/// What writing a sweep's packs did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct EvidenceStats {
    pub written: u64,
    /// Dry run: packs that would have been written.
    #[serde(skip_serializing_if = "is_zero")]
    pub would_write: u64,
    /// Releases whose sha cannot name a folder: never packed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unnamable: Vec<String>,
    /// Release → why its pack could not be written (tried again next sweep).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub failed: BTreeMap<String, String>,
}

impl EvidenceWriter {
    /// Writes packs through the run's `effects` (nothing on a dry run).
    pub fn with_effects(mut self, effects: Effects) -> Self {
        self.effects = effects;
        self
    }

    /// Writes one release's pack, replacing the previous one. Runs on a
    /// blocking thread.
    pub fn write(
        &self,
        sha: &str,
        files: &[(String, Vec<u8>)],
        now: DateTime<Utc>,
    ) -> Result<Performed<()>, String> {
        let name = folder_name(sha).ok_or_else(|| {
            format!("release sha `{sha}` cannot name a folder (letters, digits, - _ .)")
        })?;
        let target = self.dir.join(name);
        self.effects
            .perform_blocking(pack_intent(&target, files), || {
                replace_dir_atomically(&target, |building| {
                    write_pack(
                        building,
                        &format!("release {sha}"),
                        &rfc3339(now),
                        concat!("patrol provmon ", env!("CARGO_PKG_VERSION")),
                        files,
                        &self.key,
                    )
                })
            })
            .map_err(|err| format!("writing {}: {err}", target.display()))
    }
}

/// Writing a pack at `target`. Its key carries a digest of the files (not
/// of the manifest, which holds the time of writing), so a retry of the
/// slot with the same chain skips it.
fn pack_intent(target: &Path, files: &[(String, Vec<u8>)]) -> Intent {
    let mut digest = Sha256::new();
    for (path, content) in files {
        digest.update(path.as_bytes());
        digest.update([0]);
        digest.update((content.len() as u64).to_be_bytes());
        digest.update(content);
    }
    let bytes: usize = files.iter().map(|(_, content)| content.len()).sum();
    Intent::new(
        kind::WRITE_DIR,
        format!(
            "write_dir:{}#{}",
            target.display(),
            &hex::encode(digest.finalize())[..16]
        ),
        format!(
            "write evidence pack {}/ ({} files + signed manifest, {} bytes)",
            target.display(),
            files.len(),
            thousands(bytes as u64)
        ),
    )
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Releases whose pack is due: those that changed, those of digests that
/// changed, and those whose pack failed last time.
pub fn due_releases<'a>(
    releases: impl Iterator<Item = (&'a String, &'a ReleaseChain)>,
    digests: impl Iterator<Item = (&'a String, &'a DigestChain)>,
    pending: &[String],
) -> BTreeSet<String> {
    let mut due: BTreeSet<String> = pending.iter().cloned().collect();
    due.extend(
        releases
            .filter(|(_, release)| release.changed)
            .map(|(sha, _)| sha.clone()),
    );
    for (_, chain) in digests.filter(|(_, chain)| chain.changed) {
        due.extend(chain.releases.iter().cloned());
    }
    due
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_stay_inside_the_evidence_dir() {
        assert!(folder_name("b2a47ce21b8520d9713d32eaee0084664d1b9326").is_some());
        assert!(folder_name("v1.2.3").is_some());
        for bad in ["", "..", ".hidden", "a/b", "a\\b", "x y"] {
            assert!(folder_name(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn keys_are_never_inline() {
        let err = serde_json::from_value::<EvidenceSpec>(serde_json::json!({
            "dir": "evidence",
            "signing_key": "-----BEGIN PRIVATE KEY-----abc",
        }))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("inline secrets are refused") && !err.contains("abc"),
            "{err}"
        );
        let unset = SecretRef::Env("PATROL_TEST_NO_SUCH_VAR".into());
        assert!(read_signing_key(&unset).unwrap_err().contains("not set"));
    }
}
