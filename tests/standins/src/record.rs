//! What every HTTP stand-in shares: the record of calls, the failure plan and
//! waiting for a condition.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use axum::http::{HeaderMap, Method};
use hmac::{KeyInit, Mac};
use tokio::sync::watch;

/// How long [`Failure::Timeout`] holds a request open: far longer than any
/// client timeout a notifier should use.
pub const TIMEOUT_HOLD: Duration = Duration::from_secs(120);

/// A failure a test asks a stand-in to produce instead of answering normally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Answer with this HTTP status and a short plain-text body (real
    /// gateways in front of these services answer 5xx with HTML or text, so a
    /// client must not expect JSON here).
    Status(u16),
    /// HTTP 429 with the service's own rate-limit body; `Retry-After: N`
    /// (whole seconds, rounded up) when `retry_after` is set.
    RateLimited { retry_after: Option<Duration> },
    /// Read the request, then send nothing for [`TIMEOUT_HOLD`] (the
    /// connection stays open), then answer 504.
    Timeout,
    /// Read the request, then wait this long and answer normally: a slow
    /// service rather than a dead one.
    Delay(Duration),
    /// Read the request, then reset the TCP connection (RST, no response).
    Reset,
}

impl Failure {
    /// A 429 with `Retry-After`.
    pub fn rate_limited(retry_after: Duration) -> Self {
        Failure::RateLimited {
            retry_after: Some(retry_after),
        }
    }
}

/// What a stand-in did with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Processed as the real service processes a valid request.
    Accepted,
    /// Refused as the real service refuses it (authentication, validation,
    /// unknown channel…). `error` is the service's error code or message.
    Rejected { status: u16, error: String },
    /// Answered with a failure the test injected.
    Injected(Failure),
    /// Refused by the stand-in's built-in rate limit (HTTP 429).
    Throttled { retry_after: Duration },
}

/// One request as it arrived, and what the stand-in answered.
#[derive(Debug, Clone)]
pub struct RecordedCall {
    /// 0-based position among all requests this stand-in received.
    pub seq: usize,
    /// When the request's body had been read (monotonic clock).
    pub received_at: Instant,
    /// The same moment on the wall clock.
    pub received_at_system: SystemTime,
    pub method: Method,
    /// Path without the query string.
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    /// The raw body, byte for byte.
    pub body: Vec<u8>,
    /// HTTP status sent back; `None` when no response was sent (reset, or
    /// still held by a timeout).
    pub status: Option<u16>,
    pub outcome: Outcome,
}

impl RecordedCall {
    /// Whether the stand-in processed the request as a success.
    pub fn is_accepted(&self) -> bool {
        self.outcome == Outcome::Accepted
    }

    /// A header's value, if present and valid UTF-8 (first one if repeated).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as UTF-8 text (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// Checks a `sha256=<hex>` HMAC-SHA256 signature over the raw body in
    /// header `header_name`, computed with `secret`.
    pub fn verify_hmac_sha256(
        &self,
        secret: &[u8],
        header_name: &str,
    ) -> Result<(), SignatureError> {
        verify_hmac_sha256(secret, &self.body, self.header(header_name))
    }
}

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is missing")]
    Missing,
    #[error("the signature header is not `sha256=<64 hex digits>`: {0:?}")]
    Malformed(String),
    #[error("the signature does not match the body")]
    Mismatch,
}

/// `sha256=<hex>` of HMAC-SHA256(secret, body): what a correct signer sends.
pub fn hmac_sha256_signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret)
        .expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub(crate) fn verify_hmac_sha256(
    secret: &[u8],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let digest = header
        .strip_prefix("sha256=")
        .filter(|hex| hex.len() == 64)
        .and_then(|hex| hex::decode(hex).ok())
        .ok_or_else(|| SignatureError::Malformed(header.to_string()))?;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret)
        .expect("HMAC accepts keys of any length");
    mac.update(body);
    // verify_slice compares in constant time, as a real receiver must.
    mac.verify_slice(&digest)
        .map_err(|_| SignatureError::Mismatch)
}

/// A condition was not met before its deadline.
#[derive(Debug, Clone, thiserror::Error)]
#[error("condition not met within {timeout:?} ({recorded} recorded so far)")]
pub struct WaitTimedOut {
    pub timeout: Duration,
    /// Requests (or messages, for SMTP) recorded when the wait gave up.
    pub recorded: usize,
}

#[derive(Debug, Default)]
struct FailurePlan {
    /// Failures for the next requests, one entry per request, in order.
    next: VecDeque<Failure>,
    /// Used once `next` is empty, until cleared.
    sticky: Option<Failure>,
}

