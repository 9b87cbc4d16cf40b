//! The real notifier clients against the local stand-ins
//! (`patrol-standins`): what arrives, that the stand-ins' checks of the
//! real wire formats accept it, and how failures map to retries.

use std::sync::Arc;
use std::time::Duration;

use patrol_standins::standard_webhooks::verify_with_reference;
use patrol_standins::{
    Failure, PagerDutyStandin, SlackStandin, SmtpConfig, SmtpMode, SmtpServer, WebhookReceiver,
};
use serde_json::Value;
use tempfile::TempDir;

use super::super::notify::{Action, AlertView, Notification, Notifier, Retry, SendError, Sent};
use super::fixtures::{notification, resolved, sample_alert};
use super::NotifierSettings;

const SLACK_TOKEN: &str = "xoxb-standin-token-0001";
const PD_KEY: &str = "R0UT1NGKEYR0UT1NGKEYR0UT1NGKEY12";
/// A Standard Webhooks secret: `whsec_` and the base64 of a 24-byte key.
const HOOK_SECRET: &str = "whsec_aG9vay1zaWduaW5nLXNlY3JldC00Mi1rZXk=";
/// The key `HOOK_SECRET` stands for.
const HOOK_KEY: &[u8] = b"hook-signing-secret-42-key";
/// Far below the stand-ins' timeout hold, so timeout tests stay quick.
const SHORT_TIMEOUT: &str = "700ms";
const WAIT: Duration = Duration::from_secs(10);

/// A folder holding secret files, and the notifier built from `yaml` with
/// it as the config folder.
fn build(yaml: &str, secrets: &[(&str, &str)]) -> (TempDir, Arc<dyn Notifier>) {
    let dir = tempfile::tempdir().unwrap();
    for (name, value) in secrets {
        std::fs::write(dir.path().join(name), format!("{value}\n")).unwrap();
    }
    let settings: NotifierSettings = serde_norway::from_str(yaml).unwrap();
    assert!(settings.check().is_empty(), "{:?}", settings.check());
    let notifier = settings.build("test", dir.path()).unwrap();
    (dir, notifier)
}

fn with_remote(action: Action, alert: AlertView, remote: Option<Value>) -> Notification {
    Notification {
        remote,
        ..notification(action, alert)
    }
}

async fn send(
    notifier: &Arc<dyn Notifier>,
    notification: &Notification,
) -> Result<Sent, SendError> {
    notifier.send(notification).await
}

fn expect_error(result: Result<Sent, SendError>) -> SendError {
    match result {
        Ok(sent) => panic!("expected a failure, got {sent:?}"),
        Err(err) => {
            // Shown with --nocapture: the messages an operator would read.
            eprintln!("{:?} {:?}: {}", err.retry, err.http_status, err.message);
            err
        }
    }
}

// ---------------------------------------------------------------- Slack

async fn slack() -> SlackStandin {
    SlackStandin::builder(SLACK_TOKEN)
        .channel("C0ONCALL", "oncall")
        .start()
        .await
        .unwrap()
}

fn slack_yaml(standin: &SlackStandin, extra: &str) -> String {
    format!(
        "kind: slack\ntoken: file:slack.token\nchannel: '#oncall'\nbase_url: {}\n{extra}",
        standin.base_url()
    )
}

fn slack_notifier(standin: &SlackStandin, extra: &str) -> (TempDir, Arc<dyn Notifier>) {
    build(&slack_yaml(standin, extra), &[("slack.token", SLACK_TOKEN)])
}

