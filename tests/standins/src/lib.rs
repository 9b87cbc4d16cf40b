//! Local stand-ins for the services patrol's notifiers talk to, for tests
//! and benchmarks that run the real notifier clients against them.
//!
//! - [`SlackStandin`]: Slack Web API `chat.postMessage` / `chat.update` /
//!   `conversations.history`, with message metadata.
//! - [`PagerDutyStandin`]: PagerDuty Events API v2 `/v2/enqueue`, with an
//!   incident model.
//! - [`RekorStandin`]: Rekor v1 (`/api/v1/log`, entries, index search), a
//!   real Merkle log signed like Rekor, with withheld entries and forged
//!   inclusion proofs on demand.
//! - [`GithubStandin`]: GitHub REST releases, commits and release assets
//!   (ETag / If-None-Match, pagination, asset download redirects).
//! - [`WebhookReceiver`]: any POST, with HMAC-SHA256 signature checks.
//! - [`SmtpServer`]: a real SMTP server (aiosmtpd) in a child process.
//!
//! The HTTP stand-ins bind 127.0.0.1:0 on the caller's tokio runtime, record
//! every request ([`RecordedCall`]), check requests the way the real service
//! does, fail on demand ([`Failure`]: `fail_next`, `fail_until_cleared`,
//! `clear_failures`) and let a test wait for a condition (`wait_for`)
//! instead of sleeping. They stop when dropped. See README.md for what each
//! one checks and where the rules come from.

mod github;
mod pagerduty;
mod record;
mod rekor;
mod server;
mod slack;
mod smtp;
pub mod standard_webhooks;
mod webhook;

pub use github::GithubStandin;
pub use pagerduty::{
    IncidentStatus, PagerDutyStandin, PdEvent, PdIncident, MAX_DEDUP_KEY_CHARS, MAX_EVENT_BYTES,
    MAX_SUMMARY_CHARS, ROUTING_KEY_LEN,
};
pub use record::{
    hmac_sha256_signature, Failure, Outcome, RecordedCall, SignatureError, WaitTimedOut,
    TIMEOUT_HOLD,
};
pub use rekor::{Forgery, RekorStandin};
pub use slack::{
    SlackBuilder, SlackMessage, SlackMessageVersion, SlackStandin, SlackWrite, MAX_BLOCKS,
    MAX_TEXT_CHARS,
};
pub use smtp::{
    SmtpAttachment, SmtpConfig, SmtpError, SmtpMessage, SmtpMode, SmtpServer, TLS_DOMAIN,
};
pub use webhook::WebhookReceiver;
