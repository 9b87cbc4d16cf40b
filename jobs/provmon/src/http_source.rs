//! `http` sources: an endpoint that answers NDJSON.
//!
//! Two ways to resume. If the server sends `X-Next-Cursor`, the next sweep
//! asks `?since=<that cursor>` and takes every line of the answer as new.
//! Otherwise the answer is taken as the whole append-only stream and the
//! lines already handled are skipped by count (a shorter stream than last
//! time is read again from the start).

use std::time::Duration;

use patrol_job_kit::LineReader;
use serde::{Deserialize, Serialize};

use crate::source::{hand_over, LineSink, SourceStats, MAX_LINE};

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
/// Lines are handed to the sink in chunks of about this many bytes.
const CHUNK_BYTES: usize = 1 << 20;

pub async fn fetch(
    url: &str,
    headers: &[(&str, &str)],
    cursor: &HttpCursor,
    timeout: Duration,
) -> Result<HttpBody, String> {
    let since: Vec<(&str, &str)> = cursor
        .server
        .as_deref()
        .map(|since| ("since", since))
        .into_iter()
        .collect();
    let answer = patrol_job_kit::http::fetch_ndjson(url, &since, headers, timeout, MAX_BODY)
        .await
        .map_err(|err| err.to_string())?;
    let next = answer.header("x-next-cursor");
    Ok(HttpBody {
        bytes: answer.body,
        next,
    })
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
    // The lines to hand over start after the `skip`th newline; from there
    // the bounded line reader takes them (an overlong one is malformed).
    let start = match skip {
        0 => 0,
        n => memchr::memchr_iter(b'\n', text)
            .nth(usize::try_from(n - 1).unwrap_or(usize::MAX))
            .map_or(text.len(), |at| at + 1),
    };
    let mut reader = LineReader::new(&text[start..])
        .max_line(MAX_LINE)
        .first_line(skip + 1);
    let mut handed = 0;
    while handed < taken {
        // Reading from memory cannot fail.
        let Ok(Some(piece)) = reader.next_piece(CHUNK_BYTES, taken - handed) else {
            break;
        };
        hand_over(name, &piece, sink);
        handed += piece.lines();
    }
    stats.lines += taken;
    HttpCursor {
        server: body.next.clone().or_else(|| cursor.server.clone()),
        lines: skip + taken,
    }
}
