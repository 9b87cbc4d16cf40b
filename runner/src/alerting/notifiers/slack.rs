//! Slack through the Web API (`chat.postMessage`, `chat.update`) with
//! slack-morphism's hyper connector. One alert is one message: later events
//! update it in place, reminders go in its thread. Slack's own rate control
//! and retries are left off: the delivery worker owns both.
//!
//! Every message patrol posts carries metadata naming its delivery. When an
//! earlier attempt at a delivery may have posted without patrol learning so
//! (killed mid-request, no answer), the channel's history is read for that
//! metadata first (`conversations.history`) and a message found is adopted
//! as the alert's, instead of posting a second one.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use patrol_job_api::units::HumanDuration;
use patrol_job_api::Severity;
use reqwest::Url;
use serde::Deserialize;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;

use super::super::notify::{Action, AlertView, Notification, Notifier, Retry, SendError, Sent};
use super::super::secret::{self, SecretRef};
use super::render::{self, one_line, truncate_ellipsis, truncate_marked, State};
use super::{default_timeout, http, Problems, RateLimit};

/// Slack's guidance: about one message per second per channel.
pub(super) const DEFAULT_RATE_LIMIT: RateLimit = RateLimit {
    count: 1,
    per: Duration::from_secs(1),
};

const DEFAULT_BASE_URL: &str = "https://slack.com/api/";

// Block Kit limits (https://api.slack.com/reference/block-kit/blocks).
const MAX_BLOCKS: usize = 50;
const MAX_HEADER: usize = 150;
const MAX_SECTION_TEXT: usize = 3000;
const MAX_FIELDS: usize = 10;
const MAX_FIELD_TEXT: usize = 2000;
const MAX_BUTTON_TEXT: usize = 75;
const MAX_BUTTON_URL: usize = 3000;
const MAX_BUTTONS: usize = 10;
const MAX_CONTEXT_TEXT: usize = 2000;
/// Slack truncates `text` beyond 40,000 characters and advises staying
/// under 4,000; the fallback only needs the headline.
const MAX_FALLBACK_TEXT: usize = 3000;

/// `ok: false` error codes that mean "try again later"; every other code
/// (bad token, unknown channel, malformed blocks) will fail again.
const TRANSIENT_CODES: [&str; 5] = [
    "ratelimited",
    "internal_error",
    "fatal_error",
    "request_timeout",
    "service_unavailable",
];

/// `chat.update` codes meaning the original message is gone: post anew.
const MESSAGE_GONE_CODES: [&str; 2] = ["message_not_found", "cant_update_message"];

/// `metadata.event_type` of the messages patrol posts.
const METADATA_EVENT_TYPE: &str = "patrol_alert_posted";
/// Messages asked for per `conversations.history` page, and pages read at
/// most when looking for an earlier post: the search starts at the first
/// attempt, so the post, if any, is among the newest few.
const HISTORY_PAGE: u16 = 200;
const HISTORY_PAGES: usize = 5;
/// The search starts this much before the first attempt was claimed: the
/// claim is on patrol's clock, a message's `ts` on Slack's.
const CLOCK_SKEW_ALLOWANCE: chrono::TimeDelta = chrono::TimeDelta::minutes(2);

/// `kind: slack`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackSettings {
    /// A bot token (`xoxb-…`) with `chat:write`, as `env:` or `file:`.
    pub token: SecretRef,
    /// A channel ID (`C0123456789`) or `#name`. Give the ID: looking for
    /// an earlier post (`conversations.history`) needs it, until a post's
    /// answer has named it.
    pub channel: String,
    /// The Web API root; tests point it at a stand-in.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// How long one Web API call may take (default 10s).
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Defaults to 1/s.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Who to ping, as Slack writes it: `<!subteam^S123>`, `<!here>`, `<@U123>`.
    #[serde(default)]
    pub mention: Option<String>,
    /// The least severe alert that gets the mention.
    #[serde(default = "default_mention_severity")]
    pub mention_severity: Severity,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_string()
}

fn default_mention_severity() -> Severity {
    Severity::Critical
}

impl SlackSettings {
    pub(super) fn check(&self, problems: &mut Problems) {
        let channel = self.channel.trim();
        if channel.is_empty() || channel.chars().any(char::is_whitespace) {
            problems.push(
                "channel",
                "must be a channel ID (C0123456789) or #name, without spaces",
            );
        }
        problems.api_url("base_url", &self.base_url, "the bot token");
        problems.timeout(self.timeout);
        if let Some(mention) = &self.mention {
            let valid = mention.starts_with("<!") || mention.starts_with("<@");
            if !valid || !mention.ends_with('>') || mention.chars().any(char::is_whitespace) {
                problems.push(
                    "mention",
                    format!(
                        "`{mention}` is not a Slack mention; write <!subteam^S0123>, <!here>, \
                         <!channel> or <@U0123>"
                    ),
                );
            }
        }
    }
}

