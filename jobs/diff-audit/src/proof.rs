//! The proof of each run (seed 002 §3.3, KR2.2): a signed evidence pack,
//! the same format as provmon's (`patrol evidence verify` checks it),
//! holding `proof.json` and each table's diffs:
//!
//! ```json
//! {"run_id": "…", "started": "…", "ended": "…",
//!  "counts": {"ok": 1992, "diff": 8, "excepted": 1},
//!  "sha256": "<SHA-256 of the diffs files, in table order>",
//!  "tables": [{"name": "audit", "diffs_sha256": "…", "exceptions_applied": ["initech/10600/missing"],
//!              "left":  {"source": "…", "rows": 1999, "commitment": "…", "commitment_of": "file"},
//!              "right": {"source": "…", "rows": 1999, "commitment": "…", "commitment_of": "file"}}]}
//! ```
//!
//! `commitment` is a SHA-256 anyone holding the copy can recompute, so no
//! row can change unnoticed; `commitment_of` says of what:
//! - `rows`: the copy's rows in key order, each as its canonical key bytes
//!   (length-prefixed) and its 32-byte row digest (copies read whole);
//! - `file`: the file's bytes (files are compared streaming, by hashes
//!   seeded per compare, so the file itself is what can be recomputed);
//! - `bucket-checksums`: a database copy's first-level bucket checksums
//!   (its rows are never all read: `bisect.rs`);
//! - `pending-keys`: a change stream joiner's state after the run.

use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use patrol_job_api::effects::{kind, replace_dir_atomically, short_digest};
use patrol_job_api::secret::SecretRef;
use patrol_job_api::{Effects, Intent};
use patrol_provmon_verify::evidence::write_pack;
use patrol_provmon_verify::fixtures::SigningKey;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

/// `params.proofs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofsSpec {
    /// Where the packs go: `<dir>/<time>-<run key>/`.
    pub dir: PathBuf,
    /// The private key (PEM) that signs each manifest, `file:PATH` or
    /// `env:NAME`; never inline.
    pub signing_key: SecretRef,
}

/// Ready to write proofs.
#[derive(Clone)]
pub struct ProofWriter {
    pub dir: PathBuf,
    key: SigningKey,
}

// The key is a secret: never printed.
impl std::fmt::Debug for ProofWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProofWriter")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl ProofsSpec {
    /// Reads the key (relative `file:` paths from `base`).
    pub fn build(&self, base: &Path) -> Result<ProofWriter, String> {
        let pem = self.signing_key.resolve(base)?;
        let key = SigningKey::from_pem(pem.expose())
            .map_err(|err| format!("{}: {err}", self.signing_key))?;
        Ok(ProofWriter {
            dir: self.dir.clone(),
            key,
        })
    }
}

/// What the proof says of one copy.
pub struct CopyProof {
    pub source: String,
    pub rows: usize,
    pub commitment: String,
    /// `rows`, `file`, `bucket-checksums` or `pending-keys`.
    pub commitment_of: &'static str,
}

/// One table's part of the proof.
pub struct TableProof {
    pub name: String,
    pub left: CopyProof,
    pub right: CopyProof,
    pub diffs: Vec<u8>,
    pub exceptions_applied: Vec<String>,
}

/// The counts of the run.
pub struct Counts {
    pub ok: usize,
    pub diff: usize,
    pub excepted: usize,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn stamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `proof.json` and the diffs files of a pack.
pub fn pack_files(
    run_key: &str,
    started: DateTime<Utc>,
    ended: DateTime<Utc>,
    counts: &Counts,
    tables: &[TableProof],
) -> Vec<(String, Vec<u8>)> {
    let mut all_diffs = Sha256::new();
    for table in tables {
        all_diffs.update(&table.diffs);
    }
    let side = |copy: &CopyProof| {
        json!({"source": copy.source, "rows": copy.rows, "commitment": copy.commitment,
               "commitment_of": copy.commitment_of})
    };
    let proof = json!({
        "run_id": run_key,
        "started": stamp(started),
        "ended": stamp(ended),
        "counts": {"ok": counts.ok, "diff": counts.diff, "excepted": counts.excepted},
        "sha256": hex::encode(all_diffs.finalize()),
        "tables": tables.iter().map(|t| json!({
            "name": t.name,
            "diffs_sha256": sha256_hex(&t.diffs),
            "exceptions_applied": t.exceptions_applied,
            "left": side(&t.left),
            "right": side(&t.right),
        })).collect::<Vec<_>>(),
    });
    let mut files = vec![(
        "proof.json".to_string(),
        serde_json::to_vec_pretty(&proof).unwrap_or_default(),
    )];
    for table in tables {
        files.push((format!("diffs/{}.ndjson", table.name), table.diffs.clone()));
    }
    files
}

impl ProofWriter {
    /// Writes the pack of one run through its effects.
    pub async fn write(
        &self,
        effects: &Effects,
        run_key: &str,
        now: DateTime<Utc>,
        files: Vec<(String, Vec<u8>)>,
    ) -> Result<PathBuf, String> {
        let folder: String = format!("{}-{run_key}", now.format("%Y%m%dT%H%M%SZ"))
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let target = self.dir.join(folder);
        let mut digest = Sha256::new();
        for (path, content) in &files {
            digest.update(path.as_bytes());
            digest.update(content);
        }
        let intent = Intent::new(
            kind::WRITE_DIR,
            format!(
                "proof:{}#{}",
                target.display(),
                short_digest(&digest.finalize())
            ),
            format!("write proof {} ({} files)", target.display(), files.len()),
        );
        let key = self.key.clone();
        let path = target.clone();
        let created = stamp(now);
        effects
            .perform(intent, async move {
                tokio::task::spawn_blocking(move || {
                    replace_dir_atomically(&path, |building| {
                        write_pack(
                            building,
                            "diff-audit run",
                            &created,
                            concat!("patrol diff-audit ", env!("CARGO_PKG_VERSION")),
                            &files,
                            &key,
                        )
                    })
                })
                .await
                .map_err(std::io::Error::other)?
            })
            .await
            .map_err(|err| format!("writing {}: {err}", target.display()))?;
        Ok(target)
    }
}
