//! End-to-end checks of entries made by the fixture log: real entries verify,
//! each kind of forgery fails the check it should, with a reason.

use super::*;
use crate::encoding::base64_encode;
use crate::fixtures::{sample_log, Artifact, FakeLog, SampleLog, SigningKey};
use crate::Verdict;

const T0: i64 = 1_700_000_000;

type Mutation = Box<dyn Fn(&mut LogEntry)>;

fn sample() -> SampleLog {
    sample_log(b"rekor-tests", 11, T0)
}

fn expected(sample: &SampleLog, i: usize) -> ExpectedArtifact {
    ExpectedArtifact {
        sha256: sample.artifacts[i].digest(),
        signature_b64: Some(sample.artifacts[i].signature_b64()),
        signer: Some(sample.cosign.public_key()),
    }
}

fn entry(sample: &SampleLog, i: u64) -> (String, LogEntry) {
    sample.log.entry(i).expect("entry exists")
}

fn proof_mut(entry: &mut LogEntry) -> &mut InclusionProof {
    entry
        .verification
        .as_mut()
        .and_then(|v| v.inclusion_proof.as_mut())
        .expect("proof")
}

#[track_caller]
fn assert_fails(verdict: &Verdict, needle: &str) {
    match verdict {
        Verdict::Verified => panic!("verified, expected a failure mentioning {needle:?}"),
        Verdict::Failed { reason } => {
            assert!(
                reason.contains(needle),
                "reason {reason:?} lacks {needle:?}"
            )
        }
    }
}

#[test]
fn every_real_entry_verifies() {
    let sample = sample();
    let key = sample.log.public_key();
    for i in 0..sample.artifacts.len() {
        let (uuid, entry) = entry(&sample, i as u64);
        assert_eq!(uuid, sample.uuids[i]);
        let report = verify_entry(&uuid, &entry, &key, &expected(&sample, i));
        assert_eq!(report.verdict(), Verdict::Verified, "entry {i}: {report:?}");
        // The 64-digit form of the UUID is accepted too.
        assert!(verify_inclusion_proof(&uuid[16..], &entry).is_verified());
    }
    assert!(verify_log_info(&sample.log.log_info(), &key).is_verified());
}

#[test]
fn entries_survive_the_wire() {
    let sample = sample();
    let (uuid, entry) = entry(&sample, 4);
    let json = serde_json::to_vec(&serde_json::json!({ uuid.clone(): entry })).expect("json");
    let (parsed_uuid, parsed) = parse_entry_response(&json).expect("parses");
    assert_eq!((parsed_uuid, &parsed), (uuid.clone(), &entry));
    let report = verify_entry(
        &uuid,
        &parsed,
        &sample.log.public_key(),
        &expected(&sample, 4),
    );
    assert!(report.verdict().is_verified());
}

#[test]
fn an_older_proof_against_its_own_checkpoint_verifies() {
    let sample = sample();
    let (uuid, entry) = sample.log.entry_at_size(2, 5).expect("entry");
    let report = verify_entry(
        &uuid,
        &entry,
        &sample.log.public_key(),
        &expected(&sample, 2),
    );
    assert!(report.verdict().is_verified(), "{report:?}");
}

#[test]
fn flipped_hash_in_proof_fails_inclusion() {
    let sample = sample();
    let (uuid, mut entry) = entry(&sample, 3);
    let proof = proof_mut(&mut entry);
    let mut bytes = hex::decode(&proof.hashes[1]).expect("hex");
    bytes[31] ^= 1;
    proof.hashes[1] = hex::encode(bytes);
    assert_fails(&verify_inclusion_proof(&uuid, &entry), "root");
}