#[tokio::test]
async fn slack_message_is_posted_updated_threaded_and_resolved_in_place() {
    let standin = slack().await;
    let (_dir, notifier) = slack_notifier(&standin, "mention: '<!subteam^S0123>'\n");
    let alert = sample_alert();

    let sent = send(&notifier, &notification(Action::Trigger, alert.clone()))
        .await
        .unwrap();
    let remote = sent.remote.clone().unwrap();
    let messages = standin.messages();
    assert_eq!(messages.len(), 1);
    let ts = messages[0].ts.clone();
    // Posted to #oncall; the remote keeps the channel ID Slack answered.
    assert_eq!(remote, serde_json::json!({"channel": "C0ONCALL", "ts": ts}));
    assert!(standin.calls().iter().all(|call| call.is_accepted()));
    let text = messages[0].text.clone().unwrap();
    assert!(
        text.starts_with("<!subteam^S0123> FIRING critical"),
        "{text}"
    );
    let blocks = messages[0].blocks.clone().unwrap().to_string();
    assert!(blocks.contains("2025-12-05T10:00Z..10:10Z"), "{blocks}");
    assert!(blocks.contains("https://runbooks.example/traffic-export.md"));

    // An update and a resolve edit that message; the reminder goes in its thread.
    let mut changed = alert.clone();
    changed.summary = "Now 4.1x the baseline.".into();
    let sent = send(
        &notifier,
        &with_remote(Action::Update, changed, Some(remote.clone())),
    )
    .await
    .unwrap();
    assert_eq!(sent.remote, Some(remote.clone()));
    let sent = send(
        &notifier,
        &with_remote(Action::Repeat, alert.clone(), Some(remote.clone())),
    )
    .await
    .unwrap();
    assert_eq!(
        sent.remote,
        Some(remote.clone()),
        "later events edit the alert"
    );
    send(
        &notifier,
        &with_remote(
            Action::Resolve,
            resolved(alert.clone()),
            Some(remote.clone()),
        ),
    )
    .await
    .unwrap();

    let messages = standin.messages();
    assert_eq!(messages.len(), 2, "the alert message and one thread reply");
    let message = &messages[0];
    assert_eq!(message.updates, 2);
    assert!(message.history[0]
        .blocks
        .as_ref()
        .unwrap()
        .to_string()
        .contains("Exports ran at 3.2x"));
    let header = &message.blocks.as_ref().unwrap()[0]["text"]["text"];
    assert_eq!(
        header,
        ":white_check_mark: RESOLVED: Traffic: export-spike (EU)"
    );
    assert!(message.text.as_deref().unwrap().starts_with("RESOLVED"));
    let reply = &messages[1];
    assert_eq!(reply.thread_ts.as_deref(), Some(ts.as_str()));
    assert!(reply.text.as_deref().unwrap().contains("Still firing"));
    assert!(standin.calls().iter().all(|call| call.is_accepted()));
}

#[tokio::test]
async fn slack_events_without_a_message_post_a_new_one() {
    let standin = slack().await;
    let (_dir, notifier) = slack_notifier(&standin, "");
    // The trigger was silenced, so the resolve has nothing to edit.
    let sent = send(
        &notifier,
        &notification(Action::Resolve, resolved(sample_alert())),
    )
    .await
    .unwrap();
    let messages = standin.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(
        sent.remote.unwrap()["ts"].as_str(),
        Some(messages[0].ts.as_str())
    );
    // A message someone deleted: the update posts anew rather than failing.
    let gone = serde_json::json!({"channel": "C0ONCALL", "ts": "1.000001"});
    let sent = send(
        &notifier,
        &with_remote(Action::Update, sample_alert(), Some(gone.clone())),
    )
    .await
    .unwrap();
    assert_ne!(sent.remote, Some(gone));
    assert_eq!(standin.messages().len(), 2);
}

