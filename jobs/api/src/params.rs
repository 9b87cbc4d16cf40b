use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A problem with one parameter, located by a dotted path inside `params`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParamError {
    /// Dotted path below `params`, empty for the params object itself.
    pub path: String,
    pub message: String,
}

impl ParamError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "params: {}", self.message)
        } else {
            write!(f, "params.{}: {}", self.path, self.message)
        }
    }
}

/// Deserializes a job's params into its config struct, keeping the path of
/// the field that failed. Use `#[serde(deny_unknown_fields)]` on `T`.
pub fn parse_params<T: DeserializeOwned>(params: &serde_json::Value) -> Result<T, ParamError> {
    serde_path_to_error::deserialize(params).map_err(|err| {
        let path = err.path().to_string();
        let path = if path == "." { String::new() } else { path };
        ParamError::new(path, err.into_inner().to_string())
    })
}

/// One documented parameter of a job kind.
#[derive(Debug, Clone, Serialize)]
pub struct ParamDoc {
    pub name: &'static str,
    pub type_name: &'static str,
    pub required: bool,
    pub default: Option<&'static str>,
    pub description: &'static str,
}

/// What `patrol jobs` prints for a job kind.
#[derive(Debug, Clone, Serialize)]
pub struct JobDescription {
    pub kind: &'static str,
    pub summary: &'static str,
    pub params: Vec<ParamDoc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        name: String,
        inner: Inner,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
    }

    #[test]
    fn parse_error_names_nested_field() {
        let value = serde_json::json!({"name": "x", "inner": {"count": "many"}});
        let err = parse_params::<Sample>(&value).unwrap_err();
        assert_eq!(err.path, "inner.count");
        assert!(err.message.contains("invalid type"), "{}", err.message);
    }

    #[test]
    fn parse_error_names_unknown_field() {
        let value = serde_json::json!({"name": "x", "inner": {"count": 1}, "colour": 1});
        let err = parse_params::<Sample>(&value).unwrap_err();
        assert!(
            err.message.contains("unknown field `colour`"),
            "{}",
            err.message
        );
    }
}