pub(super) struct SlackNotifier {
    client: SlackHyperClient,
    /// `scheme://host:port` of the API, named in errors where no answer
    /// came (so on-call sees which address failed), never its path.
    origin: String,
    token: SlackApiToken,
    channel: SlackChannelId,
    /// The channel's ID as Slack last answered it (`channel` may be a name).
    channel_id: Mutex<Option<SlackChannelId>>,
    timeout: Duration,
    mention: Option<String>,
    mention_severity: Severity,
}

impl SlackNotifier {
    pub(super) fn build(settings: &SlackSettings, base: &Path) -> Result<Self, String> {
        let token = settings
            .token
            .resolve(base)
            .map_err(|err| format!("token: {err}"))?;
        let api_url =
            http::parse_http_url(&settings.base_url).map_err(|err| format!("base_url: {err}"))?;
        // Plain http is allowed for stand-ins on this machine (see `check`);
        // both HTTP versions, so either kind of server answers.
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        // No `with_rate_control`: that would make slack-morphism sleep and
        // retry on 429 inside `send`, hiding Retry-After from the worker.
        let connector = SlackClientHyperConnector::from(https)
            .with_slack_api_url(api_url.as_str().trim_end_matches('/'));
        Ok(Self {
            client: SlackClient::new(connector),
            origin: http::origin(&api_url),
            token: SlackApiToken::new(SlackApiTokenValue::new(token.expose().to_string())),
            channel: SlackChannelId::new(settings.channel.trim().to_string()),
            channel_id: Mutex::new(None),
            timeout: settings.timeout.0,
            mention: settings.mention.clone(),
            mention_severity: settings.mention_severity,
        })
    }

    /// The mention for this notification, if its alert deserves one.
    fn mention_for(&self, notification: &Notification) -> Option<&str> {
        let paging = matches!(State::of(notification), State::Firing | State::StillFiring);
        self.mention
            .as_deref()
            .filter(|_| paging && notification.alert.severity >= self.mention_severity)
    }

