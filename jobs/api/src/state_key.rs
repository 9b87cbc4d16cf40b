//! Typed state keys: one key, one value type, one encoding.
//!
//! **Encoding.** A value is stored as the compact JSON text of `T`
//! (`serde_json::to_vec`), UTF-8, with no envelope around it. A type whose
//! shape changes carries its own version field (or moves to a new key);
//! keeping the bare JSON means rows written before typed keys existed —
//! all of them JSON already, or a JSON number like anomaly's cursors —
//! read unchanged. A key whose old rows are not JSON names a
//! [`legacy`](StateKey::with_legacy) reader for them; its writes are JSON.
//!
//! **Errors.** An entry that does not decode is a [`StateError`] naming
//! the key: never silently dropped. A value that does not serialize is a
//! [`StateError`] naming the key: never written as empty bytes.
//!
//! ```
//! use patrol_job_api::{StateKey, StatePrefix};
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Cursor { offset: u64 }
//! const CURSOR: StateKey<Cursor> = StateKey::new("cursor");
//! const CHAINS: StatePrefix<Vec<String>> = StatePrefix::new("chain/");
//! let write = CURSOR.put(&Cursor { offset: 7 }).unwrap();
//! assert_eq!(write.value.as_deref(), Some(&b"{\"offset\":7}"[..]));
//! assert_eq!(CHAINS.key("a").name(), "chain/a");
//! ```

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::state::{StateError, StateWrite};

/// Reads a row written before its key was typed: `None` = not in the old
/// form either (the JSON error is reported).
pub type LegacyDecode<T> = fn(&[u8]) -> Option<T>;

/// One state key holding a `T`, e.g.
/// `const CURSOR: StateKey<Cursor> = StateKey::new("cursor")`.
pub struct StateKey<T> {
    name: Cow<'static, str>,
    legacy: Option<LegacyDecode<T>>,
    value: PhantomData<fn() -> T>,
}

impl<T> StateKey<T> {
    /// A key known when the job is written.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name: Cow::Borrowed(name),
            legacy: None,
            value: PhantomData,
        }
    }

    /// A key whose rows written by older code may be in another form:
    /// they are read with `legacy` when they are not JSON; writes are JSON.
    pub const fn with_legacy(name: &'static str, legacy: LegacyDecode<T>) -> Self {
        Self {
            name: Cow::Borrowed(name),
            legacy: Some(legacy),
            value: PhantomData,
        }
    }

    /// A key made at run time (a source's name, a digest); see [`StatePrefix`].
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: Cow::Owned(name.into()),
            legacy: None,
            value: PhantomData,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Deleting the key.
    pub fn delete(&self) -> StateWrite {
        StateWrite::delete(self.name.clone().into_owned())
    }
}

impl<T: Serialize> StateKey<T> {
    /// Writing `value` under the key; a value that does not serialize is
    /// an error naming the key.
    pub fn put(&self, value: &T) -> Result<StateWrite, StateError> {
        Ok(StateWrite::put(
            self.name.clone().into_owned(),
            encode(&self.name, value)?,
        ))
    }
}

impl<T: DeserializeOwned> StateKey<T> {
    /// The value stored as `bytes` under this key; an error naming the key
    /// when it does not decode.
    pub fn decode(&self, bytes: &[u8]) -> Result<T, StateError> {
        match decode(&self.name, bytes) {
            Ok(value) => Ok(value),
            Err(err) => self.legacy.and_then(|legacy| legacy(bytes)).ok_or(err),
        }
    }
}

impl<T> Clone for StateKey<T> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            legacy: self.legacy,
            value: PhantomData,
        }
    }
}

impl<T> fmt::Debug for StateKey<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StateKey({})", self.name)
    }
}

/// A family of keys sharing a prefix and a value type, e.g.
/// `const DIGESTS: StatePrefix<DigestChain> = StatePrefix::new("digest/")`.
pub struct StatePrefix<T> {
    prefix: &'static str,
    legacy: Option<LegacyDecode<T>>,
    value: PhantomData<fn() -> T>,
}

impl<T> StatePrefix<T> {
    pub const fn new(prefix: &'static str) -> Self {
        Self {
            prefix,
            legacy: None,
            value: PhantomData,
        }
    }

    /// See [`StateKey::with_legacy`].
    pub const fn with_legacy(prefix: &'static str, legacy: LegacyDecode<T>) -> Self {
        Self {
            prefix,
            legacy: Some(legacy),
            value: PhantomData,
        }
    }

