//! The notifier kinds `patrol.yaml` can configure under `notifiers:`, one
//! file per kind. Each kind owns its settings (checked here, built into a
//! client by `build`) and its wire format; `render` holds the text several
//! kinds share. Clients never retry: they classify each failure as
//! `Retry::Later` or `Retry::Never` and the delivery worker decides.

mod console;
mod email;
mod http;
mod pagerduty;
mod render;
mod slack;
mod webhook;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use patrol_job_api::units::HumanDuration;
use serde::{Deserialize, Deserializer};

use super::notify::Notifier;
use super::secret::SecretRef;

pub use console::ConsoleSettings;
pub use email::{EmailSettings, EmailTls};
pub use pagerduty::PagerDutySettings;
pub use slack::SlackSettings;
pub use webhook::{HeaderValueSpec, WebhookSettings};

/// At most `count` sends per `per`, to stay inside a service's limits.
/// Written `1/s`, `120/min`, `10/30s` or `5/1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sends allowed per period; at least 1.
    pub count: u32,
    /// The period; more than zero.
    pub per: Duration,
}

impl RateLimit {
    /// Parses `COUNT/PER`, where PER is a unit (`s`, `min`, `h`, …) or a
    /// duration (`30s`, `1m`). Both parts must be more than zero.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("`{text}` is not a rate ({why}); write e.g. 1/s, 120/min or 10/30s")
        };
        let (count, per) = text
            .split_once('/')
            .ok_or_else(|| bad("expected COUNT/PER"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| bad("the count must be a whole number"))?;
        if count == 0 {
            return Err(bad("the count must be at least 1"));
        }
        let per = per.trim();
        let per = match per {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => {
                HumanDuration::parse(per)
                    .map_err(|_| bad("the period must be a unit or a duration"))?
                    .0
            }
        };
        if per.is_zero() {
            return Err(bad("the period must be more than zero"));
        }
        Ok(Self { count, per })
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, HumanDuration(self.per))
    }
}

impl<'de> Deserialize<'de> for RateLimit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// One entry of `notifiers:`, tagged by `kind`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NotifierSettings {
    /// `kind: console`: one line per notification on stdout.
    Console(ConsoleSettings),
    /// `kind: slack`: a Block Kit message per alert, updated in place.
    Slack(SlackSettings),
    /// `kind: pagerduty`: Events API v2, one PagerDuty alert per alert key.
    Pagerduty(PagerDutySettings),
    /// `kind: email`: SMTP, one threaded mail per trigger, reminder, resolve.
    Email(EmailSettings),
    /// `kind: webhook`: the alert as signed JSON to any URL.
    Webhook(WebhookSettings),
}

impl NotifierSettings {
    /// The `kind:` as written: `console`, `slack`, `pagerduty`, `email`, `webhook`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Console(_) => "console",
            Self::Slack(_) => "slack",
            Self::Pagerduty(_) => "pagerduty",
            Self::Email(_) => "email",
            Self::Webhook(_) => "webhook",
        }
    }

    /// Problems serde cannot see, as (field path inside the notifier,
    /// message): URLs that do not parse or are not http(s), addresses that
    /// do not parse, zero ports, timeouts and limits.
    pub fn check(&self) -> Vec<(String, String)> {
        let mut problems = Problems::default();
        match self {
            Self::Console(_) => {}
            Self::Slack(settings) => settings.check(&mut problems),
            Self::Pagerduty(settings) => settings.check(&mut problems),
            Self::Email(settings) => settings.check(&mut problems),
            Self::Webhook(settings) => settings.check(&mut problems),
        }
        problems.0
    }

    /// The secrets this notifier needs, by field name, so that a missing
    /// one is reported before anything is sent.
    pub fn secrets(&self) -> Vec<(&'static str, &SecretRef)> {
        match self {
            Self::Console(_) => Vec::new(),
            Self::Slack(settings) => vec![("token", &settings.token)],
            Self::Pagerduty(settings) => vec![("routing_key", &settings.routing_key)],
            Self::Email(settings) => settings
                .password
                .iter()
                .map(|password| ("password", password))
                .collect(),
            Self::Webhook(settings) => settings.secrets(),
        }
    }

    /// How fast the worker may send to this notifier. Slack has a default
    /// (one message per second per channel, Slack's posting guidance).
    pub fn rate_limit(&self) -> Option<RateLimit> {
        match self {
            Self::Console(_) => None,
            Self::Slack(settings) => Some(settings.rate_limit.unwrap_or(slack::DEFAULT_RATE_LIMIT)),
            Self::Pagerduty(settings) => settings.rate_limit,
            Self::Email(settings) => settings.rate_limit,
            Self::Webhook(settings) => settings.rate_limit,
        }
    }

    /// Builds the notifier, resolving its secrets (relative `file:` paths
    /// against `base`, the config's folder). Needs no async runtime. Error
    /// messages never contain a secret's value.
    pub fn build(&self, name: &str, base: &Path) -> Result<Arc<dyn Notifier>, String> {
        let built: Arc<dyn Notifier> = match self {
            Self::Console(_) => Arc::new(console::ConsoleNotifier::new(name)),
            Self::Slack(settings) => Arc::new(slack::SlackNotifier::build(settings, base)?),
            Self::Pagerduty(settings) => {
                Arc::new(pagerduty::PagerDutyNotifier::build(settings, base)?)
            }
            Self::Email(settings) => Arc::new(email::EmailNotifier::build(settings, base)?),
            Self::Webhook(settings) => Arc::new(webhook::WebhookNotifier::build(settings, base)?),
        };
        Ok(built)
    }
}

