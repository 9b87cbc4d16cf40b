//! GitHub REST API stand-in for the release paths the provenance monitor
//! reads, in GitHub's wire format (docs.github.com/rest/releases):
//!
//! - `GET /repos/{owner}/{repo}/releases?per_page=&page=` — newest first,
//!   full release objects (author, assets with uploader and `digest`), a
//!   `Link` header, and an `ETag`; `If-None-Match` with the current ETag
//!   answers 304 with no body, as GitHub does;
//! - `GET /repos/{owner}/{repo}/commits/{ref}` — the commit a tag points
//!   at (`sha` and the usual fields); 422 for an unknown ref;
//! - `GET /repos/{owner}/{repo}/releases/assets/{id}` — the asset's JSON,
//!   or with `Accept: application/octet-stream` a 302 to its download URL
//!   (`/download/{id}/{name}`, served without authentication, like
//!   GitHub's signed object URLs).
//!
//! With a token configured, API paths need `Authorization: Bearer <token>`
//! (or `token <token>`); otherwise 401 `Bad credentials`. Unknown paths and
//! repositories are 404 `Not Found`. Injected rate limits answer 403 with
//! GitHub's primary rate-limit body and `x-ratelimit-remaining: 0`.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::record::{common_http_methods, lock, retry_after_seconds, Core, Outcome};
use crate::server::{json_response, Incoming, Reply, Server, ServiceLogic};

const JSON: &str = "application/json; charset=utf-8";

/// A local GitHub. Point a client's base URL at [`GithubStandin::base_url`].
#[derive(Debug)]
pub struct GithubStandin {
    core: Arc<Core>,
    logic: Arc<GithubLogic>,
    server: Server,
}

common_http_methods!(GithubStandin);

#[derive(Debug, Clone)]
struct StoredAsset {
    id: u64,
    name: String,
    content: Vec<u8>,
    /// GitHub reports `sha256:<hex>` for assets uploaded since 2025; older
    /// ones have `null`.
    with_digest: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct StoredRelease {
    id: u64,
    tag: String,
    commit: String,
    draft: bool,
    prerelease: bool,
    created_at: DateTime<Utc>,
    assets: Vec<StoredAsset>,
}

#[derive(Debug, Default)]
struct GithubState {
    base_url: String,
    token: Option<String>,
    /// `owner/repo` → releases in creation order.
    repos: BTreeMap<String, Vec<StoredRelease>>,
    next_id: u64,
    /// Timestamps of new releases and assets advance from here.
    clock: i64,
}

#[derive(Debug)]
struct GithubLogic {
    state: Mutex<GithubState>,
}

impl GithubStandin {
    /// Starts an empty GitHub; with `token`, API calls must present it.
    pub async fn start(token: Option<&str>) -> io::Result<Self> {
        let core = Core::new();
        let logic = Arc::new(GithubLogic {
            state: Mutex::new(GithubState {
                token: token.map(str::to_string),
                next_id: 1000,
                clock: Utc
                    .with_ymd_and_hms(2026, 11, 20, 10, 0, 0)
                    .single()
                    .map_or(0, |t| t.timestamp()),
                ..GithubState::default()
            }),
        });
        let server = Server::start(core.clone(), logic.clone()).await?;
        lock(&logic.state).base_url = format!("http://{}", server.addr());
        Ok(GithubStandin {
            core,
            logic,
            server,
        })
    }

    /// `http://127.0.0.1:PORT` (what stands for `https://api.github.com`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// Sets the time given to releases and assets created from now on.
    pub fn set_now(&self, at: DateTime<Utc>) {
        lock(&self.logic.state).clock = at.timestamp();
    }

    /// Publishes a release of `repo` (`owner/name`) for the tag `tag` at
    /// `commit`; its id.
    pub fn add_release(&self, repo: &str, tag: &str, commit: &str) -> u64 {
        self.add_release_with(repo, tag, commit, false)
    }