/// Shared state of one HTTP stand-in: calls, failures, change notifications.
#[derive(Debug)]
pub(crate) struct Core {
    calls: Mutex<Vec<RecordedCall>>,
    plan: Mutex<FailurePlan>,
    version: watch::Sender<u64>,
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock must not hide the
    // recorded calls from the next assertion.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Core {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Core {
            calls: Mutex::new(Vec::new()),
            plan: Mutex::new(FailurePlan::default()),
            version: watch::Sender::new(0),
        })
    }

    pub(crate) fn fail_next(&self, n: usize, failure: Failure) {
        let mut plan = lock(&self.plan);
        plan.next.extend(std::iter::repeat_n(failure, n));
    }

    pub(crate) fn fail_until_cleared(&self, failure: Failure) {
        lock(&self.plan).sticky = Some(failure);
    }

    pub(crate) fn clear_failures(&self) {
        let mut plan = lock(&self.plan);
        plan.next.clear();
        plan.sticky = None;
    }

    /// The failure the next request gets, if any (consumed).
    pub(crate) fn take_failure(&self) -> Option<Failure> {
        let mut plan = lock(&self.plan);
        plan.next.pop_front().or_else(|| plan.sticky.clone())
    }

    /// Appends a call and returns its index.
    pub(crate) fn push(&self, mut call: RecordedCall) -> usize {
        let index = {
            let mut calls = lock(&self.calls);
            call.seq = calls.len();
            calls.push(call);
            calls.len() - 1
        };
        self.bump();
        index
    }

    /// Sets the status of a call recorded before its response was decided
    /// (held or delayed requests).
    pub(crate) fn finish(&self, index: usize, status: Option<u16>, outcome: Outcome) {
        if let Some(call) = lock(&self.calls).get_mut(index) {
            call.status = status;
            call.outcome = outcome;
        }
        self.bump();
    }

    pub(crate) fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    pub(crate) fn calls(&self) -> Vec<RecordedCall> {
        lock(&self.calls).clone()
    }

    pub(crate) fn count(&self) -> usize {
        lock(&self.calls).len()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

/// Waits until `condition()` holds, re-checking whenever `core` records
/// something, for at most `timeout`.
pub(crate) async fn wait_until(
    core: &Core,
    timeout: Duration,
    condition: impl Fn() -> bool,
) -> Result<(), WaitTimedOut> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut changes = core.subscribe();
    loop {
        if condition() {
            return Ok(());
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => {
                if condition() {
                    return Ok(());
                }
                return Err(WaitTimedOut {
                    timeout,
                    recorded: core.count(),
                });
            }
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Status(status) => write!(f, "HTTP {status}"),
            Failure::RateLimited {
                retry_after: Some(after),
            } => write!(f, "HTTP 429, Retry-After {after:?}"),
            Failure::RateLimited { retry_after: None } => write!(f, "HTTP 429"),
            Failure::Timeout => write!(f, "timeout"),
            Failure::Delay(delay) => write!(f, "delay {delay:?}"),
            Failure::Reset => write!(f, "connection reset"),
        }
    }
}

/// `Retry-After` in whole seconds, rounded up, at least 1.
pub(crate) fn retry_after_seconds(after: Duration) -> u64 {
    let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
    secs.max(1)
}

/// Generates the methods every HTTP stand-in has, delegating to its
/// `core: Arc<Core>` and `server: Server` fields.
macro_rules! common_http_methods {
    ($standin:ty) => {
        impl $standin {
            /// The next `n` requests fail this way (after any already queued).
            pub fn fail_next(&self, n: usize, failure: $crate::Failure) {
                self.core.fail_next(n, failure);
            }

            /// Every request fails this way until [`Self::clear_failures`]
            /// (queued [`Self::fail_next`] failures come first).
            pub fn fail_until_cleared(&self, failure: $crate::Failure) {
                self.core.fail_until_cleared(failure);
            }

            /// Drops queued and sticky failures.
            pub fn clear_failures(&self) {
                self.core.clear_failures();
            }

            /// Every request received, in arrival order.
            pub fn calls(&self) -> Vec<$crate::RecordedCall> {
                self.core.calls()
            }

            /// The requests processed as successes.
            pub fn accepted(&self) -> Vec<$crate::RecordedCall> {
                self.core
                    .calls()
                    .into_iter()
                    .filter(|call| call.is_accepted())
                    .collect()
            }

            /// How many requests arrived (whatever their outcome).
            pub fn count(&self) -> usize {
                self.core.count()
            }

            /// Waits until `condition(self)` holds, re-checking each time a
            /// request is recorded; gives up after `timeout`.
            pub async fn wait_for(
                &self,
                condition: impl Fn(&Self) -> bool,
                timeout: std::time::Duration,
            ) -> Result<(), $crate::WaitTimedOut> {
                $crate::record::wait_until(&self.core, timeout, || condition(self)).await
            }

            /// The socket address the stand-in listens on (127.0.0.1).
            pub fn addr(&self) -> std::net::SocketAddr {
                self.server.addr()
            }
        }
    };
}
pub(crate) use common_http_methods;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_round_trip() {
        let signature = hmac_sha256_signature(b"secret", b"{\"a\":1}");
        assert!(signature.starts_with("sha256="));
        assert_eq!(
            verify_hmac_sha256(b"secret", b"{\"a\":1}", Some(&signature)),
            Ok(())
        );
        assert_eq!(
            verify_hmac_sha256(b"other", b"{\"a\":1}", Some(&signature)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_hmac_sha256(b"secret", b"{\"a\":2}", Some(&signature)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_hmac_sha256(b"secret", b"x", None),
            Err(SignatureError::Missing)
        );
        assert!(matches!(
            verify_hmac_sha256(b"secret", b"x", Some("md5=abc")),
            Err(SignatureError::Malformed(_))
        ));
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_seconds(Duration::from_millis(10)), 1);
        assert_eq!(retry_after_seconds(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_seconds(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn plan_order() {
        let core = Core::new();
        core.fail_until_cleared(Failure::Status(500));
        core.fail_next(2, Failure::Reset);
        assert_eq!(core.take_failure(), Some(Failure::Reset));
        assert_eq!(core.take_failure(), Some(Failure::Reset));
        assert_eq!(core.take_failure(), Some(Failure::Status(500)));
        assert_eq!(core.take_failure(), Some(Failure::Status(500)));
        core.clear_failures();
        assert_eq!(core.take_failure(), None);
    }
}
