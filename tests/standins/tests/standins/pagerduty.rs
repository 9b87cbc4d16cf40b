use std::time::Duration;

use patrol_standins::{Failure, IncidentStatus, PagerDutyStandin};
use serde_json::{json, Value};

use crate::{client, json_of};

const KEY: &str = "0123456789abcdef0123456789ABCDEF";
const OTHER_KEY: &str = "ffffffffffffffffffffffffffffffff";

async fn standin() -> PagerDutyStandin {
    PagerDutyStandin::start(&[KEY]).await.expect("starts")
}

async fn send(pd: &PagerDutyStandin, event: &Value) -> (u16, Value) {
    let response = client()
        .post(pd.enqueue_url())
        .json(event)
        .send()
        .await
        .expect("request");
    let (status, _, value) = json_of(response).await;
    (status, value)
}

fn trigger(dedup_key: &str, summary: &str) -> Value {
    json!({
        "routing_key": KEY,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": {"summary": summary, "source": "patrol@host-1", "severity": "critical"}
    })
}

fn action(action: &str, dedup_key: &str) -> Value {
    json!({"routing_key": KEY, "event_action": action, "dedup_key": dedup_key})
}

#[tokio::test]
async fn incident_lifecycle() {
    let pd = standin().await;
    let (status, value) = send(&pd, &trigger("backup/2026-01-01", "backup failed")).await;
    assert_eq!(status, 202);
    assert_eq!(
        value,
        json!({"status": "success", "message": "Event processed", "dedup_key": "backup/2026-01-01"})
    );
    let (status, _) = send(&pd, &trigger("backup/2026-01-01", "backup failed again")).await;
    assert_eq!(status, 202);
    let incidents = pd.incidents();
    assert_eq!(
        incidents.len(),
        1,
        "a second trigger joins the open incident"
    );
    assert_eq!(incidents[0].trigger_count, 2);
    assert_eq!(incidents[0].summary, "backup failed");
    assert_eq!(incidents[0].latest_summary, "backup failed again");
    assert_eq!(incidents[0].severity, "critical");
    assert_eq!(incidents[0].status, IncidentStatus::Triggered);

    assert_eq!(
        send(&pd, &action("acknowledge", "backup/2026-01-01"))
            .await
            .0,
        202
    );
    assert_eq!(pd.incidents()[0].status, IncidentStatus::Acknowledged);
    assert_eq!(
        send(&pd, &action("resolve", "backup/2026-01-01")).await.0,
        202
    );
    assert_eq!(pd.incidents()[0].status, IncidentStatus::Resolved);
    assert!(pd.open_incidents().is_empty());

    // After a resolve, the same key opens a new incident.
    send(&pd, &trigger("backup/2026-01-01", "failed once more")).await;
    assert_eq!(pd.incidents().len(), 2);
    assert_eq!(pd.open_incidents().len(), 1);

    // Resolving a key with nothing open is accepted and changes nothing.
    let (status, value) = send(&pd, &action("resolve", "never-triggered")).await;
    assert_eq!(
        (status, &value["dedup_key"]),
        (202, &json!("never-triggered"))
    );
    assert_eq!(pd.incidents().len(), 2);
    assert_eq!(pd.events().len(), 6);
    assert_eq!(pd.accepted().len(), 6);
}

#[tokio::test]
async fn trigger_without_dedup_key_gets_one() {
    let pd = standin().await;
    let mut event = trigger("x", "disk full");
    event.as_object_mut().expect("object").remove("dedup_key");
    let (status, value) = send(&pd, &event).await;
    assert_eq!(status, 202);
    let key = value["dedup_key"].as_str().expect("dedup key");
    assert_eq!(key.len(), 32);
    assert!(pd.events()[0].dedup_key_generated);
    assert_eq!(pd.incidents()[0].dedup_key, key);
}

#[tokio::test]
async fn all_optional_fields_are_accepted() {
    let pd = standin().await;
    let event = json!({
        "routing_key": KEY,
        "event_action": "trigger",
        "dedup_key": "k",
        "client": "patrol",
        "client_url": "https://patrol.example/runs/1",
        "links": [{"href": "https://patrol.example/runs/1", "text": "Run"}],
        "images": [{"src": "https://patrol.example/chart.png", "href": "https://patrol.example", "alt": "chart"}],
        "payload": {
            "summary": "s", "source": "host", "severity": "info",
            "timestamp": "2015-07-17T08:42:58.315+0000",
            "component": "backup", "group": "prod", "class": "job",
            "custom_details": {"attempt": 3, "log": ["a", "b"]}
        }
    });
    let (status, value) = send(&pd, &event).await;
    assert_eq!(status, 202, "{value}");
    let mut rfc3339 = event.clone();
    rfc3339["payload"]["timestamp"] = json!("2026-03-29T01:30:00.5+02:00");
    assert_eq!(send(&pd, &rfc3339).await.0, 202);
}

