//! A generic webhook: the alert as JSON, POSTed to a URL, optionally
//! signed per the Standard Webhooks specification (standardwebhooks.com):
//! `webhook-id` (stable across retries, so receivers can drop duplicates),
//! `webhook-timestamp` (unix seconds at sending, so a captured request
//! cannot be replayed past the receiver's tolerance) and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`
//! under a `whsec_…` secret. Any receiver library of the specification
//! verifies it. `X-Patrol-Delivery` carries the bare delivery id.

use std::collections::BTreeMap;
use std::path::Path;

use async_trait::async_trait;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use patrol_job_api::units::HumanDuration;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::Url;
use serde::{Deserialize, Deserializer, Serialize};
use sha2::Sha256;

use super::super::notify::{Action, AlertView, Notification, Notifier, SendError, Sent};
use super::super::secret::SecretRef;
use super::render::truncate_marked;
use super::{default_timeout, http, Problems, RateLimit};

/// The body's `version`: bumped when a receiver would need to change.
pub const BODY_VERSION: u32 = 1;
/// Standard Webhooks: the message id, the same on every retry.
pub const ID_HEADER: &str = "webhook-id";
/// Standard Webhooks: when this attempt was signed, in unix seconds.
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// Standard Webhooks: `v1,<base64 HMAC-SHA256>` of `id.timestamp.body`.
pub const SIGNATURE_HEADER: &str = "webhook-signature";
/// The delivery id, the same on every retry of one notification.
pub const DELIVERY_HEADER: &str = "x-patrol-delivery";
/// How a Standard Webhooks secret starts.
const SECRET_PREFIX: &str = "whsec_";

/// Headers patrol sets itself; configuring them would break the request.
const RESERVED_HEADERS: [&str; 7] = [
    "content-type",
    "content-length",
    "host",
    ID_HEADER,
    TIMESTAMP_HEADER,
    SIGNATURE_HEADER,
    DELIVERY_HEADER,
];

/// `kind: webhook`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Where to POST: `https://` (`http://` only to this machine).
    pub url: String,
    /// Signs each request (Standard Webhooks), as `env:` or `file:`; the
    /// secret is `whsec_` and base64, as the receiver's library gives it.
    #[serde(default)]
    pub secret: Option<SecretRef>,
    /// Extra request headers, e.g. `X-Team: payments` or, for a token,
    /// `Authorization: { secret: env:HOOK_AUTH }`.
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderValueSpec>,
    /// How long one request may take (default 10s).
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// At most this many requests, e.g. `5/s`; none by default.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
}

/// A configured header value: plain text, or a secret (`{ secret: env:X }`)
/// for tokens that must not sit in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValueSpec {
    /// Sent as written.
    Plain(String),
    /// Resolved at build time, sent as the whole header value.
    Secret(SecretRef),
}

impl<'de> Deserialize<'de> for HeaderValueSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Plain(String),
            Secret(SecretField),
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct SecretField {
            secret: String,
        }
        match Raw::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom(
                "expected a header value, or `{ secret: env:NAME }` / `{ secret: file:PATH }`",
            )
        })? {
            Raw::Plain(value) => Ok(Self::Plain(value)),
            Raw::Secret(field) => SecretRef::parse(&field.secret)
                .map(Self::Secret)
                .map_err(serde::de::Error::custom),
        }
    }
}

impl WebhookSettings {
    pub(super) fn check(&self, problems: &mut Problems) {
        problems.api_url("url", &self.url, "alerts");
        problems.timeout(self.timeout);
        for (name, value) in &self.headers {
            let field = format!("headers.{name}");
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                problems.push(field, format!("`{name}` is not a valid header name"));
                continue;
            }
            if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                problems.push(
                    field,
                    format!("`{name}` is set by patrol and cannot be configured"),
                );
                continue;
            }
            if let HeaderValueSpec::Plain(value) = value {
                if HeaderValue::from_str(value).is_err() {
                    problems.push(
                        field,
                        "is not a valid header value (one line of visible text)",
                    );
                }
            }
        }
    }

    pub(super) fn secrets(&self) -> Vec<(&'static str, &SecretRef)> {
        let signing = self.secret.iter().map(|secret| ("secret", secret));
        let headers = self.headers.values().filter_map(|value| match value {
            HeaderValueSpec::Secret(secret) => Some(("headers", secret)),
            HeaderValueSpec::Plain(_) => None,
        });
        signing.chain(headers).collect()
    }
}

