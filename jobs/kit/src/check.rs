//! Checks every job makes on its sources' params, written once: a source
//! name (it keys the source's cursor and its stats, so it must be unique
//! and plain) and an http(s) URL.

use std::collections::HashSet;

/// `name` is letters, digits, `-` and `_`, and not in `seen` (it is added).
/// The error is the message for the name's field.
pub fn unique_name(name: &str, seen: &mut HashSet<String>) -> Result<(), String> {
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !plain {
        return Err(format!("`{name}` is not a name (letters, digits, - and _)"));
    }
    if !seen.insert(name.to_string()) {
        return Err(format!(
            "`{name}` is named twice (each source keeps its own cursor)"
        ));
    }
    Ok(())
}

/// `url` is an absolute http:// or https:// URL.
pub fn http_url(url: &str) -> Result<(), String> {
    let http = url.starts_with("http://") || url.starts_with("https://");
    if http && url.parse::<reqwest::Url>().is_ok() {
        Ok(())
    } else {
        Err(format!("`{url}` is not an http(s) URL"))
    }
}

/// `name` is an HTTP header name (`Authorization`, `X-Api-Key`).
pub fn header_name(name: &str) -> Result<(), String> {
    reqwest::header::HeaderName::from_bytes(name.as_bytes())
        .map(|_| ())
        .map_err(|_| format!("`{name}` is not an HTTP header name"))
}

/// `url` (already an http(s) URL) may carry a credential: https, or
/// plain http to this machine only (stand-ins, local relays).
pub fn credential_url(url: &str, credential: &str) -> Result<(), String> {
    let parsed = url
        .parse::<reqwest::Url>()
        .map_err(|_| format!("`{url}` is not an http(s) URL"))?;
    let host = parsed.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if parsed.scheme() == "https" || loopback {
        Ok(())
    } else {
        Err(format!(
            "`{url}` would send {credential} unencrypted; use https:// (http:// is accepted for localhost only)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_and_unique() {
        let mut seen = HashSet::new();
        assert!(unique_name("audit-api_2", &mut seen).is_ok());
        let twice = unique_name("audit-api_2", &mut seen).unwrap_err();
        assert!(twice.contains("named twice"), "{twice}");
        for bad in ["", "a b", "a/b", "ä"] {
            assert!(unique_name(bad, &mut seen).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn credentials_go_over_https_or_to_this_machine() {
        assert!(credential_url("https://github.example/api/v3", "the token").is_ok());
        assert!(credential_url("http://127.0.0.1:8080", "the token").is_ok());
        assert!(credential_url("http://[::1]:8080", "the token").is_ok());
        assert!(credential_url("http://localhost:8080", "the token").is_ok());
        let err = credential_url("http://github.example/api/v3", "the token").unwrap_err();
        assert!(err.contains("unencrypted"), "{err}");
    }

    #[test]
    fn only_absolute_http_urls_pass() {
        assert!(http_url("https://rekor.example/api").is_ok());
        assert!(http_url("http://127.0.0.1:8080/events").is_ok());
        for bad in [
            "ftp://example.com",
            "example.com",
            "http://",
            "https://exa mple.com",
        ] {
            assert!(http_url(bad).is_err(), "{bad}");
        }
    }
}
