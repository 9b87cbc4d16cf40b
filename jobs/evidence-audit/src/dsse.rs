//! DSSE envelopes (the in-toto attestation envelope) checked with public
//! keys: a signature is over PAE(payloadType, payload) —
//! `"DSSEv1" SP len(type) SP type SP len(body) SP body` — never over the
//! payload alone, so a payload cannot be re-labelled as another type.

use base64::Engine as _;
use patrol_provmon_verify::fixtures::SigningKey;
use patrol_provmon_verify::key::PublicKey;
use serde::Deserialize;
use serde_json::Value;

/// The in-toto Statement's payload type.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";

#[derive(Debug, Clone, Deserialize)]
pub struct Envelope {
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub payload: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EnvelopeSignature {
    #[serde(default)]
    pub keyid: String,
    pub sig: String,
}

/// The pre-authentication encoding DSSE signs.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// An envelope of `statement` signed with `key` (the signature over the
/// PAE of the canonical payload bytes serde_json writes), pretty-printed.
pub fn sign(key: &SigningKey, statement: &Value) -> Vec<u8> {
    let payload = serde_json::to_vec(statement).unwrap_or_default();
    let sig = key.sign(&pae(IN_TOTO, &payload));
    let engine = base64::engine::general_purpose::STANDARD;
    let envelope = serde_json::json!({
        "payloadType": IN_TOTO,
        "payload": engine.encode(&payload),
        "signatures": [{"keyid": key_id(key), "sig": engine.encode(sig)}],
    });
    let mut bytes = serde_json::to_vec_pretty(&envelope).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// The key's id: SHA-256 of its SubjectPublicKeyInfo, hex.
pub fn key_id(key: &SigningKey) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(key.public_key().spki_der()))
}

/// A subject of an in-toto Statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub name: String,
    pub sha256: String,
}

/// What a verified envelope holds.
#[derive(Debug, Clone)]
pub struct Verified {
    pub statement: Value,
    pub subjects: Vec<Subject>,
    pub predicate_type: String,
}

fn b64(field: &str, text: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(text.trim()))
        .map_err(|err| format!("{field}: not base64: {err}"))
}

/// Verifies an envelope's bytes: some signature verifies with one of
/// `keys`, the payload is an in-toto Statement (v0.1 or v1) with at least
/// one subject carrying a sha256 digest. Fails closed: anything else is an
/// error saying why.
pub fn verify(bytes: &[u8], keys: &[PublicKey]) -> Result<Verified, String> {
    let envelope: Envelope =
        serde_json::from_slice(bytes).map_err(|err| format!("not a DSSE envelope: {err}"))?;
    if envelope.payload_type != IN_TOTO {
        return Err(format!(
            "payloadType `{}` is not {IN_TOTO}",
            envelope.payload_type
        ));
    }
    if keys.is_empty() {
        return Err("no key to verify with".into());
    }
    let payload = b64("payload", &envelope.payload)?;
    let message = pae(&envelope.payload_type, &payload);
    let mut unreadable = 0;
    let signed = envelope.signatures.iter().any(|signature| {
        let Ok(sig) = b64("sig", &signature.sig) else {
            unreadable += 1;
            return false;
        };
        keys.iter().any(|key| key.verify(&message, &sig).is_ok())
    });
    if !signed {
        return Err(match (envelope.signatures.len(), unreadable) {
            (0, _) => "the envelope has no signature".into(),
            (n, 0) => format!("none of its {n} signature(s) verifies with the configured keys"),
            (n, bad) => format!(
                "none of its {n} signature(s) verifies with the configured keys ({bad} not base64)"
            ),
        });
    }
    let statement: Value = serde_json::from_slice(&payload)
        .map_err(|err| format!("the payload is not JSON: {err}"))?;
    let kind = statement.get("_type").and_then(Value::as_str).unwrap_or("");
    if !matches!(
        kind,
        "https://in-toto.io/Statement/v1" | "https://in-toto.io/Statement/v0.1"
    ) {
        return Err(format!(
            "the payload is not an in-toto Statement (_type `{kind}`)"
        ));
    }
    let subjects: Vec<Subject> = statement
        .get("subject")
        .and_then(Value::as_array)
        .map(|subjects| {
            subjects
                .iter()
                .filter_map(|s| {
                    Some(Subject {
                        name: s.get("name")?.as_str()?.to_string(),
                        sha256: s.get("digest")?.get("sha256")?.as_str()?.to_lowercase(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    if subjects.is_empty() {
        return Err("the Statement names no subject with a sha256 digest".into());
    }
    let predicate_type = statement
        .get("predicateType")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Ok(Verified {
        statement,
        subjects,
        predicate_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_is_the_dsse_encoding() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn a_signed_statement_verifies_and_any_change_fails() {
        let key = SigningKey::p256_from_seed(b"dsse-test");
        let statement = serde_json::json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "app.tar.gz", "digest": {"sha256": "ab".repeat(32)}}],
            "predicateType": "https://slsa.dev/provenance/v1",
            "predicate": {},
        });
        let bytes = sign(&key, &statement);
        let verified = verify(&bytes, &[key.public_key()]).unwrap();
        assert_eq!(verified.subjects[0].name, "app.tar.gz");
        let other = SigningKey::p256_from_seed(b"someone else");
        assert!(verify(&bytes, &[other.public_key()])
            .unwrap_err()
            .contains("none of its 1 signature(s) verifies"));
        // Another subject under the same signature: refused.
        let mut changed: Value = serde_json::from_slice(&bytes).unwrap();
        let mut forged = statement.clone();
        forged["subject"][0]["digest"]["sha256"] = "cd".repeat(32).into();
        changed["payload"] = base64::engine::general_purpose::STANDARD
            .encode(serde_json::to_vec(&forged).unwrap())
            .into();
        assert!(
            verify(&serde_json::to_vec(&changed).unwrap(), &[key.public_key()])
                .unwrap_err()
                .contains("verifies")
        );
    }
}
