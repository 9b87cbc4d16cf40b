//! Rekor v1 stand-in: a real Merkle log behind Rekor's REST wire format.
//!
//! Follows Rekor's OpenAPI description (github.com/sigstore/rekor,
//! `openapi.yaml`) for the paths the provenance monitor uses:
//!
//! - `GET /api/v1/log` — `{rootHash, signedTreeHead, treeSize, treeID}`;
//! - `GET /api/v1/log/entries/{uuid}` — `{"<entry id>": LogEntry}`, the
//!   entry with its signed entry timestamp and an inclusion proof against
//!   the current tree head and its signed checkpoint;
//! - `POST /api/v1/index/retrieve` — `{"hash": "sha256:<hex>"}` → the
//!   entry IDs logging that digest (`[]` when none);
//! - `POST /api/v1/log/entries` — a proposed hashedrekord v0.0.1 entry;
//!   its signature must verify over the digest with its key, as Rekor
//!   checks; 201 with the entry, 409 if already logged.
//!
//! Errors are Rekor's `{"code": N, "message": "…"}`. Keys, tree ID and
//! signatures come from the seed (see `patrol_provmon_verify::fixtures`),
//! so a test can pin the Rekor public key. On demand it withholds an entry
//! (404 and absent from searches), serves a forged inclusion proof, or is
//! down ([`RekorStandin::outage`], or any [`crate::Failure`]).

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use patrol_provmon_verify::fixtures::FakeLog;
use patrol_provmon_verify::key::PublicKey;
use patrol_provmon_verify::rekor::merkle::{leaf_hash, root_from_inclusion_proof, Hash};
use patrol_provmon_verify::rekor::{HashedRekord, LogEntry, SearchIndex};
use serde_json::{json, Value};

use crate::record::{common_http_methods, lock, retry_after_seconds, Core, Failure, Outcome};
use crate::server::{json_response, Incoming, Reply, Server, ServiceLogic};

const JSON: &str = "application/json";

/// How the stand-in forges an entry's inclusion proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forgery {
    /// One sibling hash flipped; `rootHash` and the checkpoint stay genuine,
    /// so the Merkle check fails.
    FlippedHash,
    /// One sibling hash flipped and `rootHash` recomputed from the forged
    /// path, so the path is self-consistent and only the signed checkpoint
    /// (for the genuine root) gives it away.
    RecomputedRoot,
}

/// A local Rekor. Point a client at [`RekorStandin::base_url`] and trust
/// [`RekorStandin::public_key_pem`].
#[derive(Debug)]
pub struct RekorStandin {
    core: Arc<Core>,
    logic: Arc<RekorLogic>,
    server: Server,
}

common_http_methods!(RekorStandin);

#[derive(Debug)]
struct RekorState {
    log: FakeLog,
    withheld: HashSet<u64>,
    forged: HashMap<u64, Forgery>,
    /// integratedTime for new entries; the wall clock when `None`.
    now: Option<i64>,
}

#[derive(Debug)]
struct RekorLogic {
    state: Mutex<RekorState>,
}

impl RekorStandin {
    /// Starts an empty log whose key and tree ID come from `seed`.
    pub async fn start(seed: &[u8]) -> io::Result<Self> {
        Self::start_with(FakeLog::new(seed)).await
    }

    /// Starts serving `log` (e.g. `fixtures::sample_log(..).log`).
    pub async fn start_with(log: FakeLog) -> io::Result<Self> {
        let core = Core::new();
        let logic = Arc::new(RekorLogic {
            state: Mutex::new(RekorState {
                log,
                withheld: HashSet::new(),
                forged: HashMap::new(),
                now: None,
            }),
        });
        let server = Server::start(core.clone(), logic.clone()).await?;
        Ok(RekorStandin {
            core,
            logic,
            server,
        })
    }

    /// `http://127.0.0.1:PORT` (what stands for `https://rekor.sigstore.dev`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The log's public key (PEM), to configure as the trusted Rekor key.
    pub fn public_key_pem(&self) -> String {
        lock(&self.logic.state).log.public_key_pem()
    }

    /// Hex SHA-256 of the log's key (every entry's `logID`).
    pub fn log_id(&self) -> String {
        lock(&self.logic.state).log.log_id()
    }

    /// Entries in the log (withheld ones included).
    pub fn tree_size(&self) -> u64 {
        lock(&self.logic.state).log.len()
    }