/// Problems found by `check`, as (field path, message).
#[derive(Debug, Default)]
struct Problems(Vec<(String, String)>);

impl Problems {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push((field.into(), message.into()));
    }

    /// An `http(s)` URL that `secret` is sent to with every request:
    /// plain `http` only to this machine (stand-ins, local relays).
    fn api_url(&mut self, field: &str, text: &str, secret: &str) {
        match http::parse_http_url(text) {
            Err(message) => self.push(field, message),
            Ok(url) if url.scheme() == "http" && !http::is_loopback(&url) => self.push(
                field,
                format!(
                    "`{text}` would send {secret} unencrypted; use https:// \
                     (http:// is accepted for localhost only)"
                ),
            ),
            Ok(_) => {}
        }
    }

    /// A timeout of zero would fail every send.
    fn timeout(&mut self, timeout: HumanDuration) {
        if timeout.0.is_zero() {
            self.push("timeout", "must be more than 0 (e.g. 10s)");
        }
    }
}

/// What every settings struct defaults `timeout` to.
fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

#[cfg(test)]
mod settings_tests {
    use std::collections::BTreeMap;

    use super::*;

    const EXAMPLE: &str = r##"
ops-slack:
  kind: slack
  token: env:SLACK_BOT_TOKEN
  channel: "#oncall"
  mention: "<!subteam^S0123>"
pager:
  kind: pagerduty
  routing_key: file:secrets/pd.key
  rate_limit: 120/min
  class: provenance
mail:
  kind: email
  host: smtp.example.com
  username: patrol
  password: env:SMTP_PASSWORD
  from: "patrol <patrol@example.com>"
  to: [oncall@example.com]
  timeout: 30s
hook:
  kind: webhook
  url: https://hooks.example.com/patrol
  secret: env:HOOK_SECRET
  headers:
    X-Team: payments
  rate_limit: 10/30s
stdout:
  kind: console
"##;

    fn example() -> BTreeMap<String, NotifierSettings> {
        serde_norway::from_str(EXAMPLE).unwrap()
    }

    #[test]
    fn every_kind_reads_from_yaml_and_checks_clean() {
        let notifiers = example();
        let kinds: BTreeMap<_, _> = notifiers
            .iter()
            .map(|(name, settings)| (name.as_str(), settings.kind()))
            .collect();
        assert_eq!(
            kinds,
            BTreeMap::from([
                ("hook", "webhook"),
                ("mail", "email"),
                ("ops-slack", "slack"),
                ("pager", "pagerduty"),
                ("stdout", "console"),
            ])
        );
        for (name, settings) in &notifiers {
            assert!(
                settings.check().is_empty(),
                "{name}: {:?}",
                settings.check()
            );
        }
        let NotifierSettings::Email(mail) = &notifiers["mail"] else {
            panic!("mail is an email notifier");
        };
        assert_eq!(mail.timeout.0, Duration::from_secs(30));
        assert_eq!(mail.port, None);
        assert_eq!(mail.subject_prefix, "[patrol]");
    }

