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

/// GETs `url` with `query` and `headers` added, within `timeout` for the
/// whole exchange; a non-2xx status or a body over `max_body` bytes is an
/// error (the body is never truncated silently). Header values are marked
/// sensitive (they carry tokens): never shown by reqwest's Debug output.
pub async fn fetch_ndjson(
    url: &str,
    query: &[(&str, &str)],
    headers: &[(&str, &str)],
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
    for (name, value) in headers {
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| fail(format!("`{name}` is not a header name")))?;
        let mut value = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
            fail(format!(
                "the value of header `{name}` is not valid header text"
            ))
        })?;
        value.set_sensitive(true);
        request = request.header(name, value);
    }
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
            &[("Authorization", "Bearer hdr-s3cret")],
            Duration::from_secs(5),
            1 << 20,
        )
        .await
        .expect_err("nothing listens on port 1");
        let text = err.to_string();
        assert!(text.starts_with("http://127.0.0.1:1/events?…: "), "{text}");
        assert_eq!(text.matches("127.0.0.1").count(), 1, "{text}");
        for secret in ["s3cret", "token", "abc", "since", "42", "hdr"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }

    /// One HTTP exchange on a loopback port: answers `body` and hands back
    /// the request's head as the server read it.
    async fn one_answer(body: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        let served = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.ends_with(b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.unwrap();
                assert!(n > 0, "request ended early");
                head.extend_from_slice(&buf[..n]);
            }
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8(head).unwrap()
        });
        (url, served)
    }

    #[tokio::test]
    async fn configured_headers_reach_the_server() {
        let (url, served) = one_answer("{\"a\":1}\n").await;
        let answer = fetch_ndjson(
            &url,
            &[],
            &[
                ("Authorization", "Bearer feed-token-1"),
                ("X-Api-Key", "k-2"),
            ],
            Duration::from_secs(5),
            1 << 20,
        )
        .await
        .unwrap();
        assert_eq!(answer.body, b"{\"a\":1}\n");
        let head = served.await.unwrap().to_ascii_lowercase();
        assert!(
            head.contains("authorization: bearer feed-token-1\r\n"),
            "{head}"
        );
        assert!(head.contains("x-api-key: k-2\r\n"), "{head}");
    }
}
