//! Evidence packs: a folder of files about one release, a `manifest.json`
//! listing each with its SHA-256 and size, the manifest's own digest in
//! `manifest.json.sha256` (`sha256sum -c` reads it) and its signature in
//! `manifest.json.sig` (base64; for ECDSA P-256 keys the same format as
//! `cosign sign-blob`, so `cosign verify-blob --key … --signature
//! manifest.json.sig manifest.json` checks it too).
//!
//! Verifying a pack fails closed and reports every problem found: a bad
//! signature, a manifest digest that does not match, a listed file that is
//! missing or differs, a file that is not listed.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::encoding::{base64_decode, base64_encode};
use crate::fixtures::SigningKey;
use crate::key::PublicKey;

pub const MANIFEST: &str = "manifest.json";
pub const MANIFEST_DIGEST: &str = "manifest.json.sha256";
pub const MANIFEST_SIGNATURE: &str = "manifest.json.sig";
/// The manifest format this code writes and reads.
pub const FORMAT: &str = "patrol.evidence/v1";

/// Largest manifest read (a pack lists tens of files, not millions).
const MAX_MANIFEST: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    /// What the pack is about, e.g. `release <sha>`.
    pub subject: String,
    /// RFC 3339.
    pub created_at: String,
    /// The program that wrote it.
    pub generator: String,
    pub signer: Signer,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signer {
    /// Hex SHA-256 of the public key's DER (its SubjectPublicKeyInfo).
    pub key_id: String,
    pub algorithm: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Relative to the pack folder, `/`-separated.
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

/// What a pack says about itself.
#[derive(Debug, Clone)]
pub struct PackInfo {
    pub subject: String,
    pub created_at: String,
    pub generator: String,
    pub files: usize,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn key_id(key: &PublicKey) -> String {
    sha256_hex(key.spki_der())
}

fn algorithm(key: &SigningKey) -> &'static str {
    match key {
        SigningKey::EcdsaP256(_) => "ecdsa-p256-sha256",
        SigningKey::Ed25519(_) => "ed25519",
    }
}

/// A relative path made only of normal components, no `..`, no root.
fn safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.contains('\\')
        && Path::new(path)
            .components()
            .all(|part| matches!(part, Component::Normal(_)))
}

/// Writes `files` (relative path → content) and the signed manifest into
/// `dir`, which must exist and be empty.
pub fn write_pack(
    dir: &Path,
    subject: &str,
    created_at: &str,
    generator: &str,
    files: &[(String, Vec<u8>)],
    key: &SigningKey,
) -> std::io::Result<()> {
    let mut entries = Vec::with_capacity(files.len());
    for (path, content) in files {
        let reserved = [MANIFEST, MANIFEST_DIGEST, MANIFEST_SIGNATURE].contains(&path.as_str());
        if !safe_relative(path) || reserved {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("`{path}` cannot be a file of an evidence pack"),
            ));
        }
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, content)?;
        entries.push(FileEntry {
            path: path.clone(),
            sha256: sha256_hex(content),
            size: content.len() as u64,
        });
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let manifest = Manifest {
        format: FORMAT.into(),
        subject: subject.into(),
        created_at: created_at.into(),
        generator: generator.into(),
        signer: Signer {
            key_id: key_id(&key.public_key()),
            algorithm: algorithm(key).into(),
        },
        files: entries,
    };
    let mut bytes = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    std::fs::write(dir.join(MANIFEST), &bytes)?;
    std::fs::write(
        dir.join(MANIFEST_DIGEST),
        format!("{}  {MANIFEST}\n", sha256_hex(&bytes)),
    )?;
    std::fs::write(
        dir.join(MANIFEST_SIGNATURE),
        base64_encode(&key.sign(&bytes)),
    )?;
    Ok(())
}

/// Checks a pack with the public key that should have signed it. Returns
/// what the pack says about itself, or every problem found.
pub fn verify_pack(dir: &Path, key: &PublicKey) -> Result<PackInfo, Vec<String>> {
    let mut problems = Vec::new();
    let manifest_bytes = match read_limited(&dir.join(MANIFEST)) {
        Ok(bytes) => bytes,
        Err(err) => return Err(vec![format!("{MANIFEST}: {err}")]),
    };
    let digest = sha256_hex(&manifest_bytes);
    match std::fs::read_to_string(dir.join(MANIFEST_DIGEST)) {
        Ok(text) => {
            let recorded = text.split_whitespace().next().unwrap_or("");
            if !recorded.eq_ignore_ascii_case(&digest) {
                problems.push(format!(
                    "{MANIFEST_DIGEST}: records {recorded}, but {MANIFEST} hashes to {digest}"
                ));
            }
        }
        Err(err) => problems.push(format!("{MANIFEST_DIGEST}: {err}")),
    }
    let signature = std::fs::read_to_string(dir.join(MANIFEST_SIGNATURE))
        .map_err(|err| err.to_string())
        .and_then(|text| base64_decode("the signature", &text));
    match signature {
        Ok(signature) => {
            if let Err(err) = key.verify(&manifest_bytes, &signature) {
                problems.push(format!(
                    "{MANIFEST_SIGNATURE}: does not verify {MANIFEST} with key {} ({err})",
                    key_id(key)
                ));
            }
        }
        Err(err) => problems.push(format!("{MANIFEST_SIGNATURE}: {err}")),
    }
    let manifest: Manifest = match serde_json::from_slice(&manifest_bytes) {
        Ok(manifest) => manifest,
        Err(err) => {
            problems.push(format!("{MANIFEST}: not a manifest: {err}"));
            return Err(problems);
        }
    };
    if manifest.format != FORMAT {
        problems.push(format!(
            "{MANIFEST}: format `{}`, expected `{FORMAT}`",
            manifest.format
        ));
    }
    if manifest.signer.key_id != key_id(key) {
        problems.push(format!(
            "{MANIFEST}: signed by key {}, but the key given is {}",
            manifest.signer.key_id,
            key_id(key)
        ));
    }
    let mut listed = BTreeSet::new();
    for entry in &manifest.files {
        if !safe_relative(&entry.path) {
            problems.push(format!(
                "{MANIFEST}: `{}` is not a path inside the pack",
                entry.path
            ));
            continue;
        }
        if !listed.insert(entry.path.clone()) {
            problems.push(format!("{MANIFEST}: `{}` is listed twice", entry.path));
            continue;
        }
        problems.extend(check_file(dir, entry));
    }
    match files_in(dir) {
        Ok(present) => {
            for path in present {
                let own = [MANIFEST, MANIFEST_DIGEST, MANIFEST_SIGNATURE].contains(&path.as_str());
                if !own && !listed.contains(&path) {
                    problems.push(format!("{path}: not listed in {MANIFEST}"));
                }
            }
        }
        Err(err) => problems.push(format!("cannot list {}: {err}", dir.display())),
    }
    if problems.is_empty() {
        Ok(PackInfo {
            subject: manifest.subject,
            created_at: manifest.created_at,
            generator: manifest.generator,
            files: manifest.files.len(),
        })
    } else {
        Err(problems)
    }
}

