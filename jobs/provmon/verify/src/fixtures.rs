//! Deterministic fixtures: keys from seeds, real signatures, hashedrekord
//! bodies, a real Merkle log with signed checkpoints and SETs, and Sigstore
//! bundles and trusted roots made from that log. Used by
//! this crate's tests, the Rekor stand-in and the job's fixture generator.
//!
//! Signing uses RustCrypto (`p256` with RFC 6979 deterministic ECDSA,
//! `ed25519-dalek`), independent of the verifier's backend, so the same
//! seed always gives the same bytes.

mod sigstore;

pub use sigstore::{sigstore_bundle, trusted_root};

use p256::pkcs8::{EncodePublicKey, LineEnding};
use sha2::{Digest, Sha256};

use crate::encoding::base64_encode;
use crate::key::{KeyKind, PublicKey};
use crate::rekor::merkle::{leaf_hash, Hash, MerkleTree};
use crate::rekor::{
    signed_entry_timestamp_payload, Checkpoint, HashedRekord, InclusionProof, LogEntry, LogInfo,
    NoteSignature, Verification,
};

/// A private key made from a seed.
#[derive(Debug, Clone)]
pub enum SigningKey {
    EcdsaP256(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

impl SigningKey {
    /// ECDSA P-256: the secret scalar is SHA-256 of a label and the seed
    /// (re-hashed in the negligible case that it is not a valid scalar).
    pub fn p256_from_seed(seed: &[u8]) -> Self {
        let mut bytes: [u8; 32] = Sha256::new()
            .chain_update(b"patrol fixture p256 key\0")
            .chain_update(seed)
            .finalize()
            .into();
        loop {
            if let Ok(key) = p256::ecdsa::SigningKey::from_slice(&bytes) {
                return SigningKey::EcdsaP256(key);
            }
            bytes = Sha256::digest(bytes).into();
        }
    }

    /// Ed25519: the secret key is SHA-256 of a label and the seed.
    pub fn ed25519_from_seed(seed: &[u8]) -> Self {
        let bytes: [u8; 32] = Sha256::new()
            .chain_update(b"patrol fixture ed25519 key\0")
            .chain_update(seed)
            .finalize()
            .into();
        SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&bytes))
    }

    pub fn kind(&self) -> KeyKind {
        match self {
            SigningKey::EcdsaP256(_) => KeyKind::EcdsaP256,
            SigningKey::Ed25519(_) => KeyKind::Ed25519,
        }
    }

    /// The public key as a `PUBLIC KEY` PEM block (what cosign writes to
    /// `cosign.pub`).
    pub fn public_key_pem(&self) -> String {
        let pem = match self {
            SigningKey::EcdsaP256(key) => key.verifying_key().to_public_key_pem(LineEnding::LF),
            SigningKey::Ed25519(key) => ed25519_dalek::pkcs8::EncodePublicKey::to_public_key_pem(
                &key.verifying_key(),
                LineEnding::LF,
            ),
        };
        pem.expect("encoding a valid public key as PEM cannot fail")
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_pem(&self.public_key_pem()).expect("our own public key parses")
    }

    /// A signature over `message`: DER ECDSA (SHA-256) or raw Ed25519.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            SigningKey::EcdsaP256(key) => {
                use p256::ecdsa::signature::Signer;
                let signature: p256::ecdsa::Signature = key.sign(message);
                signature.to_der().as_bytes().to_vec()
            }
            SigningKey::Ed25519(key) => {
                use ed25519_dalek::Signer;
                key.sign(message).to_bytes().to_vec()
            }
        }
    }

    /// A DER ECDSA signature over a SHA-256 digest, equal to [`Self::sign`]
    /// over the message with that digest; `None` for Ed25519.
    pub fn sign_sha256_digest(&self, digest: &Hash) -> Option<Vec<u8>> {
        match self {
            SigningKey::EcdsaP256(key) => {
                use p256::ecdsa::signature::hazmat::PrehashSigner;
                let signature: p256::ecdsa::Signature = key.sign_prehash(digest).ok()?;
                Some(signature.to_der().as_bytes().to_vec())
            }
            SigningKey::Ed25519(_) => None,
        }
    }
}

/// A checkpoint signed by `key` under `name`, in Rekor's note format.
pub fn sign_checkpoint(key: &SigningKey, name: &str, checkpoint: &Checkpoint) -> String {
    let text = checkpoint.to_note_text();
    let signature = NoteSignature {
        name: name.to_string(),
        key_hint: key.public_key().key_hint(),
        signature: key.sign(text.as_bytes()),
    };
    format!("{text}\n{}", signature.to_line())
}

/// An artifact and its cosign signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub name: String,
    pub contents: Vec<u8>,
    pub sha256: Hash,
    /// DER ECDSA over the contents (`cosign sign-blob`).
    pub signature: Vec<u8>,
}