    #[test]
    fn secrets_and_rate_limits_per_kind() {
        let notifiers = example();
        let secrets = |name: &str| -> Vec<String> {
            notifiers[name]
                .secrets()
                .into_iter()
                .map(|(field, secret)| format!("{field}={secret}"))
                .collect()
        };
        assert_eq!(secrets("ops-slack"), ["token=env:SLACK_BOT_TOKEN"]);
        assert_eq!(secrets("pager"), ["routing_key=file:secrets/pd.key"]);
        assert_eq!(secrets("mail"), ["password=env:SMTP_PASSWORD"]);
        assert_eq!(secrets("hook"), ["secret=env:HOOK_SECRET"]);
        assert!(secrets("stdout").is_empty());
        assert_eq!(
            notifiers["ops-slack"].rate_limit(),
            Some(RateLimit {
                count: 1,
                per: Duration::from_secs(1)
            })
        );
        assert_eq!(
            notifiers["pager"].rate_limit(),
            Some(RateLimit {
                count: 120,
                per: Duration::from_secs(60)
            })
        );
        assert_eq!(notifiers["mail"].rate_limit(), None);
        assert_eq!(notifiers["stdout"].rate_limit(), None);
    }

    #[test]
    fn unknown_fields_and_kinds_are_refused() {
        let err = serde_norway::from_str::<NotifierSettings>(
            "kind: slack\ntoken: env:T\nchannel: C1\nchanel: C2\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("chanel"), "{err}");
        let err = serde_norway::from_str::<NotifierSettings>("kind: teams\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("teams"), "{err}");
        let err = serde_norway::from_str::<NotifierSettings>(
            "kind: pagerduty\nrouting_key: R0UTINGKEYINLINE\n",
        )
        .unwrap_err()
        .to_string();
        assert!(!err.contains("R0UTINGKEYINLINE"), "{err}");
    }

    #[test]
    fn rates_read_as_written() {
        let rate = |text: &str| RateLimit::parse(text).map(|r| (r.count, r.per.as_secs()));
        assert_eq!(rate("1/s"), Ok((1, 1)));
        assert_eq!(rate("120/min"), Ok((120, 60)));
        assert_eq!(rate("10/1s"), Ok((10, 1)));
        assert_eq!(rate("5 / 30s"), Ok((5, 30)));
        assert_eq!(rate("100/h"), Ok((100, 3600)));
        assert_eq!(rate("2/1h 30m"), Ok((2, 5400)));
        for bad in ["0/s", "x/s", "1", "1/0s", "1/fortnight", "-1/s", ""] {
            let err = RateLimit::parse(bad).unwrap_err();
            assert!(err.contains("e.g. 1/s, 120/min"), "{bad}: {err}");
        }
        assert_eq!(RateLimit::parse("120/min").unwrap().to_string(), "120/1m");
        let err = serde_norway::from_str::<NotifierSettings>(
            "kind: webhook\nurl: https://h.example\nrate_limit: fast\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not a rate"), "{err}");
    }

    #[test]
    fn check_paths_point_inside_the_notifier() {
        let settings: NotifierSettings = serde_norway::from_str(
            "kind: email\nhost: mail\nfrom: p@example.com\nto: [ok@example.com, nope]\n",
        )
        .unwrap();
        assert_eq!(
            settings.check(),
            [(
                "to[1]".to_string(),
                "`nope` is not an email address; write user@example.com or Name <user@example.com>"
                    .to_string()
            )]
        );
    }

    #[test]
    fn build_reports_missing_secrets_without_values() {
        let settings: NotifierSettings = serde_norway::from_str(
            "kind: slack\ntoken: env:PATROL_TEST_UNSET_SLACK_TOKEN\nchannel: C1\n",
        )
        .unwrap();
        let err = settings
            .build("ops", Path::new("."))
            .err()
            .expect("the token is missing");
        assert_eq!(
            err,
            "token: environment variable PATROL_TEST_UNSET_SLACK_TOKEN is not set"
        );
    }
}
