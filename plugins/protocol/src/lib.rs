//! The protocol spoken across a plugin library's C ABI, shared by the
//! host (`patrol plugin-host`) and the plugins (through `patrol-plugin-sdk`).
//!
//! A plugin is a shared library exporting four functions:
//!
//! | symbol | signature | what |
//! |---|---|---|
//! | [`PROTOCOL_SYMBOL`] | `extern "C" fn() -> u32` | the protocol version it speaks; read first |
//! | [`MANIFEST_SYMBOL`] | `extern "C" fn() -> *mut c_char` | a [`Manifest`] as JSON |
//! | [`RUN_SYMBOL`] | `extern "C" fn(*const c_char) -> *mut c_char` | a [`RunRequest`] in, a [`RunResponse`] out, JSON |
//! | [`FREE_SYMBOL`] | `extern "C" fn(*mut c_char)` | frees a string the plugin returned |
//!
//! Strings are NUL-terminated UTF-8. A string the plugin returns is owned by
//! the plugin's allocator and must be handed back to [`FREE_SYMBOL`].
//!
//! The handshake checks the version before anything else: a host that
//! finds a version it does not speak ([`speaks`]) reads nothing more, so
//! the JSON shapes below may change freely with the version.
//!
//! Versions: **1** — reports in the job API's shape of the time. **2** —
//! the protocol's own wire types ([`wire`]), unchanged for v1 plugins; a
//! job may declare `state_keys` in its manifest: the host passes their
//! values in the request (`state`) and takes writes to them from the
//! report, so a plugin keeps state between runs like a built-in job. The
//! host speaks both: to a v1 plugin it sends v1 requests (no `state`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use patrol_job_api::{Finding, Outcome, ParamError, RunReport, Severity};

pub mod wire;
pub use wire::{WireFinding, WireReport, WireStateWrite};

/// The protocol version this crate describes (and plugins built with the
/// SDK speak). Bump it on any change to the symbols or to the JSON shapes
/// that an older peer could misread.
pub const PROTOCOL_VERSION: u32 = 2;

/// The oldest version the host still speaks.
pub const OLDEST_PROTOCOL_VERSION: u32 = 1;

/// Whether this host can talk to a plugin speaking `version`.
pub fn speaks(version: u32) -> bool {
    (OLDEST_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version)
}

/// `extern "C" fn() -> u32`
pub const PROTOCOL_SYMBOL: &str = "patrol_plugin_protocol_version";
/// `extern "C" fn() -> *mut c_char`
pub const MANIFEST_SYMBOL: &str = "patrol_plugin_manifest";
/// `extern "C" fn(*const c_char) -> *mut c_char`
pub const RUN_SYMBOL: &str = "patrol_plugin_run";
/// `extern "C" fn(*mut c_char)`
pub const FREE_SYMBOL: &str = "patrol_plugin_free";

/// Every symbol a plugin must export, in the order the host looks them up.
pub const REQUIRED_SYMBOLS: [&str; 4] = [PROTOCOL_SYMBOL, MANIFEST_SYMBOL, RUN_SYMBOL, FREE_SYMBOL];

/// What a plugin declares about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The plugin's name, used in errors (`plugin residency crashed: SIGSEGV`).
    pub name: String,
    /// The plugin's own version (its crate version).
    pub version: String,
    /// Repeats [`PROTOCOL_SYMBOL`]'s answer, so the manifest stands alone.
    pub protocol_version: u32,
    pub jobs: Vec<JobManifest>,
}

/// One job kind a plugin provides; schedules name it with `job: <kind>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobManifest {
    pub kind: String,
    /// One line for `patrol jobs`.
    pub summary: String,
    /// The params a schedule may give; the host refuses unknown ones and
    /// requires the required ones at `patrol validate` time.
    #[serde(default)]
    pub params: Vec<ParamManifest>,
    /// v2: the job state keys the job reads and writes (its values come in
    /// [`RunRequest::state`]; writes to other keys fail the run).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state_keys: Vec<String>,
}

/// One documented parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamManifest {
    pub name: String,
    /// `string`, `boolean`, `integer`, `number`, `array`, `object`, or a
    /// free-form name (`duration`, `path`) that the host does not check.
    pub type_name: String,
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(default)]
    pub description: String,
}

/// One run, as the host asks the plugin for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// Which of the manifest's jobs to run.
    pub job: String,
    /// The schedule's `params`, as written (already checked against the
    /// manifest's param list).
    pub params: serde_json::Value,
    /// The ledger row of this run.
    pub run_id: i64,
    pub schedule_id: String,
    /// The slot this run serves.
    pub scheduled_for: DateTime<Utc>,
    pub attempt: u32,
    /// When the host kills the plugin for taking too long, if ever.
    pub deadline: Option<DateTime<Utc>>,
    /// Report what would happen; change nothing outside.
    pub dry_run: bool,
    /// Unique across runners; exported as `PATROL_RUN_KEY` to anything the
    /// plugin starts.
    pub run_key: String,
    /// v2: the values of the job's declared `state_keys` that exist (never
    /// sent to a v1 plugin, whose request type denies unknown fields).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub state: BTreeMap<String, String>,
}

/// The plugin's answer to a [`RunRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RunResponse {
    /// The job ran (and may have found its work failed: `outcome`).
    Report(WireReport),
    /// The params were refused at run time.
    InvalidParams(Vec<WireParamError>),
    /// The job could not do its work at all.
    Error(String),
    /// The job panicked; the SDK caught it at the boundary. The panic's
    /// message.
    Panicked(String),
}

