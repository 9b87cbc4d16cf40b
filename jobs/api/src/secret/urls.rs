//! Credentials carried inside URLs: the userinfo of `scheme://user:pass@host`
//! and query parameters whose name says they hold one (`?token=…`,
//! `&X-Amz-Signature=…`). Such a URL in an error or a parameter would
//! otherwise put the credential in the ledger and the logs even when patrol
//! never resolved it as a secret.

const MASK: &str = "[redacted]";

/// Query parameter names (compared lowercase, `-` read as `_`) whose value is
/// a credential; a name containing one of [`CREDENTIAL_WORDS`] counts too.
const CREDENTIAL_PARAMS: &[&str] = &[
    "sig",
    "code",
    "auth",
    "pass",
    "pwd",
    "jwt",
    "session",
    "sessionid",
    "private",
];
const CREDENTIAL_WORDS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "key",
    "signature",
    "credential",
    "authorization",
];

/// `text` with the userinfo and credential query values of every URL in it
/// replaced by `[redacted]`.
pub fn redact_url_credentials(text: &str) -> String {
    if !text.contains("://") {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`'))
            .unwrap_or(after.len());
        let (url, tail) = after.split_at(end);
        out.push_str(&redact_url_rest(url));
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// `url` is what follows `scheme://` up to the end of the URL.
fn redact_url_rest(url: &str) -> String {
    let authority_end = url.find(['/', '?', '#']).unwrap_or(url.len());
    let (authority, path) = url.split_at(authority_end);
    let mut out = String::with_capacity(url.len());
    match authority.rfind('@') {
        Some(at) => {
            out.push_str(MASK);
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    out.push_str(&redact_query_credentials(path));
    out
}

/// `url` with the values of its credential query parameters replaced by
/// `[redacted]`; the rest (its userinfo too) as it is.
pub fn redact_query_credentials(url: &str) -> String {
    let Some(query_at) = url.find('?') else {
        return url.to_string();
    };
    let (path, query) = url.split_at(query_at + 1);
    let mut out = path.to_string();
    let (query, fragment) = match query.find('#') {
        Some(hash) => query.split_at(hash),
        None => (query, ""),
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) if !value.is_empty() && is_credential_name(name) => {
                format!("{name}={MASK}")
            }
            _ => pair.to_string(),
        })
        .collect();
    out.push_str(&pairs.join("&"));
    out.push_str(fragment);
    out
}

fn is_credential_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase().replace('-', "_");
    CREDENTIAL_PARAMS.contains(&name.as_str())
        || CREDENTIAL_WORDS.iter().any(|word| name.contains(word))
}

#[cfg(test)]
mod tests {
    use super::redact_url_credentials as redact;

    #[test]
    fn userinfo_is_masked_whole() {
        assert_eq!(
            redact("GET https://ghp_abc123@api.example.com/repos failed"),
            "GET https://[redacted]@api.example.com/repos failed"
        );
        assert_eq!(
            redact("postgres://patrol:s3cr3t@db:5432/patrol"),
            "postgres://[redacted]@db:5432/patrol"
        );
    }

    #[test]
    fn credential_query_values_are_masked_and_others_kept() {
        assert_eq!(
            redact("see https://h/x?since=5&access_token=abc&X-Amz-Signature=f00#top."),
            "see https://h/x?since=5&access_token=[redacted]&X-Amz-Signature=[redacted]#top."
        );
        assert_eq!(
            redact("\"https://h/events?api-key=k1&sig=zz&page=2\""),
            "\"https://h/events?api-key=[redacted]&sig=[redacted]&page=2\""
        );
    }

    #[test]
    fn text_without_urls_is_untouched() {
        for text in ["token=abc", "a@b", "no url here", "", "x://"] {
            assert_eq!(redact(text), text);
        }
        assert_eq!(
            redact("https://example.com/a?b=c and https://u:p@h/"),
            "https://example.com/a?b=c and https://[redacted]@h/"
        );
    }
}
