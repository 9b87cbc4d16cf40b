//! The only place patrol calls into a plugin library: `dlopen` through
//! libloading and the four protocol functions. Runs in the
//! `patrol plugin-host` child only, never in the runner.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::path::Path;

use patrol_plugin_protocol::{
    speaks, Refusal, FREE_SYMBOL, MANIFEST_SYMBOL, PROTOCOL_SYMBOL, PROTOCOL_VERSION, RUN_SYMBOL,
};

type VersionFn = unsafe extern "C" fn() -> u32;
type ManifestFn = unsafe extern "C" fn() -> *mut c_char;
type RunFn = unsafe extern "C" fn(*const c_char) -> *mut c_char;
type FreeFn = unsafe extern "C" fn(*mut c_char);

/// A loaded plugin whose protocol version this host speaks and whose
/// symbols are all present.
pub struct PluginLibrary {
    /// The version its version function answered.
    pub version: u32,
    manifest: ManifestFn,
    run: RunFn,
    free: FreeFn,
    // Keeps the functions above mapped; dropped last.
    _library: libloading::Library,
}

impl PluginLibrary {
    /// Loads `path`, checks the version first, then the other symbols.
    pub fn open(path: &Path) -> Result<Self, Refusal> {
        // SAFETY: loading a library runs its initialisers, which may do
        // anything; that is why this runs in a throwaway child process whose
        // crash the runner survives. The digest was checked by the caller,
        // on the sealed copy the path names.
        let library =
            unsafe { libloading::Library::new(path) }.map_err(|err| Refusal::CannotLoad {
                message: err.to_string(),
            })?;
        // SAFETY: the protocol fixes this symbol's type for every version,
        // so reading it is sound before we know the version.
        let version: VersionFn = unsafe { symbol(&library, PROTOCOL_SYMBOL)? };
        // SAFETY: calling the plugin's version function; it takes nothing
        // and returns a u32 by the protocol.
        let found = unsafe { version() };
        if !speaks(found) {
            return Err(Refusal::ProtocolMismatch {
                expected: PROTOCOL_VERSION,
                found,
            });
        }
        // SAFETY: the plugin speaks a version we speak; every one of them
        // has these symbol types.
        let (manifest, run, free) = unsafe {
            (
                symbol::<ManifestFn>(&library, MANIFEST_SYMBOL)?,
                symbol::<RunFn>(&library, RUN_SYMBOL)?,
                symbol::<FreeFn>(&library, FREE_SYMBOL)?,
            )
        };
        Ok(Self {
            version: found,
            manifest,
            run,
            free,
            _library: library,
        })
    }

    /// The manifest's JSON text.
    pub fn manifest_json(&self) -> String {
        // SAFETY: protocol v1: no arguments, returns a string we free with
        // the plugin's free function.
        let text = unsafe { (self.manifest)() };
        self.take_string(text)
    }

    /// Calls the run function with `request` (JSON); its answer as text.
    pub fn run_json(&self, request: &str) -> String {
        let request = CString::new(request.replace('\0', "")).unwrap_or_default();
        // SAFETY: protocol v1: a NUL-terminated string we own for the
        // call; returns a string we free with the plugin's free function.
        let text = unsafe { (self.run)(request.as_ptr()) };
        self.take_string(text)
    }

    fn take_string(&self, text: *mut c_char) -> String {
        if text.is_null() {
            return String::new();
        }
        // SAFETY: non-null and NUL-terminated, as the protocol requires of
        // the plugin; copied before it is freed.
        let owned = unsafe { CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: the string came from this plugin and is freed once.
        unsafe { (self.free)(text) };
        owned
    }
}

/// # Safety
/// `T` must be the symbol's real type.
unsafe fn symbol<T: Copy>(library: &libloading::Library, name: &str) -> Result<T, Refusal> {
    // SAFETY: forwarded: the caller names the symbol's type.
    unsafe { library.get::<T>(name.as_bytes()) }
        .map(|symbol| *symbol)
        .map_err(|_| Refusal::MissingSymbol {
            symbol: name.to_string(),
        })
}
