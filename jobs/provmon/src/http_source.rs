//! `http` sources: an endpoint that answers NDJSON.
//!
//! Two ways to resume. If the server sends `X-Next-Cursor`, the next sweep
//! asks `?since=<that cursor>` and takes every line of the answer as new.
//! Otherwise the answer is taken as the whole append-only stream and the
//! lines already handled are skipped by count (a shorter stream than last
//! time is read again from the start).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::source::{LineSink, SourceStats};

/// Where an `http` source stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpCursor {
    /// The server's cursor (`X-Next-Cursor`), when it gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Lines of the stream handled (when the server gives no cursor).
    #[serde(default)]
    pub lines: u64,
}

/// One answer.
#[derive(Debug, Clone)]
pub struct HttpBody {
    pub bytes: Vec<u8>,
    pub next: Option<String>,
}

/// Largest answer read; a bigger one fails the source (say so, don't truncate).
pub const MAX_BODY: usize = 512 << 20;

pub async fn fetch(url: &str, cursor: &HttpCursor, timeout: Duration) -> Result<HttpBody, String> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|err| err.to_string())?;
    let mut request = client.get(url);
    if let Some(since) = &cursor.server {
        request = request.query(&[("since", since)]);
    }
    let mut response = request
        .send()
        .await
        .map_err(|err| format!("{url}: {}", without_url(err)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("{url}: HTTP {status}"));
    }
    let next = response
        .headers()
        .get("x-next-cursor")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|err| format!("{url}: {}", without_url(err)))?
    {
        if bytes.len() + chunk.len() > MAX_BODY {
            return Err(format!("{url}: answer larger than {} MiB", MAX_BODY >> 20));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(HttpBody { bytes, next })
}

/// reqwest's errors repeat the URL; it is said once by the caller.
fn without_url(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Hands the new lines of `body` to `sink` (at most `limit`); the cursor
/// to store once they are handled.
pub fn read_body(
    name: &str,
    body: &HttpBody,
    cursor: &HttpCursor,
    limit: u64,
    stats: &mut SourceStats,
    sink: &mut dyn LineSink,
) -> HttpCursor {
    let text = &body.bytes[..];
    let newlines = memchr::memchr_iter(b'\n', text).count() as u64;
    let total = newlines + u64::from(!text.is_empty() && text.last() != Some(&b'\n'));
    let server_cursor = body.next.is_some() || cursor.server.is_some();
    let skip = if server_cursor {
        0
    } else if total < cursor.lines {
        stats.restarted_files += 1;
        0
    } else {
        cursor.lines
    };
    // The server's cursor covers the whole answer: no limit applies.
    let mut taken = total - skip;
    if !server_cursor && taken > limit {
        taken = limit;
        stats.more_waiting = true;
    }
    // Byte offset where line `n` (0-based) starts.
    let line_start = |n: u64| -> usize {
        if n == 0 {
            return 0;
        }
        memchr::memchr_iter(b'\n', text)
            .nth(usize::try_from(n - 1).unwrap_or(usize::MAX))
            .map_or(text.len(), |at| at + 1)
    };
    let (start, end) = (line_start(skip), line_start(skip + taken));
    if start < end {
        sink.lines(name, skip + 1, &text[start..end]);
    }
    stats.lines += taken;
    HttpCursor {
        server: body.next.clone().or_else(|| cursor.server.clone()),
        lines: skip + taken,
    }
}