    /// Runs one Web API call within the timeout, mapping its failure.
    async fn call<T>(
        &self,
        method: &str,
        call: impl Future<Output = ClientResult<T>>,
    ) -> Result<T, SlackFailure> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(SlackFailure::from_client(method, &self.origin, err)),
            Err(_) => Err(SlackFailure::Other(SendError::transient(format!(
                "Slack {method} request to {} timed out after {}",
                self.origin,
                HumanDuration(self.timeout)
            )))),
        }
    }

    async fn post(
        &self,
        channel: SlackChannelId,
        content: SlackMessageContent,
        thread_ts: Option<SlackTs>,
    ) -> Result<MessageRef, SendError> {
        let request = SlackApiChatPostMessageRequest::new(channel, content)
            .opt_thread_ts(thread_ts)
            .with_unfurl_links(false)
            .with_unfurl_media(false);
        let session = self.client.open_session(&self.token);
        let response = self
            .call("chat.postMessage", session.chat_post_message(&request))
            .await
            .map_err(SlackFailure::into_send_error)?;
        self.learn_channel_id(&response.channel);
        Ok(MessageRef {
            channel: response.channel.value().clone(),
            ts: response.ts.value().clone(),
        })
    }

    /// Posts the alert's message with this delivery's metadata, unless an
    /// earlier attempt at this delivery may have posted it and did.
    async fn post_alert_message(
        &self,
        notification: &Notification,
        content: SlackMessageContent,
    ) -> Result<MessageRef, SendError> {
        if let Some(since) = notification.unsure_since {
            if let Some(earlier) = self.earlier_post(notification, since).await? {
                tracing::info!(
                    delivery = notification.delivery_id, ts = %earlier.ts,
                    "an earlier attempt posted this message; adopting it instead of posting again"
                );
                return Ok(earlier);
            }
        }
        let content = content.with_metadata(post_metadata(notification));
        self.post(self.channel.clone(), content, None).await
    }

    /// The message an earlier attempt at this delivery posted, looked up in
    /// the channel's history since the first attempt (by metadata).
    /// `Ok(None)` when there is none, or when the history cannot be read
    /// for good (no `channels:history` scope, a channel name Slack does not
    /// take here): then posting again is the lesser harm. A transient
    /// failure is an error: posting blind could double the message.
    async fn earlier_post(
        &self,
        notification: &Notification,
        since: DateTime<Utc>,
    ) -> Result<Option<MessageRef>, SendError> {
        let channel = self.history_channel();
        let oldest = slack_ts(since - CLOCK_SKEW_ALLOWANCE);
        let wanted = post_metadata(notification);
        let session = self.client.open_session(&self.token);
        let mut cursor = None;
        for _ in 0..HISTORY_PAGES {
            let request = SlackApiConversationsHistoryRequest::new()
                .with_channel(channel.clone())
                .with_oldest(oldest.clone())
                .with_limit(HISTORY_PAGE)
                .with_include_all_metadata(true)
                .opt_cursor(cursor);
            let page = match self
                .call(
                    "conversations.history",
                    session.conversations_history(&request),
                )
                .await
            {
                Ok(page) => page,
                Err(failure) => {
                    let error = failure.into_send_error();
                    if error.retry != Retry::Never {
                        return Err(error);
                    }
                    // Also an answer slack-morphism cannot read (another
                    // app's metadata in an unexpected shape).
                    tracing::warn!(
                        delivery = notification.delivery_id, channel = %channel.value(), error = %error,
                        "cannot read the channel's history to look for an earlier post \
                         (the token needs channels:history, the channel must be given by ID); \
                         posting, which may show the alert twice"
                    );
                    return Ok(None);
                }
            };
            if let Some(found) = page
                .messages
                .iter()
                .find(|message| message.content.metadata.as_ref() == Some(&wanted))
            {
                return Ok(Some(MessageRef {
                    channel: channel.value().clone(),
                    ts: found.origin.ts.value().clone(),
                }));
            }
            cursor = page
                .response_metadata
                .and_then(|metadata| metadata.next_cursor)
                .filter(|_| page.has_more.unwrap_or(false));
            if cursor.is_none() {
                break;
            }
        }
        Ok(None)
    }

    /// The channel's ID when a post's answer has named it, else the
    /// configured channel.
    fn history_channel(&self) -> SlackChannelId {
        self.channel_id
            .lock()
            .ok()
            .and_then(|known| known.clone())
            .unwrap_or_else(|| self.channel.clone())
    }

    fn learn_channel_id(&self, channel: &SlackChannelId) {
        if let Ok(mut known) = self.channel_id.lock() {
            *known = Some(channel.clone());
        }
    }

    async fn update(
        &self,
        message: &MessageRef,
        notification: &Notification,
        content: SlackMessageContent,
    ) -> Result<MessageRef, SendError> {
        let request = SlackApiChatUpdateRequest::new(
            SlackChannelId::new(message.channel.clone()),
            content.clone(),
            SlackTs::new(message.ts.clone()),
        );
        let session = self.client.open_session(&self.token);
        match self
            .call("chat.update", session.chat_update(&request))
            .await
        {
            Ok(response) => Ok(MessageRef {
                channel: response.channel.value().clone(),
                ts: response.ts.value().clone(),
            }),
            // Someone deleted the alert's message: a new one beats nothing.
            Err(SlackFailure::Api { code, .. }) if MESSAGE_GONE_CODES.contains(&code.as_str()) => {
                self.post_alert_message(notification, content).await
            }
            Err(failure) => Err(failure.into_send_error()),
        }
    }
}

/// Where an alert's message lives: what `Sent::remote` keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MessageRef {
    channel: String,
    ts: String,
}

impl MessageRef {
    /// Reads `{"channel": …, "ts": …}`; anything else counts as no message.
    fn from_remote(remote: Option<&serde_json::Value>) -> Option<Self> {
        let remote = remote?;
        let channel = remote.get("channel")?.as_str()?;
        let ts = remote.get("ts")?.as_str()?;
        (!channel.is_empty() && !ts.is_empty()).then(|| Self {
            channel: channel.to_string(),
            ts: ts.to_string(),
        })
    }

    fn to_remote(&self) -> serde_json::Value {
        serde_json::json!({ "channel": self.channel, "ts": self.ts })
    }
}

#[async_trait]
impl Notifier for SlackNotifier {
    fn kind(&self) -> &'static str {
        "slack"
    }

    async fn send(&self, notification: &Notification) -> Result<Sent, SendError> {
        let mention = self.mention_for(notification);
        let existing = MessageRef::from_remote(notification.remote.as_ref());
        let message = match (notification.action, existing) {
            (Action::Update | Action::Resolve, Some(existing)) => {
                self.update(
                    &existing,
                    notification,
                    alert_message(notification, mention),
                )
                .await?
            }
            (Action::Repeat, Some(existing)) => {
                let reply = still_firing_reply(notification, mention);
                let thread = SlackTs::new(existing.ts.clone());
                let channel = SlackChannelId::new(existing.channel.clone());
                self.post(channel, reply, Some(thread)).await?;
                // Later events still update the alert's message, not the reply.
                existing
            }
            // A trigger, a test, or an event whose first message never
            // reached Slack (silenced, or the notifier was added later).
            _ => {
                self.post_alert_message(notification, alert_message(notification, mention))
                    .await?
            }
        };
        Ok(Sent {
            remote: Some(message.to_remote()),
        })
    }
}

