//! Signed checkpoints (transparency-dev "signed note" format) as Rekor
//! writes them:
//!
//! ```text
//! rekor.sigstore.dev - 2605736670972794746   ← origin
//! 44836835                                   ← tree size
//! nT1b…Qw=                                   ← base64 root hash
//! [other lines]
//!                                            ← blank line
//! — rekor.sigstore.dev wNI9ajBEAiB…          ← "— name base64(hint4 || signature)"
//! ```
//!
//! The signature covers the text up to and including the newline before the
//! blank line. Rekor's key hint is the first four bytes of SHA-256 of its
//! DER public key (rekor `pkg/util/signed_note.go`).

use crate::encoding::{base64_decode, base64_encode};
use crate::key::PublicKey;
use crate::rekor::merkle::Hash;

const MAX_NOTE: usize = 64 * 1024;
const EM_DASH: char = '\u{2014}';

/// The body of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub tree_size: u64,
    pub root_hash: Hash,
    /// Extension lines after the root hash, without their newline.
    pub other: Vec<String>,
}

impl Checkpoint {
    /// The signed text: each line followed by a newline.
    pub fn to_note_text(&self) -> String {
        let mut text = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.tree_size,
            base64_encode(&self.root_hash)
        );
        for line in &self.other {
            text.push_str(line);
            text.push('\n');
        }
        text
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub key_hint: [u8; 4],
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// `— name base64(hint || signature)\n`.
    pub fn to_line(&self) -> String {
        let mut bytes = self.key_hint.to_vec();
        bytes.extend_from_slice(&self.signature);
        format!("{EM_DASH} {} {}\n", self.name, base64_encode(&bytes))
    }
}

/// A parsed signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    /// The exact signed text.
    pub text: String,
    pub signatures: Vec<NoteSignature>,
}

impl SignedCheckpoint {
    /// Parses a signed note; anything off the format is an error.
    pub fn parse(note: &str) -> Result<Self, String> {
        if note.len() > MAX_NOTE {
            return Err(format!("the checkpoint is too long ({} bytes)", note.len()));
        }
        if note.chars().any(|c| c.is_control() && c != '\n') {
            return Err("the checkpoint contains control characters".into());
        }
        // As golang.org/x/mod/sumdb/note and rekor do: the last blank line
        // separates the text from the signatures.
        let split = note
            .rfind("\n\n")
            .ok_or_else(|| "the checkpoint has no blank line before its signatures".to_string())?;
        let text = &note[..split + 1];
        let signature_block = &note[split + 2..];
        if !signature_block.ends_with('\n') {
            return Err("the checkpoint's signature block does not end with a newline".into());
        }
        let checkpoint = parse_body(text)?;
        let signatures = signature_block
            .lines()
            .map(parse_signature_line)
            .collect::<Result<Vec<_>, _>>()?;
        if signatures.is_empty() {
            return Err("the checkpoint has no signature".into());
        }
        Ok(SignedCheckpoint {
            checkpoint,
            text: text.to_string(),
            signatures,
        })
    }

    /// Checks that a signature line with `key`'s hint verifies over the
    /// text with `key`.
    pub fn verify_signature(&self, key: &PublicKey) -> Result<(), String> {
        let hint = key.key_hint();
        let mut last_error = None;
        for signature in self.signatures.iter().filter(|s| s.key_hint == hint) {
            match key.verify(self.text.as_bytes(), &signature.signature) {
                Ok(()) => return Ok(()),
                Err(error) => last_error = Some(format!("{} signature: {error}", signature.name)),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            format!(
                "no checkpoint signature carries the Rekor key's hint {}",
                hex::encode(hint)
            )
        }))
    }

    /// The note as Rekor serves it: text, blank line, signature lines.
    pub fn to_note(&self) -> String {
        let mut note = self.text.clone();
        note.push('\n');
        for signature in &self.signatures {
            note.push_str(&signature.to_line());
        }
        note
    }
}

fn parse_body(text: &str) -> Result<Checkpoint, String> {
    let mut lines = text.strip_suffix('\n').unwrap_or(text).split('\n');
    let origin = lines.next().unwrap_or_default();
    if origin.is_empty() {
        return Err("the checkpoint has no origin line".into());
    }
    let size_line = lines
        .next()
        .ok_or_else(|| "the checkpoint has no tree size line".to_string())?;
    if size_line.is_empty()
        || !size_line.bytes().all(|b| b.is_ascii_digit())
        || (size_line.len() > 1 && size_line.starts_with('0'))
    {
        return Err(format!(
            "the checkpoint's tree size {size_line:?} is not a decimal number"
        ));
    }
    let tree_size: u64 = size_line
        .parse()
        .map_err(|error| format!("the checkpoint's tree size {size_line:?}: {error}"))?;
    let root_line = lines
        .next()
        .ok_or_else(|| "the checkpoint has no root hash line".to_string())?;
    let root = base64_decode("the checkpoint's root hash", root_line)?;
    let root_hash: Hash = root.as_slice().try_into().map_err(|_| {
        format!(
            "the checkpoint's root hash has {} bytes, not 32",
            root.len()
        )
    })?;
    let other: Vec<String> = lines.map(str::to_string).collect();
    if other.iter().any(String::is_empty) {
        return Err("the checkpoint has an empty line in its body".into());
    }
    Ok(Checkpoint {
        origin: origin.to_string(),
        tree_size,
        root_hash,
        other,
    })
}