#[tokio::test]
async fn slack_failures_map_to_retries() {
    let standin = slack().await;
    let (_dir, notifier) = slack_notifier(&standin, &format!("timeout: {SHORT_TIMEOUT}\n"));
    let trigger = notification(Action::Trigger, sample_alert());

    standin.fail_next(1, Failure::rate_limited(Duration::from_secs(7)));
    let err = expect_error(send(&notifier, &trigger).await);
    assert_eq!(
        err.retry,
        Retry::Later {
            retry_after: Some(Duration::from_secs(7))
        },
        "{err}"
    );
    assert_eq!(err.http_status, Some(429));
    assert_eq!(
        standin.count(),
        1,
        "slack-morphism must not retry by itself"
    );

    standin.fail_next(1, Failure::Status(500));
    let err = expect_error(send(&notifier, &trigger).await);
    assert_eq!(err.retry, Retry::Later { retry_after: None }, "{err}");
    assert_eq!(err.http_status, Some(500));

    // No answer at all: the error names where the request went (issue 18),
    // as PagerDuty's and the webhook's do, and never the path.
    let origin = format!("http://{}", standin.addr());
    standin.fail_next(1, Failure::Reset);
    let err = expect_error(send(&notifier, &trigger).await);
    assert_eq!(err.retry, Retry::Later { retry_after: None }, "{err}");
    assert!(
        err.message.starts_with(&format!(
            "Slack chat.postMessage request to {origin} failed: "
        )),
        "{err}"
    );

    standin.fail_next(1, Failure::Timeout);
    let started = std::time::Instant::now();
    let err = expect_error(send(&notifier, &trigger).await);
    assert_eq!(err.retry, Retry::Later { retry_after: None }, "{err}");
    assert!(
        err.message.starts_with(&format!(
            "Slack chat.postMessage request to {origin} timed out"
        )),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    assert!(standin.messages().is_empty());
    send(&notifier, &trigger).await.unwrap();
}

/// Issue 19, item 6: a retry after an unsure attempt (no answer in time,
/// here a slow Slack) looks for the earlier post by its metadata and
/// adopts it; only a delivery with no post of its own posts.
#[tokio::test]
async fn slack_adopts_the_post_of_an_unsure_attempt_instead_of_posting_twice() {
    let standin = SlackStandin::builder(SLACK_TOKEN)
        .channel("C0ONCALL", "oncall")
        .answer_after(Duration::from_millis(1500))
        .start()
        .await
        .unwrap();
    let yaml = format!(
        "kind: slack\ntoken: file:slack.token\nchannel: C0ONCALL\nbase_url: {}\ntimeout: 500ms\n",
        standin.base_url()
    );
    let (_dir, notifier) = build(&yaml, &[("slack.token", SLACK_TOKEN)]);
    let first_claimed = chrono::Utc::now();
    let trigger = notification(Action::Trigger, sample_alert());
    let err = expect_error(send(&notifier, &trigger).await);
    assert_eq!(err.retry, Retry::Later { retry_after: None }, "{err}");
    assert_eq!(standin.messages().len(), 1, "posted, though no answer came");
    let posted = standin.messages()[0].clone();
    let metadata = posted.metadata.clone().unwrap();
    assert_eq!(metadata["event_type"], "patrol_alert_posted");
    assert_eq!(metadata["event_payload"]["delivery_id"], "17");
    assert_eq!(
        metadata["event_payload"]["key"],
        "traffic-eu/traffic/export-spike/eu"
    );

    standin.set_answer_delay(Duration::ZERO);
    let retry = Notification {
        unsure_since: Some(first_claimed),
        ..trigger.clone()
    };
    let sent = send(&notifier, &retry).await.unwrap();
    assert_eq!(
        sent.remote,
        Some(serde_json::json!({"channel": "C0ONCALL", "ts": posted.ts})),
        "the earlier post is the alert's message"
    );
    assert_eq!(standin.messages().len(), 1, "not posted twice");
    let history = standin
        .calls()
        .into_iter()
        .find(|call| call.path == "/api/conversations.history")
        .expect("the history was read");
    let query = history.query.unwrap_or_default();
    assert!(query.contains("include_all_metadata=true"), "{query}");
    assert!(
        query.contains("oldest="),
        "bounded by the first attempt: {query}"
    );

    // Another delivery, unsure too but with no post of its own, posts.
    let other = Notification {
        delivery_id: 18,
        unsure_since: Some(first_claimed),
        ..trigger.clone()
    };
    send(&notifier, &other).await.unwrap();
    assert_eq!(standin.messages().len(), 2);

    // The history unreadable for now: retried later rather than posted blind.
    standin.fail_next(1, Failure::Status(503));
    let third = Notification {
        delivery_id: 19,
        ..other.clone()
    };
    let err = expect_error(send(&notifier, &third).await);
    assert_eq!(err.retry, Retry::Later { retry_after: None }, "{err}");
    assert_eq!(standin.messages().len(), 2);

    // Unreadable for good (a channel name, which history does not take,
    // and no answer has named its ID yet): posting beats never paging.
    let (_dir, by_name) = slack_notifier(&standin, "");
    send(&by_name, &third).await.unwrap();
    assert_eq!(standin.messages().len(), 3);
}

#[tokio::test]
async fn slack_refusals_are_permanent_and_never_quote_the_token() {
    let standin = slack().await;
    let (_dir, wrong_token) = build(
        &slack_yaml(&standin, ""),
        &[("slack.token", "xoxb-not-the-right-token")],
    );
    let trigger = notification(Action::Trigger, sample_alert());
    let err = expect_error(send(&wrong_token, &trigger).await);
    assert_eq!(err.retry, Retry::Never);
    assert_eq!(err.message, "Slack chat.postMessage failed: invalid_auth");
    assert!(!err.message.contains("xoxb"));

    let (_dir, unknown_channel) = build(
        &slack_yaml(&standin, "").replace("'#oncall'", "'#nowhere'"),
        &[("slack.token", SLACK_TOKEN)],
    );
    let err = expect_error(send(&unknown_channel, &trigger).await);
    assert_eq!(err.retry, Retry::Never);
    assert!(err.message.contains("channel_not_found"), "{err}");
}

// ------------------------------------------------------------ PagerDuty

fn pagerduty_notifier(standin: &PagerDutyStandin, key: &str) -> (TempDir, Arc<dyn Notifier>) {
    build(
        &format!(
            "kind: pagerduty\nrouting_key: file:pd.key\nbase_url: {}\ntimeout: {SHORT_TIMEOUT}\n",
            standin.base_url()
        ),
        &[("pd.key", key)],
    )
}

#[tokio::test]
async fn pagerduty_incident_is_triggered_updated_and_resolved_by_key() {
    let standin = PagerDutyStandin::start(&[PD_KEY]).await.unwrap();
    let (_dir, notifier) = pagerduty_notifier(&standin, PD_KEY);
    let alert = sample_alert();

    let sent = send(&notifier, &notification(Action::Trigger, alert.clone()))
        .await
        .unwrap();
    assert_eq!(
        sent.remote,
        Some(serde_json::json!({"dedup_key": "traffic-eu/traffic/export-spike/eu"}))
    );
    send(&notifier, &notification(Action::Update, alert.clone()))
        .await
        .unwrap();
    let open = standin.open_incidents();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].dedup_key, "traffic-eu/traffic/export-spike/eu");
    assert_eq!(open[0].trigger_count, 2);
    assert_eq!(open[0].severity, "critical");

    send(&notifier, &notification(Action::Resolve, resolved(alert)))
        .await
        .unwrap();
    assert!(standin.open_incidents().is_empty());
    assert!(standin.calls().iter().all(|call| call.is_accepted()));

    let event = &standin.events()[0].raw;
    assert_eq!(event["client"], "patrol");
    assert_eq!(event["payload"]["source"], "node-a");
    assert_eq!(
        event["links"][0]["href"],
        "https://runbooks.example/traffic-export.md"
    );
}

