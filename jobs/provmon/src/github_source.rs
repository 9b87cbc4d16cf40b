//! `github` sources: releases and their assets, read through octocrab
//! (api.github.com, GitHub Enterprise, or a stand-in via `base_url`), and
//! turned into events of the seed's schema:
//!
//! - a release (not a draft) → `release` (release_sha: the tag's commit);
//! - an asset with a `digest` (`sha256:…`, as GitHub reports) → `bundle`
//!   for that digest, linked to the release;
//! - `NAME.sig` next to `NAME` → `sign` carrying the signature (base64),
//!   for NAME's digest;
//! - `NAME.sigstore.json` (or `NAME.sigstore`) → `sign` carrying the
//!   Sigstore bundle, for NAME's digest.
//!
//! Incremental: the first page of each repository's releases is asked with
//! the ETag of the last answer (`If-None-Match`; a 304 costs no rate limit),
//! and the cursor remembers each release and asset handed over, so a sweep
//! emits only releases and assets that are new or were replaced. Pages
//! after the first are read while they hold something new (at most
//! `max_pages`); a change to an old release that is not on the first page
//! is not seen.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use octocrab::models::repos::{Asset, Release};
use octocrab::Octocrab;
use patrol_job_api::secret::{redact, Secret};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Releases remembered per repository (the newest, by id).
const MAX_REMEMBERED: usize = 2_000;
/// Signature and bundle assets larger than this are not downloaded.
pub const MAX_SIGNATURE_ASSET: i64 = 1 << 20;
const PER_PAGE: u32 = 100;

/// Where a `github` source stopped, per repository (`owner/name`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GithubCursor {
    #[serde(default)]
    pub repos: BTreeMap<String, RepoCursor>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoCursor {
    /// ETag of the first page of releases as last read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Releases handed over, by id.
    #[serde(default)]
    pub releases: BTreeMap<u64, SeenRelease>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenRelease {
    pub sha: String,
    /// Assets handed over: id → `updated_at` (a replaced asset is new).
    #[serde(default)]
    pub assets: BTreeMap<u64, String>,
}

/// What one sweep read from GitHub.
#[derive(Debug, Default)]
pub struct GithubRead {
    /// Events, one JSON object per line.
    pub lines: Vec<u8>,
    /// The cursor covering `lines` (repositories that failed keep theirs).
    pub cursor: GithubCursor,
    /// Repositories that could not be read, with why.
    pub errors: Vec<String>,
    /// Assets that cannot be correlated (no digest, too large), as
    /// `owner/name tag asset: why`.
    pub skipped: Vec<String>,
}

/// A `github` source's settings, checked.
#[derive(Debug, Clone)]
pub struct GithubClient {
    pub repos: Vec<(String, String)>,
    pub base_url: Option<String>,
    pub token: Option<Secret>,
    pub timeout: Duration,
    pub max_pages: u32,
}

/// Splits `owner/name`.
pub fn parse_repo(text: &str) -> Result<(String, String), String> {
    let valid = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    match text.split_once('/') {
        Some((owner, name)) if valid(owner) && valid(name) => {
            Ok((owner.to_string(), name.to_string()))
        }
        _ => Err(format!("`{text}` is not `owner/name`")),
    }
}

impl GithubClient {
    fn octocrab(&self) -> Result<Octocrab, String> {
        let mut builder = Octocrab::builder()
            .set_connect_timeout(Some(self.timeout))
            .set_read_timeout(Some(self.timeout));
        if let Some(url) = &self.base_url {
            builder = builder
                .base_uri(url.as_str())
                .map_err(|e| format!("base_url `{url}`: {e}"))?;
        }
        if let Some(token) = &self.token {
            builder = builder.personal_token(token.expose().to_string());
        }
        builder.build().map_err(|e| e.to_string())
    }

    /// Reads every repository; what changed since `cursor`.
    pub async fn read(&self, cursor: &GithubCursor) -> GithubRead {
        let mut read = GithubRead {
            cursor: cursor.clone(),
            ..GithubRead::default()
        };
        let octocrab = match self.octocrab() {
            Ok(octocrab) => octocrab,
            Err(e) => {
                read.errors.push(e);
                return read;
            }
        };
        for (owner, name) in &self.repos {
            let repo = format!("{owner}/{name}");
            let before = cursor.repos.get(&repo).cloned().unwrap_or_default();
            let mut out = RepoRead {
                octocrab: &octocrab,
                owner,
                name,
                lines: Vec::new(),
                skipped: Vec::new(),
            };
            // A whole repository or nothing of it: its cursor moves only
            // with all of its events.
            match out.read(before, self.max_pages).await {
                Ok(after) => {
                    read.lines.extend_from_slice(&out.lines);
                    read.skipped.extend(out.skipped);
                    read.cursor.repos.insert(repo, after);
                }
                Err(e) => read.errors.push(redact(&format!("{repo}: {e}"))),
            }
        }
        read
    }
}

struct RepoRead<'a> {
    octocrab: &'a Octocrab,
    owner: &'a str,
    name: &'a str,
    lines: Vec<u8>,
    skipped: Vec<String>,
}

