//! Event sources. `files`: NDJSON files (`*.ndjson`, `*.jsonl`) in a
//! folder, or one file, read from where the last sweep stopped (a byte
//! offset per file, kept in the job's state and advanced only with the
//! run's end). Lines are streamed, never loaded whole.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::event::{parse_event, Event};

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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SourceStats {
    pub events: u64,
    pub malformed: u64,
    /// The first few malformed lines, as `file:line: problem`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<String>,
    /// Files that shrank since the last sweep (rotated): read from the start.
    #[serde(skip_serializing_if = "is_zero")]
    pub restarted_files: u64,
    /// The per-sweep event limit was reached; the rest waits for the next sweep.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub more_waiting: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

const SAMPLES: usize = 5;
/// A last line without its newline is taken once the file has been still
/// this long; before, a writer may be in the middle of it.
const SETTLED: Duration = Duration::from_secs(5);
/// Longest line read; longer ones are malformed (and skipped whole).
const MAX_LINE: usize = 1 << 20;

/// Reads new events from `path`, calling `on_event` for each, up to
/// `limit` events. Returns the cursor to store once they are handled.
pub fn read_files(
    path: &Path,
    cursor: &FilesCursor,
    limit: u64,
    stats: &mut SourceStats,
    on_event: &mut dyn FnMut(Event<'_>),
) -> std::io::Result<FilesCursor> {
    let mut next = cursor.clone();
    for (name, file) in event_files(path)? {
        if stats.events >= limit {
            stats.more_waiting = true;
            break;
        }
        let position = cursor.files.get(&name).copied().unwrap_or_default();
        let end = read_file(&name, &file, position, limit, stats, on_event)?;
        next.files.insert(name, end);
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
        if is_events && entry.file_type()?.is_file() {
            files.push((name, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

fn read_file(
    name: &str,
    path: &Path,
    mut position: FilePosition,
    limit: u64,
    stats: &mut SourceStats,
    on_event: &mut dyn FnMut(Event<'_>),
) -> std::io::Result<FilePosition> {
    let mut file = std::fs::File::open(path)?;
    let metadata = file.metadata()?;
    if metadata.len() < position.offset {
        stats.restarted_files += 1;
        position = FilePosition::default();
    }
    let settled = metadata
        .modified()
        .ok()
        .and_then(|modified| SystemTime::now().duration_since(modified).ok())
        .is_some_and(|age| age >= SETTLED);
    file.seek(SeekFrom::Start(position.offset))?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut line = Vec::with_capacity(512);
    while stats.events < limit {
        line.clear();
        let read = Read::by_ref(&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if read == 0 {
            break;
        }
        let complete = line.last() == Some(&b'\n');
        if !complete && read <= MAX_LINE && !settled {
            break; // a writer is still on this line
        }
        position.offset += read as u64;
        if !complete && read > MAX_LINE {
            // Skip the rest of an overlong line.
            let mut rest = Vec::new();
            position.offset += reader.read_until(b'\n', &mut rest)? as u64;
        }
        position.line += 1;
        let text = trim(&line);
        if text.is_empty() {
            continue;
        }
        let parsed = if read > MAX_LINE {
            Err(format!("line longer than {MAX_LINE} bytes"))
        } else {
            parse_event(text)
        };
        match parsed {
            Ok(event) => {
                stats.events += 1;
                on_event(event);
            }
            Err(problem) => {
                stats.malformed += 1;
                if stats.samples.len() < SAMPLES {
                    stats
                        .samples
                        .push(format!("{name}:{}: {problem}", position.line));
                }
            }
        }
    }
    if stats.events >= limit {
        stats.more_waiting = true;
    }
    Ok(position)
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

    fn read(
        dir: &Path,
        cursor: &FilesCursor,
        limit: u64,
    ) -> (Vec<Event<'static>>, FilesCursor, SourceStats) {
        let mut events = Vec::new();
        let mut stats = SourceStats::default();
        let next = read_files(dir, cursor, limit, &mut stats, &mut |event| {
            events.push(event.into_owned())
        })
        .unwrap();
        (events, next, stats)
    }

    const RELEASE: &str = r#"{"type":"release","ts":"2026-11-20T10:00:00Z","release_sha":"r1"}"#;

    #[test]
    fn reads_only_what_is_new_counts_malformed_lines_and_waits_for_half_written_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.ndjson");
        let mut file = std::fs::File::create(&path).unwrap();
        writeln!(file, "{RELEASE}\nnot json\n\n{RELEASE}").unwrap();
        std::fs::write(dir.path().join("ignored.txt"), "x").unwrap();
        let (events, cursor, stats) = read(dir.path(), &FilesCursor::default(), 100);
        assert_eq!((events.len(), stats.malformed), (2, 1));
        assert_eq!(
            stats.samples,
            ["a.ndjson:2: expected ident at line 1 column 2"]
        );

        // Nothing new: nothing read. A half-written line waits.
        let (events, same, _) = read(dir.path(), &cursor, 100);
        assert!(events.is_empty());
        assert_eq!(same, cursor);
        write!(file, "{}", &RELEASE[..20]).unwrap();
        let (events, same, _) = read(dir.path(), &cursor, 100);
        assert!(events.is_empty());
        assert_eq!(same, cursor);
        writeln!(file, "{}", &RELEASE[20..]).unwrap();
        let (events, next, _) = read(dir.path(), &cursor, 100);
        assert_eq!(events.len(), 1);
        assert_eq!(next.files["a.ndjson"].line, 5);

        // A rotated (shorter) file is read from the start.
        std::fs::write(&path, format!("{RELEASE}\n")).unwrap();
        let (events, _, stats) = read(dir.path(), &next, 100);
        assert_eq!((events.len(), stats.restarted_files), (1, 1));
    }

    #[test]
    fn the_per_sweep_limit_leaves_the_rest_for_the_next_sweep() {
        let dir = tempfile::tempdir().unwrap();
        let lines: String = (0..10).map(|_| format!("{RELEASE}\n")).collect();
        std::fs::write(dir.path().join("a.ndjson"), &lines).unwrap();
        std::fs::write(dir.path().join("b.ndjson"), &lines).unwrap();
        let (events, cursor, stats) = read(dir.path(), &FilesCursor::default(), 15);
        assert_eq!(events.len(), 15);
        assert!(stats.more_waiting);
        let (events, _, stats) = read(dir.path(), &cursor, 15);
        assert_eq!(events.len(), 5);
        assert!(!stats.more_waiting);
    }
}