#[tokio::test]
async fn pagerduty_long_keys_and_summaries_fit_its_limits() {
    let standin = PagerDutyStandin::start(&[PD_KEY]).await.unwrap();
    let (_dir, notifier) = pagerduty_notifier(&standin, PD_KEY);
    let mut alert = sample_alert();
    alert.key = format!("backups/missing-rekor/{}", "ab".repeat(300));
    alert.notify_key = format!("backups/{}", alert.key);
    alert.summary = "s".repeat(5000);
    send(&notifier, &notification(Action::Trigger, alert.clone()))
        .await
        .unwrap();
    send(&notifier, &notification(Action::Resolve, resolved(alert)))
        .await
        .unwrap();
    assert!(standin.calls().iter().all(|call| call.is_accepted()));
    let incidents = standin.incidents();
    assert_eq!(
        incidents.len(),
        1,
        "the resolve found the trigger's incident"
    );
    assert!(!incidents[0].is_open());
    assert_eq!(incidents[0].dedup_key.len(), 255);
    assert!(incidents[0].summary.ends_with('…'));
}

#[tokio::test]
async fn pagerduty_failures_map_to_retries_without_the_routing_key() {
    let standin = PagerDutyStandin::start(&[PD_KEY]).await.unwrap();
    let (_dir, notifier) = pagerduty_notifier(&standin, PD_KEY);
    let trigger = notification(Action::Trigger, sample_alert());

    standin.fail_next(1, Failure::rate_limited(Duration::from_secs(12)));
    let err = expect_error(send(&notifier, &trigger).await);
    assert_eq!(
        err.retry,
        Retry::Later {
            retry_after: Some(Duration::from_secs(12))
        },
        "{err}"
    );
    assert_eq!(err.http_status, Some(429));

    standin.fail_next(1, Failure::Status(502));
    let err = expect_error(send(&notifier, &trigger).await);
    assert_eq!(err.retry, Retry::Later { retry_after: None }, "{err}");

    standin.fail_next(1, Failure::Timeout);
    let err = expect_error(send(&notifier, &trigger).await);
    assert_eq!(err.retry, Retry::Later { retry_after: None }, "{err}");
    assert!(err.message.contains("timed out"), "{err}");

    standin.fail_next(1, Failure::Reset);
    let err = expect_error(send(&notifier, &trigger).await);
    assert_eq!(err.retry, Retry::Later { retry_after: None }, "{err}");

    // A key PagerDuty does not know: 400, never retried, key not quoted.
    let other_key = "0THERKEY0THERKEY0THERKEY0THERKEY";
    let (_dir, wrong) = pagerduty_notifier(&standin, other_key);
    let err = expect_error(send(&wrong, &trigger).await);
    assert_eq!(err.retry, Retry::Never, "{err}");
    assert_eq!(err.http_status, Some(400));
    assert!(!err.message.contains(other_key), "{err}");
    assert!(standin.open_incidents().is_empty());
}

