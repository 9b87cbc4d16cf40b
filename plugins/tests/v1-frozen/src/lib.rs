//! A plugin as it was built against protocol v1 (before the protocol had
//! wire types of its own): version 1, the v1 manifest, a v1 request read
//! strictly (v1's `RunRequest` denied unknown fields, so a host that sends
//! a v2 field to it fails this plugin's runs), a report in v1's shape.
//! Written by hand, without the SDK, so later SDK changes cannot move it.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::os::raw::c_char;

/// v1's request, frozen.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct RunRequestV1 {
    job: String,
    params: serde_json::Value,
    run_id: i64,
    schedule_id: String,
    scheduled_for: String,
    attempt: u32,
    deadline: Option<String>,
    dry_run: bool,
    run_key: String,
}

#[no_mangle]
pub extern "C" fn patrol_plugin_protocol_version() -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn patrol_plugin_manifest() -> *mut c_char {
    owned(
        r#"{"name":"v1-frozen","version":"0.1.0","protocol_version":1,"jobs":[{"kind":"test-v1","summary":"a job from a protocol v1 plugin","params":[]}]}"#,
    )
}

/// # Safety
/// `request` is null or a NUL-terminated string valid for the call.
#[no_mangle]
pub unsafe extern "C" fn patrol_plugin_run(request: *const c_char) -> *mut c_char {
    if request.is_null() {
        return owned(r#"{"error":"no request"}"#);
    }
    // SAFETY: non-null and NUL-terminated per the protocol; copied out.
    let text = unsafe { CStr::from_ptr(request) }
        .to_string_lossy()
        .into_owned();
    let answer = match serde_json::from_str::<RunRequestV1>(&text) {
        Err(err) => serde_json::json!({ "error": format!("not a v1 request: {err}") }),
        // v1's report: `output` and `details` always written.
        Ok(request) => serde_json::json!({"report": {
            "outcome": "succeeded",
            "summary": format!("v1 ran {} for run {}", request.job, request.run_id),
            "output": null,
            "details": null,
            "findings": [{
                "key": "test/v1",
                "severity": "warning",
                "title": "a finding from a protocol v1 plugin",
                "labels": {"protocol": "1"}
            }],
            "findings_partial": false
        }}),
    };
    owned(&answer.to_string())
}

/// # Safety
/// `text` came from this library and is freed once.
#[no_mangle]
pub unsafe extern "C" fn patrol_plugin_free(text: *mut c_char) {
    if !text.is_null() {
        // SAFETY: made by `CString::into_raw` below, freed once.
        drop(unsafe { CString::from_raw(text) });
    }
}

fn owned(text: &str) -> *mut c_char {
    CString::new(text).unwrap_or_default().into_raw()
}
