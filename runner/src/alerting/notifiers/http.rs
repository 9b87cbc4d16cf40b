//! What the HTTP notifiers (PagerDuty, webhook) share: one way to build a
//! client, read `Retry-After`, and turn statuses and transport failures
//! into `SendError`s whose messages carry no secret and no URL path.

use std::error::Error as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};

use super::super::notify::{Retry, SendError};
use super::super::secret;

/// How much of an error response is read and quoted; enough for any
/// service's error JSON, small enough that a misbehaving server cannot
/// fill memory or the ledger.
const MAX_ERROR_BODY: usize = 2048;

/// `text` as an `http(s)://` URL with a host, or why not.
pub(super) fn parse_http_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text.trim()).map_err(|err| format!("`{text}` is not a URL ({err})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "`{text}` must be an http:// or https:// URL, not {}:",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{text}` has no host"));
    }
    Ok(url)
}

/// Whether `url` points at this machine.
pub(super) fn is_loopback(url: &Url) -> bool {
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// `scheme://host[:port]` of `url`: enough to say where a send went
/// without quoting a path or query that may hold a token.
pub(super) fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// A client that gives up after `timeout` and does not follow redirects
/// (a redirected POST would become a GET, or carry a signature elsewhere).
pub(super) fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("patrol/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|err| format!("cannot build an HTTP client: {}", chain(&err)))
}

/// `Retry-After` as seconds or an HTTP date, when present and sensible.
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    retry_after_value(value, Utc::now())
}

fn retry_after_value(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    // A date in the past means "now"; zero lets the worker's backoff decide.
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// How a non-success status should be retried: 429 and 5xx later (after
/// `Retry-After` when given), 408 later, any other status never.
pub(super) fn retry_for_status(status: StatusCode, retry_after: Option<Duration>) -> Retry {
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Retry::Later { retry_after }
    } else if status == StatusCode::REQUEST_TIMEOUT {
        Retry::Later { retry_after: None }
    } else {
        Retry::Never
    }
}

/// The error for a response with a non-success status; `detail` is what
/// the service said (already shortened), quoted after redaction.
pub(super) fn status_error(
    service: &str,
    status: StatusCode,
    retry_after: Option<Duration>,
    detail: &str,
) -> SendError {
    let retry = retry_for_status(status, retry_after);
    let mut message = format!("{service} answered {status}");
    if status.is_redirection() {
        message.push_str(" (patrol does not follow redirects; configure the final URL)");
    }
    if !detail.trim().is_empty() {
        message.push_str(": ");
        message.push_str(detail.trim());
    }
    SendError {
        retry,
        message: secret::redact(&message),
        http_status: Some(status.as_u16()),
    }
}

/// The error for a request that got no response: timeouts, refused or
/// reset connections, TLS failures. All are worth another try.
pub(super) fn transport_error(service: &str, target: &str, err: &reqwest::Error) -> SendError {
    let what = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    let message = format!("{service} request to {target} {what}: {}", chain(err));
    SendError::transient(secret::redact(&message))
}

/// Up to `MAX_ERROR_BODY` bytes of a response body, as text; a body that
/// cannot be read is reported as such rather than failing the error path.
pub(super) async fn error_body(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                body.extend_from_slice(&chunk);
                if body.len() >= MAX_ERROR_BODY {
                    body.truncate(MAX_ERROR_BODY);
                    break;
                }
            }
            Ok(None) => break,
            Err(_) => return "(body unreadable)".into(),
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// An error and its causes on one line, without the request URL (reqwest
/// puts it in its own message; it may hold a token).
fn chain(err: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source = err.source();
    while let Some(cause) = source {
        parts.push(cause.to_string());
        source = cause.source();
    }
    if parts.is_empty() {
        // No cause: the top-level text, with the URL removed.
        parts.push(
            err.url()
                .map(|url| err.to_string().replace(url.as_str(), "…"))
                .unwrap_or_else(|| err.to_string()),
        );
    }
    parts.dedup();
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = Utc
            .with_ymd_and_hms(2025, 12, 5, 10, 0, 0)
            .single()
            .unwrap();
        assert_eq!(retry_after_value("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after_value("Fri, 05 Dec 2025 10:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after_value("Fri, 05 Dec 2025 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after_value("soon", now), None);
    }

    #[test]
    fn statuses_map_to_retries() {
        let later = Some(Duration::from_secs(3));
        assert_eq!(
            retry_for_status(StatusCode::TOO_MANY_REQUESTS, later),
            Retry::Later { retry_after: later }
        );
        assert_eq!(
            retry_for_status(StatusCode::BAD_GATEWAY, None),
            Retry::Later { retry_after: None }
        );
        assert_eq!(
            retry_for_status(StatusCode::BAD_REQUEST, later),
            Retry::Never
        );
        assert_eq!(retry_for_status(StatusCode::FORBIDDEN, None), Retry::Never);
        assert_eq!(
            retry_for_status(StatusCode::MOVED_PERMANENTLY, None),
            Retry::Never
        );
    }

    #[test]
    fn urls_must_be_http_with_a_host() {
        assert!(parse_http_url("https://events.pagerduty.com").is_ok());
        assert!(parse_http_url("http://127.0.0.1:8080/hook").is_ok());
        let err = parse_http_url("ftp://example.com").unwrap_err();
        assert!(err.contains("http:// or https://"), "{err}");
        assert!(parse_http_url("not a url").is_err());
        let url = parse_http_url("https://hooks.example/T000/secret-path?token=x").unwrap();
        assert_eq!(origin(&url), "https://hooks.example");
    }
}