pub(super) struct WebhookNotifier {
    client: reqwest::Client,
    url: Url,
    signing_key: Option<SigningKey>,
    headers: HeaderMap,
}

impl WebhookNotifier {
    pub(super) fn build(settings: &WebhookSettings, base: &Path) -> Result<Self, String> {
        let url = http::parse_http_url(&settings.url).map_err(|err| format!("url: {err}"))?;
        let signing_key = settings
            .secret
            .as_ref()
            .map(|secret| secret.resolve(base))
            .transpose()
            .map_err(|err| format!("secret: {err}"))?
            .map(|secret| signing_key(secret.expose()).map_err(|err| format!("secret: {err}")))
            .transpose()?;
        let mut headers = HeaderMap::new();
        for (name, spec) in &settings.headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("headers.{name}: not a valid header name"))?;
            let mut value = match spec {
                HeaderValueSpec::Plain(value) => HeaderValue::from_str(value)
                    .map_err(|_| format!("headers.{name}: not a valid header value"))?,
                // Never quote a secret's value in the message.
                HeaderValueSpec::Secret(secret) => {
                    let secret = secret
                        .resolve(base)
                        .map_err(|err| format!("headers.{name}: {err}"))?;
                    HeaderValue::from_str(secret.expose()).map_err(|_| {
                        format!("headers.{name}: the secret is not a valid header value")
                    })?
                }
            };
            if matches!(spec, HeaderValueSpec::Secret(_)) {
                value.set_sensitive(true);
            }
            headers.insert(header, value);
        }
        Ok(Self {
            client: http::client(settings.timeout.0)?,
            url,
            signing_key,
            headers,
        })
    }
}

/// What a receiver gets.
#[derive(Debug, Serialize)]
struct Body<'a> {
    version: u32,
    action: Action,
    delivery_id: i64,
    alert: &'a AlertView,
}

/// The key a `whsec_<base64>` secret stands for. The error never quotes
/// the secret.
fn signing_key(secret: &str) -> Result<SigningKey, String> {
    let encoded = secret.trim().strip_prefix(SECRET_PREFIX).ok_or_else(|| {
        format!("is not a Standard Webhooks secret (`{SECRET_PREFIX}` and base64)")
    })?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| format!("the part after `{SECRET_PREFIX}` is not base64"))?;
    if key.len() < 16 {
        return Err("the key is shorter than 16 bytes".into());
    }
    Ok(SigningKey(key))
}

/// The decoded `whsec_` secret; `Debug` never shows it.
struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The message id of a delivery: stable across its retries.
fn message_id(delivery_id: i64) -> String {
    format!("patrol_{delivery_id}")
}

