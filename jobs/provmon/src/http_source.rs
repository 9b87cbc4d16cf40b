//! `http` sources: an endpoint that answers NDJSON, resumed run after run
//! through the job kit's cursor (`patrol_job_kit::http_stream`).

use std::time::Duration;

use patrol_job_kit::http_stream::{fetch_since, new_lines};
pub use patrol_job_kit::http_stream::{HttpBody, HttpCursor};
use patrol_job_kit::LineReader;

use crate::source::{hand_over, LineSink, SourceStats, MAX_LINE};

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
    fetch_since(url, headers, cursor, timeout, MAX_BODY)
        .await
        .map_err(|err| err.to_string())
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
    let new = new_lines(body, cursor, limit);
    if new.restarted {
        stats.restarted_files += 1;
    }
    stats.more_waiting |= new.more_waiting;
    let taken = new.taken;
    let mut reader = LineReader::new(&body.bytes[new.start..])
        .max_line(MAX_LINE)
        .first_line(new.first_line);
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
    new.next
}