    /// A copy of the log as it stands.
    pub fn log(&self) -> FakeLog {
        lock(&self.logic.state).log.clone()
    }

    /// The `integratedTime` of entries added from now on (seconds since the
    /// epoch), instead of the wall clock.
    pub fn set_now(&self, unix_seconds: i64) {
        lock(&self.logic.state).now = Some(unix_seconds);
    }

    /// Logs a canonical entry body directly (no signature check); returns
    /// its entry ID, or the existing one's if already logged.
    pub fn add_body(&self, body: Vec<u8>) -> String {
        let mut state = lock(&self.logic.state);
        let now = state.now();
        let index = state.log.append(body, now).unwrap_or_else(|index| index);
        state.log.uuid(index).expect("the entry was just logged")
    }

    /// Every request answers 503 until [`Self::clear_failures`].
    pub fn outage(&self) {
        self.core.fail_until_cleared(Failure::Status(503));
    }

    /// Answers 404 for this entry (ID or leaf hash) and leaves it out of
    /// searches, as if it had never been logged; `false` if no such entry.
    pub fn withhold(&self, uuid: &str) -> bool {
        let mut state = lock(&self.logic.state);
        match state.log.index_of(uuid) {
            Some(index) => {
                state.withheld.insert(index);
                true
            }
            None => false,
        }
    }

    /// Serves the entry again.
    pub fn release(&self, uuid: &str) {
        let mut state = lock(&self.logic.state);
        if let Some(index) = state.log.index_of(uuid) {
            state.withheld.remove(&index);
        }
    }

    /// Serves a forged inclusion proof for this entry from now on; `false`
    /// if no such entry.
    pub fn forge_inclusion_proof(&self, uuid: &str, forgery: Forgery) -> bool {
        let mut state = lock(&self.logic.state);
        match state.log.index_of(uuid) {
            Some(index) => {
                state.forged.insert(index, forgery);
                true
            }
            None => false,
        }
    }
}

impl RekorState {
    fn now(&self) -> i64 {
        self.now.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
                .unwrap_or(0)
        })
    }

    /// The entry as served: genuine, or with its forgery applied.
    fn served_entry(&self, index: u64) -> Option<(String, LogEntry)> {
        let (uuid, mut entry) = self.log.entry(index)?;
        if let Some(forgery) = self.forged.get(&index) {
            forge(&mut entry, *forgery);
        }
        Some((uuid, entry))
    }
}

fn forge(entry: &mut LogEntry, forgery: Forgery) {
    let body = base64_body(entry);
    let Some(proof) = entry
        .verification
        .as_mut()
        .and_then(|v| v.inclusion_proof.as_mut())
    else {
        return;
    };
    let mut hashes: Vec<Hash> = proof
        .hashes
        .iter()
        .filter_map(|h| hex::decode(h).ok()?.try_into().ok())
        .collect();
    match hashes.first_mut() {
        Some(first) => first[0] ^= 0x01,
        // A one-leaf tree has no path to forge: invent a sibling.
        None => hashes.push([0x5a; 32]),
    }
    proof.hashes = hashes.iter().map(hex::encode).collect();
    if forgery == Forgery::RecomputedRoot {
        let index = u64::try_from(proof.log_index).unwrap_or(0);
        let size = u64::try_from(proof.tree_size).unwrap_or(0);
        if let (Some(body), true) = (body, hashes.len() > 1 || size > 1) {
            if let Ok(root) = root_from_inclusion_proof(index, size, &leaf_hash(&body), &hashes) {
                proof.root_hash = hex::encode(root);
            }
        }
    }
}

fn base64_body(entry: &LogEntry) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(&entry.body)
        .ok()
}

fn rekor_error(status: StatusCode, message: &str) -> Reply {
    Reply {
        response: json_response(
            status,
            JSON,
            &json!({"code": status.as_u16(), "message": message}),
        ),
        outcome: Outcome::Rejected {
            status: status.as_u16(),
            error: message.to_string(),
        },
    }
}

fn ok(status: StatusCode, value: &Value) -> Reply {
    Reply {
        response: json_response(status, JSON, value),
        outcome: Outcome::Accepted,
    }
}

fn entry_json(uuid: &str, entry: &LogEntry) -> Value {
    let mut map = serde_json::Map::new();
    map.insert(
        uuid.to_string(),
        serde_json::to_value(entry).unwrap_or(Value::Null),
    );
    Value::Object(map)
}

