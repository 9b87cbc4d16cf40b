//! Slack Web API stand-in: `chat.postMessage`, `chat.update` and
//! `conversations.history`.
//!
//! Follows <https://docs.slack.dev/reference/methods/chat.postMessage>,
//! <https://docs.slack.dev/reference/methods/chat.update>,
//! <https://docs.slack.dev/reference/methods/conversations.history>,
//! <https://docs.slack.dev/messaging/message-metadata>,
//! <https://docs.slack.dev/apis/web-api/rate-limits> and what slack-morphism
//! 2.x sends (`POST {api}/{method}`, `Content-Type: application/json;
//! charset=utf-8`, `Authorization: Bearer <token>`).

mod blocks;
mod history;

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};

pub use self::blocks::MAX_BLOCKS;
use crate::record::{common_http_methods, lock, retry_after_seconds, Core, Outcome};
use crate::server::{json_response, Incoming, Reply, Server, ServiceLogic};

/// Longest `text` Slack accepts (it answers `msg_too_long` above).
pub const MAX_TEXT_CHARS: usize = 40_000;

const JSON_UTF8: &str = "application/json; charset=utf-8";
/// Who the stand-in says posted: the bot behind the token.
const BOT_USER: &str = "U0STANDIN";
const BOT_ID: &str = "B0STANDIN";
const TEAM: &str = "T0STANDIN";

/// A channel the workspace has: its ID (`C0123ABCD`) and name (`oncall`).
#[derive(Debug, Clone)]
struct Channel {
    id: String,
    name: String,
}

/// A message as the stand-in stores it now.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackMessage {
    /// Channel ID (what Slack answers even when posted to `#name`).
    pub channel: String,
    pub ts: String,
    pub thread_ts: Option<String>,
    pub text: Option<String>,
    pub blocks: Option<Value>,
    pub attachments: Option<Value>,
    /// `{"event_type": …, "event_payload": {…}}` as posted (or last
    /// updated), if any.
    pub metadata: Option<Value>,
    pub posted_at: SystemTime,
    /// How many `chat.update` calls changed it.
    pub updates: usize,
    /// Earlier versions, oldest first (empty until updated).
    pub history: Vec<SlackMessageVersion>,
}

/// One accepted `chat.postMessage` or `chat.update`, in the order they
/// were processed: the record a test counts posts and updates from.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackWrite {
    /// `chat.postMessage` or `chat.update`.
    pub method: &'static str,
    pub channel: String,
    /// The message posted or updated.
    pub ts: String,
    /// Set for replies in a thread.
    pub thread_ts: Option<String>,
    /// The message's metadata after this call.
    pub metadata: Option<Value>,
    pub at: SystemTime,
}

/// One earlier version of an updated message.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackMessageVersion {
    pub text: Option<String>,
    pub blocks: Option<Value>,
    pub attachments: Option<Value>,
    /// When this version stopped being current.
    pub replaced_at: SystemTime,
}

/// Slack's per-channel posting limit, enforced loosely as a token bucket.
#[derive(Debug, Clone, Copy)]
struct RateLimit {
    per_second: f64,
    burst: f64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Builds a [`SlackStandin`]: the token it accepts, its channels, limits.
#[derive(Debug, Clone)]
pub struct SlackBuilder {
    token: String,
    channels: Vec<Channel>,
    per_channel_per_sec: Option<f64>,
    burst: u32,
    answer_after: Duration,
}

impl SlackBuilder {
    /// Answers every call `delay` late: the call takes effect at once (a
    /// message is posted when the request arrives), its answer comes after
    /// `delay`, as from a slow Slack. A client that gives up or dies
    /// meanwhile has posted without knowing it.
    pub fn answer_after(mut self, delay: Duration) -> Self {
        self.answer_after = delay;
        self
    }

    /// A channel that exists: posts may name it by `id` or by `name` (with
    /// or without `#`).
    pub fn channel(mut self, id: &str, name: &str) -> Self {
        self.channels.push(Channel {
            id: id.to_string(),
            name: name.trim_start_matches('#').to_string(),
        });
        self
    }

