use patrol_standins::{hmac_sha256_signature, Outcome, SignatureError, WebhookReceiver};

use crate::client;

#[tokio::test]
async fn records_any_post_with_headers_and_raw_body() {
    let hook = WebhookReceiver::start().await.expect("starts");
    let body = br#"{"event":"run.failed","run":42}"#;
    let response = client()
        .post(hook.url("/hooks/patrol?team=ops"))
        .header("content-type", "application/json")
        .header("x-patrol-event", "run.failed")
        .body(body.to_vec())
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 200);
    let call = &hook.calls()[0];
    assert_eq!(call.path, "/hooks/patrol");
    assert_eq!(call.query.as_deref(), Some("team=ops"));
    assert_eq!(call.header("x-patrol-event"), Some("run.failed"));
    assert_eq!(call.body, body);
    assert_eq!(call.json().expect("json")["run"], 42);
    assert_eq!(call.status, Some(200));

    let response = client()
        .get(hook.url("/hooks/patrol"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(hook.accepted().len(), 1);
    assert_eq!(hook.count(), 2);
}

#[tokio::test]
async fn signature_helper_checks_the_raw_body() {
    let hook = WebhookReceiver::start().await.expect("starts");
    let body = b"{\"a\":1}".to_vec();
    let signature = hmac_sha256_signature(b"s3cret", &body);
    for (signature, body) in [
        (Some(signature.clone()), body.clone()),
        (Some(signature), b"{\"a\": 1}".to_vec()),
        (None, body),
    ] {
        let mut request = client().post(hook.url("/")).body(body);
        if let Some(signature) = signature {
            request = request.header("x-patrol-signature", signature);
        }
        request.send().await.expect("request");
    }
    let calls = hook.calls();
    assert_eq!(
        calls[0].verify_hmac_sha256(b"s3cret", "x-patrol-signature"),
        Ok(())
    );
    assert_eq!(
        calls[0].verify_hmac_sha256(b"wrong", "x-patrol-signature"),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        calls[1].verify_hmac_sha256(b"s3cret", "x-patrol-signature"),
        Err(SignatureError::Mismatch),
        "a re-serialised body does not match"
    );
    assert_eq!(
        calls[2].verify_hmac_sha256(b"s3cret", "x-patrol-signature"),
        Err(SignatureError::Missing)
    );
}

#[tokio::test]
async fn required_signatures_and_configured_status() {
    let hook = WebhookReceiver::start().await.expect("starts");
    hook.require_hmac_sha256(b"s3cret", "x-signature");
    let unsigned = client()
        .post(hook.url("/"))
        .body("x")
        .send()
        .await
        .expect("request");
    assert_eq!(unsigned.status().as_u16(), 401);
    let signed = client()
        .post(hook.url("/"))
        .header("x-signature", hmac_sha256_signature(b"s3cret", b"x"))
        .body("x")
        .send()
        .await
        .expect("request");
    assert_eq!(signed.status().as_u16(), 200);

    hook.respond_with(410);
    let gone = client()
        .post(hook.url("/"))
        .header("x-signature", hmac_sha256_signature(b"s3cret", b"y"))
        .body("y")
        .send()
        .await
        .expect("request");
    assert_eq!(gone.status().as_u16(), 410);
    assert!(matches!(
        hook.calls()[0].outcome,
        Outcome::Rejected { status: 401, .. }
    ));
    assert!(matches!(
        hook.calls()[2].outcome,
        Outcome::Rejected { status: 410, .. }
    ));
    assert_eq!(hook.accepted().len(), 1);
}