#[test]
fn wrong_tree_size_fails_inclusion_and_checkpoint() {
    let sample = sample();
    let key = sample.log.public_key();
    let (uuid, mut entry) = entry(&sample, 3);
    // Leaf 3's path has the same shape in trees of 11 and 12 leaves, so
    // only the signed checkpoint catches a claimed size of 12.
    proof_mut(&mut entry).tree_size = 12;
    let report = verify_entry(&uuid, &entry, &key, &expected(&sample, 3));
    assert_fails(&report.checkpoint, "tree size");
    assert_fails(&report.verdict(), "tree size");
    // A size whose path has another shape fails the Merkle check itself.
    proof_mut(&mut entry).tree_size = 4;
    let report = verify_entry(&uuid, &entry, &key, &expected(&sample, 3));
    assert_fails(&report.inclusion, "hashes");
    assert_fails(&report.checkpoint, "tree size");
    proof_mut(&mut entry).tree_size = -1;
    assert_fails(&verify_inclusion_proof(&uuid, &entry), "negative");
}

#[test]
fn wrong_leaf_index_fails_inclusion() {
    let sample = sample();
    let (uuid, mut entry) = entry(&sample, 3);
    for index in [2, 4, 10, 11, 1_000, -3] {
        proof_mut(&mut entry).log_index = index;
        assert!(
            !verify_inclusion_proof(&uuid, &entry).is_verified(),
            "index {index}"
        );
    }
}

#[test]
fn empty_proof_for_a_bigger_tree_fails() {
    let sample = sample();
    let (uuid, mut entry) = entry(&sample, 0);
    proof_mut(&mut entry).hashes.clear();
    assert_fails(&verify_inclusion_proof(&uuid, &entry), "fewer");
}

#[test]
fn body_of_another_digest_fails_body_check() {
    let sample = sample();
    let key = sample.log.public_key();
    let (uuid, entry) = entry(&sample, 5);
    // A genuine entry, but for artifact 6.
    let report = verify_entry(&uuid, &entry, &key, &expected(&sample, 6));
    assert_fails(&report.body, "not sha256:");
    assert!(report.signed_entry_timestamp.is_verified());
    assert!(report.inclusion.is_verified());
    assert_fails(&report.verdict(), "entry body");
}

#[test]
fn swapped_body_fails_uuid_set_and_inclusion() {
    let sample = sample();
    let key = sample.log.public_key();
    let (uuid, mut entry) = entry(&sample, 5);
    let (_, other) = self::entry(&sample, 6);
    entry.body = other.body;
    let report = verify_entry(&uuid, &entry, &key, &expected(&sample, 6));
    assert!(report.body.is_verified(), "the body itself is genuine");
    assert!(!report.signed_entry_timestamp.is_verified());
    assert_fails(&report.inclusion, "UUID");
}

#[test]
fn body_with_another_signer_or_signature_fails() {
    let sample = sample();
    let (_, entry) = entry(&sample, 1);
    let mut want = expected(&sample, 1);
    want.signer = Some(SigningKey::p256_from_seed(b"impostor").public_key());
    assert_fails(&verify_body(&entry.body, &want), "another public key");
    let mut want = expected(&sample, 1);
    want.signature_b64 = Some(sample.artifacts[2].signature_b64());
    assert_fails(&verify_body(&entry.body, &want), "another signature");

    // Logged with the right key but a signature by someone else.
    let impostor = SigningKey::p256_from_seed(b"impostor");
    let mut forged = Artifact::signed(&impostor, "x", &sample.artifacts[1].contents);
    forged.signature = impostor.sign(&sample.artifacts[1].contents);
    let body = base64_encode(&forged.hashedrekord_body(&sample.cosign.public_key_pem()));
    let mut want = expected(&sample, 1);
    want.signature_b64 = None;
    assert_fails(&verify_body(&body, &want), "does not verify");
}

