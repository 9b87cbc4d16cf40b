//! Verification for the provenance monitor. Every check fails closed: an
//! error of any kind is a failed verification with its reason.
//!
//! - [`key`]: public keys from PEM (ECDSA P-256 and Ed25519 for signers; the
//!   Rekor key), with the identifiers Rekor derives from them.
//! - [`cosign`]: a cosign signature over a payload, or over an artifact's
//!   SHA-256 digest, with a configured public key (offline).
//! - [`rekor`]: Rekor v1 wire types, the four checks of a log entry (body,
//!   signed entry timestamp, Merkle inclusion proof, signed checkpoint) and a
//!   small HTTP [`rekor::Client`].
//! - [`evidence`]: signed evidence packs (a manifest of files with their
//!   SHA-256, signed) and their verification.
//! - [`fixtures`]: deterministic keys, signatures and a real Merkle log from a
//!   seed, for tests, stand-ins and the fixture generator.
//!
//! Checks return a [`Verdict`]; they never panic on hostile input.

pub mod bundle;
pub mod cosign;
mod encoding;
pub mod evidence;
pub mod fixtures;
pub mod key;
mod private_key;
pub mod rekor;
pub mod san;

use std::fmt;

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Verified,
    /// Anything that is not a proof of validity: a bad signature, a
    /// mismatch, but also unparseable input or a missing field.
    Failed {
        reason: String,
    },
}

impl Verdict {
    /// A failure with this reason.
    pub fn failed(reason: impl Into<String>) -> Self {
        Verdict::Failed {
            reason: reason.into(),
        }
    }

    pub fn is_verified(&self) -> bool {
        matches!(self, Verdict::Verified)
    }

    /// The reason of a failure; `None` when verified.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Verdict::Verified => None,
            Verdict::Failed { reason } => Some(reason),
        }
    }

    /// The same verdict with `context: ` before a failure's reason.
    pub fn context(self, context: &str) -> Self {
        match self {
            Verdict::Verified => Verdict::Verified,
            Verdict::Failed { reason } => Verdict::Failed {
                reason: format!("{context}: {reason}"),
            },
        }
    }
}

impl From<Result<(), String>> for Verdict {
    fn from(result: Result<(), String>) -> Self {
        match result {
            Ok(()) => Verdict::Verified,
            Err(reason) => Verdict::Failed { reason },
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Verified => f.write_str("verified"),
            Verdict::Failed { reason } => write!(f, "failed: {reason}"),
        }
    }
}