// -------------------------------------------------------------- webhook

fn webhook_notifier(receiver: &WebhookReceiver) -> (TempDir, Arc<dyn Notifier>) {
    build(
        &format!(
            "kind: webhook\nurl: {}\nsecret: file:hook.secret\ntimeout: {SHORT_TIMEOUT}\n\
             headers:\n  X-Team: payments\n  Authorization: {{ secret: file:hook.auth }}\n",
            receiver.url("/hooks/patrol")
        ),
        &[
            ("hook.secret", HOOK_SECRET),
            ("hook.auth", "Bearer hook-auth-token-7"),
        ],
    )
}

#[tokio::test]
async fn webhook_body_is_signed_and_carries_the_delivery_id() {
    let receiver = WebhookReceiver::start().await.unwrap();
    receiver.require_standard_webhooks(HOOK_KEY);
    let (_dir, notifier) = webhook_notifier(&receiver);
    send(&notifier, &notification(Action::Trigger, sample_alert()))
        .await
        .unwrap();
    let calls = receiver.accepted();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.path, "/hooks/patrol");
    assert_eq!(call.header("x-patrol-delivery"), Some("17"));
    assert_eq!(call.header("webhook-id"), Some("patrol_17"));
    assert_eq!(call.header("x-team"), Some("payments"));
    assert_eq!(
        call.header("authorization"),
        Some("Bearer hook-auth-token-7")
    );
    assert_eq!(call.header("content-type"), Some("application/json"));
    let body = call.json().unwrap();
    assert_eq!(body["version"], 1);
    assert_eq!(body["action"], "trigger");
    assert_eq!(body["delivery_id"], 17);
    let alert: AlertView = serde_json::from_value(body["alert"].clone()).unwrap();
    assert_eq!(alert, sample_alert());
}

/// The specification's reference library (Python `standardwebhooks`)
/// accepts what patrol sends, and refuses it once the body, the id or the
/// timestamp is changed: a captured request cannot be replayed as another.
#[tokio::test]
async fn the_reference_library_verifies_webhook_signatures() {
    let receiver = WebhookReceiver::start().await.unwrap();
    let (_dir, notifier) = webhook_notifier(&receiver);
    send(&notifier, &notification(Action::Trigger, sample_alert()))
        .await
        .unwrap();
    send(&notifier, &notification(Action::Resolve, sample_alert()))
        .await
        .unwrap();
    let calls = receiver.accepted();
    assert_eq!(calls.len(), 2);
    let mut tampered_body = calls[0].clone();
    tampered_body.body = tampered_body
        .body_text()
        .replace("trigger", "resolve")
        .into_bytes();
    let mut other_id = calls[0].clone();
    other_id
        .headers
        .insert("webhook-id", "patrol_18".parse().unwrap());
    let mut replayed_later = calls[0].clone();
    let timestamp: i64 = calls[0]
        .header("webhook-timestamp")
        .unwrap()
        .parse()
        .unwrap();
    replayed_later.headers.insert(
        "webhook-timestamp",
        (timestamp + 60).to_string().parse().unwrap(),
    );
    let judged = [
        calls[0].clone(),
        calls[1].clone(),
        tampered_body,
        other_id,
        replayed_later,
    ];
    let verdicts = verify_with_reference(HOOK_SECRET, &judged)
        .unwrap_or_else(|err| panic!("the reference library did not run: {err}"));
    assert_eq!(verdicts[0], Ok(()), "{verdicts:?}");
    assert_eq!(verdicts[1], Ok(()), "{verdicts:?}");
    for (verdict, what) in verdicts[2..].iter().zip(["body", "id", "timestamp"]) {
        assert!(
            verdict.is_err(),
            "a changed {what} still verified: {verdicts:?}"
        );
    }
}