impl Artifact {
    /// Signs `contents` with `signer` (which must be ECDSA, as cosign's
    /// keys and hashedrekord are).
    pub fn signed(signer: &SigningKey, name: &str, contents: &[u8]) -> Self {
        let sha256: Hash = Sha256::digest(contents).into();
        Artifact {
            name: name.to_string(),
            contents: contents.to_vec(),
            sha256,
            signature: signer.sign(contents),
        }
    }

    /// `sha256:<hex>`.
    pub fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.sha256))
    }

    pub fn signature_b64(&self) -> String {
        base64_encode(&self.signature)
    }

    /// The canonical hashedrekord body logging this signature.
    pub fn hashedrekord_body(&self, public_key_pem: &str) -> Vec<u8> {
        HashedRekord {
            sha256: self.sha256,
            signature: self.signature.clone(),
            public_key_pem: public_key_pem.to_string(),
        }
        .to_canonical_json()
    }
}

#[derive(Debug, Clone)]
struct Stored {
    body: Vec<u8>,
    integrated_time: i64,
}

/// An append-only transparency log that signs like Rekor: SETs over each
/// entry, checkpoints over each tree head. One shard; `logIndex` is the
/// leaf index.
#[derive(Debug, Clone)]
pub struct FakeLog {
    signer: SigningKey,
    name: String,
    tree_id: u64,
    entries: Vec<Stored>,
    tree: MerkleTree,
}

impl FakeLog {
    /// A log named `rekor.local` whose key and tree ID come from `seed`.
    pub fn new(seed: &[u8]) -> Self {
        let mut label = b"rekor:".to_vec();
        label.extend_from_slice(seed);
        let digest = Sha256::digest(&label);
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        FakeLog {
            signer: SigningKey::p256_from_seed(&label),
            name: "rekor.local".into(),
            tree_id: u64::from_be_bytes(id) >> 1,
            entries: Vec::new(),
            tree: MerkleTree::new(),
        }
    }

    pub fn signer(&self) -> &SigningKey {
        &self.signer
    }

    pub fn public_key_pem(&self) -> String {
        self.signer.public_key_pem()
    }

    pub fn public_key(&self) -> PublicKey {
        self.signer.public_key()
    }

    /// Hex SHA-256 of the log's DER key.
    pub fn log_id(&self) -> String {
        self.public_key().log_id()
    }

    pub fn tree_id(&self) -> u64 {
        self.tree_id
    }

    /// `<name> - <tree ID>`, the checkpoint origin Rekor uses.
    pub fn origin(&self) -> String {
        format!("{} - {}", self.name, self.tree_id)
    }

