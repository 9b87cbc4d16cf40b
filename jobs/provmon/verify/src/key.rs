//! Public keys from PEM, and the identifiers Rekor derives from them.

use sha2::{Digest, Sha256};
use sigstore::crypto::{CosignVerificationKey, Signature};

use crate::encoding::base64_decode;

/// Largest PEM text accepted (real keys are a few hundred bytes).
const MAX_PEM: usize = 64 * 1024;

/// The signature algorithms accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA on P-256 with SHA-256, ASN.1 DER signatures (cosign's default
    /// and Rekor's key type).
    EcdsaP256,
    Ed25519,
}

/// Why a PEM text is not a usable public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("no `-----BEGIN PUBLIC KEY-----` block")]
    NoPublicKeyBlock,
    #[error("the PEM body is not base64: {0}")]
    Base64(String),
    #[error("not a SubjectPublicKeyInfo: {0}")]
    Spki(String),
    #[error("unsupported key type {0} (accepted: ECDSA P-256, Ed25519)")]
    Unsupported(String),
    #[error("the PEM text is too long ({0} bytes)")]
    TooLong(usize),
}

/// A public key that verifies signatures (cosign signing keys, the Rekor
/// log key). Verification goes through sigstore's `CosignVerificationKey`.
#[derive(Debug, Clone)]
pub struct PublicKey {
    kind: KeyKind,
    spki_der: Vec<u8>,
    verifier: CosignVerificationKey,
}

impl PublicKey {
    /// Parses a `PUBLIC KEY` PEM block (SubjectPublicKeyInfo); text around
    /// the block is ignored.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        if pem.len() > MAX_PEM {
            return Err(KeyError::TooLong(pem.len()));
        }
        const BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
        const END: &str = "-----END PUBLIC KEY-----";
        let start = pem.find(BEGIN).ok_or(KeyError::NoPublicKeyBlock)? + BEGIN.len();
        let len = pem[start..].find(END).ok_or(KeyError::NoPublicKeyBlock)?;
        let body: String = pem[start..start + len]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let der = base64_decode("the PEM body", &body).map_err(KeyError::Base64)?;
        Self::from_der(&der)
    }

    /// Parses a DER SubjectPublicKeyInfo.
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        let verifier = CosignVerificationKey::try_from_der(der)
            .map_err(|error| KeyError::Spki(error.to_string()))?;
        let kind = match &verifier {
            CosignVerificationKey::ECDSA_P256_SHA256_ASN1(_) => KeyKind::EcdsaP256,
            CosignVerificationKey::ED25519(_) => KeyKind::Ed25519,
            CosignVerificationKey::RSA_PSS_SHA256(_)
            | CosignVerificationKey::RSA_PKCS1_SHA256(_) => {
                return Err(KeyError::Unsupported("RSA".into()))
            }
            CosignVerificationKey::ECDSA_P384_SHA384_ASN1(_) => {
                return Err(KeyError::Unsupported("ECDSA P-384".into()))
            }
            CosignVerificationKey::ECDSA_P521_SHA512_ASN1(_) => {
                return Err(KeyError::Unsupported("ECDSA P-521".into()))
            }
        };
        Ok(PublicKey {
            kind,
            spki_der: der.to_vec(),
            verifier,
        })
    }

    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// Hex SHA-256 of the DER key: Rekor's `logID` for its own key.
    pub fn log_id(&self) -> String {
        hex::encode(Sha256::digest(&self.spki_der))
    }

    /// First four bytes of SHA-256 of the DER key: the key hint Rekor puts
    /// before each checkpoint signature.
    pub fn key_hint(&self) -> [u8; 4] {
        let digest = Sha256::digest(&self.spki_der);
        [digest[0], digest[1], digest[2], digest[3]]
    }

    /// Whether `pem` is this same key (compared as DER, so line breaks and
    /// surrounding text do not matter).
    pub fn same_as_pem(&self, pem: &str) -> bool {
        PublicKey::from_pem(pem).is_ok_and(|other| other.spki_der == self.spki_der)
    }

    /// Checks `signature` (DER for ECDSA, 64 raw bytes for Ed25519) over
    /// `message`; ECDSA hashes the message with SHA-256.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), String> {
        if signature.is_empty() {
            return Err("the signature is empty".into());
        }
        self.verifier
            .verify_signature(Signature::Raw(signature), message)
            .map_err(|error| format!("the signature does not verify: {error}"))
    }

    /// Checks an ECDSA `signature` over a SHA-256 `digest` (what a
    /// hashedrekord entry and `cosign sign-blob` record). Ed25519 signs the
    /// message itself, so a digest alone cannot be checked.
    pub fn verify_sha256_digest(&self, digest: &[u8; 32], signature: &[u8]) -> Result<(), String> {
        use p256::ecdsa::signature::hazmat::PrehashVerifier;
        use p256::pkcs8::DecodePublicKey;
        match self.kind {
            KeyKind::Ed25519 => {
                Err("an Ed25519 signature cannot be checked against a digest alone".into())
            }
            KeyKind::EcdsaP256 => {
                let key = p256::ecdsa::VerifyingKey::from_public_key_der(&self.spki_der)
                    .map_err(|error| format!("the P-256 key does not parse: {error}"))?;
                let signature = p256::ecdsa::Signature::from_der(signature)
                    .map_err(|error| format!("the signature is not ASN.1 DER ECDSA: {error}"))?;
                key.verify_prehash(digest, &signature)
                    .map_err(|_| "the signature does not verify over the digest".to_string())
            }
        }
    }
}
