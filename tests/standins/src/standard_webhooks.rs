//! Standard Webhooks signatures (standardwebhooks.com): a check of our own
//! for the receiver stand-in, and the specification's reference Python
//! library (`standard_webhooks.py`, pinned, in a venv under the target
//! directory) to judge recorded requests independently.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use axum::http::HeaderMap;
use base64::Engine as _;
use hmac::{KeyInit, Mac};

use crate::record::RecordedCall;

/// How far a `webhook-timestamp` may be from now, as the libraries allow.
const TOLERANCE_SECONDS: i64 = 5 * 60;

/// Checks one request's `webhook-id`, `webhook-timestamp` and
/// `webhook-signature` (space-separated `v1,<base64>` entries, one must
/// match) under `key`, the decoded secret.
pub(crate) fn check(key: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| format!("the `{name}` header is missing"))
    };
    let id = header("webhook-id")?;
    let timestamp = header("webhook-timestamp")?;
    let signatures = header("webhook-signature")?;
    let seconds: i64 = timestamp
        .parse()
        .map_err(|_| format!("`webhook-timestamp` is not unix seconds: {timestamp:?}"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        });
    if (now - seconds).abs() > TOLERANCE_SECONDS {
        return Err(format!(
            "`webhook-timestamp` {seconds} is more than 5 minutes from now"
        ));
    }
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    let matches = signatures.split(' ').any(|entry| {
        entry
            .strip_prefix("v1,")
            .and_then(|encoded| {
                base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .ok()
            })
            // Constant time, as a real receiver compares.
            .is_some_and(|given| {
                given.len() == expected.len()
                    && given
                        .iter()
                        .zip(expected.iter())
                        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                        == 0
            })
    });
    if matches {
        Ok(())
    } else {
        Err("no `webhook-signature` entry matches".into())
    }
}

/// Each call judged by the reference library (`Webhook(secret).verify`)
/// under `secret` (`whsec_…`): `Ok(())` or the library's error. `Err` if
/// the library could not be run at all.
pub fn verify_with_reference(
    secret: &str,
    calls: &[RecordedCall],
) -> Result<Vec<Result<(), String>>, String> {
    let python = venv_python()?;
    let requests: Vec<serde_json::Value> = calls
        .iter()
        .map(|call| {
            let headers: serde_json::Map<String, serde_json::Value> = call
                .headers
                .iter()
                .filter_map(|(name, value)| {
                    Some((name.to_string(), value.to_str().ok()?.to_string().into()))
                })
                .collect();
            serde_json::json!({
                "headers": headers,
                "body_base64": base64::engine::general_purpose::STANDARD.encode(&call.body),
            })
        })
        .collect();
    let input = serde_json::json!({ "secret": secret, "requests": requests }).to_string();
    let mut child = Command::new(python)
        .arg(script_path())
        .arg("--verify")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("running the reference library: {error}"))?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input.as_bytes())
        .map_err(|error| format!("feeding the reference library: {error}"))?;
    let output = child
        .wait_with_output()
        .map_err(|error| format!("running the reference library: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "the reference library failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let verdicts: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout)
        .map_err(|error| format!("the reference library's answer: {error}"))?;
    Ok(verdicts
        .iter()
        .map(|verdict| {
            if verdict["ok"] == true {
                Ok(())
            } else {
                Err(verdict["error"].as_str().unwrap_or("no reason").to_string())
            }
        })
        .collect())
}

fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("standard_webhooks.py")
}

/// The venv's python, created once per target directory.
fn venv_python() -> Result<PathBuf, String> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let venv = crate::smtp::target_dir().join("standard-webhooks-venv");
            let output = Command::new("python3")
                .arg(script_path())
                .arg("--ensure-venv")
                .arg(&venv)
                .output()
                .map_err(|error| format!("running python3: {error}"))?;
            if !output.status.success() {
                return Err(format!(
                    "creating {} failed ({}): {}",
                    venv.display(),
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                ));
            }
            Ok(venv.join("bin/python"))
        })
        .clone()
}