/// `v1,<base64 HMAC-SHA256(key, "id.timestamp.body")>`.
pub(super) fn signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail; the fallback
    // only keeps the type honest.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(format!("{id}.{timestamp}.").as_bytes());
            mac.update(body);
            format!(
                "v1,{}",
                base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
            )
        }
        Err(_) => "v1,".to_string(),
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    async fn send(&self, notification: &Notification) -> Result<Sent, SendError> {
        let body = serde_json::to_vec(&Body {
            version: BODY_VERSION,
            action: notification.action,
            delivery_id: notification.delivery_id,
            alert: &notification.alert,
        })
        .map_err(|err| SendError::permanent(format!("cannot encode the alert: {err}")))?;
        let mut request = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(DELIVERY_HEADER, notification.delivery_id.to_string());
        if let Some(key) = &self.signing_key {
            let id = message_id(notification.delivery_id);
            // Signed as it leaves: a retry gets a fresh timestamp, the same id.
            let timestamp = chrono::Utc::now().timestamp();
            request = request
                .header(SIGNATURE_HEADER, signature(&key.0, &id, timestamp, &body))
                .header(ID_HEADER, id)
                .header(TIMESTAMP_HEADER, timestamp.to_string());
        }
        let target = http::origin(&self.url);
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|err| http::transport_error("webhook", &target, &err))?;
        let status = response.status();
        if status.is_success() {
            return Ok(Sent::default());
        }
        let retry_after = http::retry_after(response.headers());
        let detail = http::error_body(response).await;
        Err(http::status_error(
            &format!("webhook {target}"),
            status,
            retry_after,
            &truncate_marked(&super::render::one_line(detail.trim()), 300),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{notification, sample_alert};
    use super::*;

    #[test]
    fn signature_follows_standard_webhooks() {
        // The specification's example (standard-webhooks/spec, "Example").
        let key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            signature(
                &key.0,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets_must_be_whsec_base64_and_are_never_quoted() {
        for bad in ["hook-secret-123456", "whsec_not base64!", "whsec_c2hvcnQ="] {
            let err = signing_key(bad).unwrap_err();
            assert!(!err.contains(bad), "{err}");
        }
        assert_eq!(
            format!(
                "{:?}",
                signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()
            ),
            "[redacted]"
        );
    }

    #[test]
    fn body_is_versioned_and_carries_the_whole_alert() {
        let n = notification(Action::Resolve, sample_alert());
        let value = serde_json::to_value(Body {
            version: BODY_VERSION,
            action: n.action,
            delivery_id: n.delivery_id,
            alert: &n.alert,
        })
        .unwrap();
        assert_eq!(value["version"], 1);
        assert_eq!(value["action"], "resolve");
        assert_eq!(value["delivery_id"], 17);
        assert_eq!(value["alert"]["key"], "traffic/export-spike/eu");
        // What a receiver keys incidents by: unique across schedules.
        assert_eq!(
            value["alert"]["notify_key"],
            "traffic-eu/traffic/export-spike/eu"
        );
        assert_eq!(value["alert"]["sample_trace"], "0f3a9c");
        let back: AlertView = serde_json::from_value(value["alert"].clone()).unwrap();
        assert_eq!(back, n.alert);
    }

    #[test]
    fn headers_take_plain_values_or_secrets() {
        let settings: WebhookSettings = serde_norway::from_str(
            "url: https://hooks.example/patrol\nsecret: env:HOOK_SIGNING\nheaders:\n  \
             X-Team: payments\n  Authorization: { secret: file:hook.token }\n",
        )
        .unwrap();
        assert_eq!(
            settings.headers["X-Team"],
            HeaderValueSpec::Plain("payments".into())
        );
        let fields: Vec<_> = settings.secrets().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["secret", "headers"]);
        let err = serde_norway::from_str::<WebhookSettings>(
            "url: https://h.example\nheaders:\n  Authorization: { secret: Bearer abc }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(!err.contains("Bearer abc"), "{err}");
    }

    #[test]
    fn check_reports_bad_fields() {
        let settings: WebhookSettings = serde_norway::from_str(
            "url: 'hooks.example/x'\ntimeout: 0\nheaders:\n  'Bad Name': x\n  \
             Webhook-Signature: forged\n  X-Ok: \"two\\nlines\"\n",
        )
        .unwrap();
        let mut problems = Problems::default();
        settings.check(&mut problems);
        let fields: Vec<_> = problems.0.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "url",
                "timeout",
                "headers.Bad Name",
                "headers.Webhook-Signature",
                "headers.X-Ok"
            ]
        );
    }

    #[test]
    fn secret_headers_are_sent_but_never_quoted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hook.token"), "Bearer hook-token-123\n").unwrap();
        let settings: WebhookSettings = serde_norway::from_str(
            "url: https://hooks.example/patrol\nheaders:\n  Authorization: { secret: file:hook.token }\n",
        )
        .unwrap();
        let notifier = WebhookNotifier::build(&settings, dir.path()).unwrap();
        let value = &notifier.headers["authorization"];
        assert_eq!(value, "Bearer hook-token-123");
        assert!(value.is_sensitive());
        assert!(!format!("{:?}", notifier.headers).contains("hook-token-123"));
    }
}