#[test]
fn webhook_urls_must_be_https_except_to_this_machine() {
    for (url, ok) in [
        ("https://hooks.example/patrol", true),
        ("http://127.0.0.1:9000/hook", true),
        ("http://localhost:9000/hook", true),
        ("http://hooks.example/patrol", false),
    ] {
        let settings: super::webhook::WebhookSettings =
            serde_norway::from_str(&format!("url: {url}\n")).unwrap();
        let mut problems = super::Problems::default();
        settings.check(&mut problems);
        assert_eq!(problems.0.is_empty(), ok, "{url}: {:?}", problems.0);
    }
}

#[tokio::test]
async fn webhook_failures_map_to_retries() {
    let receiver = WebhookReceiver::start().await.unwrap();
    let (_dir, notifier) = webhook_notifier(&receiver);
    let trigger = notification(Action::Trigger, sample_alert());

    receiver.fail_next(1, Failure::rate_limited(Duration::from_secs(3)));
    let err = expect_error(send(&notifier, &trigger).await);
    assert_eq!(
        err.retry,
        Retry::Later {
            retry_after: Some(Duration::from_secs(3))
        }
    );

    receiver.fail_next(1, Failure::Status(503));
    let err = expect_error(send(&notifier, &trigger).await);
    assert_eq!(err.retry, Retry::Later { retry_after: None }, "{err}");
    assert_eq!(err.http_status, Some(503));

    receiver.fail_next(1, Failure::Timeout);
    let err = expect_error(send(&notifier, &trigger).await);
    assert_eq!(err.retry, Retry::Later { retry_after: None }, "{err}");

    // A receiver that refuses the signature (wrong secret) will refuse a retry too.
    receiver.require_standard_webhooks(b"another-signing-key-of-24b");
    let err = expect_error(send(&notifier, &trigger).await);
    assert_eq!(err.retry, Retry::Never, "{err}");
    assert_eq!(err.http_status, Some(401));
    assert!(!err.message.contains("/hooks/patrol"), "no URL path: {err}");
}

// ---------------------------------------------------------------- email

async fn smtp(config: SmtpConfig) -> SmtpServer {
    SmtpServer::start_with(config)
        .await
        .unwrap_or_else(|err| panic!("the SMTP stand-in did not start: {err}"))
}

fn email_yaml(server: &SmtpServer, tls: &str, extra: &str) -> String {
    format!(
        "kind: email\nhost: {}\nport: {}\ntls: {tls}\nfrom: 'patrol <patrol@alerts.example>'\n\
         to: [oncall@example.com, owner@example.com]\ntimeout: 5s\n{extra}",
        server.host(),
        server.port()
    )
}

