//! Event sources. `files`: NDJSON files (`*.ndjson`, `*.jsonl`) in a
//! folder, or one file, read from where the last sweep stopped (a byte
//! offset per file, kept in the job's state and advanced only with the
//! run's end). Lines are streamed, never loaded whole.

use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use patrol_job_kit::{LastLine, LineReader, Piece};
use serde::{Deserialize, Serialize};

/// Where the lines read go (the parser, on other threads).
pub trait LineSink {
    /// Complete lines of `file`, the first being line `first_line`.
    fn lines(&mut self, file: &str, first_line: u64, chunk: &[u8]);
    /// A line that could not be taken (too long).
    fn malformed(&mut self, file: &str, line_no: u64, problem: String);
}

/// Where a `files` source stopped, per file (name relative to the source).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesCursor {
    pub files: BTreeMap<String, FilePosition>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePosition {
    pub offset: u64,
    pub line: u64,
}

/// What reading a source found, for the run's summary and details.
pub use patrol_job_kit::SourceStats;

/// A last line without its newline is taken once the file has been still
/// this long; before, a writer may be in the middle of it.
const SETTLED: Duration = Duration::from_secs(5);
/// Longest line read; longer ones are malformed (and skipped whole).
pub const MAX_LINE: usize = patrol_job_kit::DEFAULT_MAX_LINE;
/// Lines are handed to the sink in chunks of about this many bytes.
const CHUNK_BYTES: usize = 1 << 20;

/// Reading stopped by an I/O error; `cursor` covers exactly the lines
/// handed to the sink before it, so storing it neither skips nor repeats.
#[derive(Debug)]
pub struct ReadError {
    pub cursor: FilesCursor,
    pub error: std::io::Error,
}

/// Reads new lines from `path` into `sink`, up to `limit` lines. Returns
/// the cursor to store once they are handled.
pub fn read_files(
    path: &Path,
    cursor: &FilesCursor,
    limit: u64,
    stats: &mut SourceStats,
    sink: &mut dyn LineSink,
) -> Result<FilesCursor, ReadError> {
    let mut next = cursor.clone();
    let files = event_files(path).map_err(|error| ReadError {
        cursor: cursor.clone(),
        error,
    })?;
    for (name, file) in files {
        if stats.lines >= limit {
            stats.more_waiting = true;
            break;
        }
        let mut position = cursor.files.get(&name).copied().unwrap_or_default();
        let result = read_file(&name, &file, &mut position, limit, stats, sink);
        next.files.insert(name, position);
        if let Err(error) = result {
            return Err(ReadError {
                cursor: next,
                error,
            });
        }
    }
    Ok(next)
}