impl RepoRead<'_> {
    async fn read(&mut self, before: RepoCursor, max_pages: u32) -> Result<RepoCursor, String> {
        let mut after = before.clone();
        for page in 1..=max_pages.max(1) {
            let etag = before.etag.as_deref().filter(|_| page == 1);
            let Some((releases, new_etag)) = self.page(page, etag).await? else {
                return Ok(after); // first page unchanged
            };
            if page == 1 {
                after.etag = new_etag;
            }
            let mut anything_new = false;
            for release in releases.iter().filter(|r| !r.draft) {
                anything_new |= self.release(release, &mut after).await?;
            }
            if releases.len() < PER_PAGE as usize || !anything_new {
                break;
            }
        }
        while after.releases.len() > MAX_REMEMBERED {
            after.releases.pop_first();
        }
        Ok(after)
    }

    /// One page of releases; `None` when the server says it is unchanged.
    async fn page(
        &self,
        page: u32,
        etag: Option<&str>,
    ) -> Result<Option<(Vec<Release>, Option<String>)>, String> {
        let route = format!(
            "/repos/{}/{}/releases?per_page={PER_PAGE}&page={page}",
            self.owner, self.name
        );
        let mut headers = http::HeaderMap::new();
        if let Some(etag) = etag.and_then(|etag| etag.parse().ok()) {
            headers.insert(http::header::IF_NONE_MATCH, etag);
        }
        let response = self
            .octocrab
            ._get_with_headers(route.as_str(), Some(headers))
            .await
            .map_err(|e| describe(&e))?;
        if response.status() == http::StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        let response = octocrab::map_github_error(response)
            .await
            .map_err(|e| describe(&e))?;
        let etag = response
            .headers()
            .get(http::header::ETAG)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        let body = self
            .octocrab
            .body_to_string(response)
            .await
            .map_err(|e| describe(&e))?;
        let releases: Vec<Release> =
            serde_json::from_str(&body).map_err(|e| format!("releases page {page}: {e}"))?;
        Ok(Some((releases, etag)))
    }

    /// Emits what is new about `release`; true if anything was.
    async fn release(&mut self, release: &Release, after: &mut RepoCursor) -> Result<bool, String> {
        let id = release.id.0;
        let seen = after.releases.get(&id).cloned();
        let sha = match &seen {
            Some(seen) => seen.sha.clone(),
            None => self.tag_commit(&release.tag_name).await?,
        };
        let mut new = seen.is_none();
        let published = release
            .published_at
            .or(release.created_at)
            .unwrap_or_else(Utc::now);
        if seen.is_none() {
            self.event(json!({
                "type": "release",
                "ts": published.to_rfc3339(),
                "release_sha": sha,
                "status": if release.prerelease { "prerelease" } else { "published" },
                "detail": format!("{}/{} {}", self.owner, self.name, release.tag_name),
            }));
        }
        let mut seen = seen.unwrap_or(SeenRelease {
            sha: sha.clone(),
            assets: BTreeMap::new(),
        });
        let digests: BTreeMap<&str, &str> = release
            .assets
            .iter()
            .filter_map(|a| Some((a.name.as_str(), a.digest.as_deref()?)))
            .collect();
        for asset in &release.assets {
            let stamp = asset.updated_at.to_rfc3339();
            if seen.assets.get(&asset.id.0) == Some(&stamp) {
                continue;
            }
            new = true;
            self.asset(release, &sha, asset, &digests).await?;
            seen.assets.insert(asset.id.0, stamp);
        }
        after.releases.insert(id, seen);
        Ok(new)
    }

    async fn asset(
        &mut self,
        release: &Release,
        sha: &str,
        asset: &Asset,
        digests: &BTreeMap<&str, &str>,
    ) -> Result<(), String> {
        let ts = asset.updated_at.to_rfc3339();
        let signed = |suffix: &str| {
            asset
                .name
                .strip_suffix(suffix)
                .map(|base| (base, digests.get(base).copied()))
        };
        let skip = |me: &mut Self, why: &str| {
            me.skipped.push(format!(
                "{}/{} {} {}: {why}",
                me.owner, me.name, release.tag_name, asset.name
            ));
        };
        if let Some((base, digest)) = signed(".sig") {
            let Some(digest) = digest else {
                skip(
                    self,
                    &format!("`{base}` has no digest to link the signature to"),
                );
                return Ok(());
            };
            let Some(text) = self.download(asset).await? else {
                skip(self, "larger than a signature can be");
                return Ok(());
            };
            self.event(json!({
                "type": "sign", "ts": ts, "release_sha": sha, "bundle_digest": digest,
                "signature": text.trim(),
            }));
            return Ok(());
        }
        if let Some((base, digest)) = signed(".sigstore.json").or_else(|| signed(".sigstore")) {
            let Some(digest) = digest else {
                skip(
                    self,
                    &format!("`{base}` has no digest to link the bundle to"),
                );
                return Ok(());
            };
            let Some(text) = self.download(asset).await? else {
                skip(self, "larger than a Sigstore bundle can be");
                return Ok(());
            };
            // Not JSON: sent as text, so the event is reported malformed.
            let bundle = serde_json::from_str::<serde_json::Value>(&text)
                .unwrap_or(serde_json::Value::String(text));
            self.event(json!({
                "type": "sign", "ts": ts, "release_sha": sha, "bundle_digest": digest,
                "sigstore_bundle": bundle,
            }));
            return Ok(());
        }
        match asset.digest.as_deref() {
            Some(digest) => self.event(json!({
                "type": "bundle", "ts": ts, "release_sha": sha, "bundle_digest": digest,
                "detail": asset.name,
            })),
            None => skip(
                self,
                "no digest (GitHub gives one for assets uploaded since mid 2025)",
            ),
        }
        Ok(())
    }

    /// An asset's content as text; `None` when it is too large to be a
    /// signature or a bundle.
    async fn download(&self, asset: &Asset) -> Result<Option<String>, String> {
        if asset.size > MAX_SIGNATURE_ASSET {
            return Ok(None);
        }
        let route = format!(
            "/repos/{}/{}/releases/assets/{}",
            self.owner, self.name, asset.id.0
        );
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("application/octet-stream"),
        );
        let response = self
            .octocrab
            ._get_with_headers(route.as_str(), Some(headers))
            .await
            .map_err(|e| describe(&e))?;
        let response = octocrab::map_github_error(response)
            .await
            .map_err(|e| format!("asset {}: {}", asset.name, describe(&e)))?;
        let text = self
            .octocrab
            .body_to_string(response)
            .await
            .map_err(|e| format!("asset {}: {}", asset.name, describe(&e)))?;
        Ok((text.len() as i64 <= MAX_SIGNATURE_ASSET).then_some(text))
    }

    /// The commit a tag points at (annotated tags resolved).
    async fn tag_commit(&self, tag: &str) -> Result<String, String> {
        #[derive(Deserialize)]
        struct Commit {
            sha: String,
        }
        let route = format!(
            "/repos/{}/{}/commits/{}",
            self.owner,
            self.name,
            encode_ref(tag)
        );
        let commit: Commit = self
            .octocrab
            .get(route, None::<&()>)
            .await
            .map_err(|e| format!("tag {tag}: {}", describe(&e)))?;
        Ok(commit.sha)
    }

    fn event(&mut self, event: serde_json::Value) {
        self.lines.extend_from_slice(event.to_string().as_bytes());
        self.lines.push(b'\n');
    }
}

/// A ref for a URL path: `/` kept (refs have them), the rest escaped.
fn encode_ref(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// octocrab's error with its causes, for the run's summary.
fn describe(err: &octocrab::Error) -> String {
    let mut text = match err {
        octocrab::Error::GitHub { source, .. } => {
            format!("GitHub says {}: {}", source.status_code, source.message)
        }
        other => other.to_string(),
    };
    let mut cause = std::error::Error::source(err);
    while let Some(next) = cause {
        let next_text = next.to_string();
        if !text.contains(&next_text) {
            text.push_str(&format!(": {next_text}"));
        }
        cause = next.source();
    }
    redact(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_and_refs_are_checked_and_escaped() {
        assert_eq!(
            parse_repo("acme/app.rs").unwrap(),
            ("acme".into(), "app.rs".into())
        );
        for bad in ["acme", "acme/", "/app", "a/b/c", "acme/app?x=1"] {
            assert!(parse_repo(bad).is_err(), "{bad}");
        }
        assert_eq!(
            encode_ref("release/v1.0+build 7"),
            "release/v1.0%2Bbuild%207"
        );
    }
}
