//! An NDJSON stream over HTTP read run after run from where the last run
//! stopped.
//!
//! Two ways to resume. If the server sends `X-Next-Cursor`, the next run
//! asks `?since=<that cursor>` and takes every line of the answer as new.
//! Otherwise the answer is taken as the whole append-only stream and the
//! lines already handled are skipped by count (a shorter stream than last
//! time was replaced: it is read again from the start).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::http::{fetch_ndjson, FetchError};

/// Where a stream stopped.
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

/// GETs the part of the stream after `cursor` (`?since=` when the server
/// gave a cursor).
pub async fn fetch_since(
    url: &str,
    headers: &[(&str, &str)],
    cursor: &HttpCursor,
    timeout: Duration,
    max_body: usize,
) -> Result<HttpBody, FetchError> {
    let since: Vec<(&str, &str)> = cursor
        .server
        .as_deref()
        .map(|since| ("since", since))
        .into_iter()
        .collect();
    let answer = fetch_ndjson(url, &since, headers, timeout, max_body).await?;
    let next = answer.header("x-next-cursor");
    // Asked `?since=` and answered without a new cursor: taking the answer
    // would read it again next time; move nothing instead.
    if cursor.server.is_some() && next.is_none() {
        return Err(FetchError {
            endpoint: crate::http::endpoint(url),
            problem: "answered `?since=` without an X-Next-Cursor header".into(),
        });
    }
    Ok(HttpBody {
        bytes: answer.body,
        next,
    })
}

/// The new lines of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLines {
    /// Byte offset in the body where they start.
    pub start: usize,
    /// The stream's line number of the first.
    pub first_line: u64,
    /// How many to take.
    pub taken: u64,
    /// The cursor to store once they are handled.
    pub next: HttpCursor,
    /// The stream was shorter than last time: read again from its start.
    pub restarted: bool,
    /// `limit` left lines for the next run.
    pub more_waiting: bool,
}

/// Which lines of `body` are new after `cursor`, at most `limit` (a
/// server's cursor covers its whole answer: no limit applies then).
pub fn new_lines(body: &HttpBody, cursor: &HttpCursor, limit: u64) -> NewLines {
    let text = &body.bytes[..];
    let newlines = memchr::memchr_iter(b'\n', text).count() as u64;
    let server_cursor = body.next.is_some() || cursor.server.is_some();
    // Counting lines, a last line without its newline may still be being
    // written: it is left for the next answer (never counted half). A
    // server's cursor covers its whole answer, so there it is a line.
    let unterminated = !text.is_empty() && text.last() != Some(&b'\n');
    let total = newlines + u64::from(unterminated && server_cursor);
    let restarted = !server_cursor && total < cursor.lines;
    let skip = if server_cursor || restarted {
        0
    } else {
        cursor.lines
    };
    let mut taken = total - skip;
    let more_waiting = !server_cursor && taken > limit;
    if more_waiting {
        taken = limit;
    }
    let start = match skip {
        0 => 0,
        n => memchr::memchr_iter(b'\n', text)
            .nth(usize::try_from(n - 1).unwrap_or(usize::MAX))
            .map_or(text.len(), |at| at + 1),
    };
    NewLines {
        start,
        first_line: skip + 1,
        taken,
        next: HttpCursor {
            server: body.next.clone().or_else(|| cursor.server.clone()),
            lines: skip + taken,
        },
        restarted,
        more_waiting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(text: &str, next: Option<&str>) -> HttpBody {
        HttpBody {
            bytes: text.as_bytes().to_vec(),
            next: next.map(str::to_string),
        }
    }

    #[test]
    fn without_a_server_cursor_the_lines_already_read_are_skipped_by_count() {
        let first = new_lines(&body("a\nb\n", None), &HttpCursor::default(), 10);
        assert_eq!((first.start, first.taken, first.next.lines), (0, 2, 2));
        let second = new_lines(&body("a\nb\nc\nd\n", None), &first.next, 10);
        assert_eq!((second.start, second.first_line, second.taken), (4, 3, 2));
        // Shorter than before: replaced, read from its start.
        let third = new_lines(&body("x\n", None), &second.next, 10);
        assert!(third.restarted);
        assert_eq!((third.start, third.taken), (0, 1));
        // A limit leaves the rest for the next run.
        let limited = new_lines(&body("a\nb\nc\n", None), &HttpCursor::default(), 2);
        assert!(limited.more_waiting);
        assert_eq!(limited.next.lines, 2);
    }

    #[test]
    fn a_half_written_last_line_is_left_for_the_next_answer() {
        let first = new_lines(&body("a\nb\n{\"op\":", None), &HttpCursor::default(), 10);
        assert_eq!((first.taken, first.next.lines), (2, 2));
        let second = new_lines(&body("a\nb\n{\"op\":\"c\"}\n", None), &first.next, 10);
        assert_eq!((second.start, second.first_line, second.taken), (4, 3, 1));
    }

    #[test]
    fn with_a_server_cursor_every_line_of_the_answer_is_new() {
        let first = new_lines(&body("a\nb\n", Some("7")), &HttpCursor::default(), 1);
        assert_eq!((first.taken, first.more_waiting), (2, false));
        assert_eq!(first.next.server.as_deref(), Some("7"));
        let second = new_lines(&body("c\n", None), &first.next, 10);
        assert_eq!((second.start, second.taken), (0, 1));
        assert_eq!(second.next.server.as_deref(), Some("7"));
    }
}