impl ServiceLogic for RekorLogic {
    fn respond(&self, request: &Incoming) -> Reply {
        let path = request.path.trim_end_matches('/');
        match (&request.method, path) {
            (&Method::GET, "/api/v1/log") => {
                let info = lock(&self.state).log.log_info();
                ok(
                    StatusCode::OK,
                    &serde_json::to_value(info).unwrap_or(Value::Null),
                )
            }
            (&Method::POST, "/api/v1/index/retrieve") => self.search(request),
            (&Method::POST, "/api/v1/log/entries") => self.create(request),
            (&Method::GET, _) if path.starts_with("/api/v1/log/entries/") => {
                self.get_entry(&path["/api/v1/log/entries/".len()..])
            }
            (_, "/api/v1/log" | "/api/v1/index/retrieve" | "/api/v1/log/entries") => {
                rekor_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            }
            _ => rekor_error(StatusCode::NOT_FOUND, "path not found"),
        }
    }

    fn rate_limited(&self, retry_after: Option<Duration>) -> Response {
        let mut response = json_response(
            StatusCode::TOO_MANY_REQUESTS,
            JSON,
            &json!({"code": 429, "message": "rate limit exceeded"}),
        );
        if let Some(after) = retry_after {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_seconds(after)),
            );
        }
        response
    }
}

impl RekorLogic {
    fn get_entry(&self, uuid: &str) -> Reply {
        let valid = matches!(uuid.len(), 64 | 80) && uuid.bytes().all(|b| b.is_ascii_hexdigit());
        if !valid {
            return rekor_error(
                StatusCode::BAD_REQUEST,
                "entryUUID in path should match '^([0-9a-fA-F]{64}|[0-9a-fA-F]{80})$'",
            );
        }
        let state = lock(&self.state);
        let found = state
            .log
            .index_of(uuid)
            .filter(|index| !state.withheld.contains(index))
            .and_then(|index| state.served_entry(index));
        match found {
            Some((id, entry)) => ok(StatusCode::OK, &entry_json(&id, &entry)),
            None => rekor_error(StatusCode::NOT_FOUND, "entry not found"),
        }
    }

    fn search(&self, request: &Incoming) -> Reply {
        let query: SearchIndex = match serde_json::from_slice(&request.body) {
            Ok(query) => query,
            Err(error) => {
                return rekor_error(StatusCode::BAD_REQUEST, &format!("parsing body: {error}"))
            }
        };
        let Some(hash) = query.hash else {
            return rekor_error(
                StatusCode::BAD_REQUEST,
                "at least one of hash, publicKey or email must be specified",
            );
        };
        let digest: Option<Hash> = hash
            .strip_prefix("sha256:")
            .filter(|hex| hex.len() == 64)
            .and_then(|hex| hex::decode(hex).ok())
            .and_then(|bytes| bytes.try_into().ok());
        let Some(digest) = digest else {
            return rekor_error(
                StatusCode::BAD_REQUEST,
                "hash must be sha256:<64 hex digits>",
            );
        };
        let state = lock(&self.state);
        let uuids: Vec<String> = state
            .log
            .search_sha256(&digest)
            .into_iter()
            .filter(|uuid| {
                state
                    .log
                    .index_of(uuid)
                    .is_some_and(|index| !state.withheld.contains(&index))
            })
            .collect();
        ok(StatusCode::OK, &json!(uuids))
    }

