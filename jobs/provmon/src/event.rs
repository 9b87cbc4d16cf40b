//! Provenance events, in the seed's schema (`contracts/provenance.events.json`):
//! `type` and `ts` required; `release_sha`, `bundle_digest`, `rekor_uuid`,
//! `deploy_rev` link the stages; `status` and `detail` say how a stage went.
//! Other fields are allowed (producers add their own) and ignored.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A stage of a release's chain, in pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Release,
    Bundle,
    Sign,
    Rekor,
    Deploy,
    RuntimeVerify,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Release,
        Stage::Bundle,
        Stage::Sign,
        Stage::Rekor,
        Stage::Deploy,
        Stage::RuntimeVerify,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Release => "release",
            Stage::Bundle => "bundle",
            Stage::Sign => "sign",
            Stage::Rekor => "rekor",
            Stage::Deploy => "deploy",
            Stage::RuntimeVerify => "runtime_verify",
        }
    }

    pub fn parse(name: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|stage| stage.as_str() == name)
    }

    /// Stages that belong to a release rather than to one bundle digest.
    pub fn is_release_level(self) -> bool {
        self == Stage::Release
    }
}

/// One event, checked. Strings borrow from the line read when they can
/// (most events are folded into a chain and dropped at once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event<'a> {
    pub stage: Stage,
    pub ts: DateTime<Utc>,
    #[serde(borrow)]
    pub release_sha: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub bundle_digest: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub rekor_uuid: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub deploy_rev: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub status: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub detail: Option<Cow<'a, str>>,
    /// A cosign signature (base64), on `sign` events.
    #[serde(borrow)]
    pub signature: Option<Cow<'a, str>>,
    /// A Sigstore bundle (its JSON text, as the event carried it), on
    /// `sign` events.
    #[serde(borrow)]
    pub sigstore_bundle: Option<Cow<'a, str>>,
}

impl Event<'_> {
    pub fn into_owned(self) -> Event<'static> {
        let own = |value: Option<Cow<'_, str>>| value.map(|v| Cow::Owned(v.into_owned()));
        Event {
            stage: self.stage,
            ts: self.ts,
            release_sha: own(self.release_sha),
            bundle_digest: own(self.bundle_digest),
            rekor_uuid: own(self.rekor_uuid),
            deploy_rev: own(self.deploy_rev),
            status: own(self.status),
            detail: own(self.detail),
            signature: own(self.signature),
            sigstore_bundle: own(self.sigstore_bundle),
        }
    }
}

/// The wire form.
#[derive(Deserialize)]
struct WireEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    ts: Cow<'a, str>,
    #[serde(default, borrow)]
    release_sha: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    bundle_digest: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    rekor_uuid: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    deploy_rev: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(default)]
    detail: Option<serde_json::Value>,
    #[serde(default, borrow)]
    signature: Option<Cow<'a, str>>,
    /// Kept as the exact text: a bundle is verified over what was sent.
    #[serde(default, borrow)]
    sigstore_bundle: Option<&'a serde_json::value::RawValue>,
}

/// Longest identifier accepted (a sha512 hex digest with its prefix fits).
const MAX_ID: usize = 200;

/// Parses one NDJSON line. The error says what is wrong, for the run's
/// report of malformed events.
pub fn parse_event(line: &[u8]) -> Result<Event<'_>, String> {
    let wire: WireEvent<'_> = serde_json::from_slice(line).map_err(|err| err.to_string())?;
    let stage = Stage::parse(&wire.kind).ok_or_else(|| {
        format!(
            "unknown type `{}` (expected release, bundle, sign, rekor, deploy or runtime_verify)",
            truncate(&wire.kind)
        )
    })?;
    let ts = DateTime::parse_from_rfc3339(&wire.ts)
        .map_err(|err| {
            format!(
                "ts `{}` is not an RFC 3339 date-time: {err}",
                truncate(&wire.ts)
            )
        })?
        .with_timezone(&Utc);
    let event = Event {
        stage,
        ts,
        release_sha: id("release_sha", wire.release_sha)?,
        bundle_digest: id("bundle_digest", wire.bundle_digest)?,
        rekor_uuid: id("rekor_uuid", wire.rekor_uuid)?,
        deploy_rev: id("deploy_rev", wire.deploy_rev)?,
        status: wire.status.map(|status| {
            if status.bytes().any(|b| b.is_ascii_uppercase()) {
                Cow::Owned(status.to_ascii_lowercase())
            } else {
                status
            }
        }),
        detail: wire.detail.map(|detail| match detail {
            serde_json::Value::String(text) => Cow::Owned(text),
            other => Cow::Owned(other.to_string()),
        }),
        signature: wire.signature,
        sigstore_bundle: match wire.sigstore_bundle {
            Some(raw) if !raw.get().starts_with('{') => {
                return Err("sigstore_bundle must be a JSON object (the bundle itself)".into())
            }
            raw => raw.map(|raw| Cow::Borrowed(raw.get())),
        },
    };
    check_links(&event)?;
    Ok(event)
}

