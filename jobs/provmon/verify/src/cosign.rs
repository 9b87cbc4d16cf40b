//! cosign signatures checked with a configured public key, offline.
//!
//! cosign writes signatures as base64 of an ASN.1 DER ECDSA signature
//! (P-256, SHA-256) or of a raw Ed25519 signature: in the
//! `dev.cosignproject.cosign/signature` annotation of an image signature
//! (over the simple-signing payload) and in `cosign sign-blob` output (over
//! the blob, so checkable from the blob's SHA-256 digest alone for ECDSA).

use crate::encoding::{base64_decode, sha256_digest};
use crate::key::PublicKey;
use crate::Verdict;

/// Checks a base64 `signature` over `payload` with the key in
/// `public_key_pem`.
pub fn verify_signature(public_key_pem: &str, payload: &[u8], signature_b64: &str) -> Verdict {
    match PublicKey::from_pem(public_key_pem) {
        Ok(key) => verify_with_key(&key, payload, signature_b64),
        Err(error) => Verdict::failed(format!("the configured public key is unusable: {error}")),
    }
}

/// Checks a base64 `signature` over `payload` with `key`.
pub fn verify_with_key(key: &PublicKey, payload: &[u8], signature_b64: &str) -> Verdict {
    let result = base64_decode("the signature", signature_b64)
        .and_then(|signature| key.verify(payload, &signature));
    Verdict::from(result).context("cosign signature")
}

/// Checks a base64 ECDSA `signature` made over a blob, knowing only the
/// blob's SHA-256 (`sha256:<hex>` or `<hex>`), as `cosign verify-blob`
/// does for a hashedrekord.
pub fn verify_blob_digest(key: &PublicKey, sha256: &str, signature_b64: &str) -> Verdict {
    let result = sha256_digest("the artifact digest", sha256).and_then(|digest| {
        let signature = base64_decode("the signature", signature_b64)?;
        key.verify_sha256_digest(&digest, &signature)
    });
    Verdict::from(result).context("cosign blob signature")
}

/// Decodes a signature file's text as cosign writes it (base64 of ASN.1
/// DER for ECDSA, of 64 raw bytes for Ed25519) and checks its shape for
/// `key`'s type, so a damaged signature is told apart from one that is
/// well formed but does not verify.
pub fn decode_signature(key: &PublicKey, text: &str) -> Result<Vec<u8>, String> {
    let bytes = base64_decode("the signature", text)?;
    match key.kind() {
        crate::key::KeyKind::EcdsaP256 => p256::ecdsa::Signature::from_der(&bytes)
            .map(|_| bytes)
            .map_err(|error| format!("the signature is not ASN.1 DER ECDSA: {error}")),
        crate::key::KeyKind::Ed25519 if bytes.len() == 64 => Ok(bytes),
        crate::key::KeyKind::Ed25519 => Err(format!(
            "the signature holds {} bytes; an Ed25519 signature has 64",
            bytes.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::encoding::base64_encode;
    use crate::fixtures::SigningKey;

    const PAYLOAD: &[u8] = br#"{"critical":{"identity":{"docker-reference":"ghcr.io/acme/app"},"image":{"docker-manifest-digest":"sha256:0123"},"type":"cosign container image signature"},"optional":null}"#;

    fn keys() -> Vec<SigningKey> {
        vec![
            SigningKey::p256_from_seed(b"cosign-test"),
            SigningKey::ed25519_from_seed(b"cosign-test"),
        ]
    }

    #[test]
    fn accepts_a_real_signature_from_each_key_type() {
        for signer in keys() {
            let signature = base64_encode(&signer.sign(PAYLOAD));
            let verdict = verify_signature(&signer.public_key_pem(), PAYLOAD, &signature);
            assert_eq!(verdict, Verdict::Verified, "{:?}", signer.kind());
        }
    }

    #[test]
    fn rejects_another_payload_key_or_garbage() {
        for signer in keys() {
            let pem = signer.public_key_pem();
            let signature = base64_encode(&signer.sign(PAYLOAD));
            let other = SigningKey::p256_from_seed(b"someone else").public_key_pem();
            assert!(!verify_signature(&pem, b"other payload", &signature).is_verified());
            assert!(!verify_signature(&other, PAYLOAD, &signature).is_verified());
            assert!(!verify_signature(&pem, PAYLOAD, "").is_verified());
            assert!(!verify_signature(&pem, PAYLOAD, "not base64!").is_verified());
            assert!(
                !verify_signature(&pem, PAYLOAD, &signature[..signature.len() / 2]).is_verified()
            );
            let verdict = verify_signature(
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
                PAYLOAD,
                &signature,
            );
            assert!(
                verdict.reason().is_some_and(|r| r.contains("public key")),
                "{verdict}"
            );
        }
    }

    #[test]
    fn blob_digest_signature() {
        let signer = SigningKey::p256_from_seed(b"blob");
        let key = signer.public_key();
        let digest: [u8; 32] = Sha256::digest(b"release.tar.gz contents").into();
        let signature = base64_encode(&signer.sign_sha256_digest(&digest).expect("ECDSA"));
        let hex = hex::encode(digest);
        assert!(verify_blob_digest(&key, &hex, &signature).is_verified());
        assert!(verify_blob_digest(&key, &format!("sha256:{hex}"), &signature).is_verified());
        let other = hex::encode(Sha256::digest(b"other"));
        let verdict = verify_blob_digest(&key, &other, &signature);
        assert!(
            verdict
                .reason()
                .is_some_and(|r| r.contains("does not verify")),
            "{verdict}"
        );
        assert!(!verify_blob_digest(&key, "sha256:zz", &signature).is_verified());
        let ed = SigningKey::ed25519_from_seed(b"blob").public_key();
        assert!(!verify_blob_digest(&ed, &hex, &signature).is_verified());
    }
}