#[test]
fn set_signed_by_another_key_fails() {
    let sample = sample();
    let (uuid, entry) = entry(&sample, 2);
    let mut other = FakeLog::new(b"another log");
    // The other log logs the same body at the same place and time.
    let body = crate::encoding::base64_decode("b", &entry.body).expect("b64");
    for _ in 0..2 {
        let _ = other.append(format!("filler {}", other.len()).into_bytes(), T0);
    }
    other.append(body, entry.integrated_time).expect("new");
    let (_, mut foreign) = other.entry(2).expect("entry");
    // Claim our log's ID so only the signature differs.
    foreign.log_id = entry.log_id.clone();
    assert_fails(
        &verify_signed_entry_timestamp(&foreign, &sample.log.public_key()),
        "does not verify",
    );
    // Under its own log ID, the mismatch is reported as such.
    let (_, foreign) = other.entry(2).expect("entry");
    assert_fails(
        &verify_signed_entry_timestamp(&foreign, &sample.log.public_key()),
        "logID",
    );
    let report = verify_entry(
        &uuid,
        &foreign,
        &sample.log.public_key(),
        &expected(&sample, 2),
    );
    assert!(!report.checkpoint.is_verified(), "foreign checkpoint");
}

#[test]
fn set_over_changed_fields_fails() {
    let sample = sample();
    let key = sample.log.public_key();
    let (_, entry) = entry(&sample, 2);
    let mut later = entry.clone();
    later.integrated_time += 1;
    assert_fails(
        &verify_signed_entry_timestamp(&later, &key),
        "does not verify",
    );
    let mut moved = entry.clone();
    moved.log_index += 1;
    assert_fails(
        &verify_signed_entry_timestamp(&moved, &key),
        "does not verify",
    );
    let mut unsigned = entry;
    if let Some(v) = unsigned.verification.as_mut() {
        v.signed_entry_timestamp = None;
    }
    assert_fails(
        &verify_signed_entry_timestamp(&unsigned, &key),
        "no signed entry",
    );
}

#[test]
fn tampered_checkpoint_fails() {
    let sample = sample();
    let key = sample.log.public_key();
    let (_, entry) = entry(&sample, 7);
    let note = proof_mut(&mut entry.clone())
        .checkpoint
        .clone()
        .expect("checkpoint");
    let parsed = SignedCheckpoint::parse(&note).expect("parses");

    // A re-rooted checkpoint with the old signature.
    let mut forged = parsed.clone();
    forged.checkpoint.root_hash[0] ^= 1;
    forged.text = forged.checkpoint.to_note_text();
    let mut tampered = entry.clone();
    proof_mut(&mut tampered).checkpoint = Some(forged.to_note());
    assert_fails(&verify_entry_checkpoint(&tampered, &key), "does not verify");

    // A genuine checkpoint for another tree size.
    let mut stale = entry.clone();
    proof_mut(&mut stale).checkpoint = sample.log.checkpoint(8);
    assert_fails(&verify_entry_checkpoint(&stale, &key), "tree size");

    // Signed by another key.
    let mut foreign = entry.clone();
    proof_mut(&mut foreign).checkpoint = FakeLog::new(b"x").checkpoint(0);
    assert_fails(&verify_entry_checkpoint(&foreign, &key), "hint");

    // Missing.
    let mut missing = entry;
    proof_mut(&mut missing).checkpoint = None;
    assert_fails(&verify_entry_checkpoint(&missing, &key), "no checkpoint");
}

#[test]
fn log_info_that_disagrees_with_its_checkpoint_fails() {
    let sample = sample();
    let key = sample.log.public_key();
    let mut info = sample.log.log_info();
    info.tree_size -= 1;
    assert_fails(&verify_log_info(&info, &key), "tree size");
    let mut info = sample.log.log_info();
    info.root_hash = "00".repeat(32);
    assert_fails(&verify_log_info(&info, &key), "root");
    let other = FakeLog::new(b"x").public_key();
    assert!(!verify_log_info(&sample.log.log_info(), &other).is_verified());
}

