//! Checking the chains' cryptographic evidence (fail closed): each
//! signature seen on a `sign` event against the configured cosign keys,
//! each Rekor entry (body names the digest, signed entry timestamp, Merkle
//! inclusion proof, signed checkpoint) against the Rekor key. Entries come
//! from an offline folder (`<uuid>.json`, the API's answer) or from Rekor
//! itself. Results are kept in the chain, so each item is checked once.
//!
//! Sigstore bundles on `sign` events are verified as they are read (by the
//! parsing workers, against the trusted root and the signers configured in
//! `verify.sigstore`); only their verdicts are kept.
//!
//! A Rekor that cannot be reached is an outage, not an absence: the items
//! stay unchecked, the chain is watched, and the sweep is partial.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use patrol_job_api::units::HumanDuration;
use patrol_job_api::ParamError;
use patrol_provmon_verify::bundle::{self, Signer, Subject, TrustRoot};
use patrol_provmon_verify::key::PublicKey;
use patrol_provmon_verify::rekor::{
    parse_entry_response, verify_entry, Client, ExpectedArtifact, HashedRekord, LogEntry,
};
use patrol_provmon_verify::{cosign, Verdict};
use serde::{Deserialize, Serialize};

use crate::chain::{Chains, DigestChain};
use crate::event::Stage;

/// `params.verify`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySpec {
    /// PEM public keys; a signature is valid if one of them verifies it.
    #[serde(default)]
    pub signing_keys: Vec<PathBuf>,
    #[serde(default)]
    pub rekor: Option<RekorSpec>,
    #[serde(default)]
    pub sigstore: Option<SigstoreSpec>,
}

/// `params.verify.sigstore`: how Sigstore bundles are verified.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigstoreSpec {
    /// A `trusted_root.json`; without it, the Sigstore public-good root
    /// shipped with patrol.
    #[serde(default)]
    pub trusted_root: Option<PathBuf>,
    /// Keyless signers: a bundle verifies if its certificate names one of
    /// these identities with that identity's issuer.
    #[serde(default)]
    pub identities: Vec<IdentitySpec>,
    /// Managed keys (PEM): a bundle with a key hint verifies if one of
    /// these verifies it.
    #[serde(default)]
    pub keys: Vec<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySpec {
    /// The certificate's subject alternative name (an email or a URI such
    /// as a GitHub workflow ref), matched exactly.
    pub identity: String,
    /// The OIDC issuer, e.g. `https://token.actions.githubusercontent.com`.
    pub issuer: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RekorSpec {
    /// The log's PEM public key (signs entry timestamps and checkpoints).
    pub public_key: PathBuf,
    /// Rekor's base URL, e.g. `https://rekor.sigstore.dev`.
    #[serde(default)]
    pub url: Option<String>,
    /// A folder of `<uuid>.json` entries for offline verification, looked
    /// at before `url`.
    #[serde(default)]
    pub offline_dir: Option<PathBuf>,
    #[serde(default)]
    pub timeout: Option<String>,
}

/// Ready-to-use verification settings.
#[derive(Debug, Clone, Default)]
pub struct Verifier {
    pub signing_keys: Vec<PublicKey>,
    pub rekor: Option<RekorVerifier>,
    pub bundles: Option<Arc<BundleVerifier>>,
    /// See [`Verifier::fingerprint`]; set by [`VerifySpec::build`].
    fingerprint: String,
}

/// Verifies Sigstore bundles for a digest: shared with the parsing workers.
#[derive(Debug)]
pub struct BundleVerifier {
    root: TrustRoot,
    signers: Vec<Signer>,
    /// Hex SHA-256 of the trusted root's text (the shipped one's too).
    root_sha256: String,
    /// The whole verification policy's fingerprint, stamped on verdicts.
    policy_fingerprint: String,
}

impl BundleVerifier {
    /// Verifies `bundle_json` as a signature over `digest`
    /// (`sha256:<hex>`): verified if one configured signer's policy holds.
    pub fn check(&self, digest: &str, bundle_json: &str, now: DateTime<Utc>) -> Check {
        let verdict = match bundle::parse_sha256_digest(digest) {
            Err(reason) => Verdict::failed(format!("cannot verify a bundle for it: {reason}")),
            Ok(sha256) => {
                let mut reasons = Vec::new();
                let mut verdict = None;
                for signer in &self.signers {
                    let subject = Subject::Sha256(sha256);
                    match bundle::verify_bundle(bundle_json.as_bytes(), subject, signer, &self.root)
                    {
                        Verdict::Verified => {
                            verdict = Some(Verdict::Verified);
                            break;
                        }
                        Verdict::Failed { reason } => reasons.push(reason),
                    }
                }
                verdict.unwrap_or_else(|| {
                    Verdict::failed(format!(
                        "the sigstore bundle does not verify: {}",
                        reasons.join("; ")
                    ))
                })
            }
        };
        Check::of(&verdict, now, &self.policy_fingerprint)
    }

    /// What bundles are checked against, for evidence: the trusted root's
    /// origin, the accepted identities, and each managed key's id (hex
    /// SHA-256 of its DER).
    pub fn policy(&self) -> serde_json::Value {
        use sha2::{Digest, Sha256};
        let mut identities = Vec::new();
        let mut key_ids = Vec::new();
        for signer in &self.signers {
            match signer {
                Signer::Identity { identity, issuer } => {
                    identities.push(serde_json::json!({"identity": identity, "issuer": issuer}))
                }
                Signer::Key(key) => key_ids.push(hex::encode(Sha256::digest(key.as_bytes()))),
            }
        }
        serde_json::json!({
            "trusted_root": self.root.origin(),
            "trusted_root_sha256": self.root_sha256,
            "identities": identities,
            "key_ids": key_ids,
        })
    }
}

/// How a bundle is named in a chain: the SHA-256 (hex) of its text.
pub fn bundle_id(bundle_json: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bundle_json.as_bytes()))
}

