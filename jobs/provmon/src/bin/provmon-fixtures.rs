//! Deterministic provmon fixtures: turns scenario templates into events
//! with real cosign signatures, a real Rekor log (entries with signed entry
//! timestamps, inclusion proofs and a signed checkpoint) and the public
//! keys — same bytes on every run (keys from fixed seeds; the cosign and
//! Rekor private keys are never written). The one private key written is
//! the demo evidence signing key, `keys/evidence.key`: the shipped schedule
//! signs its evidence packs with it. It signs nothing else; a deployment
//! configures its own.
//!
//! `cargo run -p patrol-job-provmon --bin provmon-fixtures -- TEMPLATES OUT`
//!
//! Writes `OUT/events/<template names>`, `OUT/rekor/<uuid>.json` (the
//! answer of `GET /api/v1/log/entries/<uuid>`), `OUT/keys/{cosign,rekor,evidence}.pub`,
//! `OUT/keys/evidence.key` and `OUT/keys/trusted_root.json` (a Sigstore
//! trusted root whose transparency log is the fixture log).
//! A template event may say `"x_fixture"`: `tampered` (its signature is
//! over another artifact), `wrong-body` (its logged entry is for another
//! digest), `forged-proof` (one hash of its inclusion proof flipped), or on
//! a `sign` event `sigstore-bundle` (the signature is logged and the event
//! carries the Sigstore bundle — key hint, tlog entry with SET, inclusion
//! proof and checkpoint — instead of a bare signature).
//! Lines that are not JSON objects are copied as they are.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use base64::Engine;
use patrol_provmon_verify::fixtures::{sigstore_bundle, trusted_root, FakeLog, SigningKey};
use patrol_provmon_verify::rekor::HashedRekord;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Errors are messages for the person running the generator.
type Result<T> = std::result::Result<T, String>;

fn fail<T>(message: impl Into<String>) -> Result<T> {
    Err(message.into())
}

const COSIGN_SEED: &[u8] = b"patrol-provmon-fixtures/cosign";
const REKOR_SEED: &[u8] = b"patrol-provmon-fixtures/rekor";
const EVIDENCE_SEED: &[u8] = b"patrol-provmon-fixtures/evidence";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [templates, out] = &args[..] else {
        eprintln!("usage: provmon-fixtures TEMPLATES_DIR OUT_DIR");
        return ExitCode::from(2);
    };
    match generate(Path::new(templates), Path::new(out)) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("provmon-fixtures: {err}");
            ExitCode::FAILURE
        }
    }
}

