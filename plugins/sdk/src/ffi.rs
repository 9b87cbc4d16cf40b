//! The C side of [`crate::export_plugin!`]: strings in and out, panics
//! caught before they reach the boundary (unwinding out of an `extern "C"`
//! function aborts the process).
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

use patrol_plugin_protocol::{RunRequest, RunResponse};

use crate::Plugin;

/// The manifest as a JSON string owned by this library.
pub fn manifest(plugin: fn() -> &'static Plugin) -> *mut c_char {
    let text = catch_unwind(|| serde_json::to_string(&plugin().manifest()))
        .map_err(|panic| panic_message(panic.as_ref()))
        .and_then(|result| result.map_err(|err| err.to_string()))
        // An unserializable manifest is reported as a non-manifest string,
        // which the host refuses as a bad manifest.
        .unwrap_or_else(|message| format!("manifest unavailable: {message}"));
    into_raw(text)
}

/// Runs one request; always returns a [`RunResponse`] as JSON.
///
/// # Safety
/// `request` is null or a NUL-terminated string valid for the call.
pub unsafe fn run(plugin: fn() -> &'static Plugin, request: *const c_char) -> *mut c_char {
    let response = if request.is_null() {
        RunResponse::Error("the host passed no request".into())
    } else {
        // SAFETY: non-null, NUL-terminated and alive for this call, per the
        // caller's contract; we copy out of it before returning.
        let text = unsafe { CStr::from_ptr(request) }
            .to_string_lossy()
            .into_owned();
        match serde_json::from_str::<RunRequest>(&text) {
            Err(err) => RunResponse::Error(format!("the host's request is not understood: {err}")),
            Ok(request) => catch_unwind(AssertUnwindSafe(|| plugin().answer(&request)))
                .unwrap_or_else(|panic| RunResponse::Panicked(panic_message(panic.as_ref()))),
        }
    };
    let text = serde_json::to_string(&response).unwrap_or_else(|err| {
        serde_json::to_string(&RunResponse::Error(format!(
            "the job's report cannot be serialized: {err}"
        )))
        .unwrap_or_default()
    });
    into_raw(text)
}

/// Frees a string returned by [`manifest`] or [`run`].
///
/// # Safety
/// `text` is null or came from [`into_raw`] in this library, freed once.
pub unsafe fn free(text: *mut c_char) {
    if !text.is_null() {
        // SAFETY: per the contract, `text` was produced by
        // `CString::into_raw` in this library and is not used again.
        drop(unsafe { CString::from_raw(text) });
    }
}

fn into_raw(text: String) -> *mut c_char {
    // JSON never contains a raw NUL (serde escapes it), so this only drops
    // bytes from a non-JSON fallback message.
    let text = CString::new(text.replace('\0', "")).unwrap_or_default();
    text.into_raw()
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".into())
}