#[derive(Debug, Clone)]
pub struct RekorVerifier {
    pub key: PublicKey,
    pub client: Option<Client>,
    pub offline_dir: Option<PathBuf>,
}

/// One check's result, kept in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub at: DateTime<Utc>,
    /// Checked again next sweep: the entry was not found (Rekor may not
    /// have it yet), unlike a verdict on content, which stands.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub again: bool,
    /// The fingerprint of the verification policy that judged it (see
    /// [`Verifier::fingerprint`]); a verdict of another policy is judged
    /// again, never trusted. Empty in verdicts kept before it existed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub policy: String,
    /// A Rekor entry that is sound (log signature, inclusion, checkpoint,
    /// digest) but whose signer is none of the configured keys, or whose
    /// signature is not one the `sign` events carried: someone else logged
    /// the digest. Pages `rekor-foreign-signer`, not `rekor-mismatch`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub foreign: bool,
}

impl Check {
    fn of(verdict: &Verdict, at: DateTime<Utc>, policy: &str) -> Self {
        Self {
            ok: verdict.is_verified(),
            reason: verdict.reason().map(str::to_string),
            at,
            again: false,
            policy: policy.to_string(),
            foreign: false,
        }
    }

    fn settled(&self) -> bool {
        !self.again
    }

    /// A bundle verdict dropped because another policy gave it: the next
    /// time the bundle's text is seen, it is judged.
    pub fn rejudge_needed(&self) -> bool {
        self.reason.as_deref() == Some(REJUDGE_BUNDLE)
    }
}

/// Why a bundle verdict of another policy now fails (fail closed).
const REJUDGE_BUNDLE: &str = "judged under another verification policy (keys, identities or trusted root changed); the bundle's text is not kept, so it cannot be judged again: send its sign event again";

fn read_key(path: &Path, field: &str) -> Result<PublicKey, ParamError> {
    let pem = std::fs::read_to_string(path)
        .map_err(|err| ParamError::new(field, format!("cannot read {}: {err}", path.display())))?;
    PublicKey::from_pem(&pem)
        .map_err(|err| ParamError::new(field, format!("{}: {err}", path.display())))
}

