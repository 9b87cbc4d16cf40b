//! Change-event files read with cursors: a file, or the `.ndjson`/`.jsonl`
//! files of a folder (in name order), each read from where the last run
//! stopped. A cursor is a byte offset plus the file's first line, so a file
//! replaced by another (rotation, a re-export) is read from its start
//! instead of from the middle of someone else's bytes. A last line without
//! its newline is left for the next run (a writer may be on it).
//! Or an NDJSON stream over HTTP, resumed by the job kit's cursor.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use patrol_job_kit::http_stream::{new_lines, HttpBody, HttpCursor};
use patrol_job_kit::{LastLine, LineReader, Piece};
use serde::{Deserialize, Serialize};

/// Longest event line taken; a longer one is malformed.
pub const MAX_LINE: usize = 1 << 20;
/// Most bytes read from one side per run; the rest waits for the next run.
pub const MAX_BYTES_PER_RUN: u64 = 256 << 20;
const HEAD_BYTES: usize = 256;

/// Where reading stopped in one file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// The file's first bytes (up to its first newline, at most 256).
    pub head: String,
    pub offset: u64,
    /// Lines read so far (to name a malformed line by number).
    pub lines: u64,
}

/// Cursors of one side, by file path.
pub type Cursors = BTreeMap<String, Mark>;

/// What one read found besides its lines.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReadStats {
    pub files: usize,
    pub lines: u64,
    pub bytes: u64,
    /// Files found replaced and read again from their start.
    pub restarted: Vec<String>,
    /// Whether the byte limit left lines for the next run.
    pub more_waiting: bool,
}

/// The event files at `path`.
pub fn files(path: &Path) -> Result<Vec<PathBuf>, String> {
    let meta = std::fs::metadata(path).map_err(|err| format!("{}: {err}", path.display()))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|err| format!("{}: {err}", path.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("ndjson" | "jsonl")
                )
        })
        .collect();
    found.sort();
    Ok(found)
}

/// Reads the lines added to the files at `path` since `cursors`, handing
/// each (file, line number, bytes) to `on_line` — or `None` for a line over
/// [`MAX_LINE`], read through and dropped. Returns the new cursors.
pub fn read_new(
    path: &Path,
    cursors: &Cursors,
    mut on_line: impl FnMut(&str, u64, Option<&[u8]>),
) -> Result<(Cursors, ReadStats), String> {
    let mut next = Cursors::new();
    let mut stats = ReadStats::default();
    let mut budget = MAX_BYTES_PER_RUN;
    for file in files(path)? {
        let name = file.display().to_string();
        let fail = |err: std::io::Error| format!("{name}: {err}");
        let mut handle = std::fs::File::open(&file).map_err(fail)?;
        let len = handle.metadata().map_err(fail)?.len();
        let mut start = vec![0u8; HEAD_BYTES.min(len as usize)];
        handle.read_exact(&mut start).map_err(fail)?;
        let head = head_of(&start);
        let mut mark = match cursors.get(&name) {
            Some(mark) if mark.offset <= len && mark.head == head => mark.clone(),
            Some(_) => {
                stats.restarted.push(name.clone());
                Mark::default()
            }
            None => Mark::default(),
        };
        mark.head = head;
        stats.files += 1;
        if budget == 0 {
            stats.more_waiting |= mark.offset < len;
            next.insert(name, mark);
            continue;
        }
        handle.seek(SeekFrom::Start(mark.offset)).map_err(fail)?;
        let mut reader = LineReader::new(handle.take(budget))
            .max_line(MAX_LINE)
            .last_line(LastLine::Wait)
            .first_line(mark.lines + 1);
        while let Some(piece) = reader.next_piece(1 << 20, u64::MAX).map_err(fail)? {
            hand_over(&name, &piece, &mut on_line);
            mark.offset += piece.consumed();
            mark.lines += piece.lines();
            stats.lines += piece.lines();
            stats.bytes += piece.consumed();
            budget = budget.saturating_sub(piece.consumed());
        }
        if mark.offset < len && budget == 0 {
            stats.more_waiting = true;
        }
        next.insert(name, mark);
    }
    Ok((next, stats))
}

/// Reads the lines of an NDJSON-over-HTTP answer that are new after
/// `cursor`, handing them to `on_line` like [`read_new`]; returns the
/// cursor to store.
pub fn read_answer(
    name: &str,
    body: &HttpBody,
    cursor: &HttpCursor,
    mut on_line: impl FnMut(&str, u64, Option<&[u8]>),
) -> (HttpCursor, ReadStats) {
    let new = new_lines(body, cursor, u64::MAX);
    let mut stats = ReadStats {
        files: 1,
        ..ReadStats::default()
    };
    if new.restarted {
        stats.restarted.push(name.to_string());
    }
    let mut reader = LineReader::new(&body.bytes[new.start..])
        .max_line(MAX_LINE)
        .first_line(new.first_line);
    // Only the new lines (a half-written last one waits); reading from
    // memory cannot fail.
    while stats.lines < new.taken {
        let Ok(Some(piece)) = reader.next_piece(1 << 20, new.taken - stats.lines) else {
            break;
        };
        hand_over(name, &piece, &mut on_line);
        stats.lines += piece.lines();
        stats.bytes += piece.consumed();
    }
    (new.next, stats)
}

/// Each line of `piece` to `on_line` by number (`None`: overlong).
fn hand_over(name: &str, piece: &Piece, on_line: &mut impl FnMut(&str, u64, Option<&[u8]>)) {
    match piece {
        Piece::Lines {
            first_line, bytes, ..
        } => {
            let mut number = *first_line;
            for line in bytes.split(|b| *b == b'\n') {
                if line.is_empty() {
                    continue;
                }
                on_line(name, number, Some(line));
                number += 1;
            }
        }
        Piece::Overlong { line, .. } => on_line(name, *line, None),
    }
}

/// A file's first line (at most [`HEAD_BYTES`]), or what it has so far.
fn head_of(start: &[u8]) -> String {
    let end = start
        .iter()
        .position(|b| *b == b'\n')
        .unwrap_or(start.len());
    String::from_utf8_lossy(&start[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path, cursors: &Cursors) -> (Vec<(u64, String)>, Cursors, ReadStats) {
        let mut lines = Vec::new();
        let (next, stats) = read_new(path, cursors, |_, n, line| {
            lines.push((
                n,
                line.map_or("<overlong>".into(), |l| {
                    String::from_utf8_lossy(l).into_owned()
                }),
            ))
        })
        .unwrap();
        (lines, next, stats)
    }

    #[test]
    fn each_run_reads_what_was_added_and_a_replaced_file_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("eu.ndjson");
        std::fs::write(&file, "a\nb\npartial").unwrap();
        let (lines, cursors, _) = read(&file, &Cursors::new());
        assert_eq!(lines, vec![(1, "a".into()), (2, "b".into())]);
        std::fs::write(&file, "a\nb\npartial line\nc\n").unwrap();
        let (lines, cursors, _) = read(&file, &cursors);
        assert_eq!(lines, vec![(3, "partial line".into()), (4, "c".into())]);
        let (lines, cursors, _) = read(&file, &cursors);
        assert!(lines.is_empty());
        std::fs::write(&file, "x\n").unwrap();
        let (lines, _, stats) = read(&file, &cursors);
        assert_eq!(lines, vec![(1, "x".into())]);
        assert_eq!(stats.restarted.len(), 1);
    }
}
