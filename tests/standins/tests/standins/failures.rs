//! Failure injection and waiting, shared by every HTTP stand-in (exercised
//! through the webhook receiver and PagerDuty).

use std::time::{Duration, Instant};

use patrol_standins::{Failure, Outcome, PagerDutyStandin, WebhookReceiver};
use serde_json::json;

use crate::client;

async fn post(hook: &WebhookReceiver) -> Result<u16, reqwest::Error> {
    client()
        .post(hook.url("/x"))
        .body("payload")
        .send()
        .await
        .map(|response| response.status().as_u16())
}

#[tokio::test]
async fn fail_next_then_recover() {
    let hook = WebhookReceiver::start().await.expect("starts");
    hook.fail_next(2, Failure::Status(503));
    assert_eq!(post(&hook).await.expect("answer"), 503);
    assert_eq!(post(&hook).await.expect("answer"), 503);
    assert_eq!(post(&hook).await.expect("answer"), 200);
    let calls = hook.calls();
    assert_eq!(calls[0].outcome, Outcome::Injected(Failure::Status(503)));
    assert_eq!(calls[0].status, Some(503));
    assert_eq!(calls[0].body, b"payload");
    assert_eq!(calls[2].outcome, Outcome::Accepted);
    assert!(calls[0].received_at <= calls[1].received_at);
}

#[tokio::test]
async fn fail_until_cleared() {
    let hook = WebhookReceiver::start().await.expect("starts");
    hook.fail_until_cleared(Failure::Status(500));
    for _ in 0..3 {
        assert_eq!(post(&hook).await.expect("answer"), 500);
    }
    hook.clear_failures();
    assert_eq!(post(&hook).await.expect("answer"), 200);
    assert_eq!(hook.accepted().len(), 1);
}

#[tokio::test]
async fn timeout_holds_the_request_open() {
    let hook = WebhookReceiver::start().await.expect("starts");
    hook.fail_next(1, Failure::Timeout);
    let started = Instant::now();
    let error = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client")
        .post(hook.url("/x"))
        .body("payload")
        .send()
        .await
        .expect_err("the client times out");
    assert!(error.is_timeout(), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let call = &hook.calls()[0];
    assert_eq!(call.status, None, "no response was sent");
    assert_eq!(call.outcome, Outcome::Injected(Failure::Timeout));
    assert_eq!(post(&hook).await.expect("answer"), 200);
}

#[tokio::test]
async fn reset_drops_the_connection() {
    let hook = WebhookReceiver::start().await.expect("starts");
    hook.fail_next(1, Failure::Reset);
    let error = post(&hook).await.expect_err("the connection is reset");
    assert!(!error.is_timeout(), "{error:?}");
    assert!(error.status().is_none());
    assert_eq!(hook.calls()[0].outcome, Outcome::Injected(Failure::Reset));
    assert_eq!(post(&hook).await.expect("answer"), 200);
}

#[tokio::test]
async fn delay_answers_late_but_normally() {
    let pd = PagerDutyStandin::start(&["0123456789abcdef0123456789abcdef"])
        .await
        .expect("starts");
    pd.fail_next(1, Failure::Delay(Duration::from_millis(300)));
    let started = Instant::now();
    let response = client()
        .post(pd.enqueue_url())
        .json(&json!({
            "routing_key": "0123456789abcdef0123456789abcdef",
            "event_action": "trigger",
            "payload": {"summary": "s", "source": "h", "severity": "info"}
        }))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 202);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(pd.accepted().len(), 1);
    assert_eq!(pd.incidents().len(), 1);
}

#[tokio::test]
async fn wait_for_wakes_on_arrival_and_gives_up_on_time() {
    let hook = WebhookReceiver::start().await.expect("starts");
    let url = hook.url("/late");
    let sender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        client().post(url).body("x").send().await.expect("request");
    });
    hook.wait_for(|h| h.accepted().len() == 1, Duration::from_secs(5))
        .await
        .expect("the request arrives");
    sender.await.expect("sender");

    let started = Instant::now();
    let error = hook
        .wait_for(|h| h.count() >= 2, Duration::from_millis(200))
        .await
        .expect_err("nothing else arrives");
    assert_eq!(error.recorded, 1);
    assert!(started.elapsed() < Duration::from_secs(2));
}