impl VerifySpec {
    /// Reads the keys and builds the client; every problem reported.
    pub fn build(&self) -> Result<Verifier, Vec<ParamError>> {
        let mut errors = Vec::new();
        let mut signing_keys = Vec::new();
        for (n, path) in self.signing_keys.iter().enumerate() {
            match read_key(path, &format!("verify.signing_keys[{n}]")) {
                Ok(key) => signing_keys.push(key),
                Err(err) => errors.push(err),
            }
        }
        let rekor = self.rekor.as_ref().and_then(|spec| {
            let key = read_key(&spec.public_key, "verify.rekor.public_key")
                .map_err(|err| errors.push(err))
                .ok();
            let timeout = match spec.timeout.as_deref().map(HumanDuration::parse) {
                None => Duration::from_secs(10),
                Some(Ok(timeout)) => timeout.0,
                Some(Err(message)) => {
                    errors.push(ParamError::new("verify.rekor.timeout", message));
                    Duration::from_secs(10)
                }
            };
            if spec.url.is_none() && spec.offline_dir.is_none() {
                errors.push(ParamError::new(
                    "verify.rekor",
                    "give `url`, `offline_dir` or both: where the entries come from",
                ));
            }
            if let Some(dir) = spec.offline_dir.as_ref().filter(|dir| !dir.is_dir()) {
                errors.push(ParamError::new(
                    "verify.rekor.offline_dir",
                    format!("{} is not a folder", dir.display()),
                ));
            }
            let client = spec.url.as_deref().and_then(|url| {
                Client::new(url, timeout)
                    .map_err(|err| {
                        errors.push(ParamError::new("verify.rekor.url", err.to_string()))
                    })
                    .ok()
            });
            Some(RekorVerifier {
                key: key?,
                client,
                offline_dir: spec.offline_dir.clone(),
            })
        });
        let bundles = self
            .sigstore
            .as_ref()
            .and_then(|spec| spec.build().map_err(|e| errors.extend(e)).ok());
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut verifier = Verifier {
            signing_keys,
            rekor,
            bundles: None,
            fingerprint: String::new(),
        };
        verifier.fingerprint = policy_fingerprint(&verifier, bundles.as_ref());
        verifier.bundles = bundles
            .map(|bundles| BundleVerifier {
                policy_fingerprint: verifier.fingerprint.clone(),
                ..bundles
            })
            .map(Arc::new);
        Ok(verifier)
    }
}

impl SigstoreSpec {
    fn build(&self) -> Result<BundleVerifier, Vec<ParamError>> {
        use sha2::Digest;
        let mut errors = Vec::new();
        let root = match &self.trusted_root {
            Some(path) => TrustRoot::from_file(path),
            None => TrustRoot::public_good(),
        }
        .map_err(|e| errors.push(ParamError::new("verify.sigstore.trusted_root", e)))
        .ok();
        let mut signers = Vec::new();
        for (n, identity) in self.identities.iter().enumerate() {
            for (field, value) in [
                ("identity", &identity.identity),
                ("issuer", &identity.issuer),
            ] {
                if value.trim().is_empty() {
                    errors.push(ParamError::new(
                        format!("verify.sigstore.identities[{n}].{field}"),
                        "must not be empty",
                    ));
                }
            }
            signers.push(Signer::Identity {
                identity: identity.identity.clone(),
                issuer: identity.issuer.clone(),
            });
        }
        for (n, path) in self.keys.iter().enumerate() {
            let field = format!("verify.sigstore.keys[{n}]");
            match std::fs::read_to_string(path) {
                Ok(pem) => match Signer::key_from_pem(&pem) {
                    Ok(signer) => signers.push(signer),
                    Err(e) => {
                        errors.push(ParamError::new(field, format!("{}: {e}", path.display())))
                    }
                },
                Err(e) => errors.push(ParamError::new(
                    field,
                    format!("cannot read {}: {e}", path.display()),
                )),
            }
        }
        if self.identities.is_empty() && self.keys.is_empty() {
            errors.push(ParamError::new(
                "verify.sigstore",
                "give `identities`, `keys` or both: who must have signed",
            ));
        }
        let root_sha256 = match &self.trusted_root {
            Some(path) => std::fs::read(path)
                .map(|bytes| hex::encode(sha2::Sha256::digest(bytes)))
                .unwrap_or_default(),
            None => "public-good".to_string(),
        };
        match root {
            Some(root) if errors.is_empty() => Ok(BundleVerifier {
                root,
                signers,
                root_sha256,
                policy_fingerprint: String::new(),
            }),
            _ => Err(errors),
        }
    }
}