    /// Enforces Slack's "about one message per second per channel" on
    /// `chat.postMessage`: a token bucket per channel refilled at
    /// `per_channel_per_sec`, holding `burst` tokens (default 3: Slack
    /// tolerates short bursts). A post finding the bucket empty gets 429,
    /// `Retry-After` and `{"ok":false,"error":"ratelimited"}`, and counts as
    /// a violation.
    ///
    /// # Panics
    /// If `per_channel_per_sec` is not a positive number.
    pub fn with_rate_limit(mut self, per_channel_per_sec: f64) -> Self {
        assert!(
            per_channel_per_sec > 0.0 && per_channel_per_sec.is_finite(),
            "a rate limit is a positive number of messages per second"
        );
        self.per_channel_per_sec = Some(per_channel_per_sec);
        self
    }

    /// How many posts a channel may receive back to back before the rate
    /// limit applies (at least 1; only used with [`Self::with_rate_limit`]).
    pub fn with_rate_limit_burst(mut self, burst: u32) -> Self {
        self.burst = burst.max(1);
        self
    }

    /// Starts listening on 127.0.0.1 on a free port.
    pub async fn start(self) -> io::Result<SlackStandin> {
        let core = Core::new();
        let logic = Arc::new(SlackLogic {
            token: self.token,
            channels: self.channels,
            rate_limit: self.per_channel_per_sec.map(|per_second| RateLimit {
                per_second,
                burst: f64::from(self.burst),
            }),
            state: Mutex::new(SlackState::default()),
            answer_after: Mutex::new(self.answer_after),
        });
        let server = Server::start(core.clone(), logic.clone()).await?;
        Ok(SlackStandin {
            core,
            logic,
            server,
        })
    }
}

/// A local Slack Web API. Point a client at [`SlackStandin::api_url`].
#[derive(Debug)]
pub struct SlackStandin {
    core: Arc<Core>,
    logic: Arc<SlackLogic>,
    server: Server,
}

common_http_methods!(SlackStandin);

impl SlackStandin {
    /// A stand-in accepting `token` (`Authorization: Bearer <token>`), with
    /// no channels yet: add them with [`SlackBuilder::channel`].
    pub fn builder(token: impl Into<String>) -> SlackBuilder {
        SlackBuilder {
            token: token.into(),
            channels: Vec::new(),
            per_channel_per_sec: None,
            burst: 3,
            answer_after: Duration::ZERO,
        }
    }

    /// Changes the answer delay ([`SlackBuilder::answer_after`]) from now on.
    pub fn set_answer_delay(&self, delay: Duration) {
        *lock(&self.logic.answer_after) = delay;
    }

    /// Every accepted post and update, in the order processed.
    pub fn writes(&self) -> Vec<SlackWrite> {
        lock(&self.logic.state).writes.clone()
    }

    /// `http://127.0.0.1:PORT/api/`: a client appends the method name.
    pub fn base_url(&self) -> String {
        format!("http://{}/api/", self.addr())
    }

    /// `http://127.0.0.1:PORT/api`, without the trailing slash: what
    /// slack-morphism's `with_slack_api_url` wants (it appends `/{method}`).
    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.addr())
    }

    /// The messages as they are now, in posting order.
    pub fn messages(&self) -> Vec<SlackMessage> {
        lock(&self.logic.state).messages.clone()
    }

    /// The messages of one channel (by ID), in posting order.
    pub fn messages_in(&self, channel_id: &str) -> Vec<SlackMessage> {
        self.messages()
            .into_iter()
            .filter(|message| message.channel == channel_id)
            .collect()
    }

    /// How many posts the built-in rate limit refused.
    pub fn rate_limit_violations(&self) -> usize {
        lock(&self.logic.state).violations
    }
}

#[derive(Debug, Default)]
struct SlackState {
    messages: Vec<SlackMessage>,
    writes: Vec<SlackWrite>,
    last_ts_micros: u128,
    buckets: HashMap<String, Bucket>,
    violations: usize,
}