    pub fn prefix(&self) -> &'static str {
        self.prefix
    }

    /// The key `<prefix><suffix>`.
    pub fn key(&self, suffix: &str) -> StateKey<T> {
        StateKey {
            name: Cow::Owned(format!("{}{suffix}", self.prefix)),
            legacy: self.legacy,
            value: PhantomData,
        }
    }

    /// What follows the prefix in `key`, if `key` is of this family.
    pub fn suffix<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(self.prefix)
    }
}

impl<T> fmt::Debug for StatePrefix<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StatePrefix({}…)", self.prefix)
    }
}

/// The stored form of `value` under `key`: its compact JSON.
pub fn encode<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<Vec<u8>, StateError> {
    serde_json::to_vec(value)
        .map_err(|err| StateError(format!("state `{key}` cannot be stored as JSON: {err}")))
}

/// The value stored as `bytes` under `key`, for types that borrow from
/// the bytes (most code wants [`StateKey::decode`]).
pub fn decode<'de, T: Deserialize<'de>>(key: &str, bytes: &'de [u8]) -> Result<T, StateError> {
    serde_json::from_slice(bytes).map_err(|err| {
        StateError(format!(
            "state `{key}` does not decode as {}: {err}",
            short_type_name::<T>()
        ))
    })
}

/// `alloc::vec::Vec<my_job::Cursor>` → `Vec<Cursor>`: enough to tell
/// which key type failed, short enough for a log line.
fn short_type_name<T>() -> String {
    let full = std::any::type_name::<T>();
    let mut out = String::with_capacity(full.len());
    let mut word = String::new();
    for c in full.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
        } else {
            out.push_str(word.rsplit("::").next().unwrap_or(&word));
            word.clear();
            out.push(c);
        }
    }
    out.push_str(word.rsplit("::").next().unwrap_or(&word));
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Cursor {
        offset: u64,
    }

    const CURSOR: StateKey<Cursor> = StateKey::new("cursor");

    #[test]
    fn values_round_trip_as_compact_json() {
        let write = CURSOR.put(&Cursor { offset: 42 }).unwrap();
        assert_eq!(write.key, "cursor");
        assert_eq!(write.value.as_deref(), Some(&b"{\"offset\":42}"[..]));
        assert_eq!(
            CURSOR.decode(b"{\"offset\":42}").unwrap(),
            Cursor { offset: 42 }
        );
        assert_eq!(CURSOR.delete(), StateWrite::delete("cursor"));
    }

    #[test]
    fn an_entry_that_does_not_decode_is_an_error_naming_the_key_and_type() {
        let err = CURSOR.decode(b"{\"offset\": \"seven\"}").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`cursor`"), "{text}");
        assert!(text.contains("Cursor"), "{text}");
        assert!(!text.contains("state_key::tests"), "{text}");
    }

    #[test]
    fn a_value_that_does_not_serialize_is_an_error_never_empty_bytes() {
        // JSON object keys must be strings: a map keyed by pairs fails.
        let key: StateKey<HashMap<(u8, u8), u8>> = StateKey::named("pairs");
        let err = key.put(&HashMap::from([((1, 2), 3)])).unwrap_err();
        assert!(err.to_string().contains("`pairs`"), "{err}");
    }

    #[test]
    fn legacy_rows_are_read_and_new_writes_are_json() {
        fn raw_text(bytes: &[u8]) -> Option<String> {
            std::str::from_utf8(bytes).ok().map(str::to_string)
        }
        let revs: StatePrefix<String> = StatePrefix::with_legacy("rev/", raw_text);
        let key = revs.key("abc");
        assert_eq!(key.name(), "rev/abc");
        assert_eq!(key.decode(b"sha256:01").unwrap(), "sha256:01");
        assert_eq!(key.decode(b"\"sha256:02\"").unwrap(), "sha256:02");
        assert_eq!(
            key.put(&"sha256:03".to_string()).unwrap().value.unwrap(),
            b"\"sha256:03\""
        );
        let err = key.decode(&[0xff, 0xfe]).unwrap_err();
        assert!(err.to_string().contains("`rev/abc`"), "{err}");
        assert_eq!(revs.suffix("rev/abc"), Some("abc"));
        assert_eq!(revs.suffix("digest/abc"), None);
    }

    #[test]
    fn type_names_are_shortened() {
        assert_eq!(
            short_type_name::<Vec<Option<Cursor>>>(),
            "Vec<Option<Cursor>>"
        );
        assert_eq!(short_type_name::<i64>(), "i64");
    }
}
