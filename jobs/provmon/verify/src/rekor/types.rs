//! Rekor v1 REST wire types (`/api/v1/...`), as the public instance sends
//! them. Unknown fields are tolerated: Rekor adds fields over time, and
//! verification only trusts what it checks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One log entry: the value under its UUID in the answer to
/// `GET /api/v1/log/entries/{uuid}` and `POST /api/v1/log/entries`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    /// Base64 of the canonical JSON entry (e.g. a hashedrekord) that the
    /// log's Merkle leaf commits to.
    pub body: String,
    /// Seconds since the Unix epoch when the log integrated the entry.
    pub integrated_time: i64,
    /// Hex SHA-256 of the log's DER public key.
    #[serde(rename = "logID")]
    pub log_id: String,
    /// Index across all shards of the log (what the SET signs).
    pub log_index: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inclusion_proof: Option<InclusionProof>,
    /// Base64 of the log's signature over the canonical JSON of
    /// `{body, integratedTime, logID, logIndex}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_entry_timestamp: Option<String>,
}

/// An RFC 6962 audit path from the entry's leaf to `rootHash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InclusionProof {
    /// The log's signed note for `treeSize` / `rootHash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// Hex sibling hashes, leaf to root.
    pub hashes: Vec<String>,
    /// Index of the leaf in this shard's tree.
    pub log_index: i64,
    /// Hex root hash of the tree of `treeSize` leaves.
    pub root_hash: String,
    pub tree_size: i64,
}

/// The answer to `GET /api/v1/log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogInfo {
    /// Hex root hash of the active shard.
    pub root_hash: String,
    /// The signed checkpoint of the active shard.
    pub signed_tree_head: String,
    pub tree_size: i64,
    #[serde(rename = "treeID")]
    pub tree_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inactive_shards: Option<Vec<serde_json::Value>>,
}

/// The body of `POST /api/v1/index/retrieve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchIndex {
    /// `sha256:<hex>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

/// Rekor's error body (`{"code": 404, "message": "…"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub code: i64,
    #[serde(default)]
    pub message: String,
}

/// Parses the answer to `GET /api/v1/log/entries/{uuid}`: an object with
/// exactly one member, UUID → entry.
pub fn parse_entry_response(json: &[u8]) -> Result<(String, LogEntry), String> {
    let map: BTreeMap<String, LogEntry> = serde_json::from_slice(json)
        .map_err(|error| format!("the log entry answer does not parse: {error}"))?;
    if map.len() != 1 {
        return Err(format!(
            "the log entry answer has {} entries, expected exactly 1",
            map.len()
        ));
    }
    map.into_iter()
        .next()
        .ok_or_else(|| "the log entry answer is empty".to_string())
}

/// Parses the answer to `POST /api/v1/index/retrieve`: a list of UUIDs.
pub fn parse_search_response(json: &[u8]) -> Result<Vec<String>, String> {
    // Rekor answers `null` for no match on some versions, `[]` on others.
    let list: Option<Vec<String>> = serde_json::from_slice(json)
        .map_err(|error| format!("the index answer does not parse: {error}"))?;
    Ok(list.unwrap_or_default())
}

/// Parses the answer to `GET /api/v1/log`.
pub fn parse_log_info(json: &[u8]) -> Result<LogInfo, String> {
    serde_json::from_slice(json).map_err(|error| format!("the log info does not parse: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of a real answer from the public instance (values shortened
    /// where they do not matter for parsing).
    const REAL_SHAPE: &str = r#"{
      "24296fb24b8ad77a7ad0ab4d2c9a1f4c1a6c1f3e3ee0e0a8c5e5a3c6e0f8c5a8d0e1f2a3b4c5d6e7f": {
        "body": "eyJhcGlWZXJzaW9uIjoiMC4wLjEifQ==",
        "integratedTime": 1700000000,
        "logID": "c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d",
        "logIndex": 49000000,
        "verification": {
          "inclusionProof": {
            "checkpoint": "rekor.sigstore.dev - 2605736670972794746\n44836835\nAAAA\n\n\u2014 rekor.sigstore.dev wNI9ajBEAiB=\n",
            "hashes": ["aa", "bb"],
            "logIndex": 44836834,
            "rootHash": "cc",
            "treeSize": 44836835
          },
          "signedEntryTimestamp": "MEUCIQ=="
        }
      }
    }"#;

    #[test]
    fn parses_the_real_shape() {
        let (uuid, entry) = parse_entry_response(REAL_SHAPE.as_bytes()).expect("parses");
        assert!(uuid.starts_with("24296fb24b8ad77a"));
        assert_eq!(entry.log_index, 49000000);
        let proof = entry
            .verification
            .and_then(|v| v.inclusion_proof)
            .expect("proof");
        assert_eq!(proof.tree_size, 44836835);
        assert_eq!(proof.hashes.len(), 2);
    }

    #[test]
    fn rejects_zero_or_several_entries() {
        assert!(parse_entry_response(b"{}").is_err());
        assert!(parse_entry_response(b"[]").is_err());
        let two = format!(
            "{{\"a\":{0},\"b\":{0}}}",
            r#"{"body":"","integratedTime":1,"logID":"","logIndex":0}"#
        );
        assert!(parse_entry_response(two.as_bytes()).is_err());
    }

    #[test]
    fn search_answers() {
        assert_eq!(parse_search_response(b"null"), Ok(vec![]));
        assert_eq!(
            parse_search_response(b"[\"ab\"]"),
            Ok(vec!["ab".to_string()])
        );
        assert!(parse_search_response(b"{\"x\":1}").is_err());
    }
}