/// What every verdict rests on, hashed: the signing keys, the Rekor key,
/// the Sigstore trusted root, identities and keys. Hex SHA-256 of their
/// canonical JSON (key ids sorted).
fn policy_fingerprint(verifier: &Verifier, bundles: Option<&BundleVerifier>) -> String {
    use sha2::{Digest, Sha256};
    let mut signing = verifier.signing_key_ids();
    signing.sort();
    let policy = serde_json::json!({
        "signing_keys": signing,
        "rekor_key": verifier.rekor_key_id(),
        "sigstore": bundles.map(BundleVerifier::policy),
    });
    hex::encode(Sha256::digest(policy.to_string().as_bytes()))
}

/// What verifying a sweep's chains met.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyStats {
    pub signatures_checked: u64,
    /// Sigstore bundles verified (as their events were read).
    pub bundles_checked: u64,
    pub entries_checked: u64,
    pub entries_found_by_search: u64,
    /// Verdicts of another verification policy judged again.
    #[serde(skip_serializing_if = "is_zero")]
    pub rejudged: u64,
    /// Rekor could not be asked (outage): these wait for the next sweep.
    pub unavailable: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outage: Option<String>,
    /// Entries fetched this sweep, by the UUID asked for (evidence packs
    /// reuse them instead of asking Rekor twice).
    #[serde(skip)]
    pub entries: BTreeMap<String, (String, LogEntry)>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Who logged a Rekor entry that the log itself vouches for.
enum LoggedBy {
    Ours,
    /// Sound, but someone else's: pages `rekor-foreign-signer`.
    Foreign(String),
    /// Not internally consistent: pages `rekor-mismatch`.
    Broken(String),
}

/// The hashedrekord an entry's body holds.
fn logged_record(entry: &LogEntry) -> Result<HashedRekord, String> {
    let body = base64::engine::general_purpose::STANDARD
        .decode(&entry.body)
        .map_err(|err| format!("entry body: not base64: {err}"))?;
    HashedRekord::parse(&body)
}

/// Where a Rekor entry could come from, and what came.
enum Fetched {
    Entry(Box<(String, patrol_provmon_verify::rekor::LogEntry)>),
    /// Not there (yet): failed now, asked again next sweep.
    Missing(String),
    /// An answer that can never verify (garbage, a refused request).
    Bad(String),
    Outage(String),
}

impl Verifier {
    /// The fingerprint of this verification policy (keys, identities,
    /// trusted roots), stamped on every verdict it gives.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Drops `chain`'s verdicts given under another policy, so this sweep
    /// judges them again: signatures are kept and Rekor entries fetched
    /// again. A bundle's text is not kept; its verdict becomes a failure
    /// that says so (fail closed) until its `sign` event is sent again.
    pub fn forget_other_policies(&self, chain: &mut DigestChain, now: DateTime<Utc>) -> u64 {
        let stale: Vec<String> = chain
            .checks
            .iter()
            .filter(|(_, check)| check.policy != self.fingerprint)
            .map(|(key, _)| key.clone())
            .collect();
        for key in &stale {
            if key.starts_with("bundle:") {
                let reason = REJUDGE_BUNDLE;
                let check = Check::of(&Verdict::failed(reason), now, &self.fingerprint);
                chain.record_check(key.clone(), check);
            } else {
                chain.checks.remove(key);
                chain.changed = true;
            }
        }
        stale.len() as u64
    }

    pub fn checks_signatures(&self) -> bool {
        !self.signing_keys.is_empty()
    }

    pub fn checks_rekor(&self) -> bool {
        self.rekor.is_some()
    }

    pub fn checks_bundles(&self) -> bool {
        self.bundles.is_some()
    }

