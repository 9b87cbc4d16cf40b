//! PagerDuty through Events API v2 (`POST /v2/enqueue`). An alert is one
//! PagerDuty alert, identified by its dedup key: trigger, update and
//! repeat all re-trigger it (PagerDuty folds them into one incident),
//! resolve resolves it.

use std::path::Path;

use async_trait::async_trait;
use chrono::SecondsFormat;
use patrol_job_api::units::HumanDuration;
use patrol_job_api::Severity;
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::super::notify::{Action, AlertView, Notification, Notifier, SendError, Sent};
use super::super::secret::{Secret, SecretRef};
use super::render::{self, one_line, truncate_ellipsis, truncate_marked};
use super::{default_timeout, http, Problems, RateLimit};

const DEFAULT_BASE_URL: &str = "https://events.pagerduty.com";
/// PagerDuty's limits: dedup keys up to 255 characters, summaries up to 1024.
const MAX_DEDUP_KEY: usize = 255;
const MAX_SUMMARY: usize = 1024;
/// The excerpt is a pointer to the runbook, not the runbook.
const MAX_EXCERPT: usize = 2000;

/// `kind: pagerduty`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutySettings {
    /// The integration's routing key (Events API v2), as `env:` or `file:`.
    pub routing_key: SecretRef,
    /// The Events API root; tests point it at a stand-in.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// How long one request may take (default 10s).
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// At most this many events, e.g. `120/min`; none by default.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// `payload.source`; defaults to the node that recorded the alert.
    #[serde(default)]
    pub source: Option<String>,
    /// `payload.component`; defaults to the alert's `component` label.
    #[serde(default)]
    pub component: Option<String>,
    /// `payload.group`; defaults to the schedule id.
    #[serde(default)]
    pub group: Option<String>,
    /// `payload.class`; defaults to the job kind.
    #[serde(default)]
    pub class: Option<String>,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_string()
}

impl PagerDutySettings {
    pub(super) fn check(&self, problems: &mut Problems) {
        problems.api_url("base_url", &self.base_url, "the routing key");
        problems.timeout(self.timeout);
        let optional = [
            ("source", &self.source),
            ("component", &self.component),
            ("group", &self.group),
            ("class", &self.class),
        ];
        for (field, value) in optional {
            if value
                .as_deref()
                .is_some_and(|value| value.trim().is_empty())
            {
                problems.push(field, "must not be empty (leave it out for the default)");
            }
        }
    }
}

pub(super) struct PagerDutyNotifier {
    client: reqwest::Client,
    enqueue_url: Url,
    routing_key: Secret,
    defaults: Defaults,
}

/// The payload fields a configuration may fix for every alert.
#[derive(Debug, Clone, Default)]
struct Defaults {
    source: Option<String>,
    component: Option<String>,
    group: Option<String>,
    class: Option<String>,
}

impl PagerDutyNotifier {
    pub(super) fn build(settings: &PagerDutySettings, base: &Path) -> Result<Self, String> {
        let routing_key = settings
            .routing_key
            .resolve(base)
            .map_err(|err| format!("routing_key: {err}"))?;
        let base_url =
            http::parse_http_url(&settings.base_url).map_err(|err| format!("base_url: {err}"))?;
        let enqueue_url = Url::parse(&format!(
            "{}/v2/enqueue",
            base_url.as_str().trim_end_matches('/')
        ))
        .map_err(|err| format!("base_url: cannot append /v2/enqueue ({err})"))?;
        Ok(Self {
            client: http::client(settings.timeout.0)?,
            enqueue_url,
            routing_key,
            defaults: Defaults {
                source: settings.source.clone(),
                component: settings.component.clone(),
                group: settings.group.clone(),
                class: settings.class.clone(),
            },
        })
    }
}

/// An Events API v2 request body.
#[derive(Debug, Serialize)]
struct Event<'a> {
    routing_key: &'a str,
    event_action: &'static str,
    dedup_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<Payload>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    links: Vec<EventLink>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<&'static str>,
}

#[derive(Debug, Serialize)]
struct Payload {
    summary: String,
    source: String,
    severity: &'static str,
    timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    component: Option<String>,
    group: String,
    class: String,
    custom_details: serde_json::Value,
}

