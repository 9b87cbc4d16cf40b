//! A generic webhook: the alert as JSON, POSTed to a URL, optionally
//! signed with HMAC-SHA256 so the receiver can tell it came from patrol.
//! `X-Patrol-Delivery` is stable across retries, so receivers can drop
//! duplicates.

use std::collections::BTreeMap;
use std::path::Path;

use async_trait::async_trait;
use hmac::{Hmac, KeyInit, Mac};
use patrol_job_api::units::HumanDuration;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::Url;
use serde::{Deserialize, Deserializer, Serialize};
use sha2::Sha256;

use super::super::notify::{Action, AlertView, Notification, Notifier, SendError, Sent};
use super::super::secret::{Secret, SecretRef};
use super::render::truncate_marked;
use super::{default_timeout, http, Problems, RateLimit};

/// The body's `version`: bumped when a receiver would need to change.
pub const BODY_VERSION: u32 = 1;
/// `sha256=<hex HMAC-SHA256 of the raw body>`, keyed with `secret`.
pub const SIGNATURE_HEADER: &str = "x-patrol-signature";
/// The delivery id, the same on every retry of one notification.
pub const DELIVERY_HEADER: &str = "x-patrol-delivery";

/// Headers patrol sets itself; configuring them would break the request.
const RESERVED_HEADERS: [&str; 5] = [
    "content-type",
    "content-length",
    "host",
    SIGNATURE_HEADER,
    DELIVERY_HEADER,
];

/// `kind: webhook`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Where to POST; `http://` or `https://`.
    pub url: String,
    /// Signs each body (`X-Patrol-Signature`), as `env:` or `file:`.
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
        problems.http_url("url", &self.url);
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
    secret: Option<Secret>,
    headers: HeaderMap,
}

impl WebhookNotifier {
    pub(super) fn build(settings: &WebhookSettings, base: &Path) -> Result<Self, String> {
        let url = http::parse_http_url(&settings.url).map_err(|err| format!("url: {err}"))?;
        let secret = settings
            .secret
            .as_ref()
            .map(|secret| secret.resolve(base))
            .transpose()
            .map_err(|err| format!("secret: {err}"))?;
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
            secret,
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

/// `sha256=<hex>` of HMAC-SHA256(`secret`, `body`).
pub(super) fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail; the fallback
    // only keeps the type honest.
    match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        }
        Err(_) => "sha256=".to_string(),
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
        if let Some(secret) = &self.secret {
            request = request.header(
                SIGNATURE_HEADER,
                signature(secret.expose().as_bytes(), &body),
            );
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
    fn signature_is_hmac_sha256_hex_of_the_raw_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
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
             X-Patrol-Signature: forged\n  X-Ok: \"two\\nlines\"\n",
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
                "headers.X-Ok",
                "headers.X-Patrol-Signature"
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
