//! Sigstore bundles (media types v0.1–v0.3): a message signature or a DSSE
//! envelope (in-toto statement), signed keyless (a Fulcio certificate
//! checked against an identity and issuer policy, with its SCT) or with a
//! managed key, and logged in Rekor v1 or v2 (inclusion proof, checkpoint,
//! signed entry timestamp) or timestamped by an RFC 3161 authority. Every
//! check runs against a trusted root, offline.
//!
//! The checks are sigstore-verify's (sigstore/sigstore-rust); this module
//! chooses the policy, bounds the input and turns every error, panic
//! included, into a failed [`Verdict`]. Why that crate and not the
//! `sigstore` crate's verifier: docs/adr/0003.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use sigstore_verify::trust_root::{TrustedRoot, SIGSTORE_PRODUCTION_TRUSTED_ROOT};
use sigstore_verify::types::{Bundle, DerPublicKey, Sha256Hash};
use sigstore_verify::{PublicKeyVerificationPolicy, VerificationPolicy, Verifier};

use crate::san;
use crate::Verdict;

/// Largest bundle or trusted root accepted. Real ones are a few kilobytes;
/// anything this big is an attack or a mistake, and fails.
pub const MAX_DOCUMENT: usize = 4 * 1024 * 1024;

/// The keys and certificates bundles are checked against: Fulcio CAs, Rekor
/// log keys, CT log keys, timestamp authorities, each with its validity.
pub struct TrustRoot {
    verifier: Verifier,
    origin: String,
}

impl std::fmt::Debug for TrustRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustRoot")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl TrustRoot {
    /// The Sigstore public-good instance's trusted root as shipped with
    /// the binary (sigstore-trust-root's embedded copy).
    pub fn public_good() -> Result<Self, String> {
        Self::from_json(
            SIGSTORE_PRODUCTION_TRUSTED_ROOT,
            "the embedded Sigstore public-good trusted root",
        )
    }

    /// A `trusted_root.json` (dev.sigstore.trustroot.v1.TrustedRoot).
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = read_bounded(path)?;
        Self::from_json(&text, &path.display().to_string())
    }

    /// A trusted root from its JSON text; `origin` names it in messages.
    pub fn from_json(json: &str, origin: &str) -> Result<Self, String> {
        if json.len() > MAX_DOCUMENT {
            return Err(format!("{origin}: larger than {MAX_DOCUMENT} bytes"));
        }
        let root = TrustedRoot::from_json(json)
            .map_err(|e| format!("{origin}: not a usable trusted root: {e}"))?;
        let verifier = Verifier::new(&root)
            .map_err(|e| format!("{origin}: not a usable trusted root: {e}"))?;
        Ok(TrustRoot {
            verifier,
            origin: origin.to_string(),
        })
    }

    /// Where this root came from (a path or "the embedded … root").
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

/// Who must have signed.
#[derive(Debug, Clone)]
pub enum Signer {
    /// Keyless: the certificate's subject alternative name must equal
    /// `identity` and its OIDC issuer extension must equal `issuer`.
    Identity { identity: String, issuer: String },
    /// A managed key: the bundle carries a key hint and no certificate.
    Key(DerPublicKey),
}

impl Signer {
    /// A managed-key signer from a `PUBLIC KEY` PEM block.
    pub fn key_from_pem(pem: &str) -> Result<Self, String> {
        if pem.len() > MAX_DOCUMENT {
            return Err("the public key file is too large".into());
        }
        DerPublicKey::from_pem(pem)
            .map(Signer::Key)
            .map_err(|e| format!("not a PEM public key: {e}"))
    }
}

/// What was signed: the artifact's bytes, or only its SHA-256 (for a DSSE
/// envelope, a subject of the in-toto statement).
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    Bytes(&'a [u8]),
    Sha256([u8; 32]),
}