/// [`ParamError`] on the wire (the job API's type serializes only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireParamError {
    pub path: String,
    pub message: String,
}

impl From<ParamError> for WireParamError {
    fn from(error: ParamError) -> Self {
        Self {
            path: error.path,
            message: error.message,
        }
    }
}

impl From<WireParamError> for ParamError {
    fn from(error: WireParamError) -> Self {
        ParamError::new(error.path, error.message)
    }
}

/// What `patrol plugin-host` prints on stdout: one JSON document.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum HostReply {
    /// `--manifest`: the plugin's manifest, version already checked.
    Manifest(Manifest),
    /// `--run`: the plugin's answer.
    Response(RunResponse),
    /// The library was not loaded or not called, and why.
    Refused(Refusal),
}

/// Why the host would not use a library. Each names what was expected and
/// what was found, for `patrol validate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum Refusal {
    /// The file could not be opened or `dlopen` failed.
    CannotLoad { message: String },
    /// The file's sha256 is not the pinned one.
    DigestMismatch { expected: String, found: String },
    /// A required symbol is not exported.
    MissingSymbol { symbol: String },
    /// The plugin speaks another protocol version.
    ProtocolMismatch { expected: u32, found: u32 },
    /// The manifest is not valid JSON of the expected shape.
    BadManifest { message: String },
    /// The request names a job the manifest does not list.
    UnknownJob { job: String, known: Vec<String> },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::CannotLoad { message } => write!(f, "cannot load the library: {message}"),
            Self::DigestMismatch { expected, found } => {
                write!(f, "sha256 mismatch: expected {expected}, found {found}")
            }
            Self::MissingSymbol { symbol } => write!(
                f,
                "missing symbol: expected `{symbol}` to be exported (protocol v{OLDEST_PROTOCOL_VERSION}–v{PROTOCOL_VERSION} needs {}), found none",
                REQUIRED_SYMBOLS.join(", ")
            ),
            Self::ProtocolMismatch { expected, found } => write!(
                f,
                "protocol version mismatch: expected {} (this patrol), found {found} (the plugin)",
                if *expected > OLDEST_PROTOCOL_VERSION {
                    format!("{OLDEST_PROTOCOL_VERSION} to {expected}")
                } else {
                    expected.to_string()
                }
            ),
            Self::BadManifest { message } => write!(f, "bad manifest: {message}"),
            Self::UnknownJob { job, known } => write!(
                f,
                "the plugin has no job `{job}` (it has: {})",
                known.join(", ")
            ),
        }
    }
}

/// Labels every plugin finding carries, so routes can match on the plugin.
pub fn plugin_labels(plugin: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("plugin".to_string(), plugin.to_string())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_round_trips_in_the_job_api_shape() {
        let mut report = RunReport::new(Outcome::Succeeded, "1 finding");
        let mut finding = Finding::new(
            "residency/region/acme/x",
            Severity::Error,
            "Acme data in US",
        );
        finding.runbook = Some("residency-region".into());
        report.findings.push(finding);
        let reply = HostReply::Response(RunResponse::Report(
            WireReport::from_report(report).expect("no state"),
        ));
        let text = serde_json::to_string(&reply).expect("serializes");
        let back: HostReply = serde_json::from_str(&text).expect("parses");
        let HostReply::Response(RunResponse::Report(back)) = back else {
            panic!("{text}")
        };
        let back = RunReport::from(back);
        assert_eq!(back.findings[0].key, "residency/region/acme/x");
        assert_eq!(back.outcome, Outcome::Succeeded);
    }

    /// What a plugin built against protocol v1 sends (the job API's report
    /// of the time, `output` and `details` always present) still reads, and
    /// a v2 request to it carries nothing a v1 request did not.
    #[test]
    fn a_v1_report_reads_and_a_v2_request_without_state_is_a_v1_request() {
        let v1 = r#"{"report":{"outcome":"failed","summary":"1 violation","output":null,"details":null,"findings":[{"key":"r/1","severity":"error","title":"EU data in US","runbook":"residency-region","links":[{"href":"https://x.example"}],"labels":{"tenant":"acme"}}],"findings_partial":false}}"#;
        let RunResponse::Report(report) =
            serde_json::from_str::<RunResponse>(v1).expect("v1 reads")
        else {
            panic!("not a report")
        };
        let report = RunReport::from(report);
        assert_eq!(report.outcome, Outcome::Failed);
        assert_eq!(report.findings[0].labels["tenant"], "acme");
        let request = RunRequest {
            job: "j".into(),
            params: serde_json::json!({}),
            run_id: 1,
            schedule_id: "s".into(),
            scheduled_for: Utc::now(),
            attempt: 1,
            deadline: None,
            dry_run: false,
            run_key: "k".into(),
            state: BTreeMap::new(),
        };
        let text = serde_json::to_value(&request).expect("serializes");
        assert!(text.get("state").is_none(), "{text}");
    }

    #[test]
    fn refusals_name_expected_and_found() {
        let text = Refusal::ProtocolMismatch {
            expected: PROTOCOL_VERSION,
            found: 999,
        }
        .to_string();
        assert!(
            text.contains("expected 1 to 2") && text.contains("found 999"),
            "{text}"
        );
        let refusal: HostReply = serde_json::from_str(
            r#"{"refused":{"kind":"missing_symbol","symbol":"patrol_plugin_run"}}"#,
        )
        .expect("parses");
        assert!(matches!(
            refusal,
            HostReply::Refused(Refusal::MissingSymbol { .. })
        ));
    }
}