/// `(name, path)` of the event files under `path`, in name order.
fn event_files(path: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    if path.is_file() {
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Ok(vec![(name, path.to_path_buf())]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_events = name.ends_with(".ndjson") || name.ends_with(".jsonl");
        // Symlinks count (rotation setups point a stable name at the live
        // file); one that leads nowhere fails when opened, visibly.
        let kind = entry.file_type()?;
        if is_events && (kind.is_file() || kind.is_symlink()) {
            files.push((name, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

/// Hands the new lines of one file to `sink`, moving `position` past each
/// chunk handed over (so on an error it says how far the sink got).
fn read_file(
    name: &str,
    path: &Path,
    position: &mut FilePosition,
    limit: u64,
    stats: &mut SourceStats,
    sink: &mut dyn LineSink,
) -> std::io::Result<()> {
    let mut file = std::fs::File::open(path)?;
    let metadata = file.metadata()?;
    if metadata.len() < position.offset {
        stats.restarted_files += 1;
        *position = FilePosition::default();
    }
    let settled = metadata
        .modified()
        .ok()
        .and_then(|modified| SystemTime::now().duration_since(modified).ok())
        .is_some_and(|age| age >= SETTLED);
    file.seek(SeekFrom::Start(position.offset))?;
    // Whole chunks of complete lines go to the sink; the parsing (the
    // expensive part) happens there, on other threads. A last line without
    // its newline may be half-written until the file has been still.
    let mut reader = LineReader::new(file)
        .max_line(MAX_LINE)
        .first_line(position.line + 1)
        .last_line(if settled {
            LastLine::Take
        } else {
            LastLine::Wait
        });
    while stats.lines < limit {
        let Some(piece) = reader.next_piece(CHUNK_BYTES, limit - stats.lines)? else {
            break;
        };
        hand_over(name, &piece, sink);
        position.offset += piece.consumed();
        position.line += piece.lines();
        stats.lines += piece.lines();
    }
    if stats.lines >= limit {
        stats.more_waiting = true;
    }
    Ok(())
}

/// Gives the sink a piece of `name`: its lines, or the overlong line it
/// skipped, as malformed.
pub fn hand_over(name: &str, piece: &Piece, sink: &mut dyn LineSink) {
    match piece {
        Piece::Lines {
            first_line, bytes, ..
        } => sink.lines(name, *first_line, bytes),
        Piece::Overlong { line, .. } => {
            sink.malformed(name, *line, piece.problem().unwrap_or_default())
        }
    }
}

/// Splits a chunk of lines; `first` is the number of its first line.
pub fn each_line(first: u64, chunk: &[u8], mut f: impl FnMut(u64, &[u8])) {
    for (line_no, line) in (first..).zip(chunk.split(|&b| b == b'\n')) {
        let text = trim(line);
        if !text.is_empty() {
            f(line_no, text);
        }
    }
}

fn trim(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |n| n + 1);
    let start = line[..end]
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(end);
    &line[start..end]
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::chain::Chains;
    use crate::ingest::Ingest;

    /// No event is too far in the future for these tests.
    fn any_time() -> crate::event::Horizon {
        crate::event::Horizon {
            now: chrono::DateTime::<chrono::Utc>::MAX_UTC,
            max_skew: std::time::Duration::ZERO,
        }
    }

    fn read(dir: &Path, cursor: &FilesCursor, limit: u64) -> (Chains, FilesCursor, SourceStats) {
        let mut ingest = Ingest::new(1, None, any_time());
        let mut stats = SourceStats::default();
        let next = read_files(dir, cursor, limit, &mut stats, &mut ingest).unwrap();
        let (chains, parsed) = ingest.finish().unwrap();
        stats.events = parsed[0].events;
        stats.malformed = parsed[0].malformed;
        stats.samples = parsed[0]
            .samples
            .iter()
            .map(|(file, line, problem)| format!("{file}:{line}: {problem}"))
            .collect();
        (chains, next, stats)
    }

    const RELEASE: &str = r#"{"type":"release","ts":"2026-11-20T10:00:00Z","release_sha":"r1"}"#;

    #[test]
    fn reads_only_what_is_new_counts_malformed_lines_and_waits_for_half_written_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.ndjson");
        let mut file = std::fs::File::create(&path).unwrap();
        writeln!(file, "{RELEASE}\nnot json\n\n{RELEASE}").unwrap();
        std::fs::write(dir.path().join("ignored.txt"), "x").unwrap();
        let (chains, cursor, stats) = read(dir.path(), &FilesCursor::default(), 100);
        assert_eq!((stats.events, stats.malformed), (2, 1));
        assert_eq!(chains.releases.len(), 1);
        assert_eq!(
            stats.samples,
            ["a.ndjson:2: expected ident at line 1 column 2"]
        );

        // Nothing new: nothing read. A half-written line waits.
        let (_, same, stats) = read(dir.path(), &cursor, 100);
        assert_eq!(stats.events, 0);
        assert_eq!(same, cursor);
        write!(file, "{}", &RELEASE[..20]).unwrap();
        let (_, same, stats) = read(dir.path(), &cursor, 100);
        assert_eq!(stats.events, 0);
        assert_eq!(same, cursor);
        writeln!(file, "{}", &RELEASE[20..]).unwrap();
        let (_, next, stats) = read(dir.path(), &cursor, 100);
        assert_eq!(stats.events, 1);
        assert_eq!(next.files["a.ndjson"].line, 5);

        // A rotated (shorter) file is read from the start.
        std::fs::write(&path, format!("{RELEASE}\n")).unwrap();
        let (_, _, stats) = read(dir.path(), &next, 100);
        assert_eq!((stats.events, stats.restarted_files), (1, 1));
    }

    #[test]
    fn the_per_sweep_limit_leaves_the_rest_for_the_next_sweep() {
        let dir = tempfile::tempdir().unwrap();
        let lines: String = (0..10).map(|_| format!("{RELEASE}\n")).collect();
        std::fs::write(dir.path().join("a.ndjson"), &lines).unwrap();
        std::fs::write(dir.path().join("b.ndjson"), &lines).unwrap();
        let (_, cursor, stats) = read(dir.path(), &FilesCursor::default(), 15);
        assert_eq!(stats.events, 15);
        assert!(stats.more_waiting);
        let (_, _, stats) = read(dir.path(), &cursor, 15);
        assert_eq!(stats.events, 5);
        assert!(!stats.more_waiting);
    }

    #[test]
    fn an_unreadable_file_keeps_the_progress_made_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let lines: String = (0..3).map(|_| format!("{RELEASE}\n")).collect();
        std::fs::write(dir.path().join("a.ndjson"), &lines).unwrap();
        std::os::unix::fs::symlink(dir.path().join("gone"), dir.path().join("b.ndjson")).unwrap();
        std::fs::write(dir.path().join("c.ndjson"), &lines).unwrap();

        let mut ingest = Ingest::new(1, None, any_time());
        let mut stats = SourceStats::default();
        let cursor = FilesCursor::default();
        let err = read_files(dir.path(), &cursor, 100, &mut stats, &mut ingest).unwrap_err();
        let (_, parsed) = ingest.finish().unwrap();
        assert_eq!(parsed[0].events, 3, "a.ndjson was handed over");
        assert_eq!(err.cursor.files["a.ndjson"].line, 3);
        assert_eq!(err.error.kind(), std::io::ErrorKind::NotFound);

        // Once the link leads somewhere, reading goes on after a.ndjson.
        std::fs::write(dir.path().join("gone"), &lines).unwrap();
        let (_, next, stats) = read(dir.path(), &err.cursor, 100);
        assert_eq!(stats.events, 6, "b and c, not a again");
        assert_eq!(next.files["b.ndjson"].line, 3);
    }
}
