//! Secrets named in configuration (`patrol.yaml`, job params) as
//! `env:NAME` or `file:PATH`, never written inline. A resolved value is
//! registered with a process-wide redactor (shared by the runner and the
//! jobs) so that no log line, ledger row or error message carries it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Deserializer};

mod urls;
pub use urls::{redact_query_credentials, redact_url_credentials};

/// Where a secret comes from, as written in `patrol.yaml`.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

impl SecretRef {
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(name) = text.strip_prefix("env:") {
            let valid =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!("`env:{name}` is not an environment variable name"));
            }
            return Ok(Self::Env(name.to_string()));
        }
        if let Some(path) = text.strip_prefix("file:") {
            if path.is_empty() {
                return Err("`file:` needs a path".into());
            }
            return Ok(Self::File(PathBuf::from(path)));
        }
        // Never echo the value: it is probably the secret itself.
        Err("a secret must be written as env:NAME or file:PATH; inline secrets are refused".into())
    }

    /// Reads the value; relative files are relative to `base` (the config's
    /// folder). Whitespace around a file's content is trimmed.
    pub fn resolve(&self, base: &Path) -> Result<Secret, String> {
        let value = match self {
            Self::Env(name) => match std::env::var(name) {
                Ok(value) if !value.is_empty() => value,
                Ok(_) => return Err(format!("environment variable {name} is empty")),
                Err(_) => return Err(format!("environment variable {name} is not set")),
            },
            Self::File(path) => {
                let path = base.join(path);
                let text = std::fs::read_to_string(&path)
                    .map_err(|err| format!("cannot read secret file {}: {err}", path.display()))?;
                let value = text.trim().to_string();
                if value.is_empty() {
                    return Err(format!("secret file {} is empty", path.display()));
                }
                value
            }
        };
        register(&value);
        Ok(Secret(value))
    }
}

/// Resolves every secret of a `field: {NAME: env:…|file:…}` map; each one
/// that cannot be read is an error at `field.NAME`.
pub fn resolve_map(
    secrets: &BTreeMap<String, SecretRef>,
    field: &str,
    base: &Path,
) -> Result<Vec<(String, Secret)>, Vec<crate::ParamError>> {
    let mut resolved = Vec::new();
    let mut errors = Vec::new();
    for (name, reference) in secrets {
        match reference.resolve(base) {
            Ok(value) => resolved.push((name.clone(), value)),
            Err(err) => errors.push(crate::ParamError::new(format!("{field}.{name}"), err)),
        }
    }
    if errors.is_empty() {
        Ok(resolved)
    } else {
        Err(errors)
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(name) => write!(f, "env:{name}"),
            Self::File(path) => write!(f, "file:{}", path.display()),
        }
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A secret's value. `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

fn known_lock() -> &'static Mutex<Vec<String>> {
    static KNOWN: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    KNOWN.get_or_init(|| Mutex::new(Vec::new()))
}

/// The registered values. A panic elsewhere while holding the lock leaves
/// the list whole (pushes and sorts only), so a poisoned lock is still
/// used: scrubbing must never stop because some thread panicked.
fn known() -> std::sync::MutexGuard<'static, Vec<String>> {
    known_lock()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Values shorter than this are not scrubbed: they would mangle ordinary
/// text and are too short to be a credential worth protecting this way.
const MIN_REDACTED_LEN: usize = 6;

fn register(value: &str) {
    if value.len() < MIN_REDACTED_LEN {
        return;
    }
    let mut known = known();
    if !known.iter().any(|k| k == value) {
        known.push(value.to_string());
        // Longest first, so a secret containing another is scrubbed whole.
        known.sort_by_key(|k| std::cmp::Reverse(k.len()));
    }
}

/// `text` with every resolved secret, and every credential inside a URL
/// (see [`redact_url_credentials`]), replaced by `[redacted]`. Apply to
/// anything built from a response, an error or a program's output before it
/// is logged or stored.
pub fn redact(text: &str) -> String {
    let mut text = redact_url_credentials(text);
    for value in known().iter() {
        if text.contains(value.as_str()) {
            text = text.replace(value.as_str(), "[redacted]");
        }
    }
    text
}

/// Every string in `value` (object keys too) redacted as by [`redact`].
pub fn redact_json(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(text) => {
            let clean = redact(text);
            if clean != *text {
                *text = clean;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_json),
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (key, mut item) in entries {
                redact_json(&mut item);
                map.insert(redact(&key), item);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_values_are_refused_without_echoing_them() {
        let err = SecretRef::parse("xoxb-very-secret-token").unwrap_err();
        assert!(!err.contains("xoxb"), "{err}");
        assert!(SecretRef::parse("env:").is_err());
        assert!(SecretRef::parse("env:BAD NAME").is_err());
        assert_eq!(
            SecretRef::parse("env:SLACK_TOKEN").unwrap(),
            SecretRef::Env("SLACK_TOKEN".into())
        );
    }

    #[test]
    fn resolved_file_secrets_are_trimmed_and_redacted_everywhere() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pd.key"), "R0uting-Key-abc123\n").unwrap();
        let secret = SecretRef::parse("file:pd.key")
            .unwrap()
            .resolve(dir.path())
            .unwrap();
        assert_eq!(secret.expose(), "R0uting-Key-abc123");
        assert_eq!(format!("{secret:?} {secret}"), "[redacted] [redacted]");
        assert_eq!(
            redact("POST failed for key R0uting-Key-abc123: 400"),
            "POST failed for key [redacted]: 400"
        );
    }

    #[test]
    fn json_strings_and_keys_are_redacted_in_place() {
        std::env::set_var("PATROL_TEST_JSON_SECRET", "Js0n-Secret-9911");
        SecretRef::Env("PATROL_TEST_JSON_SECRET".into())
            .resolve(Path::new("."))
            .unwrap();
        let mut value = serde_json::json!({
            "url": "https://u:pw@h/x?token=t0k",
            "list": ["ok", "has Js0n-Secret-9911 inside", 3],
            "Js0n-Secret-9911": true,
        });
        redact_json(&mut value);
        assert_eq!(
            value,
            serde_json::json!({
                "url": "https://[redacted]@h/x?token=[redacted]",
                "list": ["ok", "has [redacted] inside", 3],
                "[redacted]": true,
            })
        );
    }

    #[test]
    fn a_panic_while_the_list_was_locked_does_not_stop_scrubbing() {
        std::env::set_var("PATROL_TEST_POISON_SECRET", "poison-proof-secret-1");
        SecretRef::Env("PATROL_TEST_POISON_SECRET".into())
            .resolve(Path::new("."))
            .unwrap();
        let _ = std::thread::spawn(|| {
            let _held = known_lock().lock();
            panic!("a thread dies holding the secret list");
        })
        .join();
        assert!(known_lock().is_poisoned());
        assert_eq!(
            redact("token poison-proof-secret-1 leaked"),
            "token [redacted] leaked"
        );
    }

    #[test]
    fn missing_sources_say_what_is_missing() {
        let err = SecretRef::Env("PATROL_TEST_UNSET_SECRET_VAR".into())
            .resolve(Path::new("."))
            .unwrap_err();
        assert!(
            err.contains("PATROL_TEST_UNSET_SECRET_VAR is not set"),
            "{err}"
        );
        let err = SecretRef::File("nope/missing".into())
            .resolve(Path::new("/nonexistent"))
            .unwrap_err();
        assert!(err.contains("cannot read secret file"), "{err}");
    }
}