#[test]
fn garbage_and_truncated_base64_fail_closed() {
    let sample = sample();
    let key = sample.log.public_key();
    let (uuid, entry) = entry(&sample, 9);
    let want = expected(&sample, 9);
    let half = entry.body.len() / 2;
    let cases: Vec<Mutation> = vec![
        Box::new(|e| e.body = "!!!not base64".into()),
        Box::new(move |e| e.body.truncate(half)),
        Box::new(|e| e.body = base64_encode(b"{\"kind\":\"rekord\"}")),
        Box::new(|e| e.body = base64_encode(b"\xff\xfe")),
        Box::new(|e| e.body = String::new()),
        Box::new(|e| {
            if let Some(v) = e.verification.as_mut() {
                v.signed_entry_timestamp = Some("%%%".into());
            }
        }),
        Box::new(|e| {
            if let Some(v) = e.verification.as_mut() {
                if let Some(s) = v.signed_entry_timestamp.as_mut() {
                    s.truncate(s.len() / 2);
                }
            }
        }),
        Box::new(|e| proof_mut(e).root_hash = "zz".into()),
        Box::new(|e| proof_mut(e).hashes[0].truncate(10)),
        Box::new(|e| proof_mut(e).checkpoint = Some("garbage".into())),
        Box::new(|e| e.verification = None),
    ];
    for (i, mutate) in cases.iter().enumerate() {
        let mut bad = entry.clone();
        mutate(&mut bad);
        let verdict = verify_entry(&uuid, &bad, &key, &want).verdict();
        assert!(
            verdict.reason().is_some_and(|r| !r.is_empty()),
            "case {i}: {verdict}"
        );
    }
    for uuid in ["", "xyz", &uuid[..70]] {
        assert_fails(&verify_inclusion_proof(uuid, &entry), "UUID");
    }
}

/// The public Rekor key (rekor.sigstore.dev, in Sigstore's trusted root).
const PUBLIC_REKOR_KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE2G2Y+2tabdTV5BcGiBIx0a9fAFwr
kBbmLSGtks4L3qX6yYY0zufBnhC8Ur/iy55GhWP/9A/bY2LhC30M9+RYtw==
-----END PUBLIC KEY-----
";

