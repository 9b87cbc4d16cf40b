//! Tabular files (CSV, Parquet) read through polars' streaming engine in
//! bounded batches, and the data files of a folder.
//!
//! A job gives the scan a shape (its `select`, casts, row index) and gets
//! the batches on its own thread, one at a time: at most a couple of
//! batches are in flight whatever the file's size. The job checks each
//! batch's rows and counts the bad ones in its [`crate::SourceStats`]; a file
//! polars cannot read at all is an error naming it.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use polars::prelude::*;

/// The formats a data file may be in, told by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.ndjson`, `.jsonl`, `.json`: read with [`crate::LineReader`].
    Ndjson,
    Csv,
    Parquet,
}

impl Format {
    pub fn of(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()? {
            "ndjson" | "jsonl" | "json" => Some(Format::Ndjson),
            "csv" => Some(Format::Csv),
            "parquet" => Some(Format::Parquet),
            _ => None,
        }
    }
}

/// The data files at `path`: the file itself, or the files of a known
/// [`Format`] in the folder, sorted by name (other files are left alone).
pub fn data_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    let meta = std::fs::metadata(path).map_err(|err| format!("{}: {err}", path.display()))?;
    if meta.is_file() {
        return match Format::of(path) {
            Some(_) => Ok(vec![path.to_path_buf()]),
            None => Err(format!(
                "{}: not .ndjson, .jsonl, .json, .csv or .parquet",
                path.display()
            )),
        };
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|err| format!("{}: {err}", path.display()))? {
        let entry = entry.map_err(|err| format!("{}: {err}", path.display()))?;
        let file = entry.path();
        if file.is_file() && Format::of(&file).is_some() {
            files.push(file);
        }
    }
    files.sort();
    Ok(files)
}

/// A lazy scan of a CSV file with every column as text: a CSV's types are
/// the job's to decide, so a bad value becomes a counted bad row after a
/// cast, never a failed read.
pub fn scan_csv_as_text(path: &Path) -> PolarsResult<LazyFrame> {
    LazyCsvReader::new(PlRefPath::new(path.to_string_lossy().as_ref()))
        .with_has_header(true)
        .with_infer_schema_length(Some(0))
        .finish()
}

/// A lazy scan of a Parquet file (its own types).
pub fn scan_parquet(path: &Path) -> PolarsResult<LazyFrame> {
    LazyFrame::scan_parquet(
        PlRefPath::new(path.to_string_lossy().as_ref()),
        ScanArgsParquet::default(),
    )
}

/// A lazy scan of a CSV or Parquet file by its extension.
pub fn scan(path: &Path) -> Result<LazyFrame, String> {
    let scanned = match Format::of(path) {
        Some(Format::Csv) => scan_csv_as_text(path),
        Some(Format::Parquet) => scan_parquet(path),
        _ => return Err(format!("{}: not a .csv or .parquet file", path.display())),
    };
    scanned.map_err(|err| format!("{}: {err}", path.display()))
}

/// Runs `plan` on polars' streaming engine and hands its batches (about
/// `batch_rows` rows each) to `on_batch` on the calling thread, in order.
///
/// The first error from `on_batch` stops handing batches on (the engine is
/// told to stop) and is returned; a query error is returned naming `name`.
pub fn stream_batches(
    name: &str,
    plan: LazyFrame,
    batch_rows: usize,
    on_batch: impl FnMut(DataFrame) -> Result<(), String>,
) -> Result<(), String> {
    stream(name, plan, batch_rows, true, on_batch)
}

/// [`stream_batches`] for a job that does not need the file's row order
/// (sums, counts): the engine hands batches on as they are decoded instead
/// of holding early ones back to restore the order, which keeps less in
/// memory and all cores busy.
pub fn stream_batches_unordered(
    name: &str,
    plan: LazyFrame,
    batch_rows: usize,
    on_batch: impl FnMut(DataFrame) -> Result<(), String>,
) -> Result<(), String> {
    stream(name, plan, batch_rows, false, on_batch)
}