    /// A draft release (not visible to the monitor's reads as a release
    /// to record; GitHub lists drafts only to those who can push).
    pub fn add_draft(&self, repo: &str, tag: &str, commit: &str) -> u64 {
        self.add_release_with(repo, tag, commit, true)
    }

    fn add_release_with(&self, repo: &str, tag: &str, commit: &str, draft: bool) -> u64 {
        let mut state = lock(&self.logic.state);
        let id = state.next_id();
        let created_at = state.now();
        state
            .repos
            .entry(repo.to_string())
            .or_default()
            .push(StoredRelease {
                id,
                tag: tag.to_string(),
                commit: commit.to_string(),
                draft,
                prerelease: false,
                created_at,
                assets: Vec::new(),
            });
        id
    }

    /// Uploads an asset to a release; its id. `with_digest: false` makes
    /// it look like an asset uploaded before GitHub computed digests.
    pub fn add_asset(&self, release: u64, name: &str, content: &[u8], with_digest: bool) -> u64 {
        let mut state = lock(&self.logic.state);
        let id = state.next_id();
        let now = state.now();
        if let Some(release) = state.release_mut(release) {
            release.assets.push(StoredAsset {
                id,
                name: name.to_string(),
                content: content.to_vec(),
                with_digest,
                created_at: now,
                updated_at: now,
            });
        }
        id
    }

    /// Replaces an asset's content (same id, new `updated_at` and digest).
    pub fn replace_asset(&self, asset: u64, content: &[u8]) {
        let mut state = lock(&self.logic.state);
        let now = state.now();
        for release in state.repos.values_mut().flatten() {
            for stored in release.assets.iter_mut().filter(|a| a.id == asset) {
                stored.content = content.to_vec();
                stored.updated_at = now;
            }
        }
    }
}

impl GithubState {
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Each call is a second later, so `updated_at` always moves.
    fn now(&mut self) -> DateTime<Utc> {
        self.clock += 1;
        Utc.timestamp_opt(self.clock, 0)
            .single()
            .unwrap_or_default()
    }

    fn release_mut(&mut self, id: u64) -> Option<&mut StoredRelease> {
        self.repos
            .values_mut()
            .flatten()
            .find(|release| release.id == id)
    }

    fn user(&self) -> Value {
        let api = &self.base_url;
        json!({
            "login": "release-bot", "id": 41898282, "node_id": "MDM6Qm90NDE4OTgyODI=",
            "avatar_url": "https://avatars.githubusercontent.com/in/15368?v=4",
            "gravatar_id": "",
            "url": format!("{api}/users/release-bot"),
            "html_url": "https://github.com/apps/release-bot",
            "followers_url": format!("{api}/users/release-bot/followers"),
            "following_url": format!("{api}/users/release-bot/following{{/other_user}}"),
            "gists_url": format!("{api}/users/release-bot/gists{{/gist_id}}"),
            "starred_url": format!("{api}/users/release-bot/starred{{/owner}}{{/repo}}"),
            "subscriptions_url": format!("{api}/users/release-bot/subscriptions"),
            "organizations_url": format!("{api}/users/release-bot/orgs"),
            "repos_url": format!("{api}/users/release-bot/repos"),
            "events_url": format!("{api}/users/release-bot/events{{/privacy}}"),
            "received_events_url": format!("{api}/users/release-bot/received_events"),
            "type": "Bot", "user_view_type": "public", "site_admin": false
        })
    }

    fn asset_json(&self, repo: &str, asset: &StoredAsset) -> Value {
        let api = &self.base_url;
        let digest = asset
            .with_digest
            .then(|| format!("sha256:{}", hex::encode(Sha256::digest(&asset.content))));
        json!({
            "url": format!("{api}/repos/{repo}/releases/assets/{}", asset.id),
            "id": asset.id,
            "node_id": format!("RA_kwDO{}", asset.id),
            "name": asset.name,
            "label": "",
            "uploader": self.user(),
            "content_type": "application/octet-stream",
            "state": "uploaded",
            "size": asset.content.len(),
            "digest": digest,
            "download_count": 0,
            "created_at": asset.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "updated_at": asset.updated_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "browser_download_url": format!("{api}/download/{}/{}", asset.id, asset.name),
        })
    }

