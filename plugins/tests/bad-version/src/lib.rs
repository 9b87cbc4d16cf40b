//! A plugin from the future: it speaks protocol version 999, which the
//! host must refuse before reading anything else. Written by hand (no
//! SDK), as a plugin built against another protocol crate would look.
#![allow(unsafe_code)]

use std::os::raw::c_char;

#[no_mangle]
pub extern "C" fn patrol_plugin_protocol_version() -> u32 {
    999
}

/// A manifest in a shape this host does not know; never read.
#[no_mangle]
pub extern "C" fn patrol_plugin_manifest() -> *mut c_char {
    c"{\"v999\": true}".as_ptr().cast_mut()
}

#[no_mangle]
pub extern "C" fn patrol_plugin_run(_request: *const c_char) -> *mut c_char {
    c"{}".as_ptr().cast_mut()
}

/// The strings above are static; nothing to free.
#[no_mangle]
pub extern "C" fn patrol_plugin_free(_text: *mut c_char) {}
