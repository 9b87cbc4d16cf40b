//! A plugin that forgot `patrol_plugin_run`: the host must refuse it,
//! naming the missing symbol.
#![allow(unsafe_code)]

use std::os::raw::c_char;

#[no_mangle]
pub extern "C" fn patrol_plugin_protocol_version() -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn patrol_plugin_manifest() -> *mut c_char {
    c"{\"name\":\"no-run-symbol\",\"version\":\"0.1.0\",\"protocol_version\":1,\"jobs\":[]}"
        .as_ptr()
        .cast_mut()
}

#[no_mangle]
pub extern "C" fn patrol_plugin_free(_text: *mut c_char) {}
