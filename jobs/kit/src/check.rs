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
