//! The checks of one Rekor log entry, as cosign does them offline: the
//! body names the artifact, the signed entry timestamp (SET) verifies, the
//! Merkle inclusion proof leads to the proof's root, and the checkpoint is
//! signed by the log and commits to that root and size.

use serde::Serialize;

use crate::encoding::{base64_decode, hash_from_hex};
use crate::key::PublicKey;
use crate::rekor::body::{verify_body, ExpectedArtifact};
use crate::rekor::checkpoint::SignedCheckpoint;
use crate::rekor::merkle::{leaf_hash, verify_inclusion, Hash};
use crate::rekor::types::{InclusionProof, LogEntry, LogInfo};
use crate::Verdict;

/// Longest audit path accepted: a tree of 2^64 leaves needs 64 hashes.
const MAX_PROOF_HASHES: usize = 64;

/// The verdict of each check of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryReport {
    pub body: Verdict,
    pub signed_entry_timestamp: Verdict,
    pub inclusion: Verdict,
    pub checkpoint: Verdict,
}

impl EntryReport {
    /// Verified only if every check is; otherwise the first failure.
    pub fn verdict(&self) -> Verdict {
        [
            &self.body,
            &self.signed_entry_timestamp,
            &self.inclusion,
            &self.checkpoint,
        ]
        .into_iter()
        .find(|verdict| !verdict.is_verified())
        .cloned()
        .unwrap_or(Verdict::Verified)
    }
}

/// Runs every check of the entry stored under `uuid` against the expected
/// artifact, trusting only `rekor_key`.
pub fn verify_entry(
    uuid: &str,
    entry: &LogEntry,
    rekor_key: &PublicKey,
    expected: &ExpectedArtifact,
) -> EntryReport {
    EntryReport {
        body: verify_body(&entry.body, expected),
        signed_entry_timestamp: verify_signed_entry_timestamp(entry, rekor_key),
        inclusion: verify_inclusion_proof(uuid, entry),
        checkpoint: verify_entry_checkpoint(entry, rekor_key),
    }
}

/// The payload of a SET: RFC 8785 canonical JSON of these four fields,
/// whose keys are already in canonical order here.
#[derive(Serialize)]
struct SetPayload<'a> {
    body: &'a str,
    #[serde(rename = "integratedTime")]
    integrated_time: i64,
    #[serde(rename = "logID")]
    log_id: &'a str,
    #[serde(rename = "logIndex")]
    log_index: i64,
}

/// The bytes the log signs for an entry's SET.
pub fn signed_entry_timestamp_payload(entry: &LogEntry) -> Vec<u8> {
    serde_json::to_vec(&SetPayload {
        body: &entry.body,
        integrated_time: entry.integrated_time,
        log_id: &entry.log_id,
        log_index: entry.log_index,
    })
    .expect("serializing plain structs cannot fail")
}

/// Checks the entry's SET with the Rekor key, and that `logID` names that
/// key.
pub fn verify_signed_entry_timestamp(entry: &LogEntry, rekor_key: &PublicKey) -> Verdict {
    Verdict::from(check_set(entry, rekor_key)).context("signed entry timestamp")
}

fn check_set(entry: &LogEntry, rekor_key: &PublicKey) -> Result<(), String> {
    let set = entry
        .verification
        .as_ref()
        .and_then(|v| v.signed_entry_timestamp.as_deref())
        .ok_or_else(|| "the entry has no signed entry timestamp".to_string())?;
    if !entry.log_id.eq_ignore_ascii_case(&rekor_key.log_id()) {
        return Err(format!(
            "the entry's logID {} is not the configured Rekor key's {}",
            entry.log_id,
            rekor_key.log_id()
        ));
    }
    if entry.log_index < 0 || entry.integrated_time < 0 {
        return Err("the entry has a negative logIndex or integratedTime".into());
    }
    let signature = base64_decode("the signed entry timestamp", set)?;
    rekor_key.verify(&signed_entry_timestamp_payload(entry), &signature)
}

/// Checks the Merkle inclusion proof of the entry's leaf
/// (`SHA-256(0x00 || body)`) up to the proof's root, and that `uuid` is
/// that leaf hash (optionally after a 16-hex-digit tree ID).
pub fn verify_inclusion_proof(uuid: &str, entry: &LogEntry) -> Verdict {
    Verdict::from(check_inclusion(uuid, entry)).context("inclusion proof")
}

