//! `hashedrekord` v0.0.1 entry bodies: an artifact's SHA-256 digest, the
//! signature over it and the signer's public key.

use serde::{Deserialize, Serialize};

use crate::encoding::{base64_decode, base64_encode, hash_from_hex, sha256_digest};
use crate::key::PublicKey;
use crate::rekor::merkle::Hash;
use crate::Verdict;

/// A decoded hashedrekord body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashedRekord {
    pub sha256: Hash,
    /// The raw signature (DER ECDSA for the keys cosign makes).
    pub signature: Vec<u8>,
    /// The signer's public key (PEM) as logged.
    pub public_key_pem: String,
}

// Field order is the canonical (RFC 8785) order: keys sorted.
#[derive(Serialize, Deserialize)]
struct Wire {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    spec: WireSpec,
}

#[derive(Serialize, Deserialize)]
struct WireSpec {
    data: WireData,
    signature: WireSignature,
}

#[derive(Serialize, Deserialize)]
struct WireData {
    hash: WireHash,
}

#[derive(Serialize, Deserialize)]
struct WireHash {
    algorithm: String,
    value: String,
}

#[derive(Serialize, Deserialize)]
struct WireSignature {
    content: String,
    #[serde(rename = "publicKey")]
    public_key: WireContent,
}

#[derive(Serialize, Deserialize)]
struct WireContent {
    content: String,
}

impl HashedRekord {
    /// Decodes the bytes of an entry body (already base64-decoded).
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let wire: Wire = serde_json::from_slice(body)
            .map_err(|error| format!("the entry body is not a hashedrekord: {error}"))?;
        if wire.kind != "hashedrekord" {
            return Err(format!(
                "the entry is of kind {:?}, not hashedrekord",
                wire.kind
            ));
        }
        if wire.api_version != "0.0.1" {
            return Err(format!(
                "hashedrekord apiVersion {:?} is not 0.0.1",
                wire.api_version
            ));
        }
        let hash = &wire.spec.data.hash;
        if hash.algorithm != "sha256" {
            return Err(format!(
                "the entry's digest algorithm is {:?}, not sha256",
                hash.algorithm
            ));
        }
        let sha256 = hash_from_hex("the entry's digest", &hash.value)?;
        let signature = base64_decode("the entry's signature", &wire.spec.signature.content)?;
        let pem = base64_decode(
            "the entry's public key",
            &wire.spec.signature.public_key.content,
        )?;
        let public_key_pem = String::from_utf8(pem)
            .map_err(|_| "the entry's public key is not UTF-8 PEM".to_string())?;
        Ok(HashedRekord {
            sha256,
            signature,
            public_key_pem,
        })
    }

    /// The canonical JSON body Rekor stores for this entry.
    pub fn to_canonical_json(&self) -> Vec<u8> {
        let wire = Wire {
            api_version: "0.0.1".into(),
            kind: "hashedrekord".into(),
            spec: WireSpec {
                data: WireData {
                    hash: WireHash {
                        algorithm: "sha256".into(),
                        value: hex::encode(self.sha256),
                    },
                },
                signature: WireSignature {
                    content: base64_encode(&self.signature),
                    public_key: WireContent {
                        content: base64_encode(self.public_key_pem.as_bytes()),
                    },
                },
            },
        };
        serde_json::to_vec(&wire).expect("serializing plain structs cannot fail")
    }
}

/// What a log entry must say about an artifact.
#[derive(Debug, Clone)]
pub struct ExpectedArtifact {
    /// `sha256:<hex>` or `<hex>`.
    pub sha256: String,
    /// When set, the logged signature must be exactly this one (base64).
    pub signature_b64: Option<String>,
    /// When set, the logged public key must be this key and the logged
    /// signature must verify with it over the digest.
    pub signer: Option<PublicKey>,
}

impl ExpectedArtifact {
    /// Only the digest is checked.
    pub fn digest(sha256: impl Into<String>) -> Self {
        ExpectedArtifact {
            sha256: sha256.into(),
            signature_b64: None,
            signer: None,
        }
    }
}

/// Checks that a base64 entry body is a hashedrekord for the expected
/// artifact.
pub fn verify_body(body_b64: &str, expected: &ExpectedArtifact) -> Verdict {
    Verdict::from(check_body(body_b64, expected)).context("entry body")
}

fn check_body(body_b64: &str, expected: &ExpectedArtifact) -> Result<(), String> {
    let want = sha256_digest("the expected digest", &expected.sha256)?;
    let body = base64_decode("the entry body", body_b64)?;
    let record = HashedRekord::parse(&body)?;
    if record.sha256 != want {
        return Err(format!(
            "the entry is for sha256:{}, not sha256:{}",
            hex::encode(record.sha256),
            hex::encode(want)
        ));
    }
    if let Some(signature_b64) = &expected.signature_b64 {
        let signature = base64_decode("the expected signature", signature_b64)?;
        if signature != record.signature {
            return Err("the entry records another signature".into());
        }
    }
    if let Some(signer) = &expected.signer {
        if !signer.same_as_pem(&record.public_key_pem) {
            return Err("the entry records another public key".into());
        }
        signer
            .verify_sha256_digest(&record.sha256, &record.signature)
            .map_err(|error| format!("the entry's signature: {error}"))?;
    }
    Ok(())
}