    /// Checks what is new in `chains` (changed or watched chains). `search`
    /// lists digests whose Rekor entry is overdue: Rekor is searched for
    /// them before anyone is paged.
    pub async fn verify(
        &self,
        chains: &mut Chains,
        search: &[String],
        now: DateTime<Utc>,
    ) -> VerifyStats {
        let mut stats = VerifyStats::default();
        if let Some(rekor) = &self.rekor {
            for digest in search {
                let Some(client) = &rekor.client else { break };
                match client.search_by_sha256(digest).await {
                    Ok(uuids) => {
                        if let Some(chain) = chains.digests.get_mut(digest) {
                            for uuid in uuids {
                                stats.entries_found_by_search += 1;
                                chain.found_in_rekor(&uuid, now);
                            }
                        }
                    }
                    // Down, or an answer that is not one: either way absence
                    // is not shown, so nobody is paged for it.
                    Err(err) => {
                        stats.unavailable += 1;
                        stats.outage = Some(err.to_string());
                        if let Some(chain) = chains.digests.get_mut(digest) {
                            chain.unverifiable = true;
                        }
                    }
                }
            }
        }
        for (digest, chain) in chains.digests.iter_mut() {
            stats.rejudged += self.forget_other_policies(chain, now);
            if self.checks_signatures() {
                let unchecked: Vec<String> = chain
                    .signatures
                    .iter()
                    .filter(|signature| !chain.checks.contains_key(&sig_key(signature)))
                    .cloned()
                    .collect();
                for signature in unchecked {
                    let verdict = self.check_signature(digest, &signature);
                    stats.signatures_checked += 1;
                    let check = Check::of(&verdict, now, &self.fingerprint);
                    chain.record_check(sig_key(&signature), check);
                }
            }
            let Some(rekor) = &self.rekor else { continue };
            let unchecked: Vec<String> = chain
                .rekor_uuids
                .iter()
                .filter(|uuid| {
                    !chain
                        .checks
                        .get(&rekor_key(uuid))
                        .is_some_and(Check::settled)
                })
                .cloned()
                .collect();
            for uuid in unchecked {
                let mut again = false;
                let mut foreign = false;
                let verdict = match fetch(rekor, &uuid).await {
                    Fetched::Entry(entry) => {
                        let (entry_uuid, entry) = *entry;
                        let mut verdict = verify_entry(
                            &entry_uuid,
                            &entry,
                            &rekor.key,
                            &ExpectedArtifact::digest(digest.clone()),
                        )
                        .verdict();
                        // The signatures the sign events carried that
                        // verified: a forged or corrupt one is
                        // `signature-invalid`'s to report, not a reason to
                        // disown the entry.
                        let signed: Vec<String> = chain
                            .signatures
                            .iter()
                            .filter(|signature| {
                                chain.checks.get(&sig_key(signature)).is_some_and(|c| c.ok)
                            })
                            .cloned()
                            .collect();
                        if verdict.is_verified() {
                            match self.logged_by(&signed, &entry) {
                                LoggedBy::Ours => {}
                                LoggedBy::Broken(reason) => verdict = Verdict::failed(reason),
                                LoggedBy::Foreign(reason) => {
                                    foreign = true;
                                    verdict = Verdict::failed(reason);
                                }
                            }
                        }
                        stats.entries.insert(uuid.clone(), (entry_uuid, entry));
                        verdict
                    }
                    Fetched::Missing(reason) => {
                        again = true;
                        Verdict::failed(reason)
                    }
                    Fetched::Bad(reason) => Verdict::failed(reason),
                    Fetched::Outage(reason) => {
                        stats.unavailable += 1;
                        stats.outage = Some(reason);
                        chain.unverifiable = true;
                        continue;
                    }
                };
                stats.entries_checked += 1;
                let check = Check {
                    again,
                    foreign,
                    ..Check::of(&verdict, now, &self.fingerprint)
                };
                let same = chain.checks.get(&rekor_key(&uuid)).is_some_and(|old| {
                    (old.ok, &old.reason, old.again, &old.policy)
                        == (check.ok, &check.reason, check.again, &check.policy)
                });
                if !same {
                    chain.record_check(rekor_key(&uuid), check);
                }
            }
        }
        stats
    }

    /// Hex SHA-256 of each signing key's DER, as evidence names them.
    pub fn signing_key_ids(&self) -> Vec<String> {
        self.signing_keys.iter().map(PublicKey::log_id).collect()
    }

    pub fn rekor_key_id(&self) -> Option<String> {
        self.rekor.as_ref().map(|rekor| rekor.key.log_id())
    }

    /// A Rekor entry as verification would get it (offline folder, then
    /// Rekor); `None` when it cannot be had now.
    pub async fn rekor_entry(&self, uuid: &str) -> Option<(String, LogEntry)> {
        match fetch(self.rekor.as_ref()?, uuid).await {
            Fetched::Entry(entry) => Some(*entry),
            _ => None,
        }
    }