/// Each broken event is refused with 400 and PagerDuty's error shape, naming
/// the problem; the fixed event beside it is accepted.
#[tokio::test]
async fn validation_rules_refuse_and_accept() {
    let pd = standin().await;
    let good = trigger("k", "summary");
    let with = |path: &[&str], value: Value| {
        let mut event = good.clone();
        let mut target = &mut event;
        for key in &path[..path.len() - 1] {
            target = &mut target[*key];
        }
        target[path[path.len() - 1]] = value;
        event
    };
    let without = |path: &[&str]| {
        let mut event = good.clone();
        let mut target = &mut event;
        for key in &path[..path.len() - 1] {
            target = &mut target[*key];
        }
        target
            .as_object_mut()
            .expect("object")
            .remove(path[path.len() - 1]);
        event
    };
    let cases: Vec<(Value, &str)> = vec![
        (
            without(&["routing_key"]),
            "'routing_key' is missing or blank",
        ),
        (
            with(&["routing_key"], json!(&KEY[1..])),
            "Length of 'routing_key' is incorrect (should be 32 characters)",
        ),
        (
            with(&["routing_key"], json!("0123456789abcdef-0123456789abcde")),
            "'routing_key' cannot contain non-alphanumeric characters.",
        ),
        (
            with(&["routing_key"], json!(OTHER_KEY)),
            "Invalid routing key",
        ),
        (
            without(&["event_action"]),
            "'event_action' is missing or blank",
        ),
        (
            with(&["event_action"], json!("escalate")),
            "'event_action' is invalid",
        ),
        (
            with(&["dedup_key"], json!("d".repeat(256))),
            "Length of 'dedup_key' is incorrect",
        ),
        (without(&["payload"]), "'payload' is missing"),
        (
            with(&["payload", "summary"], json!("")),
            "'payload.summary' is missing or blank",
        ),
        (
            with(&["payload", "summary"], json!("s".repeat(1025))),
            "Length of 'payload.summary' is incorrect",
        ),
        (
            with(&["payload", "source"], json!("")),
            "'payload.source' is missing or blank",
        ),
        (
            without(&["payload", "source"]),
            "'payload.source' is missing or blank",
        ),
        (
            with(&["payload", "severity"], json!("fatal")),
            "'payload.severity' is invalid",
        ),
        (
            without(&["payload", "severity"]),
            "'payload.severity' is missing or blank",
        ),
        (
            with(&["payload", "timestamp"], json!("yesterday")),
            "'payload.timestamp' is invalid",
        ),
        (
            with(&["payload", "component"], json!(7)),
            "'payload.component' must be a string",
        ),
        (
            with(&["links"], json!([{"text": "no href"}])),
            "'links[0].href' is missing or blank",
        ),
        (
            with(&["images"], json!([{"alt": "no src"}])),
            "'images[0].src' is missing or blank",
        ),
        (action("resolve", ""), "'dedup_key' is missing or blank"),
        (
            json!({"routing_key": KEY, "event_action": "acknowledge"}),
            "'dedup_key' is missing or blank",
        ),
    ];
    for (event, expected) in &cases {
        let (status, value) = send(&pd, event).await;
        assert_eq!(status, 400, "{event} → {value}");
        assert_eq!(value["status"], "invalid event");
        assert_eq!(value["message"], "Event object is invalid");
        let errors = value["errors"].as_array().expect("errors");
        assert!(
            errors
                .iter()
                .any(|e| e.as_str().is_some_and(|e| e.starts_with(expected))),
            "expected {expected:?} in {errors:?}"
        );
    }
    assert!(pd.events().is_empty());
    assert!(pd.accepted().is_empty());
    // Just inside the limits.
    for event in [
        with(&["dedup_key"], json!("d".repeat(255))),
        with(&["payload", "summary"], json!("s".repeat(1024))),
        with(&["payload", "severity"], json!("warning")),
        with(&["payload", "timestamp"], json!("2026-01-02T03:04:05Z")),
        action("resolve", "k"),
    ] {
        let (status, value) = send(&pd, &event).await;
        assert_eq!(status, 202, "{event} → {value}");
    }
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_refused() {
    let pd = standin().await;
    let response = client()
        .post(pd.enqueue_url())
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("request");
    let (status, _, value) = json_of(response).await;
    assert_eq!(status, 400);
    assert_eq!(value["status"], "Unrecognized object");
    assert_eq!(value["errors"], json!(["JSON parse error"]));

    let mut big = trigger("k", "s");
    big["payload"]["custom_details"] = json!({"blob": "x".repeat(600 * 1024)});
    let (status, value) = send(&pd, &big).await;
    assert_eq!(status, 400, "{value}");

    let response = client()
        .post(format!("{}/v1/enqueue", pd.base_url()))
        .json(&trigger("k", "s"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 404);
}

#[tokio::test]
async fn injected_429_with_and_without_retry_after() {
    let pd = standin().await;
    pd.fail_next(1, Failure::rate_limited(Duration::from_secs(7)));
    pd.fail_next(1, Failure::RateLimited { retry_after: None });
    let response = client()
        .post(pd.enqueue_url())
        .json(&trigger("k", "s"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    let response = client()
        .post(pd.enqueue_url())
        .json(&trigger("k", "s"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 429);
    assert!(response.headers().get("retry-after").is_none());
    let (status, _) = send(&pd, &trigger("k", "s")).await;
    assert_eq!(status, 202);
    assert_eq!(pd.count(), 3);
    assert_eq!(pd.incidents().len(), 1);
}

#[tokio::test]
async fn routing_keys_are_checked_at_start() {
    assert!(PagerDutyStandin::start(&["short"]).await.is_err());
}