#[derive(Debug)]
struct SlackLogic {
    token: String,
    channels: Vec<Channel>,
    rate_limit: Option<RateLimit>,
    state: Mutex<SlackState>,
    answer_after: Mutex<Duration>,
}

/// A refusal the way Slack words it: HTTP 200, `ok: false`, an error code.
struct SlackError {
    code: &'static str,
    details: Vec<String>,
}

impl SlackError {
    fn new(code: &'static str) -> Self {
        SlackError {
            code,
            details: Vec::new(),
        }
    }
}

/// The request's arguments, whether sent as JSON or as a form.
struct Arguments {
    fields: Map<String, Value>,
    /// JSON without `charset=utf-8`: Slack accepts it with a warning.
    missing_charset: bool,
    form_token: Option<String>,
}

impl ServiceLogic for SlackLogic {
    fn respond(&self, request: &Incoming) -> Reply {
        match self.call(request) {
            Ok((value, throttled)) => match throttled {
                Some(retry_after) => Reply {
                    response: rate_limited_response(Some(retry_after)),
                    outcome: Outcome::Throttled { retry_after },
                },
                None => Reply {
                    response: json_response(StatusCode::OK, JSON_UTF8, &value),
                    outcome: Outcome::Accepted,
                },
            },
            Err(error) => {
                let mut body = json!({"ok": false, "error": error.code});
                if !error.details.is_empty() {
                    let messages: Vec<String> = error
                        .details
                        .iter()
                        .map(|detail| format!("[ERROR] {detail}"))
                        .collect();
                    body["errors"] = json!(error.details);
                    body["response_metadata"] = json!({ "messages": messages });
                }
                let status = if error.code == "unknown_method" {
                    StatusCode::NOT_FOUND
                } else {
                    StatusCode::OK
                };
                Reply {
                    response: json_response(status, JSON_UTF8, &body),
                    outcome: Outcome::Rejected {
                        status: status.as_u16(),
                        error: error.code.to_string(),
                    },
                }
            }
        }
    }

    fn rate_limited(&self, retry_after: Option<Duration>) -> Response {
        rate_limited_response(retry_after)
    }

    fn answer_delay(&self) -> Duration {
        *lock(&self.answer_after)
    }
}

fn rate_limited_response(retry_after: Option<Duration>) -> Response {
    let mut response = json_response(
        StatusCode::TOO_MANY_REQUESTS,
        JSON_UTF8,
        &json!({"ok": false, "error": "ratelimited"}),
    );
    if let Some(after) = retry_after {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(retry_after_seconds(after)),
        );
    }
    response
}

impl SlackLogic {
    /// The success body, and `Some(retry_after)` when the built-in rate
    /// limit refused the post instead.
    fn call(&self, request: &Incoming) -> Result<(Value, Option<Duration>), SlackError> {
        let method = request
            .path
            .strip_prefix("/api/")
            .filter(|method| !method.contains('/'))
            .ok_or(SlackError::new("unknown_method"))?;
        if !matches!(
            method,
            "chat.postMessage" | "chat.update" | "conversations.history"
        ) {
            return Err(SlackError::new("unknown_method"));
        }
        // Slack takes arguments as a query string too; slack-morphism reads
        // with GET, writes with POST.
        let arguments = if request.method == Method::GET {
            query_arguments(request)
        } else if request.method == Method::POST {
            parse_arguments(request)?
        } else {
            return Err(SlackError::new("invalid_request"));
        };
        self.authenticate(request, &arguments)?;
        if method == "conversations.history" {
            let channel = self.channel_by_id(&arguments.fields)?;
            let state = lock(&self.state);
            return Ok((
                history::page(&state.messages, &channel.id, &arguments.fields)?,
                None,
            ));
        }
        let channel = self.channel(&arguments.fields)?;
        let mut value = match method {
            "chat.postMessage" => {
                if let Some(retry_after) = self.throttle(&channel.id) {
                    return Ok((Value::Null, Some(retry_after)));
                }
                self.post_message(&channel, &arguments.fields)?
            }
            _ => self.update(&channel, &arguments.fields)?,
        };
        if arguments.missing_charset {
            value["warning"] = json!("missing_charset");
            value["response_metadata"] = json!({"warnings": ["missing_charset"]});
        }
        Ok((value, None))
    }

