//! What the delivery worker hands a notifier, and what it gets back.
//! Notifiers know their service's wire format; the worker owns retries,
//! ordering, rate limits and the outbox.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use patrol_job_api::{Link, Severity};
use serde::{Deserialize, Serialize};

/// Why a notification is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A new alert: page (Slack message, PagerDuty trigger, email).
    Trigger,
    /// The alert changed while firing: refresh what was sent (Slack
    /// `chat.update`, PagerDuty re-trigger with the same dedup key), no new page.
    Update,
    /// Still firing after the route's `repeat_interval`: remind.
    Repeat,
    /// Cleared: PagerDuty resolve, Slack `chat.update` of the message.
    Resolve,
    /// `patrol alert test ROUTE`.
    Test,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trigger => "trigger",
            Self::Update => "update",
            Self::Repeat => "repeat",
            Self::Resolve => "resolve",
            Self::Test => "test",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Trigger,
            Self::Update,
            Self::Repeat,
            Self::Resolve,
            Self::Test,
        ]
        .into_iter()
        .find(|action| action.as_str() == text)
    }
}

/// The runbook an alert points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunbookView {
    pub name: String,
    /// `<runbooks.base_url>/<name>.md`, when a base URL is configured and
    /// the runbook exists.
    pub url: Option<String>,
    /// The first lines of `runbooks/<name>.md`, for the page itself.
    pub excerpt: String,
}

/// An alert as of one event, snapshotted into the outbox row so that what
/// is sent later is what was decided then.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertView {
    pub alert_id: i64,
    pub key: String,
    /// The key notifiers identify the alert's incident by (PagerDuty's
    /// `dedup_key`): `<schedule>/<key>`, or the bare key for alerts opened
    /// before migration 8 (`alerting::keys`). Empty in outbox rows written
    /// before it; the outbox fills in the bare key.
    #[serde(default)]
    pub notify_key: String,
    pub schedule_id: String,
    pub job: String,
    pub severity: Severity,
    pub title: String,
    pub summary: String,
    pub window: Option<String>,
    pub delta: Option<String>,
    pub sample_trace: Option<String>,
    pub runbook: Option<RunbookView>,
    pub links: Vec<Link>,
    pub labels: BTreeMap<String, String>,
    pub details: serde_json::Value,
    pub firing: bool,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// The run that last reported (or cleared) it.
    pub run_id: Option<i64>,
    /// The node that recorded it; PagerDuty's `source`.
    pub node: String,
}

/// One send to one notifier.
#[derive(Debug, Clone)]
pub struct Notification {
    /// The outbox row; stable across retries (an idempotency key).
    pub delivery_id: i64,
    pub action: Action,
    pub alert: AlertView,
    /// What this notifier returned for the alert's first delivered event
    /// (Slack: channel and message `ts`), so later events update it.
    pub remote: Option<serde_json::Value>,
    /// Set when an earlier attempt at this delivery may have reached the
    /// service without patrol learning the outcome (its sender was killed
    /// mid-request, no answer came, or a 5xx): when the first attempt was
    /// claimed. A notifier that can look up what it sent (Slack, by message
    /// metadata) looks before sending again, so that one event is one message.
    pub unsure_since: Option<DateTime<Utc>>,
}

/// A successful send.
#[derive(Debug, Clone, Default)]
pub struct Sent {
    /// Kept with the delivery and handed back as `Notification::remote`
    /// for the alert's later events.
    pub remote: Option<serde_json::Value>,
}

/// A failed send. `message` must not contain secrets (run it through
/// `secret::redact` when it quotes a URL, header or response).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub retry: Retry,
    pub message: String,
    pub http_status: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Try again after the worker's backoff, or after the service's
    /// `Retry-After` when it gave one.
    Later { retry_after: Option<Duration> },
    /// The request itself is wrong (400, bad token): retrying cannot help.
    Never,
}

impl SendError {
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            retry: Retry::Later { retry_after: None },
            message: message.into(),
            http_status: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            retry: Retry::Never,
            message: message.into(),
            http_status: None,
        }
    }
}

/// A configured destination (one entry of `notifiers:`).
#[async_trait]
pub trait Notifier: Send + Sync {
    /// `slack`, `pagerduty`, `email`, `webhook`, `console`.
    fn kind(&self) -> &'static str;

    /// Whether this notifier sends anything for `action`. Email, for one,
    /// skips `Update` (a changed summary is not worth another mail).
    fn wants(&self, action: Action) -> bool {
        let _ = action;
        true
    }

    async fn send(&self, notification: &Notification) -> Result<Sent, SendError>;
}
