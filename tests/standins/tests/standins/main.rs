//! Tests of the stand-ins themselves: each rule refuses a bad request and
//! lets the good one through, failures are injected as promised, and the
//! real clients (reqwest, slack-morphism, lettre) work against them.

mod failures;
mod pagerduty;
mod slack;
mod smtp;
mod webhook;

use std::time::Duration;

use serde_json::Value;

/// A plain HTTP client with a short timeout, as a notifier would have.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("reqwest client")
}

/// Status, headers and JSON body of a response.
pub async fn json_of(response: reqwest::Response) -> (u16, reqwest::header::HeaderMap, Value) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("response body");
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
    (status, headers, value)
}