fn parse_signature_line(line: &str) -> Result<NoteSignature, String> {
    let rest = line
        .strip_prefix(EM_DASH)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or_else(|| {
            format!("checkpoint signature line {line:?} does not start with an em dash")
        })?;
    let (name, encoded) = rest
        .split_once(' ')
        .ok_or_else(|| format!("checkpoint signature line {line:?} is not `— name signature`"))?;
    if name.is_empty() || encoded.contains(' ') {
        return Err(format!(
            "checkpoint signature line {line:?} is not `— name signature`"
        ));
    }
    let bytes = base64_decode("a checkpoint signature", encoded)?;
    if bytes.len() < 5 {
        return Err(format!(
            "a checkpoint signature has {} bytes, too short for a key hint and a signature",
            bytes.len()
        ));
    }
    let (hint, signature) = bytes.split_at(4);
    Ok(NoteSignature {
        name: name.to_string(),
        key_hint: [hint[0], hint[1], hint[2], hint[3]],
        signature: signature.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{sign_checkpoint, SigningKey};

    fn signed() -> (SigningKey, String) {
        let key = SigningKey::p256_from_seed(b"checkpoint");
        let checkpoint = Checkpoint {
            origin: "rekor.local - 42".into(),
            tree_size: 7,
            root_hash: [7; 32],
            other: vec![],
        };
        let note = sign_checkpoint(&key, "rekor.local", &checkpoint);
        (key, note)
    }

    #[test]
    fn round_trip_and_verify() {
        let (key, note) = signed();
        let parsed = SignedCheckpoint::parse(&note).expect("parses");
        assert_eq!(parsed.to_note(), note);
        assert_eq!(parsed.checkpoint.tree_size, 7);
        assert_eq!(parsed.checkpoint.root_hash, [7; 32]);
        assert_eq!(parsed.verify_signature(&key.public_key()), Ok(()));
    }

    #[test]
    fn several_signature_lines_are_accepted() {
        let (key, note) = signed();
        let witness = SigningKey::p256_from_seed(b"witness");
        let parsed = SignedCheckpoint::parse(&note).expect("parses");
        let extra = NoteSignature {
            name: "witness.example".into(),
            key_hint: witness.public_key().key_hint(),
            signature: witness.sign(parsed.text.as_bytes()),
        };
        // The witness line first, so the Rekor line is found by its hint.
        let cosigned = format!(
            "{}\n{}{}",
            parsed.text,
            extra.to_line(),
            parsed.signatures[0].to_line()
        );
        let reparsed = SignedCheckpoint::parse(&cosigned).expect("parses");
        assert_eq!(reparsed.signatures.len(), 2);
        assert_eq!(reparsed.verify_signature(&key.public_key()), Ok(()));
    }

    #[test]
    fn tampered_or_foreign_checkpoints_fail() {
        let (key, note) = signed();
        let public = key.public_key();
        // A changed tree size: parses, signature fails.
        let tampered = note.replacen("\n7\n", "\n8\n", 1);
        let parsed = SignedCheckpoint::parse(&tampered).expect("parses");
        assert!(parsed.verify_signature(&public).is_err());
        // Signed by another key.
        let other = SigningKey::p256_from_seed(b"other");
        let parsed = SignedCheckpoint::parse(&note).expect("parses");
        let err = parsed
            .verify_signature(&other.public_key())
            .expect_err("foreign");
        assert!(err.contains("hint"), "{err}");
        // Same hint, broken signature bytes.
        let mut broken = parsed.clone();
        broken.signatures[0].signature[10] ^= 0xff;
        assert!(broken.verify_signature(&public).is_err());
    }

    #[test]
    fn malformed_notes_fail_to_parse() {
        let (_, note) = signed();
        let cases = [
            String::new(),
            "garbage".to_string(),
            note.replace('\u{2014}', "-"),
            note.trim_end().to_string(),
            note.replacen("\n7\n", "\n07\n", 1),
            note.replacen("\n7\n", "\n-7\n", 1),
            note.replacen("\n7\n", "\n99999999999999999999999\n", 1),
            note.replacen("rekor.local - 42\n", "\n", 1),
            note.replacen("\n\n", "\n\n\u{2014} x !!!\n", 1),
            note.replacen("\n\n", "\n\n\u{2014} x AAAA\n", 1),
            format!("{}\n\n\u{2014} x AAAAAAAA\n", "a\n1\nAAAA"),
            note.replace('\n', "\r\n"),
        ];
        for case in cases {
            assert!(SignedCheckpoint::parse(&case).is_err(), "{case:?}");
        }
    }
}