/// The metadata of the message a delivery posts: the delivery, and enough
/// of its alert that another patrol's delivery of the same number, posting
/// to the same channel, does not match.
fn post_metadata(notification: &Notification) -> SlackMessageMetadata {
    let alert = &notification.alert;
    let payload = HashMap::from([
        (
            "delivery_id".to_string(),
            notification.delivery_id.to_string(),
        ),
        ("alert_id".to_string(), alert.alert_id.to_string()),
        ("key".to_string(), alert.notify_key.clone()),
        (
            "first_seen".to_string(),
            alert.first_seen_at.timestamp_millis().to_string(),
        ),
    ]);
    SlackMessageMetadata::new(METADATA_EVENT_TYPE.to_string()).with_event_payload(payload)
}

/// A time as Slack writes a message `ts`: seconds, a dot, 6 digits.
fn slack_ts(at: DateTime<Utc>) -> SlackTs {
    SlackTs::new(format!(
        "{}.{:06}",
        at.timestamp(),
        at.timestamp_subsec_micros()
    ))
}

/// A failed call, keeping Slack's error code so `update` can react to it.
enum SlackFailure {
    Api { code: String, error: SendError },
    Other(SendError),
}

impl SlackFailure {
    fn into_send_error(self) -> SendError {
        match self {
            Self::Api { error, .. } | Self::Other(error) => error,
        }
    }

    /// `origin`: where the request went, named when no answer came.
    fn from_client(method: &str, origin: &str, err: SlackClientError) -> Self {
        let error = |retry: Retry, message: String, http_status: Option<u16>| SendError {
            retry,
            message: secret::redact(&message),
            http_status,
        };
        match err {
            SlackClientError::ApiError(api) => {
                let retry = if TRANSIENT_CODES.contains(&api.code.as_str()) {
                    Retry::Later { retry_after: None }
                } else {
                    Retry::Never
                };
                let mut message = format!("Slack {method} failed: {}", api.code);
                if let Some(errors) = api.errors.as_ref().filter(|e| !e.is_empty()) {
                    message.push_str(&format!(" ({})", errors.join("; ")));
                }
                Self::Api {
                    error: error(retry, truncate_marked(&message, 1000), Some(200)),
                    code: api.code,
                }
            }
            SlackClientError::RateLimitError(limit) => {
                let after = limit
                    .retry_after
                    .map(|after| format!(" (retry after {})", HumanDuration(after)))
                    .unwrap_or_default();
                Self::Other(error(
                    Retry::Later {
                        retry_after: limit.retry_after,
                    },
                    format!("Slack {method} was rate limited{after}"),
                    Some(429),
                ))
            }
            SlackClientError::HttpError(failure) => {
                let status = failure.status_code;
                let body = failure
                    .http_response_body
                    .as_deref()
                    .map(|body| format!(": {}", truncate_marked(body.trim(), 300)))
                    .unwrap_or_default();
                Self::Other(error(
                    http::retry_for_status(status, None),
                    format!("Slack {method} answered {status}{body}"),
                    Some(status.as_u16()),
                ))
            }
            // A 200 whose body does not read as the method's answer: the
            // message may well have been posted, and posting it again on
            // every retry would flood the channel.
            SlackClientError::ProtocolError(failure) => Self::Other(error(
                Retry::Never,
                format!(
                    "Slack {method} answered with a response patrol cannot read ({}); \
                     not retried, as the message may have been posted",
                    failure.json_error
                ),
                Some(200),
            )),
            // Connection refused or reset, TLS, DNS: no answer at all.
            SlackClientError::HttpProtocolError(failure) => {
                let cause = failure
                    .cause
                    .as_deref()
                    .map(|cause| error_chain(cause))
                    .unwrap_or_else(|| "no cause given".into());
                Self::Other(error(
                    Retry::Later { retry_after: None },
                    format!("Slack {method} request to {origin} failed: {cause}"),
                    None,
                ))
            }
            other => Self::Other(error(
                Retry::Later { retry_after: None },
                format!(
                    "Slack {method} request to {origin} failed: {}",
                    one_line(&other.to_string())
                ),
                None,
            )),
        }
    }
}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(cause) = source {
        parts.push(cause.to_string());
        source = cause.source();
    }
    parts.dedup();
    parts.join(": ")
}

/// `&`, `<` and `>` as entities: the only characters mrkdwn needs escaped.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Escaped mrkdwn cut to `max` characters without leaving half an entity
/// (`&am…`) at the cut.
fn truncate_mrkdwn(escaped: &str, max: usize) -> String {
    let cut = truncate_marked(escaped, max);
    let Some(marker) = cut.rfind("… (truncated, ") else {
        return cut;
    };
    let (kept, tail) = cut.split_at(marker);
    match kept.rfind('&') {
        Some(amp) if !kept[amp..].contains(';') => format!("{}{tail}", &kept[..amp]),
        _ => cut,
    }
}

fn mrkdwn(text: String) -> SlackBlockText {
    SlackBlockText::MarkDown(SlackBlockMarkDownText::new(text))
}

