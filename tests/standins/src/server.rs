//! The HTTP server under every stand-in: an accept loop on 127.0.0.1:0 that
//! serves an axum router per connection, so that a request can reset its own
//! connection, plus the handler that records calls and applies failures.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::record::{Core, Failure, Outcome, RecordedCall, TIMEOUT_HOLD};

/// Largest body a stand-in reads; above the real services' own limits, so
/// that those limits are the stand-ins' to check.
const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// A request as the service logic sees it.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Incoming {
    /// The media type of the body, lower case, without parameters.
    pub fn media_type(&self) -> Option<String> {
        let value = self.headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
        let media = value.split(';').next()?.trim().to_ascii_lowercase();
        Some(media)
    }

    /// The `charset` parameter of Content-Type, lower case.
    pub fn charset(&self) -> Option<String> {
        let value = self.headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
        value.split(';').skip(1).find_map(|param| {
            let (name, value) = param.split_once('=')?;
            (name.trim().eq_ignore_ascii_case("charset"))
                .then(|| value.trim().trim_matches('"').to_ascii_lowercase())
        })
    }
}

/// What the service logic decided for a request.
pub(crate) struct Reply {
    pub response: Response,
    pub outcome: Outcome,
}

/// The part of a stand-in that knows the real service.
pub(crate) trait ServiceLogic: Send + Sync + 'static {
    /// Answers a request that no injected failure intercepted.
    fn respond(&self, request: &Incoming) -> Reply;

    /// The service's own HTTP 429 (body and headers) for an injected rate
    /// limit.
    fn rate_limited(&self, retry_after: Option<Duration>) -> Response;

    /// How long after processing a request its answer is sent (a slow
    /// service whose work is done before the client hears of it).
    fn answer_delay(&self) -> Duration {
        Duration::ZERO
    }
}

/// A listening stand-in; stops accepting and drops its connections when
/// dropped.
#[derive(Debug)]
pub(crate) struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
}

impl Server {
    pub(crate) async fn start<S: ServiceLogic>(core: Arc<Core>, logic: Arc<S>) -> io::Result<Self> {
        let router = Router::new()
            .fallback(handle::<S>)
            .with_state(App { core, logic })
            .layer(DefaultBodyLimit::max(BODY_LIMIT));
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        tokio::spawn(accept_loop(listener, router, shutdown.clone()));
        Ok(Server { addr, shutdown })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(
                    stream,
                    router.clone(),
                    shutdown.child_token(),
                ));
            }
            // Out of file descriptors and the like: back off, keep serving.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Lets a handler reset the connection its request came on.
#[derive(Clone)]
struct ConnectionControl {
    reset: Arc<Notify>,
}

async fn serve_connection(stream: TcpStream, router: Router, shutdown: CancellationToken) {
    let _ = stream.set_nodelay(true);
    // A second descriptor for the same socket, so that a reset can set
    // SO_LINGER 0 on it after hyper took the stream: closing a socket with a
    // zero linger sends RST instead of FIN.
    let Ok(std_stream) = stream.into_std() else {
        return;
    };
    let twin = std_stream.try_clone().ok();
    let Ok(stream) = TcpStream::from_std(std_stream) else {
        return;
    };
    let reset = Arc::new(Notify::new());
    let service = TowerToHyperService::new(router.layer(Extension(ConnectionControl {
        reset: reset.clone(),
    })));
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = connection => {}
        () = reset.notified() => {
            if let Some(twin) = &twin {
                let _ = socket2::SockRef::from(twin).set_linger(Some(Duration::ZERO));
            }
        }
        () = shutdown.cancelled() => {}
    }
    // Dropping the connection and the twin closes the socket.
}

struct App<S> {
    core: Arc<Core>,
    logic: Arc<S>,
}

impl<S> Clone for App<S> {
    fn clone(&self) -> Self {
        App {
            core: self.core.clone(),
            logic: self.logic.clone(),
        }
    }
}

async fn handle<S: ServiceLogic>(
    State(app): State<App<S>>,
    Extension(connection): Extension<ConnectionControl>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = Incoming {
        method,
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers,
        body,
    };
    let call = RecordedCall {
        seq: 0,
        received_at: Instant::now(),
        received_at_system: SystemTime::now(),
        method: request.method.clone(),
        path: request.path.clone(),
        query: request.query.clone(),
        headers: request.headers.clone(),
        body: request.body.to_vec(),
        status: None,
        outcome: Outcome::Accepted,
    };
    let core = &app.core;
    let Some(failure) = core.take_failure() else {
        let reply = app.logic.respond(&request);
        core.push(RecordedCall {
            status: Some(reply.response.status().as_u16()),
            outcome: reply.outcome,
            ..call
        });
        let delay = app.logic.answer_delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        return reply.response;
    };
    let injected = Outcome::Injected(failure.clone());
    match failure {
        Failure::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            core.push(RecordedCall {
                status: Some(status.as_u16()),
                outcome: injected,
                ..call
            });
            plain_text(
                status,
                &format!("injected failure: HTTP {}", status.as_u16()),
            )
        }
        Failure::RateLimited { retry_after } => {
            let response = app.logic.rate_limited(retry_after);
            core.push(RecordedCall {
                status: Some(response.status().as_u16()),
                outcome: injected,
                ..call
            });
            response
        }
        Failure::Timeout => {
            let index = core.push(RecordedCall {
                outcome: injected.clone(),
                ..call
            });
            tokio::time::sleep(TIMEOUT_HOLD).await;
            core.finish(index, Some(504), injected);
            plain_text(StatusCode::GATEWAY_TIMEOUT, "injected timeout")
        }
        Failure::Delay(delay) => {
            let index = core.push(RecordedCall {
                outcome: injected,
                ..call
            });
            tokio::time::sleep(delay).await;
            let reply = app.logic.respond(&request);
            core.finish(index, Some(reply.response.status().as_u16()), reply.outcome);
            reply.response
        }
        Failure::Reset => {
            core.push(RecordedCall {
                outcome: injected,
                ..call
            });
            connection.reset.notify_one();
            never().await
        }
    }
}

/// Waits forever: the connection task drops this request when it resets.
fn never() -> impl Future<Output = Response> {
    std::future::pending()
}

pub(crate) fn plain_text(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        text.to_string(),
    )
        .into_response()
}

/// A JSON response with an explicit Content-Type.
pub(crate) fn json_response(
    status: StatusCode,
    content_type: &'static str,
    value: &serde_json::Value,
) -> Response {
    let mut response = Response::new(Body::from(value.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
