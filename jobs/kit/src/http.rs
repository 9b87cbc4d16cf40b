//! NDJSON fetched over HTTP: one GET, a cap on the answer, errors that name
//! the endpoint once and never its credentials or query. The body's lines
//! are meant for [`crate::LineReader`] (`LineReader::new(&answer.body[..])`).

use std::time::Duration;

use reqwest::header::HeaderMap;

/// A successful answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub body: Vec<u8>,
    pub headers: HeaderMap,
}

impl Answer {
    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
    }
}

/// Why a fetch failed; shows as `<endpoint>: <problem>`, the endpoint
/// without user, password or query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchError {
    pub endpoint: String,
    pub problem: String,
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.endpoint, self.problem)
    }
}

impl std::error::Error for FetchError {}

/// GETs `url` with `query` added, within `timeout` for the whole exchange;
/// a non-2xx status or a body over `max_body` bytes is an error (the body
/// is never truncated silently).
pub async fn fetch_ndjson(
    url: &str,
    query: &[(&str, &str)],
    timeout: Duration,
    max_body: usize,
) -> Result<Answer, FetchError> {
    let fail = |problem: String| FetchError {
        endpoint: endpoint(url),
        problem,
    };
    let too_big = || fail(format!("answer larger than {}", size_text(max_body)));
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|err| fail(cause_chain(err)))?;
    let mut request = client.get(url);
    if !query.is_empty() {
        request = request.query(query);
    }
    let mut response = request.send().await.map_err(|err| fail(cause_chain(err)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(fail(format!("HTTP {status}")));
    }
    if response
        .content_length()
        .is_some_and(|length| length > max_body as u64)
    {
        return Err(too_big());
    }
    let headers = response.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|err| fail(cause_chain(err)))?
    {
        if body.len() + chunk.len() > max_body {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer { body, headers })
}

/// `url` as errors name it: scheme, host, port and path; user, password
/// and query (which may hold tokens) left out, a query shown as `?…`.
pub fn endpoint(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let had_query = parsed.query().is_some();
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            let mut shown = parsed.to_string();
            if had_query {
                shown.push_str("?…");
            }
            shown
        }
        // Not a URL: show what comes before anything secret-looking.
        Err(_) => {
            let head = url.split(['?', '#']).next().unwrap_or_default();
            head.rsplit('@').next().unwrap_or_default().to_string()
        }
    }
}

/// The error and its causes, without reqwest's copy of the URL (the caller
/// names the endpoint once, cleaned).
fn cause_chain(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

fn size_text(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes % (1 << 20) == 0 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_shown_has_no_credentials_or_query() {
        assert_eq!(
            endpoint("https://bot:s3cret@feed.example.com:8443/events.ndjson?token=abc#x"),
            "https://feed.example.com:8443/events.ndjson?…"
        );
        assert_eq!(
            endpoint("http://127.0.0.1:9/audit"),
            "http://127.0.0.1:9/audit"
        );
        assert_eq!(endpoint("not a url?token=abc"), "not a url");
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_endpoint_once_and_no_secret() {
        // Port 1 on loopback: nothing listens there.
        let err = fetch_ndjson(
            "http://bot:s3cret@127.0.0.1:1/events?token=abc",
            &[("since", "42")],
            Duration::from_secs(5),
            1 << 20,
        )
        .await
        .expect_err("nothing listens on port 1");
        let text = err.to_string();
        assert!(text.starts_with("http://127.0.0.1:1/events?…: "), "{text}");
        assert_eq!(text.matches("127.0.0.1").count(), 1, "{text}");
        for secret in ["s3cret", "token", "abc", "since", "42"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
}