fn section(text: String) -> SlackBlock {
    SlackBlock::from(SlackSectionBlock::new().with_text(mrkdwn(text)))
}

fn severity_emoji(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => ":red_circle:",
        Severity::Error => ":large_orange_circle:",
        Severity::Warning => ":large_yellow_circle:",
        Severity::Info => ":large_blue_circle:",
    }
}

/// The alert's message: header, state line, fields, summary, runbook,
/// links and a context line; the same layout for every event, so that
/// `chat.update` turns the firing message into the resolved one.
fn alert_message(notification: &Notification, mention: Option<&str>) -> SlackMessageContent {
    let alert = &notification.alert;
    let state = State::of(notification);
    let title = one_line(&alert.title);
    let mut blocks = Vec::new();

    let prefix = match state {
        State::Firing => format!("{} ", severity_emoji(alert.severity)),
        State::StillFiring => ":repeat: ".to_string(),
        State::Resolved => ":white_check_mark: RESOLVED: ".to_string(),
        State::Test => ":test_tube: TEST: ".to_string(),
    };
    blocks.push(SlackBlock::from(SlackHeaderBlock::new(
        SlackBlockPlainText::new(truncate_ellipsis(&format!("{prefix}{title}"), MAX_HEADER))
            .with_emoji(true)
            .into(),
    )));

    let state_line = match state {
        State::Resolved => format!(
            ":white_check_mark: *Resolved* at {}",
            alert
                .resolved_at
                .map(render::time)
                .unwrap_or_else(|| "an unknown time".into())
        ),
        State::Test => ":test_tube: *Test* notification from `patrol alert test`; \
                       nothing is firing."
            .to_string(),
        State::Firing | State::StillFiring => format!(
            "{} *{}* · {}",
            severity_emoji(alert.severity),
            state.label(),
            alert.severity
        ),
    };
    let state_line = match mention {
        Some(mention) => format!("{mention} {state_line}"),
        None => state_line,
    };
    blocks.push(section(state_line));

    let fields: Vec<SlackBlockText> = render::fields(alert)
        .into_iter()
        .take(MAX_FIELDS)
        .map(|(label, value)| {
            let value = escape(&value);
            let value = if label == "Sample trace" {
                format!("`{value}`")
            } else {
                value
            };
            mrkdwn(truncate_mrkdwn(
                &format!("*{label}*\n{value}"),
                MAX_FIELD_TEXT,
            ))
        })
        .collect();
    blocks.push(SlackBlock::from(
        SlackSectionBlock::new().with_fields(fields),
    ));

    if !alert.summary.trim().is_empty() {
        blocks.push(section(truncate_mrkdwn(
            &escape(alert.summary.trim()),
            MAX_SECTION_TEXT,
        )));
    }

    if let Some(runbook) = &alert.runbook {
        let mut text = match runbook
            .url
            .as_deref()
            .filter(|url| render::is_clickable(url))
        {
            Some(url) => format!("*Runbook:* <{}|{}>", escape(url), escape(&runbook.name)),
            None => format!("*Runbook:* {}", escape(&runbook.name)),
        };
        for line in runbook.excerpt.lines() {
            // A literal `>` starts a quote; only the content is escaped.
            text.push_str(&format!("\n>{}", escape(line)));
        }
        blocks.push(section(truncate_mrkdwn(&text, MAX_SECTION_TEXT)));
    }

    let (buttons, rest) = link_buttons(alert);
    if !buttons.is_empty() {
        blocks.push(SlackBlock::from(SlackActionsBlock::new(buttons)));
    }
    if !rest.is_empty() {
        blocks.push(section(links_text(&rest)));
    }

    blocks.push(context(notification));
    blocks.truncate(MAX_BLOCKS);

    let fallback = format!("{} {}: {}", state.label(), alert.severity, escape(&title));
    let fallback = match mention {
        Some(mention) => format!("{mention} {fallback}"),
        None => fallback,
    };
    SlackMessageContent::new()
        .with_text(truncate_mrkdwn(&fallback, MAX_FALLBACK_TEXT))
        .with_blocks(blocks)
}

/// Buttons for the first web links (runbook first); what does not fit
/// or is not a web address is returned to be listed as text.
fn link_buttons(alert: &AlertView) -> (Vec<SlackActionBlockElement>, Vec<render::ShownLink>) {
    let mut buttons = Vec::new();
    let mut rest = Vec::new();
    for link in render::links(alert) {
        let url = (buttons.len() < MAX_BUTTONS && link.href.chars().count() <= MAX_BUTTON_URL)
            .then(|| Url::parse(&link.href).ok())
            .flatten()
            .filter(|url| matches!(url.scheme(), "http" | "https"));
        match url {
            Some(url) => {
                let text = truncate_ellipsis(&one_line(&link.text), MAX_BUTTON_TEXT);
                buttons.push(
                    SlackBlockButtonElement::new(SlackBlockPlainText::new(text).into())
                        .with_action_id(SlackActionId::new(format!(
                            "patrol-link-{}",
                            buttons.len()
                        )))
                        .with_url(url)
                        .into(),
                );
            }
            None => rest.push(link),
        }
    }
    (buttons, rest)
}

