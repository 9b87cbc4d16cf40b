use std::time::Duration;

use patrol_standins::{Failure, Outcome, SlackStandin};
use serde_json::{json, Value};

use crate::{client, json_of};

const TOKEN: &str = "xoxb-standin-token";

async fn standin() -> SlackStandin {
    SlackStandin::builder(TOKEN)
        .channel("C0123ABCD", "oncall")
        .channel("C0999ZZZZ", "ops")
        .start()
        .await
        .expect("slack stand-in starts")
}

/// POSTs JSON to `{base}chat.{method}` with the bearer token.
async fn call(slack: &SlackStandin, method: &str, body: &Value) -> (u16, Value) {
    call_with_token(slack, method, body, Some(TOKEN)).await
}

async fn call_with_token(
    slack: &SlackStandin,
    method: &str,
    body: &Value,
    token: Option<&str>,
) -> (u16, Value) {
    let mut request = client()
        .post(format!("{}{method}", slack.base_url()))
        .header("content-type", "application/json; charset=utf-8")
        .body(body.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let (status, _, value) = json_of(request.send().await.expect("request")).await;
    (status, value)
}

async fn post(slack: &SlackStandin, body: Value) -> Value {
    let (status, value) = call(slack, "chat.postMessage", &body).await;
    assert_eq!(status, 200, "{value}");
    value
}

fn error_of(value: &Value) -> &str {
    assert_eq!(value["ok"], false, "expected a refusal: {value}");
    value["error"].as_str().expect("error code")
}

#[tokio::test]
async fn post_message_answers_like_slack() {
    let slack = standin().await;
    let value = post(
        &slack,
        json!({"channel": "C0123ABCD", "text": "backup failed"}),
    )
    .await;
    assert_eq!(value["ok"], true, "{value}");
    assert_eq!(value["channel"], "C0123ABCD");
    let ts = value["ts"].as_str().expect("ts");
    let (secs, micros) = ts.split_once('.').expect("ts has a dot");
    assert!(secs.len() >= 10 && micros.len() == 6, "{ts}");
    assert_eq!(value["message"]["text"], "backup failed");
    assert_eq!(value["message"]["ts"], ts);
    assert!(value.get("warning").is_none());

    // By name, with or without '#': the answer names the channel ID.
    for name in ["#oncall", "oncall"] {
        let value = post(&slack, json!({"channel": name, "text": "x"})).await;
        assert_eq!(value["channel"], "C0123ABCD");
    }
    let messages = slack.messages();
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[0].text.as_deref(), Some("backup failed"));
    assert_eq!(messages[0].ts, ts);
    let mut all_ts: Vec<&str> = messages.iter().map(|m| m.ts.as_str()).collect();
    all_ts.dedup();
    assert_eq!(all_ts.len(), 3, "ts values are unique");
    assert_eq!(slack.accepted().len(), 3);
    let call = &slack.calls()[0];
    assert_eq!(call.path, "/api/chat.postMessage");
    assert_eq!(
        call.header("authorization"),
        Some("Bearer xoxb-standin-token")
    );
    assert_eq!(call.json().expect("json")["text"], "backup failed");
}