fn id<'a>(name: &str, value: Option<Cow<'a, str>>) -> Result<Option<Cow<'a, str>>, String> {
    match value {
        None => Ok(None),
        Some(value) if value.is_empty() => Ok(None),
        Some(value) if value.len() > MAX_ID || value.chars().any(char::is_control) => Err(format!(
            "{name} `{}` is not a valid identifier",
            truncate(&value)
        )),
        Some(value) => Ok(Some(value)),
    }
}

/// Each stage must carry what links it into a chain.
fn check_links(event: &Event) -> Result<(), String> {
    let missing = |field: &str| {
        Err(format!(
            "a `{}` event needs {field} to be correlated",
            event.stage.as_str()
        ))
    };
    match event.stage {
        Stage::Release if event.release_sha.is_none() => missing("release_sha"),
        Stage::Bundle if event.bundle_digest.is_none() => missing("bundle_digest"),
        Stage::Sign if event.bundle_digest.is_none() => missing("bundle_digest"),
        // A `rekor` event names the entry it vouches for: without one it
        // would satisfy `missing-rekor` with nothing anyone could check.
        Stage::Rekor if event.bundle_digest.is_none() || event.rekor_uuid.is_none() => {
            missing("bundle_digest and rekor_uuid")
        }
        Stage::Deploy if event.bundle_digest.is_none() || event.deploy_rev.is_none() => {
            missing("bundle_digest and deploy_rev")
        }
        Stage::RuntimeVerify if event.bundle_digest.is_none() && event.deploy_rev.is_none() => {
            missing("bundle_digest or deploy_rev")
        }
        _ => Ok(()),
    }
}

/// The latest `ts` a sweep accepts: its clock plus the allowed skew. An
/// event dated later would push its rules' deadlines out (a `sign` dated
/// 2099 is never overdue), so it is malformed.
#[derive(Debug, Clone, Copy)]
pub struct Horizon {
    pub now: DateTime<Utc>,
    pub max_skew: std::time::Duration,
}

impl Horizon {
    /// `Err` naming the problem when `event` is dated beyond the horizon.
    pub fn check(&self, event: &Event) -> Result<(), String> {
        let skew = chrono::Duration::from_std(self.max_skew).unwrap_or(chrono::Duration::MAX);
        match self.now.checked_add_signed(skew) {
            Some(latest) if event.ts > latest => Err(format!(
                "ts {} is more than {} ahead of the sweep's clock ({}; max_clock_skew)",
                event.ts.to_rfc3339(),
                humantime::format_duration(self.max_skew),
                self.now.to_rfc3339()
            )),
            _ => Ok(()),
        }
    }
}

fn truncate(text: &str) -> String {
    if text.chars().count() <= 60 {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(60).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_schema_parses_and_unknown_fields_are_ignored() {
        let event = parse_event(
            br#"{"type":"rekor","ts":"2026-11-20T10:00:00+01:00","bundle_digest":"sha256:ab","rekor_uuid":"24296fb2","producer":"ci"}"#,
        )
        .unwrap();
        assert_eq!(event.stage, Stage::Rekor);
        assert_eq!(event.ts.to_rfc3339(), "2026-11-20T09:00:00+00:00");
        assert_eq!(event.rekor_uuid.as_deref(), Some("24296fb2"));
    }

    #[test]
    fn events_dated_beyond_the_allowed_skew_are_refused() {
        let now = DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let horizon = Horizon {
            now,
            max_skew: std::time::Duration::from_secs(300),
        };
        let at = |ts: &str| {
            let line = format!(r#"{{"type":"sign","ts":"{ts}","bundle_digest":"sha256:ab"}}"#);
            horizon.check(&parse_event(line.as_bytes()).unwrap())
        };
        assert_eq!(at("2026-11-20T10:05:00Z"), Ok(()));
        assert_eq!(at("2020-01-01T00:00:00Z"), Ok(()));
        let err = at("2099-01-01T00:00:00Z").unwrap_err();
        assert!(err.contains("more than 5m ahead"), "{err}");
        assert!(at("2026-11-20T10:05:01Z").is_err());
    }

    #[test]
    fn malformed_events_say_what_is_wrong() {
        let cases: [(&[u8], &str); 8] = [
            (br#"{"type":"release","ts":"2026-11-20T10:00:00Z""#, "EOF"),
            (br#"{"ts":"2026-11-20T10:00:00Z"}"#, "missing field `type`"),
            (
                br#"{"type":"build","ts":"2026-11-20T10:00:00Z"}"#,
                "unknown type `build`",
            ),
            (
                br#"{"type":"release","ts":"yesterday","release_sha":"a"}"#,
                "not an RFC 3339",
            ),
            (
                br#"{"type":"sign","ts":"2026-11-20T10:00:00Z"}"#,
                "needs bundle_digest",
            ),
            (b"\xff\xfe", "expected value"),
            (
                br#"{"type":"rekor","ts":"2026-11-20T10:00:00Z","bundle_digest":"sha256:ab"}"#,
                "needs bundle_digest and rekor_uuid",
            ),
            (
                br#"{"type":"rekor","ts":"2026-11-20T10:00:00Z","bundle_digest":"sha256:ab","rekor_uuid":""}"#,
                "needs bundle_digest and rekor_uuid",
            ),
        ];
        for (line, expected) in cases {
            let err = parse_event(line).unwrap_err();
            assert!(err.contains(expected), "{err} should contain {expected}");
        }
    }
}