/// `*Links:*` and one link per line, stopping (and saying so) before the
/// section limit rather than cutting a link's markup in half.
fn links_text(links: &[render::ShownLink]) -> String {
    let mut text = "*Links:*".to_string();
    for (shown, link) in links.iter().enumerate() {
        let line = if render::is_clickable(&link.href) {
            format!(
                "\n• <{}|{}>",
                escape(&link.href),
                escape(&one_line(&link.text))
            )
        } else {
            format!(
                "\n• {}: {}",
                escape(&one_line(&link.text)),
                escape(&link.href)
            )
        };
        let more = format!("\n… and {} more", links.len() - shown);
        if text.chars().count() + line.chars().count() + more.chars().count() > MAX_SECTION_TEXT {
            text.push_str(&more);
            break;
        }
        text.push_str(&line);
    }
    text
}

/// `key … · run 7 · region=eu, team=payments · delivery 17`.
fn context(notification: &Notification) -> SlackBlock {
    let alert = &notification.alert;
    let mut parts = vec![format!("key `{}`", escape(&one_line(&alert.key)))];
    if let Some(run_id) = alert.run_id {
        parts.push(format!("run {run_id}"));
    }
    let labels = render::labels(alert);
    if !labels.is_empty() {
        parts.push(escape(&one_line(&labels)));
    }
    parts.push(format!("delivery {}", notification.delivery_id));
    let text = truncate_mrkdwn(&parts.join(" · "), MAX_CONTEXT_TEXT);
    SlackBlock::from(SlackContextBlock::new(vec![SlackBlockMarkDownText::new(
        text,
    )
    .into()]))
}