fn stream(
    name: &str,
    plan: LazyFrame,
    batch_rows: usize,
    maintain_order: bool,
    mut on_batch: impl FnMut(DataFrame) -> Result<(), String>,
) -> Result<(), String> {
    let fail = |err: PolarsError| format!("{name}: {err}");
    // The callback must be 'static: batches cross to this thread, and the
    // engine's thread says when the query is over (the plan may outlive it,
    // keeping the callback's sender alive). Two in flight: the engine reads
    // the next batch while the job works on this one.
    let (send, recv) = std::sync::mpsc::sync_channel::<Scanned>(2);
    let done = send.clone();
    // Returning `true` tells the engine to stop: the receiver is gone.
    let callback =
        PlanCallback::new(move |frame: DataFrame| Ok(send.send(Scanned::Batch(frame)).is_err()));
    let plan = plan
        .sink_batches(
            callback,
            maintain_order,
            NonZeroUsize::new(batch_rows.max(1)),
        )
        .map_err(fail)?;
    let mut batch_error = None;
    std::thread::scope(|scope| -> Result<(), String> {
        scope.spawn(move || {
            let result = plan.collect_with_engine(Engine::Streaming).map(|_| ());
            let _ = done.send(Scanned::Done(result));
        });
        loop {
            match recv.recv() {
                Ok(Scanned::Batch(_)) if batch_error.is_some() => {}
                Ok(Scanned::Batch(frame)) => {
                    if let Err(err) = on_batch(frame) {
                        batch_error = Some(err);
                    }
                }
                Ok(Scanned::Done(result)) => return result.map_err(fail),
                Err(_) => return Err(format!("{name}: the reader stopped without an answer")),
            }
        }
    })?;
    match batch_error {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

enum Scanned {
    Batch(DataFrame),
    Done(PolarsResult<()>),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_folder_gives_its_data_files_by_name_and_a_file_its_format() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "b.csv", "x\n1\n");
        write(dir.path(), "a.ndjson", "{}\n");
        write(dir.path(), "notes.txt", "not data\n");
        let files = data_files(dir.path()).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.ndjson", "b.csv"]);
        let err = data_files(&dir.path().join("notes.txt")).unwrap_err();
        assert!(err.contains("not .ndjson"), "{err}");
        assert!(data_files(&dir.path().join("absent")).is_err());
    }

    #[test]
    fn a_csv_streams_in_batches_of_the_asked_size_as_text() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("n,word\n");
        for n in 0..2_500 {
            text.push_str(&format!("{n},w{n}\n"));
        }
        let path = write(dir.path(), "rows.csv", &text);
        let mut heights = Vec::new();
        let mut seen = 0u64;
        stream_batches("rows.csv", scan(&path).unwrap(), 1_000, |frame| {
            assert_eq!(frame.column("n").unwrap().dtype(), &DataType::String);
            heights.push(frame.height());
            seen += frame.height() as u64;
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, 2_500);
        assert!(heights.iter().all(|h| *h <= 1_000), "{heights:?}");
        assert!(heights.len() >= 3, "{heights:?}");
    }

    #[test]
    fn a_batch_error_stops_the_stream_and_is_returned() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("n\n");
        for n in 0..5_000 {
            text.push_str(&format!("{n}\n"));
        }
        let path = write(dir.path(), "rows.csv", &text);
        let mut calls = 0;
        let err = stream_batches("rows.csv", scan(&path).unwrap(), 100, |_| {
            calls += 1;
            Err("the sink is full".to_string())
        })
        .unwrap_err();
        assert_eq!(err, "the sink is full");
        assert_eq!(calls, 1, "no batch is handed on after an error");
    }

    #[test]
    fn an_unreadable_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "broken.parquet", "this is not parquet");
        let result =
            scan(&path).and_then(|plan| stream_batches("broken.parquet", plan, 100, |_| Ok(())));
        let err = result.unwrap_err();
        assert!(err.contains("broken.parquet"), "{err}");
    }
}