fn check_inclusion(uuid: &str, entry: &LogEntry) -> Result<(), String> {
    let proof = proof_of(entry)?;
    let body = base64_decode("the entry body", &entry.body)?;
    let leaf = leaf_hash(&body);
    check_uuid(uuid, &leaf)?;
    let index = u64::try_from(proof.log_index)
        .map_err(|_| format!("the proof's logIndex {} is negative", proof.log_index))?;
    let size = u64::try_from(proof.tree_size)
        .map_err(|_| format!("the proof's treeSize {} is negative", proof.tree_size))?;
    if proof.hashes.len() > MAX_PROOF_HASHES {
        return Err(format!("the proof has {} hashes", proof.hashes.len()));
    }
    let hashes = proof
        .hashes
        .iter()
        .enumerate()
        .map(|(i, h)| hash_from_hex(&format!("proof hash {i}"), h))
        .collect::<Result<Vec<Hash>, _>>()?;
    let root = hash_from_hex("the proof's rootHash", &proof.root_hash)?;
    verify_inclusion(index, size, &leaf, &hashes, &root)
}

fn proof_of(entry: &LogEntry) -> Result<&InclusionProof, String> {
    entry
        .verification
        .as_ref()
        .and_then(|v| v.inclusion_proof.as_ref())
        .ok_or_else(|| "the entry has no inclusion proof".to_string())
}

fn check_uuid(uuid: &str, leaf: &Hash) -> Result<(), String> {
    let leaf_hex = hex::encode(leaf);
    let matches = match uuid.len() {
        64 => uuid.eq_ignore_ascii_case(&leaf_hex),
        80 => {
            uuid[..16].bytes().all(|b| b.is_ascii_hexdigit())
                && uuid[16..].eq_ignore_ascii_case(&leaf_hex)
        }
        _ => false,
    };
    if matches {
        Ok(())
    } else {
        Err(format!(
            "the entry's UUID {uuid:?} is not the hash of its body ({leaf_hex})"
        ))
    }
}

/// Checks the proof's checkpoint: signed by the Rekor key, for the proof's
/// tree size and root hash.
pub fn verify_entry_checkpoint(entry: &LogEntry, rekor_key: &PublicKey) -> Verdict {
    let result = proof_of(entry).and_then(|proof| {
        let note = proof
            .checkpoint
            .as_deref()
            .ok_or_else(|| "the inclusion proof has no checkpoint".to_string())?;
        check_checkpoint(note, proof.tree_size, &proof.root_hash, rekor_key)
    });
    Verdict::from(result).context("checkpoint")
}

/// Checks the signed tree head of `GET /api/v1/log` against its own
/// `treeSize` and `rootHash`.
pub fn verify_log_info(info: &LogInfo, rekor_key: &PublicKey) -> Verdict {
    Verdict::from(check_checkpoint(
        &info.signed_tree_head,
        info.tree_size,
        &info.root_hash,
        rekor_key,
    ))
    .context("log checkpoint")
}

/// Parses and verifies a checkpoint; returns it when it is signed by the
/// Rekor key.
pub fn verified_checkpoint(note: &str, rekor_key: &PublicKey) -> Result<SignedCheckpoint, String> {
    let checkpoint = SignedCheckpoint::parse(note)?;
    checkpoint.verify_signature(rekor_key)?;
    Ok(checkpoint)
}

fn check_checkpoint(
    note: &str,
    tree_size: i64,
    root_hash_hex: &str,
    rekor_key: &PublicKey,
) -> Result<(), String> {
    let signed = verified_checkpoint(note, rekor_key)?;
    let root = hash_from_hex("the rootHash", root_hash_hex)?;
    let checkpoint = &signed.checkpoint;
    if u64::try_from(tree_size).ok() != Some(checkpoint.tree_size) {
        return Err(format!(
            "the checkpoint is for tree size {}, the proof for {tree_size}",
            checkpoint.tree_size
        ));
    }
    if checkpoint.root_hash != root {
        return Err(format!(
            "the checkpoint's root {} is not the proof's root {root_hash_hex}",
            hex::encode(checkpoint.root_hash)
        ));
    }
    Ok(())
}
