//! Private keys read from PEM, for signing evidence manifests with a key
//! the operator configures (the fixtures make theirs from seeds instead).

use crate::fixtures::SigningKey;

/// Largest PEM text accepted (real keys are a few hundred bytes).
const MAX_PEM: usize = 64 * 1024;

impl SigningKey {
    /// Reads an unencrypted PKCS#8 `PRIVATE KEY` block (ECDSA P-256 or
    /// Ed25519, as `openssl genpkey` writes them) or a SEC1 `EC PRIVATE KEY`
    /// block (P-256). Encrypted keys are refused: patrol runs unattended,
    /// so the key file itself is the secret to protect.
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        if pem.len() > MAX_PEM {
            return Err(format!("the PEM text is too long ({} bytes)", pem.len()));
        }
        if pem.contains("ENCRYPTED") {
            return Err("encrypted private keys are not supported; give an unencrypted PKCS#8 key readable only by patrol".into());
        }
        if pem.contains("-----BEGIN EC PRIVATE KEY-----") {
            use p256::elliptic_curve::SecretKey;
            let key = SecretKey::<p256::NistP256>::from_sec1_pem(pem)
                .map_err(|err| format!("not a P-256 EC private key: {err}"))?;
            return Ok(SigningKey::EcdsaP256(key.into()));
        }
        if !pem.contains("-----BEGIN PRIVATE KEY-----") {
            return Err("no `-----BEGIN PRIVATE KEY-----` block".into());
        }
        {
            use p256::pkcs8::DecodePrivateKey;
            if let Ok(key) = p256::ecdsa::SigningKey::from_pkcs8_pem(pem) {
                return Ok(SigningKey::EcdsaP256(key));
            }
        }
        {
            use ed25519_dalek::pkcs8::DecodePrivateKey;
            if let Ok(key) = ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
                return Ok(SigningKey::Ed25519(key));
            }
        }
        Err("unsupported private key (accepted: ECDSA P-256, Ed25519 in PKCS#8)".into())
    }

    /// The key as an unencrypted PKCS#8 PEM block.
    pub fn to_pkcs8_pem(&self) -> String {
        use p256::pkcs8::LineEnding;
        let pem = match self {
            SigningKey::EcdsaP256(key) => {
                p256::pkcs8::EncodePrivateKey::to_pkcs8_pem(key, LineEnding::LF)
            }
            SigningKey::Ed25519(key) => {
                ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_pem(key, LineEnding::LF)
            }
        };
        pem.expect("encoding a valid private key as PEM cannot fail")
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkcs8_round_trips_and_signs_like_the_original() {
        for key in [
            SigningKey::p256_from_seed(b"evidence"),
            SigningKey::ed25519_from_seed(b"evidence"),
        ] {
            let again = SigningKey::from_pem(&key.to_pkcs8_pem()).unwrap();
            assert_eq!(again.public_key_pem(), key.public_key_pem());
            let signature = again.sign(b"manifest");
            assert!(key.public_key().verify(b"manifest", &signature).is_ok());
        }
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        assert!(SigningKey::from_pem("hello").is_err());
        let public = SigningKey::p256_from_seed(b"x").public_key_pem();
        assert!(SigningKey::from_pem(&public).is_err());
        let encrypted =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(SigningKey::from_pem(encrypted)
            .unwrap_err()
            .contains("encrypted"));
    }
}