fn sha256_of(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

fn parse_digest(digest: &str) -> Result<[u8; 32]> {
    let hex_part = digest.strip_prefix("sha256:").unwrap_or(digest);
    let bytes = hex::decode(hex_part).map_err(|err| format!("digest {digest}: {err}"))?;
    bytes
        .try_into()
        .map_err(|_| format!("digest {digest} is not 32 bytes"))
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn generate(templates: &Path, out: &Path) -> Result<String> {
    let cosign = SigningKey::p256_from_seed(COSIGN_SEED);
    let mut log = FakeLog::new(REKOR_SEED);
    let mut names: Vec<_> = std::fs::read_dir(templates)
        .map_err(|err| format!("{}: {err}", templates.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.file_name()))
        .filter(|name| name.to_string_lossy().ends_with(".ndjson"))
        .collect();
    names.sort();
    let mut signatures: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut forged = Vec::new();
    let mut outputs = Vec::new();
    for name in names {
        let text = std::fs::read_to_string(templates.join(&name)).map_err(|err| err.to_string())?;
        let mut lines = Vec::new();
        for line in text.lines() {
            let Ok(Value::Object(mut event)) = serde_json::from_str::<Value>(line) else {
                lines.push(line.to_string());
                continue;
            };
            let fixture = event
                .remove("x_fixture")
                .and_then(|v| v.as_str().map(str::to_string));
            let kind = event
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let digest = event
                .get("bundle_digest")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            match kind.as_str() {
                "sign" => {
                    let signed = match fixture.as_deref() {
                        Some("tampered") => sha256_of(&format!("tampered:{digest}")),
                        _ => parse_digest(&digest)?,
                    };
                    let signature = cosign
                        .sign_sha256_digest(&signed)
                        .ok_or("the cosign fixture key cannot sign digests")?;
                    if fixture.as_deref() == Some("sigstore-bundle") {
                        let bundle = bundle_for(&mut log, &cosign, &event, &signed, &signature)?;
                        event.insert("sigstore_bundle".into(), bundle);
                    } else {
                        event.insert("signature".into(), Value::String(b64(&signature)));
                    }
                    signatures.insert(digest.clone(), signature);
                }
                "rekor" => {
                    let uuid = log_entry(
                        &mut log,
                        &cosign,
                        &mut event,
                        &digest,
                        fixture.as_deref(),
                        &signatures,
                    )?;
                    if fixture.as_deref() == Some("forged-proof") {
                        forged.push(uuid.clone());
                    }
                    event.insert("rekor_uuid".into(), Value::String(uuid));
                }
                _ => {}
            }
            lines
                .push(serde_json::to_string(&Value::Object(event)).map_err(|err| err.to_string())?);
        }
        outputs.push((name, lines.join("\n") + "\n"));
    }

    for folder in ["events", "rekor", "keys"] {
        let dir = out.join(folder);
        if dir.exists() && folder != "keys" {
            std::fs::remove_dir_all(&dir).map_err(|err| err.to_string())?;
        }
        std::fs::create_dir_all(&dir).map_err(|err| err.to_string())?;
    }
    for (name, text) in &outputs {
        write(&out.join("events").join(name), text.as_bytes())?;
    }
    write(
        &out.join("keys/cosign.pub"),
        cosign.public_key_pem().as_bytes(),
    )?;
    write(&out.join("keys/rekor.pub"), log.public_key_pem().as_bytes())?;
    let evidence = SigningKey::p256_from_seed(EVIDENCE_SEED);
    write(
        &out.join("keys/evidence.pub"),
        evidence.public_key_pem().as_bytes(),
    )?;
    write(
        &out.join("keys/evidence.key"),
        evidence.to_pkcs8_pem().as_bytes(),
    )?;
    let root = trusted_root(&log, "https://rekor.local");
    let root = serde_json::to_string_pretty(&root).map_err(|err| err.to_string())? + "\n";
    write(&out.join("keys/trusted_root.json"), root.as_bytes())?;
    let size = log.len();
    for index in 0..size {
        let Some((uuid, mut entry)) = log.entry_at_size(index, size) else {
            return fail(format!("entry {index} missing from the log"));
        };
        if forged.contains(&uuid) {
            flip_first_proof_hash(&mut entry)?;
        }
        let mut answer = Map::new();
        answer.insert(
            uuid.clone(),
            serde_json::to_value(&entry).map_err(|err| err.to_string())?,
        );
        let text = serde_json::to_string_pretty(&Value::Object(answer))
            .map_err(|err| err.to_string())?
            + "\n";
        write(
            &out.join("rekor").join(format!("{uuid}.json")),
            text.as_bytes(),
        )?;
    }
    Ok(format!(
        "{} event files, {size} Rekor entries ({} forged), keys in {}",
        outputs.len(),
        forged.len(),
        out.join("keys").display()
    ))
}

fn event_time(event: &Map<String, Value>) -> i64 {
    event
        .get("ts")
        .and_then(Value::as_str)
        .and_then(|ts| chrono::DateTime::parse_from_rfc3339(ts).ok())
        .map_or(0, |ts| ts.timestamp())
}

/// Logs `signature` over `digest` and returns the Sigstore bundle for it.
fn bundle_for(
    log: &mut FakeLog,
    cosign: &SigningKey,
    event: &Map<String, Value>,
    digest: &[u8; 32],
    signature: &[u8],
) -> Result<Value> {
    let body = HashedRekord {
        sha256: *digest,
        signature: signature.to_vec(),
        public_key_pem: cosign.public_key_pem(),
    }
    .to_canonical_json();
    let index = log
        .append(body, event_time(event))
        .unwrap_or_else(|existing| existing);
    sigstore_bundle(log, index, digest, signature, &cosign.public_key())
        .ok_or_else(|| "the logged entry has no proof to bundle".to_string())
}

/// Logs the hashedrekord of `digest` (or, for `wrong-body`, of another
/// digest) with the digest's signature; the entry's UUID.
fn log_entry(
    log: &mut FakeLog,
    cosign: &SigningKey,
    event: &mut Map<String, Value>,
    digest: &str,
    fixture: Option<&str>,
    signatures: &BTreeMap<String, Vec<u8>>,
) -> Result<String> {
    let logged = match fixture {
        Some("wrong-body") => sha256_of(&format!("other:{digest}")),
        _ => parse_digest(digest)?,
    };
    let signature = match (fixture, signatures.get(digest)) {
        (None | Some("forged-proof"), Some(signature)) => signature.clone(),
        _ => cosign
            .sign_sha256_digest(&logged)
            .ok_or("the cosign fixture key cannot sign digests")?,
    };
    let body = HashedRekord {
        sha256: logged,
        signature,
        public_key_pem: cosign.public_key_pem(),
    }
    .to_canonical_json();
    let index = log
        .append(body, event_time(event))
        .unwrap_or_else(|existing| existing);
    log.uuid(index)
        .ok_or_else(|| "logged entry has no uuid".to_string())
}

fn flip_first_proof_hash(entry: &mut patrol_provmon_verify::rekor::LogEntry) -> Result<()> {
    let proof = entry
        .verification
        .as_mut()
        .and_then(|verification| verification.inclusion_proof.as_mut())
        .ok_or("entry without an inclusion proof")?;
    let Some(first) = proof.hashes.first_mut() else {
        return fail("the forged entry's proof is empty (a one-entry log): add entries before it");
    };
    let mut bytes = hex::decode(&*first).map_err(|err| err.to_string())?;
    bytes[0] ^= 0x01;
    *first = hex::encode(bytes);
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|err| format!("{}: {err}", path.display()))
}