    fn authenticate(&self, request: &Incoming, arguments: &Arguments) -> Result<(), SlackError> {
        let bearer = request
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        match bearer.or(arguments.form_token.as_deref()) {
            None | Some("") => Err(SlackError::new("not_authed")),
            Some(token) if token == self.token => Ok(()),
            Some(_) => Err(SlackError::new("invalid_auth")),
        }
    }

    fn channel(&self, fields: &Map<String, Value>) -> Result<Channel, SlackError> {
        let wanted = fields
            .get("channel")
            .and_then(Value::as_str)
            .filter(|channel| !channel.is_empty())
            .ok_or(SlackError::new("channel_not_found"))?;
        self.channels
            .iter()
            .find(|channel| channel.id == wanted || channel.name == wanted.trim_start_matches('#'))
            .cloned()
            .ok_or(SlackError::new("channel_not_found"))
    }

    /// The channel named by its ID: `conversations.history` takes no names.
    fn channel_by_id(&self, fields: &Map<String, Value>) -> Result<Channel, SlackError> {
        let wanted = fields.get("channel").and_then(Value::as_str);
        self.channels
            .iter()
            .find(|channel| Some(channel.id.as_str()) == wanted)
            .cloned()
            .ok_or(SlackError::new("channel_not_found"))
    }

    /// Takes a token from the channel's bucket, or says how long until one
    /// is there.
    fn throttle(&self, channel_id: &str) -> Option<Duration> {
        let limit = self.rate_limit?;
        let now = Instant::now();
        let mut state = lock(&self.state);
        let bucket = state
            .buckets
            .entry(channel_id.to_string())
            .or_insert(Bucket {
                tokens: limit.burst,
                updated: now,
            });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limit.per_second).min(limit.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return None;
        }
        let wait = Duration::try_from_secs_f64((1.0 - bucket.tokens) / limit.per_second)
            .unwrap_or(Duration::from_secs(3600));
        state.violations += 1;
        Some(wait)
    }

    fn post_message(
        &self,
        channel: &Channel,
        fields: &Map<String, Value>,
    ) -> Result<Value, SlackError> {
        let content = Content::from_fields(fields)?;
        if content.is_empty() {
            return Err(SlackError::new("no_text"));
        }
        let thread_ts = optional_string(fields, "thread_ts")?;
        let metadata = metadata(fields)?.and_then(non_empty_object);
        let mut state = lock(&self.state);
        let ts = next_ts(&mut state);
        let message = SlackMessage {
            channel: channel.id.clone(),
            ts: ts.clone(),
            thread_ts: thread_ts.clone(),
            text: content.text.clone(),
            blocks: content.blocks.clone(),
            attachments: content.attachments.clone(),
            metadata: metadata.clone(),
            posted_at: SystemTime::now(),
            updates: 0,
            history: Vec::new(),
        };
        let mut body = message_json(&message, true);
        body["team"] = json!(TEAM);
        state.writes.push(SlackWrite {
            method: "chat.postMessage",
            channel: channel.id.clone(),
            ts: ts.clone(),
            thread_ts: thread_ts.clone(),
            metadata,
            at: message.posted_at,
        });
        state.messages.push(message);
        Ok(json!({"ok": true, "channel": channel.id, "ts": ts, "message": body}))
    }

    fn update(&self, channel: &Channel, fields: &Map<String, Value>) -> Result<Value, SlackError> {
        let ts = optional_string(fields, "ts")?.ok_or(SlackError::new("message_not_found"))?;
        let content = Content::from_fields(fields)?;
        if content.is_empty() {
            return Err(SlackError::new("no_text"));
        }
        let metadata = metadata(fields)?;
        let mut state = lock(&self.state);
        let message = state
            .messages
            .iter_mut()
            .find(|message| message.channel == channel.id && message.ts == ts)
            .ok_or(SlackError::new("message_not_found"))?;
        message.history.push(SlackMessageVersion {
            text: message.text.clone(),
            blocks: message.blocks.clone(),
            attachments: message.attachments.clone(),
            replaced_at: SystemTime::now(),
        });
        message.updates += 1;
        // Slack: text is replaced when given; blocks and attachments are kept
        // unless given (an empty array removes them).
        if content.text.is_some() {
            message.text = content.text;
        }
        if let Some(blocks) = content.blocks {
            message.blocks = non_empty(blocks);
        }
        if let Some(attachments) = content.attachments {
            message.attachments = non_empty(attachments);
        }
        // Slack: metadata is kept unless given; an empty object removes it.
        if let Some(metadata) = metadata {
            message.metadata = non_empty_object(metadata);
        }
        let text = message.text.clone().unwrap_or_default();
        let body = message_json(message, true);
        let write = SlackWrite {
            method: "chat.update",
            channel: channel.id.clone(),
            ts: ts.clone(),
            thread_ts: message.thread_ts.clone(),
            metadata: message.metadata.clone(),
            at: SystemTime::now(),
        };
        state.writes.push(write);
        Ok(json!({
            "ok": true,
            "channel": channel.id,
            "ts": ts,
            "text": text,
            "message": body,
        }))
    }
}