fn read_limited(path: &Path) -> std::io::Result<Vec<u8>> {
    let size = std::fs::metadata(path)?.len();
    if size > MAX_MANIFEST {
        return Err(std::io::Error::other(format!(
            "{size} bytes is too large for a manifest"
        )));
    }
    std::fs::read(path)
}

fn check_file(dir: &Path, entry: &FileEntry) -> Option<String> {
    let path = dir.join(&entry.path);
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if !meta.is_file() => {
            return Some(format!("{}: not a regular file", entry.path));
        }
        Ok(_) => {}
        Err(err) => return Some(format!("{}: listed but {err}", entry.path)),
    }
    let content = match std::fs::read(&path) {
        Ok(content) => content,
        Err(err) => return Some(format!("{}: {err}", entry.path)),
    };
    let found = sha256_hex(&content);
    if !found.eq_ignore_ascii_case(&entry.sha256) || content.len() as u64 != entry.size {
        return Some(format!(
            "{}: expected sha256 {} ({} bytes), found {found} ({} bytes)",
            entry.path,
            entry.sha256,
            entry.size,
            content.len()
        ));
    }
    None
}

/// Every file under `dir`, relative and `/`-separated (symlinks and other
/// non-directories count as files, so they are reported if unlisted).
fn files_in(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        for item in std::fs::read_dir(dir.join(&relative))? {
            let item = item?;
            let path = relative.join(item.file_name());
            if item.file_type()?.is_dir() {
                pending.push(path);
            } else {
                let parts: Vec<String> = path
                    .components()
                    .map(|part| part.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(parts.join("/"));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(key: &SigningKey) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let files = vec![
            ("chain.json".to_string(), b"{\"stages\":[]}".to_vec()),
            ("rekor/abc.json".to_string(), b"{\"abc\":{}}".to_vec()),
        ];
        write_pack(
            dir.path(),
            "release deadbeef",
            "2026-11-24T00:00:00Z",
            "test",
            &files,
            key,
        )
        .unwrap();
        dir
    }

    #[test]
    fn a_written_pack_verifies_with_its_key_only() {
        for key in [
            SigningKey::p256_from_seed(b"pack"),
            SigningKey::ed25519_from_seed(b"pack"),
        ] {
            let dir = pack(&key);
            let info = verify_pack(dir.path(), &key.public_key()).unwrap();
            assert_eq!(info.subject, "release deadbeef");
            assert_eq!(info.files, 2);
            let other = SigningKey::p256_from_seed(b"other").public_key();
            let problems = verify_pack(dir.path(), &other).unwrap_err();
            assert!(problems.iter().any(|p| p.contains("does not verify")));
            assert!(problems.iter().any(|p| p.contains("signed by key")));
        }
    }

    #[test]
    fn every_change_to_a_pack_is_reported() {
        let key = SigningKey::p256_from_seed(b"pack");
        let dir = pack(&key);
        std::fs::write(dir.path().join("chain.json"), b"{\"stages\":[1]}").unwrap();
        std::fs::remove_file(dir.path().join("rekor/abc.json")).unwrap();
        std::fs::write(dir.path().join("extra.txt"), b"x").unwrap();
        let problems = verify_pack(dir.path(), &key.public_key()).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("chain.json: expected sha256"));
        assert!(problems[1].starts_with("rekor/abc.json: listed but"));
        assert!(problems[2].starts_with("extra.txt: not listed"));
    }

    #[test]
    fn an_edited_manifest_fails_its_digest_and_signature() {
        let key = SigningKey::p256_from_seed(b"pack");
        let dir = pack(&key);
        let path = dir.path().join(MANIFEST);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("release deadbeef", "release cafebabe")).unwrap();
        let problems = verify_pack(dir.path(), &key.public_key()).unwrap_err();
        assert!(problems[0].starts_with("manifest.json.sha256: records"));
        assert!(problems[1].starts_with("manifest.json.sig: does not verify"));
    }

    #[test]
    fn paths_leaving_the_pack_are_refused() {
        let key = SigningKey::p256_from_seed(b"pack");
        let dir = tempfile::tempdir().unwrap();
        for path in ["../x", "/etc/passwd", "a/../../b", "", MANIFEST] {
            let files = vec![(path.to_string(), b"x".to_vec())];
            assert!(
                write_pack(dir.path(), "s", "t", "g", &files, &key).is_err(),
                "{path}"
            );
        }
    }
}