    fn release_json(&self, repo: &str, release: &StoredRelease) -> Value {
        let api = &self.base_url;
        let at = release
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        json!({
            "url": format!("{api}/repos/{repo}/releases/{}", release.id),
            "assets_url": format!("{api}/repos/{repo}/releases/{}/assets", release.id),
            "upload_url": format!("{api}/repos/{repo}/releases/{}/assets{{?name,label}}", release.id),
            "html_url": format!("https://github.com/{repo}/releases/tag/{}", release.tag),
            "id": release.id,
            "author": self.user(),
            "node_id": format!("RE_kwDO{}", release.id),
            "tag_name": release.tag,
            "target_commitish": "main",
            "name": release.tag,
            "draft": release.draft,
            "immutable": false,
            "prerelease": release.prerelease,
            "created_at": at,
            "updated_at": at,
            "published_at": if release.draft { Value::Null } else { json!(at) },
            "assets": release.assets.iter().map(|a| self.asset_json(repo, a)).collect::<Vec<_>>(),
            "tarball_url": format!("{api}/repos/{repo}/tarball/{}", release.tag),
            "zipball_url": format!("{api}/repos/{repo}/zipball/{}", release.tag),
            "body": "",
        })
    }
}

fn github_error(status: StatusCode, message: &str) -> Reply {
    Reply {
        response: json_response(
            status,
            JSON,
            &json!({
                "message": message,
                "documentation_url": "https://docs.github.com/rest",
                "status": status.as_u16().to_string(),
            }),
        ),
        outcome: Outcome::Rejected {
            status: status.as_u16(),
            error: message.to_string(),
        },
    }
}

fn query_number(query: Option<&str>, name: &str, default: usize) -> usize {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(default)
}

/// `owner/repo` and the rest of a `/repos/{owner}/{repo}/…` path.
fn split_repo(path: &str) -> Option<(String, &str)> {
    let rest = path.strip_prefix("/repos/")?;
    let mut parts = rest.splitn(3, '/');
    let (owner, repo) = (parts.next()?, parts.next()?);
    Some((format!("{owner}/{repo}"), parts.next().unwrap_or("")))
}

impl ServiceLogic for GithubLogic {
    fn respond(&self, request: &Incoming) -> Reply {
        let state = lock(&self.state);
        if request.method != Method::GET {
            return github_error(StatusCode::NOT_FOUND, "Not Found");
        }
        if let Some(rest) = request.path.strip_prefix("/download/") {
            return download(&state, rest);
        }
        if let Some(token) = &state.token {
            let presented = request
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("token "))
                });
            if presented != Some(token.as_str()) {
                return github_error(StatusCode::UNAUTHORIZED, "Bad credentials");
            }
        }
        let Some((repo, rest)) = split_repo(&request.path) else {
            return github_error(StatusCode::NOT_FOUND, "Not Found");
        };
        let Some(releases) = state.repos.get(&repo) else {
            return github_error(StatusCode::NOT_FOUND, "Not Found");
        };
        if rest == "releases" {
            return list(&state, &repo, releases, request);
        }
        if let Some(reference) = rest.strip_prefix("commits/") {
            return commit(&state, &repo, releases, reference);
        }
        if let Some(id) = rest.strip_prefix("releases/assets/") {
            let asset = releases
                .iter()
                .flat_map(|r| &r.assets)
                .find(|a| id.parse() == Ok(a.id));
            let Some(asset) = asset else {
                return github_error(StatusCode::NOT_FOUND, "Not Found");
            };
            let wants_bytes = request
                .headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("application/octet-stream"));
            if !wants_bytes {
                return ok_json(&state.asset_json(&repo, asset), None);
            }
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::FOUND;
            let location = format!("{}/download/{}/{}", state.base_url, asset.id, asset.name);
            if let Ok(location) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            return Reply {
                response,
                outcome: Outcome::Accepted,
            };
        }
        github_error(StatusCode::NOT_FOUND, "Not Found")
    }

    fn rate_limited(&self, retry_after: Option<Duration>) -> Response {
        let mut response = json_response(
            StatusCode::FORBIDDEN,
            JSON,
            &json!({
                "message": "API rate limit exceeded for user ID 1.",
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
                "status": "403",
            }),
        );
        let headers = response.headers_mut();
        headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        if let Some(after) = retry_after {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_seconds(after)),
            );
        }
        response
    }
}