fn non_empty(list: Value) -> Option<Value> {
    match &list {
        Value::Array(items) if items.is_empty() => None,
        _ => Some(list),
    }
}

fn non_empty_object(value: Value) -> Option<Value> {
    match &value {
        Value::Object(fields) if fields.is_empty() => None,
        _ => Some(value),
    }
}

/// `metadata`: a JSON object (or, in a form, a string holding one) with a
/// non-empty `event_type` and an object `event_payload`; `{}` (on update:
/// remove it) passes as is.
fn metadata(fields: &Map<String, Value>) -> Result<Option<Value>, SlackError> {
    let value = match fields.get("metadata") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) if text.is_empty() => return Ok(None),
        Some(Value::String(text)) => {
            serde_json::from_str(text).map_err(|_| SlackError::new("invalid_metadata_format"))?
        }
        Some(value) => value.clone(),
    };
    let Value::Object(object) = &value else {
        return Err(SlackError::new("invalid_metadata_format"));
    };
    if object.is_empty() {
        return Ok(Some(value));
    }
    let event_type = object.get("event_type").and_then(Value::as_str);
    let payload = object.get("event_payload");
    if event_type.is_none_or(str::is_empty) || !payload.is_some_and(Value::is_object) {
        return Err(SlackError::new("invalid_metadata_schema"));
    }
    Ok(Some(value))
}

/// A Slack message object as the API returns it; `with_metadata`: as
/// `conversations.history` does only when asked (`include_all_metadata`).
fn message_json(message: &SlackMessage, with_metadata: bool) -> Value {
    let mut body = json!({
        "type": "message",
        "text": message.text.clone().unwrap_or_default(),
        "user": BOT_USER,
        "bot_id": BOT_ID,
        "ts": message.ts,
    });
    if let Some(blocks) = &message.blocks {
        body["blocks"] = blocks.clone();
    }
    if let Some(attachments) = &message.attachments {
        body["attachments"] = attachments.clone();
    }
    if let Some(thread_ts) = &message.thread_ts {
        body["thread_ts"] = json!(thread_ts);
    }
    if let Some(metadata) = message.metadata.as_ref().filter(|_| with_metadata) {
        body["metadata"] = metadata.clone();
    }
    body
}

/// A unique, increasing `ts` in Slack's form: seconds, a dot, 6 digits.
fn next_ts(state: &mut SlackState) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_micros());
    let micros = now.max(state.last_ts_micros + 1);
    state.last_ts_micros = micros;
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// The content fields of a post or an update, checked.
struct Content {
    text: Option<String>,
    blocks: Option<Value>,
    attachments: Option<Value>,
}

