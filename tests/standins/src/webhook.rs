//! A webhook receiver: accepts a POST on any path and records it.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;

use crate::record::{
    common_http_methods, lock, retry_after_seconds, verify_hmac_sha256, Core, Outcome,
};
use crate::server::{plain_text, Incoming, Reply, Server, ServiceLogic};

/// A local webhook endpoint. Point a client at [`WebhookReceiver::url`].
#[derive(Debug)]
pub struct WebhookReceiver {
    core: Arc<Core>,
    logic: Arc<WebhookLogic>,
    server: Server,
}

common_http_methods!(WebhookReceiver);

#[derive(Debug)]
enum Signature {
    /// `sha256=<hex>` of the body in `header`.
    Hmac { secret: Vec<u8>, header: String },
    /// Standard Webhooks (`webhook-id`, `-timestamp`, `-signature`) under
    /// the decoded key, with the specification's 5-minute tolerance.
    Standard { key: Vec<u8> },
}

#[derive(Debug)]
struct WebhookLogic {
    status: Mutex<StatusCode>,
    signature: Mutex<Option<Signature>>,
}

impl WebhookReceiver {
    /// Starts on 127.0.0.1 on a free port, answering every POST `200 ok`.
    pub async fn start() -> io::Result<Self> {
        let core = Core::new();
        let logic = Arc::new(WebhookLogic {
            status: Mutex::new(StatusCode::OK),
            signature: Mutex::new(None),
        });
        let server = Server::start(core.clone(), logic.clone()).await?;
        Ok(WebhookReceiver {
            core,
            logic,
            server,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// `http://127.0.0.1:PORT{path}` (`path` starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    /// The status accepted POSTs get from now on (default 200; any 2xx
    /// counts as accepted, anything else as rejected).
    pub fn respond_with(&self, status: u16) {
        *lock(&self.logic.status) = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    }

    /// From now on, answer 401 to a POST whose `header_name` is not a valid
    /// `sha256=<hex>` HMAC-SHA256 of its raw body under `secret`, the way
    /// receivers that check signatures do. Use
    /// [`crate::RecordedCall::verify_hmac_sha256`] to check recorded calls
    /// without refusing them.
    pub fn require_hmac_sha256(&self, secret: &[u8], header_name: &str) {
        *lock(&self.logic.signature) = Some(Signature::Hmac {
            secret: secret.to_vec(),
            header: header_name.to_string(),
        });
    }

    /// From now on, answer 401 to a POST without a valid Standard Webhooks
    /// signature under `key` (the decoded `whsec_` secret): what a receiver
    /// using the specification's libraries does.
    pub fn require_standard_webhooks(&self, key: &[u8]) {
        *lock(&self.logic.signature) = Some(Signature::Standard { key: key.to_vec() });
    }
}

impl ServiceLogic for WebhookLogic {
    fn respond(&self, request: &Incoming) -> Reply {
        if request.method != Method::POST {
            return Reply {
                response: plain_text(StatusCode::METHOD_NOT_ALLOWED, "only POST"),
                outcome: Outcome::Rejected {
                    status: 405,
                    error: format!("method {}", request.method),
                },
            };
        }
        if let Some(signature) = &*lock(&self.signature) {
            let verdict = match signature {
                Signature::Hmac { secret, header } => {
                    let header = request
                        .headers
                        .get(header.as_str())
                        .and_then(|value| value.to_str().ok());
                    verify_hmac_sha256(secret, &request.body, header).map_err(|e| e.to_string())
                }
                Signature::Standard { key } => {
                    crate::standard_webhooks::check(key, &request.headers, &request.body)
                }
            };
            if let Err(error) = verdict {
                return Reply {
                    response: plain_text(StatusCode::UNAUTHORIZED, &error.to_string()),
                    outcome: Outcome::Rejected {
                        status: 401,
                        error: error.to_string(),
                    },
                };
            }
        }
        let status = *lock(&self.status);
        let outcome = if status.is_success() {
            Outcome::Accepted
        } else {
            Outcome::Rejected {
                status: status.as_u16(),
                error: "configured status".to_string(),
            }
        };
        Reply {
            response: plain_text(status, "ok"),
            outcome,
        }
    }

    fn rate_limited(&self, retry_after: Option<Duration>) -> Response {
        let mut response = plain_text(StatusCode::TOO_MANY_REQUESTS, "rate limited");
        if let Some(after) = retry_after {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_seconds(after)),
            );
        }
        response
    }
}