#[derive(Debug, Serialize)]
struct EventLink {
    href: String,
    text: String,
}

/// What PagerDuty answers, success or not.
#[derive(Debug, Default, Deserialize)]
struct Answer {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    errors: Vec<String>,
    #[serde(default)]
    dedup_key: Option<String>,
}

/// The alert key as PagerDuty's dedup key: unchanged when it fits in 255
/// bytes, else a prefix, `~`, and the SHA-256 of the whole key, so that
/// distinct long keys stay distinct and each stays stable.
pub(super) fn dedup_key(key: &str) -> String {
    if key.len() <= MAX_DEDUP_KEY {
        return key.to_string();
    }
    let hash = hex::encode(Sha256::digest(key.as_bytes()));
    let mut keep = MAX_DEDUP_KEY - 1 - hash.len();
    while !key.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}~{hash}", &key[..keep])
}

/// PagerDuty's severities are the same four words.
fn severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "critical",
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "info",
    }
}

/// The title, then the summary, within PagerDuty's 1024 characters.
fn summary(notification: &Notification) -> String {
    let alert = &notification.alert;
    let mut text = one_line(&alert.title);
    if notification.action == Action::Test {
        text = format!("[TEST] {text}");
    }
    let extra = one_line(alert.summary.trim());
    if !extra.is_empty() {
        text = format!("{text}: {extra}");
    }
    truncate_ellipsis(&text, MAX_SUMMARY)
}

fn custom_details(notification: &Notification) -> serde_json::Value {
    let alert = &notification.alert;
    let runbook = alert.runbook.as_ref().map(|runbook| {
        serde_json::json!({
            "name": runbook.name,
            "url": runbook.url,
            "excerpt": truncate_marked(&runbook.excerpt, MAX_EXCERPT),
        })
    });
    serde_json::json!({
        "key": alert.key,
        "summary": alert.summary,
        "schedule": alert.schedule_id,
        "job": alert.job,
        "window": alert.window,
        "delta": alert.delta,
        "sample_trace": alert.sample_trace,
        "labels": alert.labels,
        "details": alert.details,
        "run_id": alert.run_id,
        "first_seen_at": alert.first_seen_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "last_seen_at": alert.last_seen_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "runbook": runbook,
        "patrol_action": notification.action.as_str(),
        "delivery_id": notification.delivery_id,
    })
}

fn links(alert: &AlertView) -> Vec<EventLink> {
    render::links(alert)
        .into_iter()
        .filter(|link| render::is_clickable(&link.href))
        .map(|link| EventLink {
            href: link.href,
            text: one_line(&link.text),
        })
        .collect()
}

impl Defaults {
    fn payload(&self, notification: &Notification) -> Payload {
        let alert = &notification.alert;
        Payload {
            summary: summary(notification),
            source: self.source.clone().unwrap_or_else(|| alert.node.clone()),
            severity: severity(alert.severity),
            timestamp: alert
                .last_seen_at
                .to_rfc3339_opts(SecondsFormat::Millis, true),
            component: self
                .component
                .clone()
                .or_else(|| alert.labels.get("component").cloned()),
            group: self
                .group
                .clone()
                .unwrap_or_else(|| alert.schedule_id.clone()),
            class: self.class.clone().unwrap_or_else(|| alert.job.clone()),
            custom_details: custom_details(notification),
        }
    }
}

/// The request body for `notification`, routed with `routing_key`.
fn event<'a>(defaults: &Defaults, routing_key: &'a str, notification: &Notification) -> Event<'a> {
    let dedup_key = dedup_key(&notification.alert.notify_key);
    match notification.action {
        Action::Resolve => Event {
            routing_key,
            event_action: "resolve",
            dedup_key,
            payload: None,
            links: Vec::new(),
            client: None,
        },
        Action::Trigger | Action::Update | Action::Repeat | Action::Test => Event {
            routing_key,
            event_action: "trigger",
            // A test must not touch the real alert's incident.
            dedup_key: if notification.action == Action::Test {
                self::dedup_key(&format!(
                    "patrol-test/{}/{}",
                    notification.delivery_id, notification.alert.key
                ))
            } else {
                dedup_key
            },
            payload: Some(defaults.payload(notification)),
            links: links(&notification.alert),
            client: Some("patrol"),
        },
    }
}