/// Parses `sha256:<64 hex digits>`.
pub fn parse_sha256_digest(text: &str) -> Result<[u8; 32], String> {
    let hex_digits = text
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("`{text}` is not `sha256:<hex>`"))?;
    let bytes = hex::decode(hex_digits).map_err(|e| format!("`{text}`: {e}"))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("`{text}`: {} bytes, a SHA-256 has 32", b.len()))
}

/// What a verified bundle established.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BundleFacts {
    /// The certificate's identity (keyless only).
    pub identity: Option<String>,
    /// The certificate's OIDC issuer (keyless only).
    pub issuer: Option<String>,
    /// When the log integrated the entry (RFC 3339), if the bundle says.
    pub integrated_time: Option<String>,
}

/// Verifies `bundle_json` for `subject`, signed by `signer`, against `root`.
pub fn verify_bundle(
    bundle_json: &[u8],
    subject: Subject<'_>,
    signer: &Signer,
    root: &TrustRoot,
) -> Verdict {
    check_bundle(bundle_json, subject, signer, root)
        .map(|_| ())
        .into()
}

/// As [`verify_bundle`], returning what the bundle established.
pub fn check_bundle(
    bundle_json: &[u8],
    subject: Subject<'_>,
    signer: &Signer,
    root: &TrustRoot,
) -> Result<BundleFacts, String> {
    if bundle_json.len() > MAX_DOCUMENT {
        return Err(format!(
            "the bundle is larger than {MAX_DOCUMENT} bytes ({})",
            bundle_json.len()
        ));
    }
    let text = std::str::from_utf8(bundle_json).map_err(|e| format!("bundle: not UTF-8: {e}"))?;
    // A verifier that panics on hostile input must still give a verdict,
    // and that verdict is a failure.
    catch_unwind(AssertUnwindSafe(|| {
        check_parsed(text, subject, signer, root)
    }))
    .unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        Err(format!("the bundle verifier failed: {what}"))
    })
}

fn check_parsed(
    text: &str,
    subject: Subject<'_>,
    signer: &Signer,
    root: &TrustRoot,
) -> Result<BundleFacts, String> {
    let bundle = Bundle::from_json(text).map_err(|e| format!("not a Sigstore bundle: {e}"))?;
    refuse_duplicate_tlog_entries(&bundle)?;
    let artifact: sigstore_verify::types::Artifact<'_> = match subject {
        Subject::Bytes(bytes) => bytes.into(),
        Subject::Sha256(bytes) => Sha256Hash::new(bytes).into(),
    };
    // sigstore-verify reads only email and URI SANs; a certificate naming
    // its signer in Fulcio's username otherName is matched here instead.
    let mut other_name_identity = None;
    let result = match signer {
        Signer::Identity { identity, issuer } => {
            let policy = match username_identity(&bundle)? {
                Some(username) => {
                    if username != *identity {
                        return Err(format!(
                            "identity mismatch: expected {identity}, got {username} \
                             (the certificate's Fulcio username SAN)"
                        ));
                    }
                    other_name_identity = Some(username);
                    VerificationPolicy::any_identity().require_issuer(issuer.as_str())
                }
                None => VerificationPolicy::new(identity.as_str(), issuer.as_str()),
            };
            root.verifier.verify(artifact, &bundle, &policy)
        }
        Signer::Key(key) => root.verifier.verify(
            artifact,
            &bundle,
            &PublicKeyVerificationPolicy::new(key.clone()),
        ),
    }
    .map_err(|e| e.to_string())?;
    Ok(BundleFacts {
        identity: other_name_identity
            .or_else(|| result.identity().map(|san| san.as_str().to_string())),
        issuer: result.issuer().map(str::to_string),
        integrated_time: result.integrated_time().map(|t| t.to_string()),
    })
}