    fn create(&self, request: &Incoming) -> Reply {
        let record = match HashedRekord::parse(&request.body) {
            Ok(record) => record,
            Err(error) => return rekor_error(StatusCode::BAD_REQUEST, &error),
        };
        let key = match PublicKey::from_pem(&record.public_key_pem) {
            Ok(key) => key,
            Err(error) => {
                return rekor_error(
                    StatusCode::BAD_REQUEST,
                    &format!("invalid public key: {error}"),
                )
            }
        };
        if let Err(error) = key.verify_sha256_digest(&record.sha256, &record.signature) {
            return rekor_error(
                StatusCode::BAD_REQUEST,
                &format!("verifying signature: {error}"),
            );
        }
        let mut state = lock(&self.state);
        let now = state.now();
        match state.log.append(record.to_canonical_json(), now) {
            Ok(index) => match state.served_entry(index) {
                Some((uuid, entry)) => {
                    let mut reply = ok(StatusCode::CREATED, &entry_json(&uuid, &entry));
                    let headers = reply.response.headers_mut();
                    if let Ok(location) =
                        HeaderValue::from_str(&format!("/api/v1/log/entries/{uuid}"))
                    {
                        headers.insert(header::LOCATION, location);
                    }
                    if let Ok(etag) = HeaderValue::from_str(&uuid) {
                        headers.insert(header::ETAG, etag);
                    }
                    reply
                }
                None => rekor_error(StatusCode::INTERNAL_SERVER_ERROR, "entry vanished"),
            },
            Err(index) => {
                let uuid = state.log.uuid(index).unwrap_or_default();
                let mut reply = rekor_error(
                    StatusCode::CONFLICT,
                    &format!(
                        "an equivalent entry already exists in the transparency log with UUID {uuid}"
                    ),
                );
                if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/log/entries/{uuid}"))
                {
                    reply
                        .response
                        .headers_mut()
                        .insert(header::LOCATION, location);
                }
                reply
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use patrol_provmon_verify::fixtures::{sample_log, Artifact, SigningKey};
    use patrol_provmon_verify::rekor::{
        verify_entry, verify_log_info, Client, ClientError, ExpectedArtifact,
    };
    use patrol_provmon_verify::Verdict;

    use super::*;

    const T0: i64 = 1_700_000_000;

    fn client(standin: &RekorStandin) -> Client {
        Client::new(&standin.base_url(), Duration::from_secs(5)).expect("client")
    }

    fn expected(artifact: &Artifact, signer: &SigningKey) -> ExpectedArtifact {
        ExpectedArtifact {
            sha256: artifact.digest(),
            signature_b64: Some(artifact.signature_b64()),
            signer: Some(signer.public_key()),
        }
    }

    async fn fetch_and_verify(
        client: &Client,
        rekor_key: &PublicKey,
        artifact: &Artifact,
        signer: &SigningKey,
    ) -> Result<Vec<Verdict>, ClientError> {
        let uuids = client.search_by_sha256(&artifact.digest()).await?;
        let mut verdicts = Vec::new();
        for uuid in uuids {
            let (id, entry) = client.entry(&uuid).await?;
            assert_eq!(id, uuid);
            verdicts
                .push(verify_entry(&id, &entry, rekor_key, &expected(artifact, signer)).verdict());
        }
        Ok(verdicts)
    }

    #[tokio::test]
    async fn client_and_verifier_accept_real_answers() {
        let sample = sample_log(b"standin", 6, T0);
        let standin = RekorStandin::start_with(sample.log.clone())
            .await
            .expect("start");
        let client = client(&standin);
        let rekor_key = PublicKey::from_pem(&standin.public_key_pem()).expect("key");

        let info = client.log_info().await.expect("log info");
        assert_eq!(info.tree_size, 6);
        assert_eq!(verify_log_info(&info, &rekor_key), Verdict::Verified);

        for artifact in &sample.artifacts {
            let verdicts = fetch_and_verify(&client, &rekor_key, artifact, &sample.cosign)
                .await
                .expect("answers");
            assert_eq!(verdicts, vec![Verdict::Verified], "{}", artifact.name);
        }
        // The short (leaf hash) form of an ID finds the same entry.
        let (id, _) = client.entry(&sample.uuids[0][16..]).await.expect("entry");
        assert_eq!(id, sample.uuids[0]);
    }

    #[tokio::test]
    async fn posted_entries_are_logged_and_verify() {
        let standin = RekorStandin::start(b"post").await.expect("start");
        standin.set_now(T0);
        let signer = SigningKey::p256_from_seed(b"release signer");
        let artifact = Artifact::signed(&signer, "app.tar.gz", b"app bytes");
        let http = reqwest::Client::new();
        let url = format!("{}/api/v1/log/entries", standin.base_url());
        let proposed = artifact.hashedrekord_body(&signer.public_key_pem());

        let response = http
            .post(&url)
            .body(proposed.clone())
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), 201);
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .expect("location");
        let created = patrol_provmon_verify::rekor::parse_entry_response(
            &response.bytes().await.expect("body"),
        )
        .expect("entry");
        assert_eq!(location, format!("/api/v1/log/entries/{}", created.0));
        assert_eq!(created.1.integrated_time, T0);

        let again = http.post(&url).body(proposed).send().await.expect("post");
        assert_eq!(again.status(), 409);

        // A signature by another key over the same digest is refused.
        let impostor = SigningKey::p256_from_seed(b"impostor");
        let mut forged = artifact.clone();
        forged.signature = impostor.sign(&artifact.contents);
        let refused = http
            .post(&url)
            .body(forged.hashedrekord_body(&signer.public_key_pem()))
            .send()
            .await
            .expect("post");
        assert_eq!(refused.status(), 400);
        let refused = http.post(&url).body("{}").send().await.expect("post");
        assert_eq!(refused.status(), 400);

        let client = client(&standin);
        let rekor_key = PublicKey::from_pem(&standin.public_key_pem()).expect("key");
        let verdicts = fetch_and_verify(&client, &rekor_key, &artifact, &signer)
            .await
            .expect("answers");
        assert_eq!(verdicts, vec![Verdict::Verified]);
        assert_eq!(standin.tree_size(), 1);
    }

    #[tokio::test]
    async fn forged_inclusion_proofs_are_rejected() {
        let sample = sample_log(b"forge", 5, T0);
        let standin = RekorStandin::start_with(sample.log.clone())
            .await
            .expect("start");
        let client = client(&standin);
        let rekor_key = PublicKey::from_pem(&standin.public_key_pem()).expect("key");
        let expect = |i: usize| expected(&sample.artifacts[i], &sample.cosign);

        assert!(standin.forge_inclusion_proof(&sample.uuids[1], Forgery::FlippedHash));
        let (id, entry) = client.entry(&sample.uuids[1]).await.expect("entry");
        let report = verify_entry(&id, &entry, &rekor_key, &expect(1));
        assert!(report.signed_entry_timestamp.is_verified());
        assert!(report.checkpoint.is_verified());
        assert!(!report.inclusion.is_verified(), "{report:?}");

        assert!(standin.forge_inclusion_proof(&sample.uuids[2], Forgery::RecomputedRoot));
        let (id, entry) = client.entry(&sample.uuids[2]).await.expect("entry");
        let report = verify_entry(&id, &entry, &rekor_key, &expect(2));
        assert!(
            report.inclusion.is_verified(),
            "the forged path is self-consistent"
        );
        let reason = report.verdict();
        assert!(
            reason.reason().is_some_and(|r| r.contains("checkpoint")),
            "{reason}"
        );

        // Untouched entries still verify; a key we do not trust rejects all.
        let (id, entry) = client.entry(&sample.uuids[3]).await.expect("entry");
        assert!(verify_entry(&id, &entry, &rekor_key, &expect(3))
            .verdict()
            .is_verified());
        let stranger = SigningKey::p256_from_seed(b"stranger").public_key();
        assert!(!verify_entry(&id, &entry, &stranger, &expect(3))
            .verdict()
            .is_verified());
        assert!(!standin.forge_inclusion_proof(&"0".repeat(64), Forgery::FlippedHash));
    }

    #[tokio::test]
    async fn withheld_entries_are_not_found_and_outages_are_not_absence() {
        let sample = sample_log(b"withhold", 3, T0);
        let standin = RekorStandin::start_with(sample.log.clone())
            .await
            .expect("start");
        let client = client(&standin);
        let digest = sample.artifacts[1].digest();

        assert!(standin.withhold(&sample.uuids[1]));
        let error = client.entry(&sample.uuids[1]).await.expect_err("withheld");
        assert!(error.is_not_found() && !error.is_outage(), "{error}");
        assert_eq!(client.search_by_sha256(&digest).await, Ok(vec![]));
        standin.release(&sample.uuids[1]);
        assert_eq!(
            client.search_by_sha256(&digest).await,
            Ok(vec![sample.uuids[1].clone()])
        );

        standin.outage();
        for error in [
            client.entry(&sample.uuids[0]).await.expect_err("down"),
            client.search_by_sha256(&digest).await.expect_err("down"),
            client.log_info().await.map(|_| ()).expect_err("down"),
        ] {
            assert!(error.is_outage() && !error.is_not_found(), "{error}");
        }
        standin.clear_failures();
        standin.fail_next(1, Failure::rate_limited(Duration::from_secs(1)));
        let error = client.log_info().await.expect_err("throttled");
        assert!(error.is_outage(), "{error}");
        assert!(client.log_info().await.is_ok());

        let unknown = "ab".repeat(32);
        let error = client.entry(&unknown).await.expect_err("unknown");
        assert!(error.is_not_found(), "{error}");
        assert!(standin.calls().iter().any(|call| call.status == Some(503)));
    }
}
