//! Decoding helpers whose errors read as verification failure reasons.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Longest input any helper decodes, so that hostile input cannot make a
/// check allocate without bound.
const MAX_ENCODED: usize = 4 * 1024 * 1024;

/// Standard base64 (with padding), as Rekor and cosign write it.
pub(crate) fn base64_decode(what: &str, text: &str) -> Result<Vec<u8>, String> {
    if text.len() > MAX_ENCODED {
        return Err(format!("{what} is too long ({} bytes)", text.len()));
    }
    STANDARD
        .decode(text.trim())
        .map_err(|error| format!("{what} is not valid base64: {error}"))
}

pub(crate) fn base64_encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// A SHA-256 value written as 64 hex digits (either case).
pub(crate) fn hash_from_hex(what: &str, text: &str) -> Result<[u8; 32], String> {
    if text.len() != 64 {
        return Err(format!(
            "{what} is not 64 hex digits (got {} characters)",
            text.len()
        ));
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).map_err(|error| format!("{what} is not hex: {error}"))?;
    Ok(out)
}

/// An artifact digest written as `sha256:<hex>` or bare `<hex>`.
pub(crate) fn sha256_digest(what: &str, text: &str) -> Result<[u8; 32], String> {
    let hex = text.strip_prefix("sha256:").unwrap_or(text);
    hash_from_hex(what, hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_garbage() {
        assert!(base64_decode("x", "!!!").is_err());
        assert!(base64_decode("x", "QUJD").is_ok());
        assert!(base64_decode("x", "QUJ").is_err(), "truncated base64");
        assert!(hash_from_hex("h", "00").is_err());
        assert!(hash_from_hex("h", &"zz".repeat(32)).is_err());
        assert!(sha256_digest("d", &format!("sha256:{}", "ab".repeat(32))).is_ok());
        assert!(sha256_digest("d", &format!("sha512:{}", "ab".repeat(32))).is_err());
    }
}
