//! Where each field of a YAML document sits, so errors found after
//! deserializing (bad cron, unknown zone, duplicate id) can name a line.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Dotted field path (`retries.max`, `[2].cron`) → 1-based (line, column).
#[derive(Debug, Default)]
pub struct LineIndex {
    positions: HashMap<String, (usize, usize)>,
}

impl LineIndex {
    /// Indexes `source`; a document the scanner rejects yields an empty
    /// index (the deserializer reports the syntax error with its location).
    pub fn build(source: &str) -> Self {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(source);
        let _ = parser.load(&mut builder, false);
        Self {
            positions: builder.positions,
        }
    }

    /// The position of `path`, or of its nearest ancestor that was indexed.
    pub fn locate(&self, path: &str) -> Option<(usize, usize)> {
        let mut path = path;
        loop {
            if let Some(position) = self.positions.get(path) {
                return Some(*position);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }
}

/// A YAML document read into `T`, kept with its line index, so checks made
/// after deserializing can still name `file:line:col: field`.
pub struct Located<T> {
    pub value: T,
    path: std::path::PathBuf,
    index: LineIndex,
}

impl<T> Located<T> {
    /// `file:line:col: field: message` (without a position when the field
    /// is not found in the document).
    pub fn at(&self, field: &str, message: impl std::fmt::Display) -> String {
        located_message(&self.path, &self.index, field, message)
    }
}

fn located_message(
    path: &std::path::Path,
    index: &LineIndex,
    field: &str,
    message: impl std::fmt::Display,
) -> String {
    match index.locate(field) {
        Some((line, column)) => format!("{}:{line}:{column}: {field}: {message}", path.display()),
        None => format!("{}: {field}: {message}", path.display()),
    }
}

/// Deserializes `source` (read from `path`) into `T`; a syntax error or a
/// field that does not fit is one message naming file, line and field.
pub fn parse_located<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
    source: &str,
) -> Result<Located<T>, String> {
    let index = LineIndex::build(source);
    let value: serde_norway::Value = serde_norway::from_str(source)
        .map_err(|err| format!("{}: invalid YAML: {err}", path.display()))?;
    let value: T = serde_path_to_error::deserialize(value).map_err(|err| {
        let field = err.path().to_string();
        located_message(path, &index, &field, err.into_inner())
    })?;
    Ok(Located {
        value,
        path: path.to_path_buf(),
        index,
    })
}

/// [`parse_located`] of the file at `path`.
pub fn read_located<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
) -> Result<Located<T>, String> {
    let source = std::fs::read_to_string(path)
        .map_err(|err| format!("{}: cannot read: {err}", path.display()))?;
    parse_located(path, &source)
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    positions: HashMap<String, (usize, usize)>,
}

impl Builder {
    /// Path of the value that starts now, or `None` if a key starts now.
    fn value_path(&self) -> Option<String> {
        match self.stack.last() {
            None => Some(String::new()),
            Some(Frame::Map { key: None, .. }) => None,
            Some(Frame::Map {
                path,
                key: Some(key),
            }) => Some(join(path, key)),
            Some(Frame::Seq { path, index }) => Some(format!("{path}[{index}]")),
        }
    }

    fn value_done(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key, .. }) => *key = None,
            Some(Frame::Seq { index, .. }) => *index += 1,
            None => {}
        }
    }

    fn record(&mut self, path: String, mark: Marker) {
        self.positions
            .entry(path)
            .or_insert((mark.line(), mark.col() + 1));
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let path = self.value_path().unwrap_or_default();
                self.record(path.clone(), mark);
                self.stack
                    .push(if matches!(event, Event::MappingStart(..)) {
                        Frame::Map { path, key: None }
                    } else {
                        Frame::Seq { path, index: 0 }
                    });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.value_done();
            }
            Event::Scalar(text, ..) => match self.value_path() {
                // A key: its line is the field's line.
                None => {
                    if let Some(Frame::Map { path, key }) = self.stack.last_mut() {
                        let full = join(path, &text);
                        *key = Some(text);
                        self.record(full, mark);
                    }
                }
                Some(path) => {
                    self.record(path, mark);
                    self.value_done();
                }
            },
            Event::Alias(_) => self.value_done(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LineIndex;

    #[test]
    fn locates_keys_nested_fields_and_list_items() {
        let index = LineIndex::build("id: a\nretries:\n  max: 2\nlist:\n  - x\n  - {k: v}\n");
        assert_eq!(index.locate("id"), Some((1, 1)));
        assert_eq!(index.locate("retries.max"), Some((3, 3)));
        assert_eq!(index.locate("list[1].k"), Some((6, 6)));
        // Unknown paths fall back to the nearest ancestor.
        assert_eq!(index.locate("retries.maxx"), Some((2, 1)));
    }

    #[test]
    fn top_level_list_of_documents() {
        let index = LineIndex::build("- id: a\n  cron: x\n- id: b\n  cron: y\n");
        assert_eq!(index.locate("[1].cron"), Some((4, 3)));
    }
}