/// Fails when the bundle lists one transparency-log entry more than once
/// (the same log and index, or the same entry body): a bundle is one
/// signature logged once, and the Go, JavaScript and Python Sigstore
/// clients refuse such bundles too.
fn refuse_duplicate_tlog_entries(bundle: &Bundle) -> Result<(), String> {
    let mut positions = HashSet::new();
    let mut bodies = HashSet::new();
    for (n, entry) in bundle.verification_material.tlog_entries.iter().enumerate() {
        let log_id = entry.log_id.key_id.as_bytes();
        let index = entry.log_index.get();
        if !positions.insert((log_id, index)) {
            return Err(format!(
                "the bundle lists the same transparency-log entry twice \
                 (entry {} repeats log {} index {index})",
                n + 1,
                hex::encode(log_id)
            ));
        }
        if !bodies.insert(entry.canonicalized_body.as_bytes()) {
            return Err(format!(
                "the bundle lists the same transparency-log entry twice \
                 (entry {} repeats an earlier entry's body, at log {} index {index})",
                n + 1,
                hex::encode(log_id)
            ));
        }
    }
    Ok(())
}

/// The signing certificate's Fulcio username identity (the otherName SAN
/// `1.3.6.1.4.1.57264.1.7`, a UTF8String), when the certificate has no
/// email or URI SAN — the SANs sigstore-verify matches itself. A malformed
/// username SAN fails.
fn username_identity(bundle: &Bundle) -> Result<Option<String>, String> {
    let Some(cert) = bundle.signing_certificate() else {
        return Ok(None);
    };
    let names = san::subject_alt_names(cert.as_bytes())?;
    if names
        .iter()
        .any(|name| matches!(name, san::Name::Email(_) | san::Name::Uri(_)))
    {
        return Ok(None);
    }
    Ok(names.into_iter().find_map(|name| match name {
        san::Name::Username(username) => Some(username),
        _ => None,
    }))
}

fn read_bounded(path: &Path) -> Result<String, String> {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if len > MAX_DOCUMENT as u64 {
        return Err(format!(
            "{}: larger than {MAX_DOCUMENT} bytes",
            path.display()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_parse_only_in_the_sha256_prefixed_form() {
        let hex = "ab".repeat(32);
        assert_eq!(
            parse_sha256_digest(&format!("sha256:{hex}")),
            Ok([0xab; 32])
        );
        assert!(parse_sha256_digest(&hex).is_err());
        assert!(parse_sha256_digest("sha256:abcd")
            .unwrap_err()
            .contains("2 bytes"));
        assert!(parse_sha256_digest(&format!("sha512:{hex}")).is_err());
        assert!(parse_sha256_digest("sha256:zz").is_err());
    }

    #[test]
    fn garbage_and_oversized_bundles_fail_with_a_reason() {
        let root = TrustRoot::public_good().unwrap();
        let signer = Signer::Identity {
            identity: "someone@example.com".into(),
            issuer: "https://accounts.example.com".into(),
        };
        let subject = Subject::Bytes(b"artifact");
        for (input, expected) in [
            (&b"{"[..], "not a Sigstore bundle"),
            (&b"\xff\xfe"[..], "not UTF-8"),
            (&b"{}"[..], "not a Sigstore bundle"),
        ] {
            let verdict = verify_bundle(input, subject, &signer, &root);
            assert!(
                verdict.reason().is_some_and(|r| r.contains(expected)),
                "{verdict:?}"
            );
        }
        let huge = vec![b' '; MAX_DOCUMENT + 1];
        let verdict = verify_bundle(&huge, subject, &signer, &root);
        assert!(verdict.reason().unwrap().contains("larger than"));
    }

    #[test]
    fn a_trusted_root_that_is_not_one_is_refused_naming_its_origin() {
        let error = TrustRoot::from_json("{\"mediaType\": 3}", "roots/bad.json").unwrap_err();
        assert!(
            error.starts_with("roots/bad.json: not a usable trusted root"),
            "{error}"
        );
        assert!(Signer::key_from_pem("not a key").is_err());
    }
}
