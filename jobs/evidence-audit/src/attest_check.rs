//! `cosign_verify_attestation`: the release's DSSE in-toto attestations
//! verify with a configured key, and together they name every artifact of
//! the release with its sha256. Fails closed: no key, no artifacts listed,
//! an envelope that does not verify, or a subject whose digest differs from
//! the release's artifact are each a details entry.

use std::path::{Path, PathBuf};

use patrol_provmon_verify::key::PublicKey;
use serde_json::{json, Value};

use crate::dsse;
use crate::evaluate::Release;

pub fn check(
    dir: &Path,
    envelopes: &[PathBuf],
    release: &Release,
    keys: &[PublicKey],
) -> Vec<Value> {
    let entry = |fields: Value| json!({"attestation": fields});
    if keys.is_empty() {
        return vec![entry(
            json!({"problem": "no attestation key is configured"}),
        )];
    }
    if envelopes.is_empty() {
        return vec![entry(json!({"problem": "no attestation to verify"}))];
    }
    if release.artifacts.is_empty() {
        return vec![entry(
            json!({"problem": "release.json lists no artifacts to match"}),
        )];
    }
    let mut details = Vec::new();
    let mut named = Vec::new();
    for path in envelopes {
        let file = path
            .strip_prefix(dir)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned();
        let verified = std::fs::read(path)
            .map_err(|err| err.to_string())
            .and_then(|bytes| dsse::verify(&bytes, keys));
        match verified {
            Ok(verified) => {
                for subject in &verified.subjects {
                    let artifact = release.artifacts.iter().find(|a| a.name == subject.name);
                    if let Some(artifact) = artifact {
                        if artifact.sha256.to_lowercase() != subject.sha256 {
                            details.push(entry(json!({
                                "file": file, "artifact": subject.name,
                                "problem": "the subject's sha256 is not the release artifact's",
                                "subject_sha256": subject.sha256, "artifact_sha256": artifact.sha256,
                            })));
                            continue;
                        }
                    }
                    named.push(subject.clone());
                }
            }
            Err(problem) => details.push(entry(json!({"file": file, "problem": problem}))),
        }
    }
    for artifact in &release.artifacts {
        let covered = named
            .iter()
            .any(|s| s.name == artifact.name && s.sha256 == artifact.sha256.to_lowercase());
        if !covered {
            details.push(entry(json!({
                "artifact": artifact.name,
                "problem": "no verified attestation names it with its sha256",
            })));
        }
    }
    details
}