#[async_trait]
impl Notifier for PagerDutyNotifier {
    fn kind(&self) -> &'static str {
        "pagerduty"
    }

    async fn send(&self, notification: &Notification) -> Result<Sent, SendError> {
        let body = event(&self.defaults, self.routing_key.expose(), notification);
        let target = http::origin(&self.enqueue_url);
        let response = self
            .client
            .post(self.enqueue_url.clone())
            .json(&body)
            .send()
            .await
            .map_err(|err| http::transport_error("PagerDuty", &target, &err))?;
        let status = response.status();
        if status.is_success() {
            // PagerDuty answers 202 with the dedup key it used; keep ours if
            // the body is anything else, since the event was accepted.
            let answer: Answer = response.json().await.unwrap_or_default();
            let dedup_key = answer.dedup_key.unwrap_or(body.dedup_key);
            return Ok(Sent {
                remote: Some(serde_json::json!({ "dedup_key": dedup_key })),
            });
        }
        let retry_after = http::retry_after(response.headers());
        let text = http::error_body(response).await;
        Err(http::status_error(
            "PagerDuty",
            status,
            retry_after,
            &describe_rejection(status, &text),
        ))
    }
}

/// PagerDuty's own words for a rejection: `message` and `errors` from its
/// JSON, or the start of whatever else it sent.
fn describe_rejection(status: StatusCode, body: &str) -> String {
    match serde_json::from_str::<Answer>(body) {
        Ok(answer) if answer.message.is_some() || !answer.errors.is_empty() => {
            let mut text = answer.message.unwrap_or_else(|| status.to_string());
            if !answer.errors.is_empty() {
                text.push_str(&format!(" ({})", answer.errors.join("; ")));
            }
            truncate_marked(&one_line(&text), 1000)
        }
        _ => truncate_marked(&one_line(body.trim()), 300),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{notification, resolved, sample_alert};
    use super::*;

    #[test]
    fn short_keys_are_used_as_they_are() {
        assert_eq!(
            dedup_key("traffic/export-spike/eu"),
            "traffic/export-spike/eu"
        );
        let exactly = "k".repeat(MAX_DEDUP_KEY);
        assert_eq!(dedup_key(&exactly), exactly);
    }

    #[test]
    fn long_keys_are_shortened_stably_and_distinctly() {
        let long = format!("backups/missing-rekor/{}", "a".repeat(400));
        let short = dedup_key(&long);
        assert_eq!(short.len(), MAX_DEDUP_KEY);
        assert_eq!(short, dedup_key(&long), "stable");
        let (prefix, hash) = short.rsplit_once('~').unwrap();
        assert!(long.starts_with(prefix));
        assert_eq!(hash, hex::encode(Sha256::digest(long.as_bytes())));
        let other = format!("{long}b");
        assert_ne!(dedup_key(&other), short, "distinct keys stay distinct");
        // Multi-byte characters are never split.
        let wide = "é".repeat(300);
        let short = dedup_key(&wide);
        assert!(short.len() <= MAX_DEDUP_KEY);
        assert!(short.starts_with("éé"));
    }

    #[test]
    fn summary_is_title_and_summary_within_the_limit() {
        let mut alert = sample_alert();
        assert_eq!(
            summary(&notification(Action::Trigger, alert.clone())),
            "Traffic: export-spike (EU): Exports ran at 3.2x the baseline for 10 minutes."
        );
        alert.summary = "x".repeat(3000);
        let text = summary(&notification(Action::Trigger, alert));
        assert_eq!(text.chars().count(), MAX_SUMMARY);
        assert!(text.ends_with('…'));
    }

    #[test]
    fn trigger_event_has_the_v2_shape() {
        let defaults = Defaults::default();
        let n = notification(Action::Trigger, sample_alert());
        let value = serde_json::to_value(event(&defaults, "R0UTING", &n)).unwrap();
        assert_eq!(value["routing_key"], "R0UTING");
        assert_eq!(value["event_action"], "trigger");
        // Namespaced by schedule: another schedule's `traffic/export-spike/eu`
        // is another incident.
        assert_eq!(value["dedup_key"], "traffic-eu/traffic/export-spike/eu");
        assert_eq!(value["client"], "patrol");
        let payload = &value["payload"];
        assert_eq!(payload["severity"], "critical");
        assert_eq!(payload["source"], "node-a");
        assert_eq!(payload["group"], "traffic-eu");
        assert_eq!(payload["class"], "traffic");
        assert!(payload.get("component").is_none());
        assert_eq!(payload["timestamp"], "2025-12-05T10:10:04.000Z");
        let details = &payload["custom_details"];
        assert_eq!(details["window"], "2025-12-05T10:00Z..10:10Z");
        assert_eq!(details["sample_trace"], "0f3a9c");
        assert_eq!(details["labels"]["region"], "eu");
        assert_eq!(details["run_id"], 7);
        assert_eq!(
            details["runbook"]["excerpt"],
            "1. Check the export queue\n2. Page the data owner"
        );
        assert_eq!(
            value["links"][0]["href"],
            "https://runbooks.example/traffic-export.md"
        );
        assert_eq!(value["links"][1]["text"], "Dashboard");
    }

    #[test]
    fn configured_defaults_and_component_label_fill_the_payload() {
        let defaults = Defaults {
            source: Some("patrol-prod".into()),
            component: None,
            group: Some("payments".into()),
            class: Some("traffic-detection".into()),
        };
        let mut alert = sample_alert();
        alert.labels.insert("component".into(), "exporter".into());
        let n = notification(Action::Update, alert);
        let value = serde_json::to_value(event(&defaults, "k", &n)).unwrap();
        assert_eq!(value["event_action"], "trigger");
        assert_eq!(value["payload"]["source"], "patrol-prod");
        assert_eq!(value["payload"]["component"], "exporter");
        assert_eq!(value["payload"]["group"], "payments");
        assert_eq!(value["payload"]["class"], "traffic-detection");
    }

    #[test]
    fn resolve_event_carries_only_the_key() {
        let n = notification(Action::Resolve, resolved(sample_alert()));
        let value = serde_json::to_value(event(&Defaults::default(), "k", &n)).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "routing_key": "k",
                "event_action": "resolve",
                "dedup_key": "traffic-eu/traffic/export-spike/eu",
            })
        );
    }

    #[test]
    fn an_alert_opened_before_namespacing_resolves_with_its_bare_key() {
        let mut alert = resolved(sample_alert());
        alert.notify_key = alert.key.clone();
        let n = notification(Action::Resolve, alert);
        let value = serde_json::to_value(event(&Defaults::default(), "k", &n)).unwrap();
        assert_eq!(value["dedup_key"], "traffic/export-spike/eu");
    }

    #[test]
    fn tests_do_not_touch_the_real_incident() {
        let n = notification(Action::Test, sample_alert());
        let value = serde_json::to_value(event(&Defaults::default(), "k", &n)).unwrap();
        assert_ne!(value["dedup_key"], "traffic-eu/traffic/export-spike/eu");
        assert!(value["payload"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("[TEST] "));
    }

    #[test]
    fn rejections_quote_pagerdutys_errors() {
        let body = r#"{"status":"invalid event","message":"Event object is invalid","errors":["'payload.summary' is missing"]}"#;
        assert_eq!(
            describe_rejection(StatusCode::BAD_REQUEST, body),
            "Event object is invalid ('payload.summary' is missing)"
        );
        assert_eq!(
            describe_rejection(StatusCode::BAD_GATEWAY, "<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
    }

    #[test]
    fn check_reports_bad_fields() {
        let settings: PagerDutySettings =
            serde_norway::from_str("routing_key: env:PD_KEY\nbase_url: ftp://pd\ngroup: ''\n")
                .unwrap();
        let mut problems = Problems::default();
        settings.check(&mut problems);
        let fields: Vec<_> = problems.0.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["base_url", "group"]);
    }
}
