//! A small Rekor v1 client. Its errors tell an outage (unreachable, 5xx,
//! 429, timeout) from an answer (not found, rejected, malformed), because the
//! job must report a Rekor outage as degraded, not as a missing entry.

use std::time::Duration;

use reqwest::StatusCode;

use crate::rekor::types::{
    parse_entry_response, parse_log_info, parse_search_response, ErrorBody, LogEntry, LogInfo,
    SearchIndex,
};

/// Largest answer read (the public instance's entries are a few KiB).
const MAX_RESPONSE: usize = 8 * 1024 * 1024;

/// Why a request did not produce an answer to verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// Rekor answered 404: it has no such entry.
    #[error("Rekor has no {what}")]
    NotFound { what: String },
    /// Rekor answered 5xx or 429: an outage, not an answer.
    #[error("Rekor is unavailable: HTTP {status}: {message}")]
    Unavailable { status: u16, message: String },
    /// No answer at all (connection refused, DNS, TLS, timeout).
    #[error("Rekor is unreachable: {0}")]
    Unreachable(String),
    /// Rekor refused the request (4xx other than 404 and 429).
    #[error("Rekor rejected the request: HTTP {status}: {message}")]
    Rejected { status: u16, message: String },
    /// A 2xx answer that is not what the API documents.
    #[error("Rekor's answer is malformed: {0}")]
    Malformed(String),
    /// The caller's input cannot form a request (bad UUID, bad digest, bad
    /// base URL).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl ClientError {
    /// Whether this is Rekor being down or unreachable (report "degraded"),
    /// rather than an answer about the entry.
    pub fn is_outage(&self) -> bool {
        matches!(
            self,
            ClientError::Unavailable { .. } | ClientError::Unreachable(_)
        )
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::NotFound { .. })
    }
}

/// A Rekor v1 REST client over reqwest (rustls).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
}

impl Client {
    /// A client for the Rekor at `base_url` (e.g. `https://rekor.sigstore.dev`),
    /// with a whole-request `timeout`.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, ClientError> {
        let base_url = base_url.trim_end_matches('/').to_string();
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(ClientError::InvalidRequest(format!(
                "the Rekor URL {base_url:?} is not http(s)"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("patrol-provmon/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| ClientError::InvalidRequest(error.to_string()))?;
        Ok(Client { http, base_url })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `GET /api/v1/log/entries/{uuid}`: the entry and the UUID Rekor
    /// filed it under.
    pub async fn entry(&self, uuid: &str) -> Result<(String, LogEntry), ClientError> {
        let valid = matches!(uuid.len(), 64 | 80) && uuid.bytes().all(|b| b.is_ascii_hexdigit());
        if !valid {
            return Err(ClientError::InvalidRequest(format!(
                "{uuid:?} is not a Rekor UUID (64 or 80 hex digits)"
            )));
        }
        let url = format!("{}/api/v1/log/entries/{uuid}", self.base_url);
        let body = self
            .send(self.http.get(url), &format!("entry {uuid}"))
            .await?;
        parse_entry_response(&body).map_err(ClientError::Malformed)
    }

    /// `POST /api/v1/index/retrieve` with `{"hash": "sha256:<hex>"}`: the
    /// UUIDs of entries for this artifact digest (`sha256:<hex>` or
    /// `<hex>`); empty when there are none.
    pub async fn search_by_sha256(&self, digest: &str) -> Result<Vec<String>, ClientError> {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ClientError::InvalidRequest(format!(
                "{digest:?} is not a SHA-256 digest"
            )));
        }
        let url = format!("{}/api/v1/index/retrieve", self.base_url);
        let query = SearchIndex {
            hash: Some(format!("sha256:{}", hex.to_ascii_lowercase())),
        };
        let body = self
            .send(self.http.post(url).json(&query), "index entry")
            .await?;
        parse_search_response(&body).map_err(ClientError::Malformed)
    }

    /// `GET /api/v1/log`: tree size, root hash and signed checkpoint.
    pub async fn log_info(&self) -> Result<LogInfo, ClientError> {
        let url = format!("{}/api/v1/log", self.base_url);
        let body = self.send(self.http.get(url), "log").await?;
        parse_log_info(&body).map_err(ClientError::Malformed)
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<Vec<u8>, ClientError> {
        let mut response = request
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|error| ClientError::Unreachable(error_chain(&error)))?;
        let status = response.status();
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_RESPONSE {
                        return Err(ClientError::Malformed(format!(
                            "the answer is larger than {MAX_RESPONSE} bytes"
                        )));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(error) => return Err(ClientError::Unreachable(error_chain(&error))),
            }
        }
        if status.is_success() {
            return Ok(body);
        }
        let message = error_message(&body);
        Err(match status {
            StatusCode::NOT_FOUND => ClientError::NotFound { what: what.into() },
            StatusCode::TOO_MANY_REQUESTS => ClientError::Unavailable {
                status: status.as_u16(),
                message,
            },
            s if s.is_server_error() => ClientError::Unavailable {
                status: s.as_u16(),
                message,
            },
            s => ClientError::Rejected {
                status: s.as_u16(),
                message,
            },
        })
    }
}

/// Rekor's `{"code", "message"}`, or the start of a non-JSON body.
fn error_message(body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(error) if !error.message.is_empty() => error.message,
        _ => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refused_connection_is_an_outage() {
        // Bind then drop a listener: nothing listens on that port now.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let client = Client::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(2))
            .expect("client");
        let error = client.log_info().await.expect_err("nothing listens");
        assert!(error.is_outage(), "{error}");
        assert!(!error.is_not_found());
    }

    #[tokio::test]
    async fn bad_input_is_refused_before_sending() {
        let client = Client::new("http://127.0.0.1:9", Duration::from_secs(1)).expect("client");
        for uuid in ["", "../../admin", &"g".repeat(64), &"a".repeat(63)] {
            let error = client.entry(uuid).await.expect_err("invalid");
            assert!(matches!(error, ClientError::InvalidRequest(_)), "{error}");
        }
        let error = client
            .search_by_sha256("sha256:abc")
            .await
            .expect_err("invalid");
        assert!(matches!(error, ClientError::InvalidRequest(_)), "{error}");
        assert!(Client::new("ftp://x", Duration::from_secs(1)).is_err());
    }

    #[test]
    fn error_messages() {
        assert_eq!(error_message(br#"{"code":404,"message":"nope"}"#), "nope");
        assert_eq!(
            error_message(b"<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
    }
}