    /// Who logged a sound Rekor entry for `digest`. Ours: its logged key
    /// is one of the configured signing keys and, when `sign` events
    /// carried verified signatures, its signature is one of them. An entry
    /// whose own signature does not verify with its own logged key is
    /// broken (a real Rekor refuses those), not foreign. Without signing
    /// keys nobody can be shown to be us: the entry cannot count (fail
    /// closed).
    fn logged_by(&self, signatures: &[String], entry: &LogEntry) -> LoggedBy {
        if self.signing_keys.is_empty() {
            return LoggedBy::Foreign("no `verify.signing_keys` to judge who logged the entry; configure the keys that sign releases".into());
        }
        let logged = match logged_record(entry) {
            Ok(logged) => logged,
            Err(reason) => return LoggedBy::Broken(reason),
        };
        let Some(key) = self
            .signing_keys
            .iter()
            .find(|key| key.same_as_pem(&logged.public_key_pem))
        else {
            return LoggedBy::Foreign(
                "logged under a key that is none of verify.signing_keys (foreign signer)".into(),
            );
        };
        if let Err(reason) = key.verify_sha256_digest(&logged.sha256, &logged.signature) {
            return LoggedBy::Broken(format!(
                "the entry's signature does not verify with its logged key: {reason}"
            ));
        }
        let carried = signatures.iter().any(|signature| {
            base64::engine::general_purpose::STANDARD
                .decode(signature)
                .is_ok_and(|bytes| bytes == logged.signature)
        });
        if signatures.is_empty() || carried {
            LoggedBy::Ours
        } else {
            LoggedBy::Foreign("logged with our key but a signature no sign event carried (foreign signer: the key was used outside the pipeline)".into())
        }
    }

    fn check_signature(&self, digest: &str, signature: &str) -> Verdict {
        let mut reasons = Vec::new();
        for key in &self.signing_keys {
            match cosign::verify_blob_digest(key, digest, signature) {
                Verdict::Verified => return Verdict::Verified,
                Verdict::Failed { reason } => reasons.push(reason),
            }
        }
        Verdict::failed(format!(
            "no configured key verifies it: {}",
            reasons.join("; ")
        ))
    }
}

async fn fetch(rekor: &RekorVerifier, uuid: &str) -> Fetched {
    let safe = uuid.chars().all(|c| c.is_ascii_hexdigit());
    if let Some(dir) = rekor.offline_dir.as_ref().filter(|_| safe) {
        let path = dir.join(format!("{uuid}.json"));
        if let Ok(bytes) = std::fs::read(&path) {
            return match parse_entry_response(&bytes) {
                Ok(entry) => Fetched::Entry(Box::new(entry)),
                Err(reason) => Fetched::Bad(format!("{}: {reason}", path.display())),
            };
        }
    }
    match &rekor.client {
        Some(client) => match client.entry(uuid).await {
            Ok(entry) => Fetched::Entry(Box::new(entry)),
            Err(err) if err.is_outage() => Fetched::Outage(err.to_string()),
            Err(err) if err.is_not_found() => Fetched::Missing(err.to_string()),
            Err(err) => Fetched::Bad(err.to_string()),
        },
        None => Fetched::Missing(format!("entry {uuid} is not in the offline folder")),
    }
}

pub fn sig_key(signature: &str) -> String {
    format!("sig:{signature}")
}

pub fn bundle_key(bundle_id: &str) -> String {
    format!("bundle:{bundle_id}")
}

pub fn rekor_key(uuid: &str) -> String {
    format!("rekor:{uuid}")
}

impl DigestChain {
    fn record_check(&mut self, key: String, check: Check) {
        self.checks.insert(key, check);
        self.changed = true;
    }

    fn found_in_rekor(&mut self, uuid: &str, now: DateTime<Utc>) {
        if self.rekor_uuids.insert(uuid) {
            self.changed = true;
        }
        self.stages.upsert(
            Stage::Rekor,
            || crate::chain::StageLog {
                first: now,
                last: now,
                count: 1,
                status: Some("found by search".into()),
                detail: None,
            },
            |_| {},
        );
    }

    /// Checks of the given kind (`sig:` or `rekor:`), with their subject.
    pub fn checks_of<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a Check)> {
        self.checks.iter().filter_map(move |(key, check)| {
            key.strip_prefix(prefix).map(|subject| (subject, check))
        })
    }
}
