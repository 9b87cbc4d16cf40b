//! `conversations.history`: a channel's messages, newest first, as Slack
//! pages them (<https://docs.slack.dev/reference/methods/conversations.history>).
//!
//! - `channel`: an ID (names are refused: `channel_not_found`).
//! - `oldest` / `latest`: message `ts` bounds, exclusive unless
//!   `inclusive=true`; default everything up to now.
//! - `limit`: default 100, at most 999; `cursor`: what the previous page's
//!   `response_metadata.next_cursor` said (`invalid_cursor` otherwise).
//! - `include_all_metadata=true`: messages carry their `metadata`.
//! - Only the channel's own messages: thread replies are not listed (they
//!   are `conversations.replies`' to list).

use base64::Engine;
use serde_json::{json, Map, Value};

use super::{message_json, SlackError, SlackMessage};

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 999;
/// Slack's cursors are base64 of `next_ts:<ts>`; clients treat them as opaque.
const CURSOR_PREFIX: &str = "next_ts:";

/// The answer to one `conversations.history` call on `channel_id`.
pub(super) fn page(
    messages: &[SlackMessage],
    channel_id: &str,
    fields: &Map<String, Value>,
) -> Result<Value, SlackError> {
    let text = |name: &str| fields.get(name).and_then(Value::as_str);
    let flag = |name: &str| matches!(text(name), Some("true" | "1"));
    let bound = |name: &str, invalid: &'static str| match text(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(value) => ts_micros(value).map(Some).ok_or(SlackError::new(invalid)),
    };
    let inclusive = flag("inclusive");
    let oldest = bound("oldest", "invalid_ts_oldest")?;
    let mut latest = bound("latest", "invalid_ts_latest")?;
    let mut latest_inclusive = inclusive;
    if let Some(cursor) = text("cursor").filter(|cursor| !cursor.is_empty()) {
        // A cursor continues below the last message of the page before.
        latest = Some(cursor_ts(cursor).ok_or(SlackError::new("invalid_cursor"))?);
        latest_inclusive = false;
    }
    let limit = match text("limit") {
        None | Some("") => DEFAULT_LIMIT,
        Some(value) => value
            .parse::<usize>()
            .map_err(|_| SlackError::new("invalid_limit"))?
            .clamp(1, MAX_LIMIT),
    };
    let with_metadata = flag("include_all_metadata");

    let mut listed: Vec<(u128, &SlackMessage)> = messages
        .iter()
        .filter(|message| message.channel == channel_id)
        .filter(|message| {
            message
                .thread_ts
                .as_ref()
                .is_none_or(|ts| *ts == message.ts)
        })
        .filter_map(|message| Some((ts_micros(&message.ts)?, message)))
        .filter(|(ts, _)| match oldest {
            Some(oldest) if inclusive => *ts >= oldest,
            Some(oldest) => *ts > oldest,
            None => true,
        })
        .filter(|(ts, _)| match latest {
            Some(latest) if latest_inclusive => *ts <= latest,
            Some(latest) => *ts < latest,
            None => true,
        })
        .collect();
    listed.sort_by_key(|(ts, _)| std::cmp::Reverse(*ts));
    let has_more = listed.len() > limit;
    listed.truncate(limit);
    let next_cursor = match listed.last() {
        Some((_, last)) if has_more => {
            base64::engine::general_purpose::STANDARD.encode(format!("{CURSOR_PREFIX}{}", last.ts))
        }
        _ => String::new(),
    };
    let messages: Vec<Value> = listed
        .iter()
        .map(|(_, message)| message_json(message, with_metadata))
        .collect();
    let mut answer = json!({
        "ok": true,
        "messages": messages,
        "has_more": has_more,
        "pin_count": 0,
        "channel_actions_ts": null,
        "channel_actions_count": 0,
    });
    if has_more {
        answer["response_metadata"] = json!({ "next_cursor": next_cursor });
    }
    Ok(answer)
}

/// A `ts` (`1700000000.000100`, or whole seconds) in microseconds.
fn ts_micros(ts: &str) -> Option<u128> {
    let (seconds, fraction) = ts.split_once('.').unwrap_or((ts, ""));
    if fraction.len() > 6 || !fraction.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let seconds: u128 = seconds.parse().ok()?;
    let micros: u128 = format!("{fraction:0<6}").parse().ok()?;
    Some(seconds * 1_000_000 + micros)
}

fn cursor_ts(cursor: &str) -> Option<u128> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(cursor)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    ts_micros(text.strip_prefix(CURSOR_PREFIX)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_reads_slacks_form_and_whole_seconds() {
        assert_eq!(ts_micros("1700000000.000100"), Some(1_700_000_000_000_100));
        assert_eq!(ts_micros("1700000000"), Some(1_700_000_000_000_000));
        assert_eq!(ts_micros("1700000000.5"), Some(1_700_000_000_500_000));
        assert_eq!(ts_micros("soon"), None);
        assert_eq!(ts_micros("1.1234567"), None);
    }
}