/// A SET issued by the public Rekor for entry 783607 (from a cosign bundle
/// in sigstore-rs's test data): proves the SET payload is built byte for
/// byte as Rekor signs it.
#[test]
fn a_real_set_from_the_public_rekor_verifies() {
    let key = crate::key::PublicKey::from_pem(PUBLIC_REKOR_KEY).expect("key");
    let entry = LogEntry {
        body: "eyJhcGlWZXJzaW9uIjoiMC4wLjEiLCJraW5kIjoicmVrb3JkIiwic3BlYyI6eyJkYXRhIjp7Imhhc2giOnsiYWxnb3JpdGhtIjoic2hhMjU2IiwidmFsdWUiOiJlNzgwMWRlOTM1NTEyZTIyYjIzN2M3YjU3ZTQyY2E0ZDIwZTIxMzRiZGYxYjk4Zjk3NmM4ZjU1ZDljZmU0MDY3In19LCJzaWduYXR1cmUiOnsiY29udGVudCI6Ik1FVUNJR3FXU2N6N3M5YVAyc0dYTkZLZXFpdnczQjZrUFJzNTZBSVRJSG52ZDVpZ0FpRUExa3piYVYyWTV5UEU4MUVOOTJOVUZPbDMxTExKU3Z3c2pGUTA3bTJYcWFBPSIsImZvcm1hdCI6Ing1MDkiLCJwdWJsaWNLZXkiOnsiY29udGVudCI6IkxTMHRMUzFDUlVkSlRpQkRSVkpVU1VaSlEwRlVSUzB0TFMwdENrMUpTVU5rZWtORFFXWjVaMEYzU1VKQlowbFVRU3RRYzJGTGFtRkZXbkZ1TjBsWk9UUmlNV1V2YWtwdWFYcEJTMEpuWjNGb2EycFBVRkZSUkVGNlFYRUtUVkpWZDBWM1dVUldVVkZMUlhkNGVtRlhaSHBrUnpsNVdsTTFhMXBZV1hoRlZFRlFRbWRPVmtKQlRWUkRTRTV3V2pOT01HSXpTbXhOUWpSWVJGUkplQXBOVkVGNVRVUkJNMDFxVlhoT2JHOVlSRlJKZUUxVVFYbE5SRUV6VGtSVmVFNVdiM2RCUkVKYVRVSk5SMEo1Y1VkVFRUUTVRV2RGUjBORGNVZFRUVFE1Q2tGM1JVaEJNRWxCUWtsT1pYZFJRbE14WmpSQmJVNUpSVTVrVEN0VkwwaEtiM1JOVTAwM1drNXVhMVJ1V1dWbWVIZFdPVlJGY25CMmJrRmFNQ3RFZWt3S2VXWkJRVlpoWlVwMFMycEdkbUpQVkdJNFJqRjVhRXBHVlRCWVdTdFNhV3BuWjBWd1RVbEpRa3BVUVU5Q1owNVdTRkU0UWtGbU9FVkNRVTFEUWpSQmR3cEZkMWxFVmxJd2JFSkJkM2REWjFsSlMzZFpRa0pSVlVoQmQwMTNSRUZaUkZaU01GUkJVVWd2UWtGSmQwRkVRV1JDWjA1V1NGRTBSVVpuVVZWTlpqRlNDazFOYzNGT1JrSnlWMko0T0cxU1RtUjRUMnRGUlZsemQwaDNXVVJXVWpCcVFrSm5kMFp2UVZWNVRWVmtRVVZIWVVwRGEzbFZVMVJ5UkdFMVN6ZFZiMGNLTUN0M2QyZFpNRWREUTNOSFFWRlZSa0ozUlVKQ1NVZEJUVWcwZDJaQldVbExkMWxDUWxGVlNFMUJTMGRqUjJnd1pFaEJOa3g1T1hkamJXd3lXVmhTYkFwWk1rVjBXVEk1ZFdSSFZuVmtRekF5VFVST2JWcFVaR3hPZVRCM1RVUkJkMHhVU1hsTmFtTjBXVzFaTTA1VE1XMU9SMWt4V2xSbmQxcEVTVFZPVkZGMUNtTXpVblpqYlVadVdsTTFibUl5T1c1aVIxWm9ZMGRzZWt4dFRuWmlVemxxV1ZSTk1sbFVSbXhQVkZsNVRrUkthVTlYV21wWmFrVXdUbWs1YWxsVE5Xb0tZMjVSZDBsQldVUldVakJTUVZGSUwwSkNXWGRHU1VWVFdtMTRhR1J0YkhaUlIwNW9Zek5TYkdKSGVIQk1iVEZzVFVGdlIwTkRjVWRUVFRRNVFrRk5SQXBCTW10QlRVZFpRMDFSUXpOWk1uVnNVRlJ6VUcxT1V6UmplbUZMWldwbE1FSnVUMUZJZWpWbE5rNUNXREJDY1hnNVdHTmhLM1F5YTA5cE1UZHpiM0JqQ2k5MkwzaElNWGhNZFZCdlEwMVJSRXRPUkRSWGFraG1TM0ZZV0U5bFZYWmFPVUU1TmtSeGNrVjNSMkZ4UjAxMGJrbDFUalJLZWxwWllWVk1Xbko0T1djS2IxaHhjVzh2UXpsUmJrOUlWSFJ2UFFvdExTMHRMVVZPUkNCRFJWSlVTVVpKUTBGVVJTMHRMUzB0Q2c9PSJ9fX19".into(),
        integrated_time: 1634714717,
        log_id: "c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d".into(),
        log_index: 783607,
        verification: Some(Verification {
            inclusion_proof: None,
            signed_entry_timestamp: Some(
                "MEUCIDBGJijj2FqU25yRWzlEWHqE64XKwUvychBs1bSM1PaKAiEAwcR2u81c42TLBk3lWJqhtB7SnM7Lh0OYEl6Bfa7ZA4s=".into(),
            ),
        }),
        attestation: None,
    };
    assert_eq!(key.log_id(), entry.log_id);
    assert_eq!(
        verify_signed_entry_timestamp(&entry, &key),
        Verdict::Verified
    );
    let mut moved = entry.clone();
    moved.log_index += 1;
    assert_fails(
        &verify_signed_entry_timestamp(&moved, &key),
        "does not verify",
    );
    // Not a hashedrekord: the body check refuses it.
    assert_fails(
        &verify_body(&entry.body, &ExpectedArtifact::digest("ab".repeat(32))),
        "rekord",
    );
}