    pub fn len(&self) -> u64 {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// Appends a canonical entry body; `Err(index)` if the same body is
    /// already logged (Rekor answers 409 then).
    pub fn append(&mut self, body: Vec<u8>, integrated_time: i64) -> Result<u64, u64> {
        let leaf = leaf_hash(&body);
        if let Some(index) = (0..self.len()).find(|&i| self.tree.leaf(i) == Some(leaf)) {
            return Err(index);
        }
        self.entries.push(Stored {
            body,
            integrated_time,
        });
        Ok(self.tree.push(leaf))
    }

    /// The entry ID of the leaf: 16 hex digits of tree ID, then the leaf
    /// hash.
    pub fn uuid(&self, index: u64) -> Option<String> {
        let leaf = self.tree.leaf(index)?;
        Some(format!("{:016x}{}", self.tree_id, hex::encode(leaf)))
    }

    /// The index of the entry with this UUID (80 digits) or leaf hash (64).
    pub fn index_of(&self, uuid: &str) -> Option<u64> {
        let wanted = uuid.to_ascii_lowercase();
        (0..self.len()).find(|&i| {
            self.uuid(i)
                .is_some_and(|id| id == wanted || id[16..] == wanted)
        })
    }

    /// The entry at `index` as Rekor serves it, with its SET and an
    /// inclusion proof against the current tree head.
    pub fn entry(&self, index: u64) -> Option<(String, LogEntry)> {
        self.entry_at_size(index, self.len())
    }

    /// The same, with the proof and checkpoint for the tree of `size`.
    pub fn entry_at_size(&self, index: u64, size: u64) -> Option<(String, LogEntry)> {
        let stored = self.entries.get(usize::try_from(index).ok()?)?;
        let hashes = self.tree.inclusion_proof(index, size)?;
        let root = self.tree.root(size)?;
        let mut entry = LogEntry {
            body: base64_encode(&stored.body),
            integrated_time: stored.integrated_time,
            log_id: self.log_id(),
            log_index: i64::try_from(index).ok()?,
            verification: None,
            attestation: None,
        };
        let set = self.signer.sign(&signed_entry_timestamp_payload(&entry));
        entry.verification = Some(Verification {
            inclusion_proof: Some(InclusionProof {
                checkpoint: Some(self.checkpoint(size)?),
                hashes: hashes.iter().map(hex::encode).collect(),
                log_index: i64::try_from(index).ok()?,
                root_hash: hex::encode(root),
                tree_size: i64::try_from(size).ok()?,
            }),
            signed_entry_timestamp: Some(base64_encode(&set)),
        });
        Some((self.uuid(index)?, entry))
    }

    /// UUIDs of the hashedrekord entries for this artifact digest.
    pub fn search_sha256(&self, sha256: &Hash) -> Vec<String> {
        (0..self.len())
            .filter(|&i| {
                self.entries
                    .get(i as usize)
                    .and_then(|stored| HashedRekord::parse(&stored.body).ok())
                    .is_some_and(|record| &record.sha256 == sha256)
            })
            .filter_map(|i| self.uuid(i))
            .collect()
    }

    /// The signed checkpoint of the tree of `size` leaves.
    pub fn checkpoint(&self, size: u64) -> Option<String> {
        let checkpoint = Checkpoint {
            origin: self.origin(),
            tree_size: size,
            root_hash: self.tree.root(size)?,
            other: Vec::new(),
        };
        Some(sign_checkpoint(&self.signer, &self.name, &checkpoint))
    }

    /// What `GET /api/v1/log` answers.
    pub fn log_info(&self) -> LogInfo {
        let size = self.len();
        LogInfo {
            root_hash: hex::encode(self.tree.root(size).expect("the whole tree has a root")),
            signed_tree_head: self.checkpoint(size).expect("the whole tree has a root"),
            tree_size: i64::try_from(size).expect("fixture logs are small"),
            tree_id: self.tree_id.to_string(),
            inactive_shards: None,
        }
    }
}

/// A log holding hashedrekord entries for some signed artifacts.
#[derive(Debug, Clone)]
pub struct SampleLog {
    pub log: FakeLog,
    /// The cosign key that signed the artifacts.
    pub cosign: SigningKey,
    pub artifacts: Vec<Artifact>,
    /// `uuids[i]` logs `artifacts[i]`.
    pub uuids: Vec<String>,
}

/// `count` artifacts (`artifact-<i>.tar.gz`) signed by a cosign key and
/// logged in order, entry `i` integrated at `base_time + i`; all from
/// `seed`.
pub fn sample_log(seed: &[u8], count: usize, base_time: i64) -> SampleLog {
    let mut log = FakeLog::new(seed);
    let mut cosign_seed = b"cosign:".to_vec();
    cosign_seed.extend_from_slice(seed);
    let cosign = SigningKey::p256_from_seed(&cosign_seed);
    let pem = cosign.public_key_pem();
    let mut artifacts = Vec::with_capacity(count);
    let mut uuids = Vec::with_capacity(count);
    for i in 0..count {
        let name = format!("artifact-{i}.tar.gz");
        let mut contents = name.clone().into_bytes();
        contents.extend_from_slice(seed);
        let artifact = Artifact::signed(&cosign, &name, &contents);
        let time = base_time.saturating_add(i64::try_from(i).unwrap_or(i64::MAX));
        let index = log
            .append(artifact.hashedrekord_body(&pem), time)
            .unwrap_or_else(|existing| existing);
        uuids.push(log.uuid(index).expect("just appended"));
        artifacts.push(artifact);
    }
    SampleLog {
        log,
        cosign,
        artifacts,
        uuids,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes() {
        let a = sample_log(b"seed", 3, 1_700_000_000);
        let b = sample_log(b"seed", 3, 1_700_000_000);
        assert_eq!(a.uuids, b.uuids);
        assert_eq!(a.artifacts, b.artifacts);
        assert_eq!(a.log.entry(1), b.log.entry(1));
        assert_eq!(a.log.log_info(), b.log.log_info());
        let c = sample_log(b"other seed", 3, 1_700_000_000);
        assert_ne!(a.log.public_key_pem(), c.log.public_key_pem());
        assert_ne!(a.uuids, c.uuids);
    }

    #[test]
    fn digest_signature_equals_message_signature() {
        let key = SigningKey::p256_from_seed(b"k");
        let digest: Hash = Sha256::digest(b"m").into();
        assert_eq!(key.sign_sha256_digest(&digest), Some(key.sign(b"m")));
        assert_eq!(
            SigningKey::ed25519_from_seed(b"k").sign_sha256_digest(&digest),
            None
        );
    }

    #[test]
    fn duplicate_bodies_are_refused() {
        let mut log = FakeLog::new(b"dup");
        assert_eq!(log.append(b"{}".to_vec(), 1), Ok(0));
        assert_eq!(log.append(b"{}".to_vec(), 2), Err(0));
        assert_eq!(log.append(b"{ }".to_vec(), 3), Ok(1));
    }
}