#[tokio::test]
async fn form_posts_with_token_in_body_are_accepted() {
    let slack = standin().await;
    let blocks = json!([{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]);
    let form = [
        ("token", TOKEN.to_string()),
        ("channel", "C0999ZZZZ".to_string()),
        ("text", "fallback".to_string()),
        ("blocks", blocks.to_string()),
    ];
    let response = client()
        .post(format!("{}chat.postMessage", slack.base_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            form.iter()
                .map(|(k, v)| format!("{k}={}", urlencode(v)))
                .collect::<Vec<_>>()
                .join("&"),
        )
        .send()
        .await
        .expect("request");
    let (status, _, value) = json_of(response).await;
    assert_eq!((status, &value["ok"]), (200, &json!(true)), "{value}");
    assert_eq!(slack.messages_in("C0999ZZZZ")[0].blocks, Some(blocks));
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn json_without_charset_gets_slacks_warning() {
    let slack = standin().await;
    let response = client()
        .post(format!("{}chat.postMessage", slack.base_url()))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(json!({"channel": "C0123ABCD", "text": "x"}).to_string())
        .send()
        .await
        .expect("request");
    let (_, _, value) = json_of(response).await;
    assert_eq!(value["ok"], true);
    assert_eq!(value["warning"], "missing_charset");
}

#[tokio::test]
async fn authentication_is_checked() {
    let slack = standin().await;
    let body = json!({"channel": "C0123ABCD", "text": "x"});
    let (status, value) = call_with_token(&slack, "chat.postMessage", &body, None).await;
    assert_eq!((status, error_of(&value)), (200, "not_authed"));
    let (status, value) =
        call_with_token(&slack, "chat.postMessage", &body, Some("xoxb-wrong")).await;
    assert_eq!((status, error_of(&value)), (200, "invalid_auth"));
    // A token in a JSON body does not count: JSON needs the header.
    let with_body_token = json!({"channel": "C0123ABCD", "text": "x", "token": TOKEN});
    let (_, value) = call_with_token(&slack, "chat.postMessage", &with_body_token, None).await;
    assert_eq!(error_of(&value), "not_authed");
    assert!(slack.messages().is_empty());
    assert_eq!(
        slack.calls()[1].outcome,
        Outcome::Rejected {
            status: 200,
            error: "invalid_auth".into()
        }
    );
    assert!(slack.accepted().is_empty());
}

#[tokio::test]
async fn content_rules_refuse_and_accept() {
    let slack = standin().await;
    let cases: Vec<(Value, Option<&str>)> = vec![
        (json!({"text": "x"}), Some("channel_not_found")),
        (
            json!({"channel": "C0NOTHERE", "text": "x"}),
            Some("channel_not_found"),
        ),
        (
            json!({"channel": "#nope", "text": "x"}),
            Some("channel_not_found"),
        ),
        (json!({"channel": "C0123ABCD"}), Some("no_text")),
        (json!({"channel": "C0123ABCD", "text": ""}), Some("no_text")),
        (
            json!({"channel": "C0123ABCD", "blocks": []}),
            Some("no_text"),
        ),
        (
            json!({"channel": "C0123ABCD", "text": "x".repeat(40_001)}),
            Some("msg_too_long"),
        ),
        (
            json!({"channel": "C0123ABCD", "text": "x".repeat(40_000)}),
            None,
        ),
        (
            json!({"channel": "C0123ABCD", "blocks": "not json"}),
            Some("invalid_blocks_format"),
        ),
        (
            json!({"channel": "C0123ABCD", "blocks": {"type": "divider"}}),
            Some("invalid_blocks_format"),
        ),
        (
            json!({"channel": "C0123ABCD", "attachments": [{"text": "a", "color": "danger"}]}),
            None,
        ),
        (
            json!({"channel": "C0123ABCD", "blocks": [{"type": "divider"}]}),
            None,
        ),
    ];
    for (body, expected) in cases {
        let (status, value) = call(&slack, "chat.postMessage", &body).await;
        assert_eq!(status, 200);
        match expected {
            Some(code) => assert_eq!(error_of(&value), code, "{body}"),
            None => assert_eq!(value["ok"], true, "{body} → {value}"),
        }
    }
}

/// Each bad block is refused with `invalid_blocks` and a pointer; the block
/// beside it, just inside the limit, is accepted.
#[tokio::test]
async fn block_kit_rules_refuse_and_accept() {
    let slack = standin().await;
    let text = |kind: &str, n: usize| json!({"type": kind, "text": "x".repeat(n)});
    let section = |n: usize| json!({"type": "section", "text": text("mrkdwn", n)});
    let button = |label: usize, url: usize| {
        json!({"type": "button", "text": text("plain_text", label),
               "url": format!("https://e.x/{}", "a".repeat(url - 12))})
    };
    let actions = |n: usize| json!({"type": "actions", "elements": vec![button(5, 20); n]});
    let fields =
        |n: usize, len: usize| json!({"type": "section", "fields": vec![text("mrkdwn", len); n]});
    let context = |n: usize| json!({"type": "context", "elements": vec![text("plain_text", 3); n]});
    let header = |kind: &str, n: usize| json!({"type": "header", "text": text(kind, n)});
    let with_id = |n: usize| json!({"type": "divider", "block_id": "b".repeat(n)});
    let cases: Vec<(&str, Value, Value, &str)> = vec![
        (
            "section text ≤ 3000",
            section(3001),
            section(3000),
            "/blocks/0/text/text",
        ),
        (
            "header ≤ 150",
            header("plain_text", 151),
            header("plain_text", 150),
            "/blocks/0/text/text",
        ),
        (
            "header is plain_text",
            header("mrkdwn", 5),
            header("plain_text", 5),
            "/blocks/0/text/type",
        ),
        (
            "fields ≤ 10",
            fields(11, 5),
            fields(10, 5),
            "/blocks/0/fields",
        ),
        (
            "field ≤ 2000",
            fields(1, 2001),
            fields(1, 2000),
            "/blocks/0/fields/0/text",
        ),
        (
            "context ≤ 10 elements",
            context(11),
            context(10),
            "/blocks/0/elements",
        ),
        (
            "actions ≤ 25 elements",
            actions(26),
            actions(25),
            "/blocks/0/elements",
        ),
        (
            "button text ≤ 75",
            json!({"type": "actions", "elements": [button(76, 20)]}),
            json!({"type": "actions", "elements": [button(75, 20)]}),
            "/blocks/0/elements/0/text/text",
        ),
        (
            "button url ≤ 3000",
            json!({"type": "actions", "elements": [button(5, 3001)]}),
            json!({"type": "actions", "elements": [button(5, 3000)]}),
            "/blocks/0/elements/0/url",
        ),
        (
            "block_id ≤ 255",
            with_id(256),
            with_id(255),
            "/blocks/0/block_id",
        ),
        (
            "section needs text or fields",
            json!({"type": "section"}),
            json!({"type": "section", "fields": [text("plain_text", 1)]}),
            "/blocks/0",
        ),
        (
            "text object needs a known type",
            json!({"type": "section", "text": {"type": "markdown", "text": "x"}}),
            json!({"type": "section", "text": {"type": "mrkdwn", "text": "x"}}),
            "/blocks/0/text/type",
        ),
        (
            "text object needs text",
            json!({"type": "section", "text": {"type": "mrkdwn"}}),
            section(1),
            "/blocks/0/text/text",
        ),
        (
            "text is not empty",
            section(0),
            section(1),
            "/blocks/0/text/text",
        ),
        (
            "known block types",
            json!({"type": "banner"}),
            json!({"type": "divider"}),
            "/blocks/0/type",
        ),
        (
            "image needs alt_text",
            json!({"type": "image", "image_url": "https://e.x/a.png"}),
            json!({"type": "image", "image_url": "https://e.x/a.png", "alt_text": "a"}),
            "/blocks/0/alt_text",
        ),
    ];
    for (rule, bad, good, pointer) in cases {
        let (_, value) = call(
            &slack,
            "chat.postMessage",
            &json!({"channel": "C0123ABCD", "blocks": [bad]}),
        )
        .await;
        assert_eq!(error_of(&value), "invalid_blocks", "{rule}: {value}");
        let errors = value["errors"].as_array().expect("errors listed");
        assert!(
            errors.iter().any(|e| e
                .as_str()
                .is_some_and(|e| e.ends_with(&format!("[json-pointer:{pointer}]")))),
            "{rule}: {errors:?}"
        );
        let (_, value) = call(
            &slack,
            "chat.postMessage",
            &json!({"channel": "C0123ABCD", "blocks": [good]}),
        )
        .await;
        assert_eq!(value["ok"], true, "{rule}: {value}");
    }
    let divider = json!({"type": "divider"});
    let (_, value) = call(
        &slack,
        "chat.postMessage",
        &json!({"channel": "C0123ABCD", "blocks": vec![divider.clone(); 51]}),
    )
    .await;
    assert_eq!(error_of(&value), "invalid_blocks");
    let (_, value) = call(
        &slack,
        "chat.postMessage",
        &json!({"channel": "C0123ABCD", "blocks": vec![divider; 50]}),
    )
    .await;
    assert_eq!(value["ok"], true);
}

#[tokio::test]
async fn update_replaces_the_message_and_keeps_history() {
    let slack = standin().await;
    let blocks = json!([{"type": "section", "text": {"type": "mrkdwn", "text": "*failing*"}}]);
    let posted = post(
        &slack,
        json!({"channel": "#oncall", "text": "failing", "blocks": blocks}),
    )
    .await;
    let ts = posted["ts"].as_str().expect("ts").to_string();

    let (_, value) = call(
        &slack,
        "chat.update",
        &json!({"channel": "C0123ABCD", "ts": ts, "text": "recovered"}),
    )
    .await;
    assert_eq!(value["ok"], true, "{value}");
    assert_eq!(value["ts"], ts.as_str());
    assert_eq!(value["text"], "recovered");
    assert_eq!(value["channel"], "C0123ABCD");
    assert_eq!(value["message"]["text"], "recovered");

    let message = &slack.messages()[0];
    assert_eq!(message.text.as_deref(), Some("recovered"));
    assert_eq!(
        message.blocks.as_ref(),
        Some(&blocks),
        "blocks kept unless given"
    );
    assert_eq!(message.updates, 1);
    assert_eq!(message.history.len(), 1);
    assert_eq!(message.history[0].text.as_deref(), Some("failing"));

    // An empty blocks array removes them.
    let (_, value) = call(
        &slack,
        "chat.update",
        &json!({"channel": "C0123ABCD", "ts": ts, "text": "ok", "blocks": []}),
    )
    .await;
    assert_eq!(value["ok"], true);
    assert_eq!(slack.messages()[0].blocks, None);
    assert_eq!(slack.messages()[0].updates, 2);

    for (body, code) in [
        (
            json!({"channel": "C0123ABCD", "ts": "1.000001", "text": "x"}),
            "message_not_found",
        ),
        (
            json!({"channel": "C0123ABCD", "text": "x"}),
            "message_not_found",
        ),
        (
            json!({"channel": "C0999ZZZZ", "ts": ts, "text": "x"}),
            "message_not_found",
        ),
        (
            json!({"channel": "C0NOTHERE", "ts": ts, "text": "x"}),
            "channel_not_found",
        ),
        (json!({"ts": ts, "text": "x"}), "channel_not_found"),
        (json!({"channel": "C0123ABCD", "ts": ts}), "no_text"),
    ] {
        let (_, value) = call(&slack, "chat.update", &body).await;
        assert_eq!(error_of(&value), code, "{body}");
    }
    assert_eq!(slack.messages()[0].updates, 2);
}

#[tokio::test]
async fn unknown_methods_are_refused() {
    let slack = standin().await;
    let (status, value) = call(
        &slack,
        "chat.postEphemeral",
        &json!({"channel": "C0123ABCD", "text": "x"}),
    )
    .await;
    assert_eq!((status, error_of(&value)), (404, "unknown_method"));
}

#[tokio::test]
async fn injected_rate_limit_carries_retry_after() {
    let slack = standin().await;
    slack.fail_next(1, Failure::rate_limited(Duration::from_millis(1500)));
    let response = client()
        .post(format!("{}chat.postMessage", slack.base_url()))
        .bearer_auth(TOKEN)
        .json(&json!({"channel": "C0123ABCD", "text": "x"}))
        .send()
        .await
        .expect("request");
    let (status, headers, value) = json_of(response).await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "2");
    assert_eq!(value, json!({"ok": false, "error": "ratelimited"}));
    assert!(slack.messages().is_empty());
    let value = post(&slack, json!({"channel": "C0123ABCD", "text": "x"})).await;
    assert_eq!(value["ok"], true);
}

#[tokio::test]
async fn built_in_rate_limit_counts_violations_per_channel() {
    let slack = SlackStandin::builder(TOKEN)
        .channel("C0123ABCD", "oncall")
        .channel("C0999ZZZZ", "ops")
        .with_rate_limit(0.5)
        .with_rate_limit_burst(2)
        .start()
        .await
        .expect("starts");
    let body = json!({"channel": "C0123ABCD", "text": "x"});
    for _ in 0..2 {
        let (status, value) = call(&slack, "chat.postMessage", &body).await;
        assert_eq!((status, &value["ok"]), (200, &json!(true)));
    }
    let response = client()
        .post(format!("{}chat.postMessage", slack.base_url()))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("request");
    let (status, headers, value) = json_of(response).await;
    assert_eq!((status, error_of(&value)), (429, "ratelimited"));
    // Two tokens used at 0.5/s: the next is about 2 s away.
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(slack.rate_limit_violations(), 1);
    assert!(matches!(
        slack.calls()[2].outcome,
        Outcome::Throttled { .. }
    ));
    // Another channel has its own bucket.
    let (status, _) = call(
        &slack,
        "chat.postMessage",
        &json!({"channel": "C0999ZZZZ", "text": "x"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(slack.messages().len(), 3);
}

/// slack-morphism, the client the Slack notifier uses, against the stand-in.
#[tokio::test]
async fn slack_morphism_round_trip() {
    use slack_morphism::errors::SlackClientError;
    use slack_morphism::prelude::*;

    let slack = SlackStandin::builder(TOKEN)
        .channel("C0123ABCD", "oncall")
        .start()
        .await
        .expect("starts");
    // slack-morphism's `SlackClientHyperConnector::new()` is HTTPS-only; a
    // connector that also speaks plain HTTP reaches the stand-in.
    let https_or_http = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    let connector = SlackClientHyperConnector::with_connector(https_or_http)
        .with_slack_api_url(&slack.api_url());
    let client = SlackClient::new(connector);
    let token = SlackApiToken::new(SlackApiTokenValue::from(TOKEN.to_string()));
    let session = client.open_session(&token);

    let request: SlackApiChatPostMessageRequest = serde_json::from_value(json!({
        "channel": "#oncall",
        "text": "backup failed",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "Job failed"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "*backup*"},
             "fields": [{"type": "mrkdwn", "text": "attempt 3"}]},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "patrol"}]},
            {"type": "actions", "elements": [
                {"type": "button", "action_id": "open", "text": {"type": "plain_text", "text": "Open"},
                 "url": "https://patrol.example/runs/1"}]}
        ]
    }))
    .expect("a valid request");
    let posted = session.chat_post_message(&request).await.expect("posted");
    assert_eq!(posted.channel.to_string(), "C0123ABCD");
    let message = &slack.messages()[0];
    assert_eq!(posted.ts.to_string(), message.ts);
    assert_eq!(
        message.blocks.as_ref().map(|b| b.as_array().map(Vec::len)),
        Some(Some(4))
    );
    assert_eq!(
        slack.calls()[0].header("content-type"),
        Some("application/json; charset=utf-8")
    );

    let update: SlackApiChatUpdateRequest = serde_json::from_value(json!({
        "channel": "C0123ABCD", "ts": posted.ts.to_string(), "text": "recovered"
    }))
    .expect("a valid update");
    let updated = session.chat_update(&update).await.expect("updated");
    assert_eq!(updated.ts, posted.ts);
    assert_eq!(slack.messages()[0].text.as_deref(), Some("recovered"));

    // Refusals and rate limits reach the client as Slack's own errors.
    let bad: SlackApiChatPostMessageRequest =
        serde_json::from_value(json!({"channel": "C0NOTHERE", "text": "x"})).expect("request");
    match session.chat_post_message(&bad).await {
        Err(SlackClientError::ApiError(error)) => assert_eq!(error.code, "channel_not_found"),
        other => panic!("expected channel_not_found, got {other:?}"),
    }
    slack.fail_next(1, Failure::rate_limited(Duration::from_secs(3)));
    match session.chat_post_message(&request).await {
        Err(SlackClientError::RateLimitError(error)) => {
            assert_eq!(error.retry_after, Some(Duration::from_secs(3)));
        }
        other => panic!("expected a rate limit error, got {other:?}"),
    }
}

