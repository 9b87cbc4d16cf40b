//! The `headers:` of an HTTP source: header name → secret (`env:NAME` or
//! `file:PATH`), so a feed's token never sits in its URL, where it would
//! reach errors, run rows and server logs.
//!
//! ```yaml
//! - kind: http
//!   name: releases
//!   url: https://feed.example.com/events.ndjson
//!   headers: {Authorization: file:secrets/feed.auth}   # "Bearer …"
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use patrol_job_api::secret::{resolve_map, Secret, SecretRef};
use patrol_job_api::{BuildContext, ParamError};

/// As written in the schedule.
pub type SecretHeaders = BTreeMap<String, SecretRef>;

/// The checks that need no I/O: header names, and that `url` may carry a
/// credential at all (https, or http to this machine). `field` is the
/// source's path, e.g. `sources[2]`.
pub fn check_headers(url: &str, headers: &SecretHeaders, field: &str) -> Vec<ParamError> {
    let mut errors: Vec<ParamError> = headers
        .keys()
        .filter_map(|name| {
            crate::check::header_name(name)
                .err()
                .map(|message| ParamError::new(format!("{field}.headers.{name}"), message))
        })
        .collect();
    if !headers.is_empty() {
        if let Err(message) = crate::check::credential_url(url, "its headers") {
            errors.push(ParamError::new(format!("{field}.url"), message));
        }
    }
    errors
}

/// Reads every header's secret (registering it with the redactor); an
/// unreadable one is an error at `field.headers.NAME`. Relative files are
/// relative to `base`.
pub fn resolve_headers(
    headers: &SecretHeaders,
    field: &str,
    base: &Path,
) -> Result<Vec<(String, Secret)>, Vec<ParamError>> {
    resolve_map(headers, &format!("{field}.headers"), base)
}

/// [`resolve_headers`] at run time (files anchored at build): a failure
/// reads as one line for the source's error, `header `X`: <problem>`.
pub fn resolve_for_run(headers: &SecretHeaders) -> Result<Vec<(String, Secret)>, String> {
    let mut resolved = Vec::new();
    let mut problems = Vec::new();
    for (name, reference) in headers {
        match reference.resolve(Path::new("")) {
            Ok(value) => resolved.push((name.clone(), value)),
            Err(problem) => problems.push(format!("header `{name}`: {problem}")),
        }
    }
    if problems.is_empty() {
        Ok(resolved)
    } else {
        Err(problems.join("; "))
    }
}

/// Makes each relative `file:` secret relative to the config's folder
/// (once, at build), so the run can read it from anywhere.
pub fn anchor_files(headers: &mut SecretHeaders, ctx: &BuildContext) {
    for reference in headers.values_mut() {
        if let SecretRef::File(path) = reference {
            *path = ctx.path(path);
        }
    }
}

/// The pairs [`crate::http::fetch_ndjson`] sends.
pub fn header_pairs(resolved: &[(String, Secret)]) -> Vec<(&str, &str)> {
    resolved
        .iter()
        .map(|(name, value)| (name.as_str(), value.expose()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(entries: &[(&str, &str)]) -> SecretHeaders {
        entries
            .iter()
            .map(|(name, value)| (name.to_string(), SecretRef::parse(value).unwrap()))
            .collect()
    }

    #[test]
    fn bad_names_and_plain_http_to_another_host_are_named() {
        let bad = headers(&[("Bad Name", "env:X"), ("Authorization", "env:Y")]);
        let errors = check_headers("http://feed.example.com/x", &bad, "sources[1]");
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["sources[1].headers.Bad Name", "sources[1].url"]);
        assert!(
            check_headers("http://127.0.0.1:9/x", &headers(&[("X-Key", "env:Z")]), "s").is_empty()
        );
        assert!(check_headers("http://feed.example.com/x", &SecretHeaders::new(), "s").is_empty());
    }

    #[test]
    fn an_unset_secret_is_named_by_its_header() {
        let unset = headers(&[("Authorization", "env:PATROL_TEST_UNSET_FEED_TOKEN")]);
        let errors = resolve_headers(&unset, "sources[0]", Path::new("")).unwrap_err();
        assert_eq!(errors[0].path, "sources[0].headers.Authorization");
        assert!(errors[0]
            .message
            .contains("PATROL_TEST_UNSET_FEED_TOKEN is not set"));
    }
}