fn ok_json(value: &Value, etag: Option<String>) -> Reply {
    let mut response = json_response(StatusCode::OK, JSON, value);
    if let Some(etag) = etag.and_then(|e| HeaderValue::from_str(&e).ok()) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Reply {
        response,
        outcome: Outcome::Accepted,
    }
}

fn list(state: &GithubState, repo: &str, releases: &[StoredRelease], request: &Incoming) -> Reply {
    let query = request.query.as_deref();
    let per_page = query_number(query, "per_page", 30).clamp(1, 100);
    let page = query_number(query, "page", 1).max(1);
    let newest_first: Vec<&StoredRelease> = releases.iter().rev().collect();
    let items: Vec<Value> = newest_first
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|release| state.release_json(repo, release))
        .collect();
    let body = Value::Array(items);
    let etag = format!(
        "W/\"{}\"",
        hex::encode(Sha256::digest(body.to_string().as_bytes()))
    );
    let presented = request
        .headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    if presented == Some(etag.as_str()) {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        if let Ok(etag) = HeaderValue::from_str(&etag) {
            response.headers_mut().insert(header::ETAG, etag);
        }
        return Reply {
            response,
            outcome: Outcome::Accepted,
        };
    }
    let mut reply = ok_json(&body, Some(etag));
    let last = newest_first.len().div_ceil(per_page).max(1);
    let mut links = Vec::new();
    let link = |n: usize, rel: &str| {
        format!(
            "<{}/repos/{repo}/releases?per_page={per_page}&page={n}>; rel=\"{rel}\"",
            state.base_url
        )
    };
    if page < last {
        links.push(link(page + 1, "next"));
        links.push(link(last, "last"));
    }
    if page > 1 {
        links.push(link(1, "first"));
        links.push(link(page - 1, "prev"));
    }
    if let Ok(value) = HeaderValue::from_str(&links.join(", ")) {
        if !links.is_empty() {
            reply.response.headers_mut().insert(header::LINK, value);
        }
    }
    reply
}

fn commit(state: &GithubState, repo: &str, releases: &[StoredRelease], reference: &str) -> Reply {
    let reference = reference.replace("%2F", "/").replace("%2B", "+");
    let Some(release) = releases.iter().find(|r| r.tag == reference) else {
        return github_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("No commit found for SHA: {reference}"),
        );
    };
    let sha = &release.commit;
    ok_json(
        &json!({
            "sha": sha,
            "node_id": format!("C_kwDO{sha}"),
            "url": format!("{}/repos/{repo}/commits/{sha}", state.base_url),
            "html_url": format!("https://github.com/{repo}/commit/{sha}"),
            "commit": {
                "message": format!("release {}", release.tag),
                "tree": {"sha": sha, "url": format!("{}/repos/{repo}/git/trees/{sha}", state.base_url)},
            },
            "parents": [],
        }),
        None,
    )
}

fn download(state: &GithubState, rest: &str) -> Reply {
    let id = rest.split('/').next().and_then(|id| id.parse::<u64>().ok());
    let asset = state
        .repos
        .values()
        .flatten()
        .flat_map(|r| &r.assets)
        .find(|a| Some(a.id) == id);
    match asset {
        Some(asset) => {
            let mut response = Response::new(Body::from(asset.content.clone()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            Reply {
                response,
                outcome: Outcome::Accepted,
            }
        }
        None => github_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}
