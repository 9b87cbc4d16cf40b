//! Deserializing YAML so that every error names file, line and field.

use std::path::Path;

use serde::de::DeserializeOwned;

use super::diagnostic::Diagnostic;
use patrol_job_api::yaml_lines::LineIndex;

/// A YAML file read and indexed, ready to be deserialized piece by piece.
pub struct YamlFile<'a> {
    pub path: &'a Path,
    pub index: LineIndex,
    pub value: serde_norway::Value,
}

impl<'a> YamlFile<'a> {
    /// Parses `source`; a syntax error is reported with its position.
    pub fn parse(path: &'a Path, source: &str) -> Result<Self, Diagnostic> {
        let value: serde_norway::Value = serde_norway::from_str(source).map_err(|err| {
            let location = err.location();
            Diagnostic {
                file: path.to_path_buf(),
                line: location.as_ref().map(|l| l.line()),
                column: location.as_ref().map(|l| l.column()),
                field: String::new(),
                message: format!("invalid YAML: {}", strip_location(&err.to_string())),
            }
        })?;
        Ok(Self {
            path,
            index: LineIndex::build(source),
            value,
        })
    }

    /// A diagnostic for the field at dotted `path`.
    pub fn diagnostic(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        let position = self.index.locate(path);
        Diagnostic {
            file: self.path.to_path_buf(),
            line: position.map(|(line, _)| line),
            // A whole-document problem has a line (where it starts) but no
            // meaningful column.
            column: position
                .filter(|_| !path.is_empty())
                .map(|(_, column)| column),
            field: path.to_string(),
            message: message.into(),
        }
    }

    /// Deserializes the value found at `prefix` (`""` for the whole file).
    pub fn deserialize<T: DeserializeOwned>(
        &self,
        prefix: &str,
        value: &serde_norway::Value,
    ) -> Result<T, Diagnostic> {
        serde_path_to_error::deserialize(value.clone()).map_err(|err| {
            let inner = err.path().to_string();
            let path = join_path(prefix, if inner == "." { "" } else { &inner });
            self.diagnostic(&path, err.into_inner().to_string())
        })
    }
}

/// `prefix` + `inner` as one dotted path (`[1]` + `cron` → `[1].cron`).
pub fn join_path(prefix: &str, inner: &str) -> String {
    match (prefix.is_empty(), inner.is_empty()) {
        (true, _) => inner.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) if inner.starts_with('[') => format!("{prefix}{inner}"),
        (false, false) => format!("{prefix}.{inner}"),
    }
}

/// The parser repeats the position in its message; we print it once, up front.
fn strip_location(message: &str) -> String {
    let Some(start) = message.find(" at line ") else {
        return message.to_string();
    };
    let rest = &message[start + " at line ".len()..];
    let end = rest
        .find(" column ")
        .map(|column| {
            let digits = rest[column + " column ".len()..]
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len() - column - " column ".len());
            column + " column ".len() + digits
        })
        .unwrap_or(0);
    format!("{}{}", &message[..start], &rest[end..])
}
