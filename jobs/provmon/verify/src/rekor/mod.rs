//! Rekor v1: wire types, the checks of a log entry, and a client.

pub mod body;
pub mod checkpoint;
mod client;
mod entry;
pub mod merkle;
mod types;

pub use body::{verify_body, ExpectedArtifact, HashedRekord};
pub use checkpoint::{Checkpoint, NoteSignature, SignedCheckpoint};
pub use client::{Client, ClientError};
pub use entry::{
    signed_entry_timestamp_payload, verified_checkpoint, verify_entry, verify_entry_checkpoint,
    verify_inclusion_proof, verify_log_info, verify_signed_entry_timestamp, EntryReport,
};
pub use types::{
    parse_entry_response, parse_log_info, parse_search_response, ErrorBody, InclusionProof,
    LogEntry, LogInfo, SearchIndex, Verification,
};

#[cfg(test)]
mod tests;
