//! The job's hash chain in the ledger (seed 004 EPIC AM "manifests include
//! hash chain to ledger"): every control attestation and audit result is
//! appended as an entry `chain/<seq>` of the schedule's job state, each
//! naming the SHA-256 of the previous one; `chain-head` holds the last
//! entry's number and hash. `patrol evidence-audit chain verify` walks
//! it: an edited entry (its hash no longer matches its content), a removed
//! or reordered one (a gap, or a `prev_sha256` that is not its
//! predecessor's) and a truncated tail (the head names a later entry) are
//! each named.
//!
//! Limit: whoever can rewrite the whole table can rebuild a consistent
//! chain; the head's hash is also in each run's details, so the runs
//! table holds an independent copy of every head.

use std::collections::BTreeMap;

use patrol_job_api::{StateKey, StatePrefix, StateWrite};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const ENTRIES: StatePrefix<Entry> = StatePrefix::new("chain/");
pub const HEAD: StateKey<Head> = StateKey::new("chain-head");

/// One link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    /// `attestation` or `audit`.
    pub kind: String,
    pub release: Option<String>,
    /// SHA-256 of what the entry records (the envelope, the report).
    pub subject_sha256: String,
    pub at: String,
    pub prev_sha256: String,
    /// SHA-256 of the entry's JSON with this field empty.
    pub sha256: String,
}

/// The chain's last link.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub sha256: String,
}

/// The hash of the chain's start (no predecessor).
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

impl Entry {
    /// The hash the entry must carry.
    pub fn computed_sha256(&self) -> String {
        let mut unsigned = self.clone();
        unsigned.sha256 = String::new();
        hex::encode(Sha256::digest(
            serde_json::to_vec(&unsigned).unwrap_or_default(),
        ))
    }
}

/// `chain/00000042`.
pub fn key_of(seq: u64) -> String {
    format!("{seq:08}")
}

/// Appends to a chain whose head is `head`; returns the state writes (the
/// entries and the new head) and the new head.
pub fn append(
    head: &Head,
    items: impl IntoIterator<Item = (String, Option<String>, String)>,
    at: &str,
) -> Result<(Vec<StateWrite>, Head), String> {
    let mut head = head.clone();
    let mut writes = Vec::new();
    for (kind, release, subject_sha256) in items {
        let mut entry = Entry {
            seq: head.seq + 1,
            kind,
            release,
            subject_sha256,
            at: at.to_string(),
            prev_sha256: if head.seq == 0 {
                GENESIS.to_string()
            } else {
                head.sha256.clone()
            },
            sha256: String::new(),
        };
        entry.sha256 = entry.computed_sha256();
        writes.push(
            ENTRIES
                .key(&key_of(entry.seq))
                .put(&entry)
                .map_err(|err| err.to_string())?,
        );
        head = Head {
            seq: entry.seq,
            sha256: entry.sha256,
        };
    }
    writes.push(HEAD.put(&head).map_err(|err| err.to_string())?);
    Ok((writes, head))
}

/// Checks the stored chain: `entries` by state key (`chain/…`) as stored
/// bytes, and the head. Returns the number of entries, or each break.
pub fn verify(
    entries: &BTreeMap<String, Vec<u8>>,
    head: Option<&Head>,
) -> Result<u64, Vec<String>> {
    let mut problems = Vec::new();
    let mut previous: Option<Entry> = None;
    for (key, bytes) in entries {
        let entry: Entry = match serde_json::from_slice(bytes) {
            Ok(entry) => entry,
            Err(err) => {
                problems.push(format!("{key}: unreadable: {err}"));
                continue;
            }
        };
        if key != &format!("{}{}", ENTRIES.prefix(), key_of(entry.seq)) {
            problems.push(format!("{key}: holds entry {} (moved)", entry.seq));
        }
        if entry.computed_sha256() != entry.sha256 {
            problems.push(format!(
                "{key}: edited (its content does not hash to its sha256)"
            ));
        }
        let (want_seq, want_prev) = match &previous {
            Some(p) => (p.seq + 1, p.sha256.clone()),
            None => (1, GENESIS.to_string()),
        };
        if entry.seq != want_seq {
            problems.push(format!(
                "{key}: entry {} follows entry {} (entries {}–{} removed)",
                entry.seq,
                want_seq - 1,
                want_seq,
                entry.seq.saturating_sub(1)
            ));
        } else if entry.prev_sha256 != want_prev {
            problems.push(format!(
                "{key}: its prev_sha256 is not entry {}'s sha256",
                want_seq - 1
            ));
        }
        previous = Some(entry);
    }
    let last = previous
        .as_ref()
        .map_or((0, String::new()), |e| (e.seq, e.sha256.clone()));
    match head {
        Some(head) if head.seq != last.0 => problems.push(format!(
            "chain-head: names entry {} but the chain ends at entry {} (entries removed)",
            head.seq, last.0
        )),
        Some(head) if head.sha256 != last.1 => problems.push(format!(
            "chain-head: its sha256 is not entry {}'s",
            head.seq
        )),
        None if last.0 > 0 => problems.push("chain-head: missing".into()),
        _ => {}
    }
    if problems.is_empty() {
        Ok(last.0)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(n: u64) -> (BTreeMap<String, Vec<u8>>, Head) {
        let items = (0..n).map(|i| {
            (
                "attestation".to_string(),
                Some(format!("v{i}")),
                format!("{i:064}"),
            )
        });
        let (writes, head) = append(&Head::default(), items, "2026-12-07T00:00:00Z").unwrap();
        let entries = writes
            .iter()
            .filter(|w| w.key.starts_with("chain/"))
            .map(|w| (w.key.clone(), w.value.clone().unwrap()))
            .collect();
        (entries, head)
    }

    #[test]
    fn an_intact_chain_verifies_and_each_break_is_named() {
        let (entries, head) = stored(4);
        assert_eq!(verify(&entries, Some(&head)), Ok(4));

        let mut edited = entries.clone();
        let text = String::from_utf8(edited["chain/00000002"].clone()).unwrap();
        edited.insert(
            "chain/00000002".into(),
            text.replace("\"v1\"", "\"v9\"").into_bytes(),
        );
        let problems = verify(&edited, Some(&head)).unwrap_err();
        assert_eq!(
            problems,
            vec!["chain/00000002: edited (its content does not hash to its sha256)"]
        );

        let mut removed = entries.clone();
        removed.remove("chain/00000003");
        let problems = verify(&removed, Some(&head)).unwrap_err();
        assert!(
            problems[0].starts_with("chain/00000004: entry 4 follows entry 2"),
            "{problems:?}"
        );

        let mut truncated = entries.clone();
        truncated.remove("chain/00000004");
        let problems = verify(&truncated, Some(&head)).unwrap_err();
        assert!(
            problems[0].contains("names entry 4 but the chain ends at entry 3"),
            "{problems:?}"
        );
    }
}