impl Content {
    fn from_fields(fields: &Map<String, Value>) -> Result<Self, SlackError> {
        let text = optional_string(fields, "text")?.filter(|text| !text.is_empty());
        if text
            .as_ref()
            .is_some_and(|text| text.chars().count() > MAX_TEXT_CHARS)
        {
            return Err(SlackError::new("msg_too_long"));
        }
        let blocks = json_list(fields, "blocks", "invalid_blocks_format")?;
        if let Some(blocks) = &blocks {
            let details = blocks::block_errors(blocks);
            if !details.is_empty() {
                return Err(SlackError {
                    code: "invalid_blocks",
                    details,
                });
            }
        }
        let attachments = json_list(fields, "attachments", "invalid_attachments")?;
        if attachments
            .as_ref()
            .is_some_and(|list| list.as_array().is_some_and(|items| items.len() > 100))
        {
            return Err(SlackError::new("too_many_attachments"));
        }
        Ok(Content {
            text,
            blocks,
            attachments,
        })
    }

    fn is_empty(&self) -> bool {
        let empty = |list: &Option<Value>| {
            list.as_ref()
                .is_none_or(|value| value.as_array().is_some_and(Vec::is_empty))
        };
        self.text.is_none() && empty(&self.blocks) && empty(&self.attachments)
    }
}

fn optional_string(fields: &Map<String, Value>, name: &str) -> Result<Option<String>, SlackError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value.clone())),
        // Slack coerces numbers (a `ts` sent as a number is common).
        Some(Value::Number(number)) => Ok(Some(number.to_string())),
        Some(_) => Err(SlackError::new("invalid_arguments")),
    }
}

/// `blocks` / `attachments`: a JSON array, or (forms, and some JSON
/// clients) a string holding one.
fn json_list(
    fields: &Map<String, Value>,
    name: &str,
    malformed: &'static str,
) -> Result<Option<Value>, SlackError> {
    let value = match fields.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) if text.is_empty() => return Ok(None),
        Some(Value::String(text)) => {
            serde_json::from_str(text).map_err(|_| SlackError::new(malformed))?
        }
        Some(value) => value.clone(),
    };
    if !value.is_array() {
        return Err(SlackError::new(malformed));
    }
    Ok(Some(value))
}

/// The query string's arguments (a GET).
fn query_arguments(request: &Incoming) -> Arguments {
    let mut fields = Map::new();
    let mut form_token = None;
    let query = request.query.as_deref().unwrap_or_default();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if name == "token" {
            form_token = Some(value.into_owned());
        } else {
            fields.insert(name.into_owned(), Value::String(value.into_owned()));
        }
    }
    Arguments {
        fields,
        missing_charset: false,
        form_token,
    }
}

fn parse_arguments(request: &Incoming) -> Result<Arguments, SlackError> {
    match request.media_type().as_deref() {
        Some("application/json") => {
            if request
                .charset()
                .is_some_and(|charset| charset != "utf-8" && charset != "utf8")
            {
                return Err(SlackError::new("invalid_charset"));
            }
            let value: Value = serde_json::from_slice(&request.body)
                .map_err(|_| SlackError::new("invalid_json"))?;
            let Value::Object(fields) = value else {
                return Err(SlackError::new("json_not_object"));
            };
            Ok(Arguments {
                fields,
                missing_charset: request.charset().is_none(),
                // Slack ignores a token in a JSON body: JSON needs the header.
                form_token: None,
            })
        }
        Some("application/x-www-form-urlencoded") => {
            let mut fields = Map::new();
            let mut form_token = None;
            for (name, value) in form_urlencoded::parse(&request.body) {
                if name == "token" {
                    form_token = Some(value.into_owned());
                } else {
                    fields.insert(name.into_owned(), Value::String(value.into_owned()));
                }
            }
            Ok(Arguments {
                fields,
                missing_charset: false,
                form_token,
            })
        }
        _ => Err(SlackError::new("invalid_form_data")),
    }
}