/// The thread reply for a reminder: short, since the message above it
/// holds the details.
fn still_firing_reply(notification: &Notification, mention: Option<&str>) -> SlackMessageContent {
    let alert = &notification.alert;
    let mut text = format!(
        ":repeat: Still firing: *{}* ({}), since {}; last seen {}.",
        escape(&one_line(&alert.title)),
        alert.severity,
        render::time(alert.first_seen_at),
        render::time(alert.last_seen_at)
    );
    if let Some(mention) = mention {
        text = format!("{mention} {text}");
    }
    let text = truncate_mrkdwn(&text, MAX_SECTION_TEXT);
    SlackMessageContent::new()
        .with_text(text.clone())
        .with_blocks(vec![section(text), context(notification)])
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{notification, resolved, sample_alert};
    use super::*;
    use patrol_job_api::Link;
    use serde_json::Value;

    fn json(content: &SlackMessageContent) -> Value {
        serde_json::to_value(content).unwrap()
    }

    fn texts(block: &Value) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(text) = block.pointer("/text/text").and_then(Value::as_str) {
            out.push(text.to_string());
        }
        for key in ["fields", "elements"] {
            for item in block
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(text) = item.get("text").and_then(Value::as_str) {
                    out.push(text.to_string());
                }
                if let Some(text) = item.pointer("/text/text").and_then(Value::as_str) {
                    out.push(text.to_string());
                }
            }
        }
        out
    }

    /// Every Block Kit limit patrol relies on, checked on the JSON sent.
    fn assert_within_limits(content: &SlackMessageContent) {
        let value = json(content);
        let blocks = value["blocks"].as_array().unwrap();
        assert!(blocks.len() <= MAX_BLOCKS);
        assert!(!value["text"].as_str().unwrap().is_empty());
        for block in blocks {
            match block["type"].as_str().unwrap() {
                "header" => {
                    assert!(block["text"]["text"].as_str().unwrap().chars().count() <= MAX_HEADER)
                }
                "section" => {
                    if let Some(text) = block.pointer("/text/text").and_then(Value::as_str) {
                        assert!(text.chars().count() <= MAX_SECTION_TEXT, "{text}");
                    }
                    let fields = block["fields"].as_array().map(Vec::len).unwrap_or(0);
                    assert!(fields <= MAX_FIELDS);
                    for field in block["fields"].as_array().into_iter().flatten() {
                        let text = field["text"].as_str().unwrap();
                        assert!(text.chars().count() <= MAX_FIELD_TEXT);
                    }
                }
                "actions" => {
                    for button in block["elements"].as_array().unwrap() {
                        let text = button["text"]["text"].as_str().unwrap();
                        assert!(text.chars().count() <= MAX_BUTTON_TEXT, "{text}");
                    }
                }
                "context" => {
                    for text in texts(block) {
                        assert!(text.chars().count() <= MAX_CONTEXT_TEXT);
                    }
                }
                other => panic!("unexpected block type {other}"),
            }
        }
    }

    #[test]
    fn firing_message_carries_the_alert_fields() {
        let content = alert_message(&notification(Action::Trigger, sample_alert()), None);
        assert_within_limits(&content);
        let value = json(&content);
        let blocks = value["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(
            blocks[0]["text"]["text"],
            ":red_circle: Traffic: export-spike (EU)"
        );
        let all: Vec<String> = blocks.iter().flat_map(texts).collect();
        let all = all.join("\n");
        for expected in [
            "*FIRING* · critical",
            "*Severity*\ncritical",
            "*Schedule / job*\ntraffic-eu / traffic",
            "*Window*\n2025-12-05T10:00Z..10:10Z",
            "*Delta*\n3.2x over baseline",
            "*Sample trace*\n`0f3a9c`",
            "*First seen*\n2025-12-05 10:00:03 UTC",
            "Exports ran at 3.2x",
            "*Runbook:* <https://runbooks.example/traffic-export.md|traffic-export>",
            "\n>1. Check the export queue",
            "key `traffic/export-spike/eu` · run 7 · region=eu, team=payments · delivery 17",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in\n{all}");
        }
        let actions = blocks.iter().find(|b| b["type"] == "actions").unwrap();
        let buttons = actions["elements"].as_array().unwrap();
        assert_eq!(buttons[0]["text"]["text"], "Runbook: traffic-export");
        assert_eq!(buttons[1]["url"], "https://grafana.example/d/export");
        assert_eq!(value["text"], "FIRING critical: Traffic: export-spike (EU)");
    }

    #[test]
    fn resolved_message_is_visibly_marked() {
        let alert = resolved(sample_alert());
        let content = alert_message(&notification(Action::Resolve, alert), Some("<!here>"));
        let value = json(&content);
        assert_eq!(
            value["blocks"][0]["text"]["text"],
            ":white_check_mark: RESOLVED: Traffic: export-spike (EU)"
        );
        assert_eq!(
            value["blocks"][1]["text"]["text"],
            "<!here> :white_check_mark: *Resolved* at 2025-12-05 10:10:04 UTC"
        );
        assert!(value["text"]
            .as_str()
            .unwrap()
            .starts_with("<!here> RESOLVED"));
    }

    #[test]
    fn user_text_is_escaped() {
        let mut alert = sample_alert();
        alert.title = "a <b> & c".into();
        alert.summary = "<!channel> spam & <https://evil|click>".into();
        let content = alert_message(&notification(Action::Trigger, alert), None);
        let value = json(&content).to_string();
        assert!(value.contains("&lt;!channel&gt; spam &amp; &lt;https://evil|click&gt;"));
        assert!(!value.contains("<!channel>"));
        assert_eq!(
            json(&content)["text"],
            "FIRING critical: a &lt;b&gt; &amp; c"
        );
    }

    #[test]
    fn oversized_alerts_are_truncated_visibly_within_limits() {
        let mut alert = sample_alert();
        alert.title = "T".repeat(400);
        alert.summary = "&".repeat(5000);
        alert.window = Some("w".repeat(5000));
        alert.links = (0..40)
            .map(|i| Link {
                href: format!("https://grafana.example/d/{i}/{}", "p".repeat(200)),
                text: Some(format!("Dashboard {i} {}", "x".repeat(100))),
            })
            .collect();
        alert.links.push(Link {
            href: "javascript:alert(1)".into(),
            text: None,
        });
        alert.runbook.as_mut().unwrap().excerpt = "line\n".repeat(2000);
        let content = alert_message(&notification(Action::Trigger, alert), None);
        assert_within_limits(&content);
        let value = json(&content);
        let header = value["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(header.ends_with('…'));
        let all = value.to_string();
        assert!(all.contains("more chars)"), "no visible truncation");
        // The summary's entities are never cut in half.
        let summary = value["blocks"][3]["text"]["text"].as_str().unwrap();
        let kept = summary.split("… (truncated").next().unwrap();
        assert!(kept.ends_with("&amp;"), "{}", &kept[kept.len() - 10..]);
        // Ten buttons; the other links listed as text, never as a live
        // javascript: link.
        let actions = value["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"] == "actions")
            .unwrap();
        assert_eq!(actions["elements"].as_array().unwrap().len(), MAX_BUTTONS);
        assert!(
            all.contains("more\""),
            "the links list says how many it left out"
        );
        assert!(!all.contains("<javascript:"));
    }

    #[test]
    fn mentions_only_page_for_firing_alerts_at_or_above_the_threshold() {
        let settings: SlackSettings = serde_norway::from_str(
            "token: env:SLACK_T\nchannel: '#alerts'\nmention: '<!subteam^S1>'\nmention_severity: error\n",
        )
        .unwrap();
        let mut problems = Problems::default();
        settings.check(&mut problems);
        assert!(problems.0.is_empty(), "{:?}", problems.0);
        let notifier = SlackNotifier {
            client: SlackClient::new(SlackClientHyperConnector::from(
                hyper_rustls::HttpsConnectorBuilder::new()
                    .with_webpki_roots()
                    .https_or_http()
                    .enable_http1()
                    .build(),
            )),
            origin: "https://slack.com".into(),
            token: SlackApiToken::new(SlackApiTokenValue::new("x".into())),
            channel: SlackChannelId::new("#alerts".into()),
            channel_id: Mutex::new(None),
            timeout: Duration::from_secs(1),
            mention: settings.mention.clone(),
            mention_severity: settings.mention_severity,
        };
        let mut alert = sample_alert();
        let firing = notification(Action::Trigger, alert.clone());
        assert_eq!(notifier.mention_for(&firing), Some("<!subteam^S1>"));
        assert_eq!(
            notifier.mention_for(&notification(Action::Resolve, resolved(alert.clone()))),
            None
        );
        assert_eq!(
            notifier.mention_for(&notification(Action::Test, alert.clone())),
            None
        );
        alert.severity = Severity::Warning;
        assert_eq!(
            notifier.mention_for(&notification(Action::Repeat, alert)),
            None
        );
    }

    #[test]
    fn reminder_is_a_short_thread_reply() {
        let content = still_firing_reply(
            &notification(Action::Repeat, sample_alert()),
            Some("<!here>"),
        );
        assert_within_limits(&content);
        let value = json(&content);
        assert_eq!(
            value["text"],
            "<!here> :repeat: Still firing: *Traffic: export-spike (EU)* (critical), \
             since 2025-12-05 10:00:03 UTC; last seen 2025-12-05 10:10:04 UTC."
        );
    }

    #[test]
    fn remote_round_trips_and_malformed_remote_means_none() {
        let message = MessageRef {
            channel: "C1".into(),
            ts: "1700000000.000100".into(),
        };
        assert_eq!(
            MessageRef::from_remote(Some(&message.to_remote())),
            Some(message)
        );
        assert_eq!(
            MessageRef::from_remote(Some(&serde_json::json!({"ts": 1}))),
            None
        );
        assert_eq!(MessageRef::from_remote(None), None);
    }

    #[test]
    fn check_reports_bad_fields() {
        let settings: SlackSettings = serde_norway::from_str(
            "token: env:SLACK_T\nchannel: 'my alerts'\nbase_url: http://slack.example/api\n\
             timeout: 0\nmention: team\n",
        )
        .unwrap();
        let mut problems = Problems::default();
        settings.check(&mut problems);
        let fields: Vec<_> = problems.0.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["channel", "base_url", "timeout", "mention"]);
        assert!(
            problems.0[1].1.contains("unencrypted"),
            "{:?}",
            problems.0[1]
        );
        let local: SlackSettings = serde_norway::from_str(
            "token: env:SLACK_T\nchannel: C1\nbase_url: http://127.0.0.1:9/api/\n",
        )
        .unwrap();
        let mut problems = Problems::default();
        local.check(&mut problems);
        assert!(problems.0.is_empty(), "{:?}", problems.0);
        let unknown = serde_norway::from_str::<SlackSettings>(
            "token: env:SLACK_T\nchannel: C1\nwebhook: x\n",
        );
        assert!(unknown.is_err());
    }

    #[test]
    fn api_errors_map_to_retries() {
        use slack_morphism::errors::{
            SlackClientApiError, SlackClientHttpError, SlackRateLimitError,
        };
        let retry = |err| {
            SlackFailure::from_client("chat.postMessage", "https://slack.com", err)
                .into_send_error()
        };
        let bad_token = retry(SlackClientError::ApiError(SlackClientApiError::new(
            "invalid_auth".into(),
        )));
        assert_eq!(bad_token.retry, Retry::Never);
        assert_eq!(
            bad_token.message,
            "Slack chat.postMessage failed: invalid_auth"
        );
        let busy = retry(SlackClientError::ApiError(SlackClientApiError::new(
            "service_unavailable".into(),
        )));
        assert_eq!(busy.retry, Retry::Later { retry_after: None });
        let limited = retry(SlackClientError::RateLimitError(
            SlackRateLimitError::new().with_retry_after(Duration::from_secs(30)),
        ));
        assert_eq!(
            limited.retry,
            Retry::Later {
                retry_after: Some(Duration::from_secs(30))
            }
        );
        assert_eq!(limited.http_status, Some(429));
        let down = retry(SlackClientError::HttpError(SlackClientHttpError::new(
            reqwest::StatusCode::BAD_GATEWAY,
        )));
        assert_eq!(down.retry, Retry::Later { retry_after: None });
    }
}