#[tokio::test]
async fn email_trigger_and_resolve_arrive_threaded_as_text_and_html() {
    let server = smtp(SmtpConfig::new(SmtpMode::Plain)).await;
    let (_dir, notifier) = build(&email_yaml(&server, "plain", ""), &[]);
    assert!(!notifier.wants(Action::Update));
    let alert = sample_alert();
    send(&notifier, &notification(Action::Trigger, alert.clone()))
        .await
        .unwrap();
    send(
        &notifier,
        &Notification {
            delivery_id: 18,
            ..notification(Action::Resolve, resolved(alert))
        },
    )
    .await
    .unwrap();
    let mails = server.wait_for(2, WAIT).await.unwrap();
    let (trigger, resolve) = (&mails[0], &mails[1]);
    assert_eq!(
        trigger.rcpt_tos,
        ["oncall@example.com", "owner@example.com"]
    );
    assert_eq!(
        trigger.subject.as_deref(),
        Some("[patrol] FIRING critical: Traffic: export-spike (EU)")
    );
    assert_eq!(trigger.mime_type, "multipart/alternative");
    assert!(trigger.defects.is_empty(), "{:?}", trigger.defects);
    let text = trigger.text.as_deref().unwrap();
    assert!(text.contains("Runbook: traffic-export <https://runbooks.example/traffic-export.md>"));
    assert!(text.contains("  | 1. Check the export queue"));
    let html = trigger.html.as_deref().unwrap();
    assert!(
        html.contains("<th align=\"left\">Sample trace</th><td>0f3a9c</td>"),
        "{html}"
    );

    assert_eq!(
        resolve.subject.as_deref(),
        Some("[patrol] RESOLVED: Traffic: export-spike (EU)")
    );
    let thread = trigger.header("Message-ID").unwrap();
    assert_eq!(resolve.header("In-Reply-To"), Some(thread));
    assert_eq!(resolve.header("References"), Some(thread));
    assert_ne!(resolve.header("Message-ID"), Some(thread));
}

#[tokio::test]
async fn email_starttls_with_auth_and_a_private_ca() {
    let server =
        smtp(SmtpConfig::new(SmtpMode::StartTls).with_auth("patrol", "smtp-pass-123")).await;
    let extra = format!(
        "username: patrol\npassword: file:smtp.pass\nca_file: {}\n",
        server.ca_pem_path().display()
    );
    let yaml = email_yaml(&server, "starttls", &extra).replace(
        &format!("host: {}", server.host()),
        &format!("host: {}", server.tls_domain()),
    );
    let (_dir, notifier) = build(&yaml, &[("smtp.pass", "smtp-pass-123")]);
    send(&notifier, &notification(Action::Trigger, sample_alert()))
        .await
        .unwrap();
    let mails = server.wait_for(1, WAIT).await.unwrap();
    assert!(mails[0].tls, "sent after STARTTLS");
    assert_eq!(mails[0].auth_login.as_deref(), Some("patrol"));
}

#[tokio::test]
async fn email_implicit_tls_and_an_untrusted_certificate() {
    let server = smtp(SmtpConfig::new(SmtpMode::ImplicitTls)).await;
    let trusted = format!("ca_file: {}\n", server.ca_pem_path().display());
    let (_dir, notifier) = build(&email_yaml(&server, "tls", &trusted), &[]);
    send(&notifier, &notification(Action::Trigger, sample_alert()))
        .await
        .unwrap();
    let mails = server.wait_for(1, WAIT).await.unwrap();
    assert!(mails[0].tls);
    // Without the CA the certificate is not trusted: reported, and retried
    // (a certificate problem is fixed on the relay, not in the alert).
    let (_dir, untrusted) = build(&email_yaml(&server, "tls", ""), &[]);
    let err = expect_error(send(&untrusted, &notification(Action::Trigger, sample_alert())).await);
    assert_eq!(err.retry, Retry::Later { retry_after: None }, "{err}");
}

#[tokio::test]
async fn email_smtp_replies_map_to_retries() {
    let server = smtp(SmtpConfig::new(SmtpMode::Plain)).await;
    let (_dir, notifier) = build(&email_yaml(&server, "plain", ""), &[]);
    let trigger = notification(Action::Trigger, sample_alert());

    server.reject_next(1, "451 4.3.0 Try again later").unwrap();
    let err = expect_error(send(&notifier, &trigger).await);
    assert_eq!(err.retry, Retry::Later { retry_after: None }, "{err}");
    assert!(err.message.contains("451"), "{err}");

    server.reject_next(1, "554 5.7.1 Rejected").unwrap();
    let err = expect_error(send(&notifier, &trigger).await);
    assert_eq!(err.retry, Retry::Never, "{err}");

    // Nothing listening: a connection error, worth another try.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let (_dir, nowhere) = build(
        &format!(
            "kind: email\nhost: 127.0.0.1\nport: {port}\ntls: plain\nfrom: p@example.com\n\
             to: [a@example.com]\ntimeout: 2s\n"
        ),
        &[],
    );
    let err = expect_error(send(&nowhere, &trigger).await);
    assert_eq!(err.retry, Retry::Later { retry_after: None }, "{err}");
}