async fn history(slack: &SlackStandin, query: &str) -> Value {
    let response = client()
        .get(format!("{}conversations.history?{query}", slack.base_url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("request");
    let (status, _, value) = json_of(response).await;
    assert_eq!(status, 200, "{value}");
    value
}

#[tokio::test]
async fn metadata_is_kept_checked_and_kept_on_update_unless_given() {
    let slack = standin().await;
    let metadata = json!({"event_type": "alert_posted", "event_payload": {"delivery_id": "7"}});
    let value = post(
        &slack,
        json!({"channel": "C0123ABCD", "text": "x", "metadata": metadata}),
    )
    .await;
    assert_eq!(value["message"]["metadata"], metadata);
    let ts = value["ts"].as_str().unwrap().to_string();
    assert_eq!(slack.messages()[0].metadata, Some(metadata.clone()));
    // A form carries it as a JSON string.
    let form = format!(
        "token={TOKEN}&channel=C0123ABCD&text=y&metadata={}",
        urlencode(&metadata.to_string())
    );
    let response = client()
        .post(format!("{}chat.postMessage", slack.base_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    let (_, _, value) = json_of(response).await;
    assert_eq!(value["message"]["metadata"], metadata, "{value}");
    for (bad, code) in [
        (json!("not json"), "invalid_metadata_format"),
        (json!([1]), "invalid_metadata_format"),
        (json!({"event_payload": {}}), "invalid_metadata_schema"),
        (
            json!({"event_type": "x", "event_payload": 3}),
            "invalid_metadata_schema",
        ),
    ] {
        let (_, value) = call(
            &slack,
            "chat.postMessage",
            &json!({"channel": "C0123ABCD", "text": "x", "metadata": bad}),
        )
        .await;
        assert_eq!(error_of(&value), code, "{bad}");
    }
    // Updated without metadata: kept; with `{}`: removed.
    let (_, value) = call(
        &slack,
        "chat.update",
        &json!({"channel": "C0123ABCD", "ts": ts, "text": "z"}),
    )
    .await;
    assert_eq!(value["ok"], true, "{value}");
    assert_eq!(slack.messages()[0].metadata, Some(metadata));
    call(
        &slack,
        "chat.update",
        &json!({"channel": "C0123ABCD", "ts": ts, "text": "z", "metadata": {}}),
    )
    .await;
    assert_eq!(slack.messages()[0].metadata, None);
    let writes: Vec<(&str, String)> = slack
        .writes()
        .iter()
        .map(|write| (write.method, write.ts.clone()))
        .collect();
    assert_eq!(writes.len(), 4, "two posts, two updates: {writes:?}");
    assert_eq!(writes[2], ("chat.update", ts.clone()));
    assert_eq!(writes[3], ("chat.update", ts));
}

#[tokio::test]
async fn history_pages_newest_first_within_bounds_with_metadata_on_request() {
    let slack = standin().await;
    let mut posted = Vec::new();
    for n in 0..5 {
        let metadata = json!({"event_type": "e", "event_payload": {"n": n.to_string()}});
        let value = post(
            &slack,
            json!({"channel": "C0123ABCD", "text": format!("m{n}"), "metadata": metadata}),
        )
        .await;
        posted.push(value["ts"].as_str().unwrap().to_string());
    }
    // A reply in a thread and a message elsewhere are not listed.
    post(
        &slack,
        json!({"channel": "C0123ABCD", "text": "reply", "thread_ts": posted[0]}),
    )
    .await;
    post(&slack, json!({"channel": "C0999ZZZZ", "text": "other"})).await;

    let first = history(
        &slack,
        &format!("channel=C0123ABCD&limit=2&oldest={}", posted[0]),
    )
    .await;
    let texts = |page: &Value| -> Vec<String> {
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        texts(&first),
        ["m4", "m3"],
        "newest first, oldest exclusive"
    );
    assert_eq!(first["has_more"], true);
    assert!(
        first["messages"][0].get("metadata").is_none(),
        "metadata only when asked"
    );
    let cursor = first["response_metadata"]["next_cursor"].as_str().unwrap();
    let second = history(
        &slack,
        &format!(
            "channel=C0123ABCD&limit=2&oldest={}&cursor={}&include_all_metadata=true",
            posted[0],
            urlencode(cursor)
        ),
    )
    .await;
    assert_eq!(texts(&second), ["m2", "m1"]);
    assert_eq!(second["has_more"], false);
    assert_eq!(second["messages"][0]["metadata"]["event_payload"]["n"], "2");
    let inclusive = history(
        &slack,
        &format!("channel=C0123ABCD&oldest={}&inclusive=true", posted[0]),
    )
    .await;
    assert_eq!(texts(&inclusive).len(), 5);

    for (query, code) in [
        ("channel=%23oncall", "channel_not_found"),
        ("channel=C0123ABCD&cursor=garbage", "invalid_cursor"),
        ("channel=C0123ABCD&oldest=yesterday", "invalid_ts_oldest"),
    ] {
        assert_eq!(error_of(&history(&slack, query).await), code, "{query}");
    }
}

#[tokio::test]
async fn a_slow_answer_comes_after_the_post_took_effect() {
    let slack = SlackStandin::builder(TOKEN)
        .channel("C0123ABCD", "oncall")
        .answer_after(Duration::from_millis(800))
        .start()
        .await
        .expect("starts");
    let started = std::time::Instant::now();
    let request = client()
        .post(format!("{}chat.postMessage", slack.base_url()))
        .bearer_auth(TOKEN)
        .json(&json!({"channel": "C0123ABCD", "text": "x"}))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(request.is_err(), "the client gave up before the answer");
    assert_eq!(slack.messages().len(), 1, "posted all the same");
    assert_eq!(slack.writes().len(), 1);
    slack.set_answer_delay(Duration::ZERO);
    post(&slack, json!({"channel": "C0123ABCD", "text": "y"})).await;
    assert!(started.elapsed() < Duration::from_millis(800));
}

/// slack-morphism's `conversations.history` (a GET) and message metadata.
#[tokio::test]
async fn slack_morphism_reads_history_with_metadata() {
    use slack_morphism::prelude::*;

    let slack = standin().await;
    let https_or_http = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    let client = SlackClient::new(
        SlackClientHyperConnector::with_connector(https_or_http)
            .with_slack_api_url(&slack.api_url()),
    );
    let token = SlackApiToken::new(SlackApiTokenValue::from(TOKEN.to_string()));
    let session = client.open_session(&token);
    let metadata = SlackMessageMetadata::new("alert_posted".into()).with_event_payload(
        [("delivery_id".to_string(), "9".to_string())]
            .into_iter()
            .collect(),
    );
    let request = SlackApiChatPostMessageRequest::new(
        SlackChannelId::new("C0123ABCD".into()),
        SlackMessageContent::new()
            .with_text("x".into())
            .with_metadata(metadata.clone()),
    );
    let posted = session.chat_post_message(&request).await.expect("posted");
    let page = session
        .conversations_history(
            &SlackApiConversationsHistoryRequest::new()
                .with_channel(SlackChannelId::new("C0123ABCD".into()))
                .with_oldest(SlackTs::new("0".into()))
                .with_limit(200)
                .with_include_all_metadata(true),
        )
        .await
        .expect("history");
    assert_eq!(page.messages.len(), 1);
    assert_eq!(page.messages[0].origin.ts, posted.ts);
    assert_eq!(page.messages[0].content.metadata, Some(metadata));
    assert_eq!(page.has_more, Some(false));
    assert_eq!(slack.calls()[1].method, "GET");
}
