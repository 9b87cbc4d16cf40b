//! Email over SMTP with lettre: one multipart (text + HTML) mail per
//! trigger, reminder and resolve, threaded under the trigger's
//! Message-ID. Updates send nothing: a changed summary is not worth a mail.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use patrol_job_api::units::HumanDuration;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::super::notify::{Action, AlertView, Notification, Notifier, Retry, SendError, Sent};
use super::super::secret::{self, SecretRef};
use super::render::{self, one_line, truncate_ellipsis, truncate_marked, State};
use super::{default_timeout, Problems, RateLimit};

/// Long enough for any title a person reads in a mail list.
const MAX_SUBJECT: usize = 200;

/// How the connection to the relay is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailTls {
    /// Plain connection upgraded with STARTTLS, which must succeed (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a relay on the same host or network (port 25).
    Plain,
}

impl EmailTls {
    fn default_port(self) -> u16 {
        match self {
            Self::Starttls => 587,
            Self::Tls => 465,
            Self::Plain => 25,
        }
    }
}

/// `kind: email`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSettings {
    /// The SMTP relay's host name.
    pub host: String,
    /// Defaults by `tls`: 587 for starttls, 465 for tls, 25 for plain.
    #[serde(default)]
    pub port: Option<u16>,
    /// `starttls` (default), `tls` or `plain`.
    #[serde(default)]
    pub tls: EmailTls,
    /// The SMTP login, if the relay wants one; needs `password`.
    #[serde(default)]
    pub username: Option<String>,
    /// As `env:` or `file:`; needs `username`.
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// `patrol <patrol@example.com>` or a bare address.
    pub from: String,
    /// At least one address.
    pub to: Vec<String>,
    /// An extra PEM root certificate to trust (private relays, tests);
    /// relative to the config's folder.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// How long one mail may take to hand over (default 10s).
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// At most this many mails, e.g. `10/min`; none by default.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Starts every subject (default `[patrol]`).
    #[serde(default = "default_subject_prefix")]
    pub subject_prefix: String,
}

fn default_subject_prefix() -> String {
    "[patrol]".to_string()
}

impl EmailSettings {
    pub(super) fn check(&self, problems: &mut Problems) {
        let host = self.host.trim();
        if host.is_empty() || host.contains("://") || host.chars().any(char::is_whitespace) {
            problems.push("host", "must be a host name such as smtp.example.com");
        } else if host.contains(':') && !host.starts_with('[') {
            problems.push("host", "write the port in `port`, not in `host`");
        }
        if self.port == Some(0) {
            problems.push("port", "must be between 1 and 65535");
        }
        match (&self.username, &self.password) {
            (Some(_), None) => problems.push("password", "`username` needs a `password`"),
            (None, Some(_)) => problems.push("username", "`password` needs a `username`"),
            _ => {}
        }
        if self.password.is_some() && self.tls == EmailTls::Plain {
            problems.push(
                "tls",
                "a password is only sent over TLS; use tls: starttls or tls: tls",
            );
        }
        if let Err(err) = self.from.parse::<Mailbox>() {
            problems.push(
                "from",
                format!("`{}` is not an email address ({err})", self.from),
            );
        }
        if self.to.is_empty() {
            problems.push("to", "needs at least one address");
        }
        for (index, to) in self.to.iter().enumerate() {
            if to.parse::<Mailbox>().is_err() {
                problems.push(format!("to[{index}]"), not_an_address(to));
            }
        }
        if self.subject_prefix.chars().any(char::is_control) {
            problems.push("subject_prefix", "must be one line");
        }
        problems.timeout(self.timeout);
    }
}

/// lettre's parse errors ("Invalid input") do not say what to write.
fn not_an_address(text: &str) -> String {
    format!("`{text}` is not an email address; write user@example.com or Name <user@example.com>")
}

pub(super) struct EmailNotifier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// `host:port`, for messages.
    relay: String,
    envelope: Addressing,
    timeout: Duration,
}

/// Who mail is from and to, and how its subject starts.
#[derive(Debug, Clone)]
struct Addressing {
    from: Mailbox,
    to: Vec<Mailbox>,
    subject_prefix: String,
}

impl EmailNotifier {
    pub(super) fn build(settings: &EmailSettings, base: &Path) -> Result<Self, String> {
        let host = settings.host.trim().to_string();
        let port = settings.port.unwrap_or(settings.tls.default_port());
        let from = settings
            .from
            .parse::<Mailbox>()
            .map_err(|_| format!("from: {}", not_an_address(&settings.from)))?;
        let to = settings
            .to
            .iter()
            .map(|to| {
                to.parse::<Mailbox>()
                    .map_err(|_| format!("to: {}", not_an_address(to)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if to.is_empty() {
            return Err("to: needs at least one address".into());
        }
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host)
            .port(port)
            .timeout(Some(settings.timeout.0));
        builder = match settings.tls {
            EmailTls::Plain => builder.tls(Tls::None),
            EmailTls::Starttls => builder.tls(Tls::Required(tls_parameters(settings, base)?)),
            EmailTls::Tls => builder.tls(Tls::Wrapper(tls_parameters(settings, base)?)),
        };
        if let (Some(username), Some(password)) = (&settings.username, &settings.password) {
            let password = password
                .resolve(base)
                .map_err(|err| format!("password: {err}"))?;
            builder = builder.credentials(Credentials::new(
                username.clone(),
                password.expose().to_string(),
            ));
        }
        Ok(Self {
            transport: builder.build(),
            relay: format!("{host}:{port}"),
            envelope: Addressing {
                from,
                to,
                subject_prefix: settings.subject_prefix.clone(),
            },
            timeout: settings.timeout.0,
        })
    }
}

/// TLS for `host`, trusting the public roots and `ca_file` if given.
fn tls_parameters(settings: &EmailSettings, base: &Path) -> Result<TlsParameters, String> {
    let mut tls = TlsParameters::builder(settings.host.trim().to_string());
    if let Some(ca_file) = &settings.ca_file {
        let path = base.join(ca_file);
        let pem = std::fs::read(&path)
            .map_err(|err| format!("ca_file: cannot read {}: {err}", path.display()))?;
        let certificate = Certificate::from_pem(&pem).map_err(|err| {
            format!(
                "ca_file: {} is not a PEM certificate ({err})",
                path.display()
            )
        })?;
        tls = tls.add_root_certificate(certificate);
    }
    tls.build_rustls()
        .map_err(|err| format!("cannot set up TLS for {}: {err}", settings.host))
}

/// A short, stable tag for an alert incident: the same for every event of
/// it, different for another patrol's alert with the same numeric id.
fn alert_tag(alert: &AlertView) -> String {
    let identity = format!(
        "{}\0{}\0{}",
        alert.schedule_id,
        alert.key,
        alert.first_seen_at.timestamp_millis()
    );
    hex::encode(Sha256::digest(identity.as_bytes()))[..16].to_string()
}

/// The Message-ID of an alert's trigger mail, which later mails refer to.
fn thread_id(alert: &AlertView, domain: &str) -> String {
    format!(
        "<patrol.alert.{}.{}@{domain}>",
        alert.alert_id,
        alert_tag(alert)
    )
}

/// The Message-ID of one delivery's mail: the same on every retry, so a
/// relay or client that sees it twice can drop the copy.
fn delivery_id(notification: &Notification, domain: &str) -> String {
    format!(
        "<patrol.delivery.{}.{}@{domain}>",
        notification.delivery_id,
        alert_tag(&notification.alert)
    )
}

fn subject(prefix: &str, notification: &Notification) -> String {
    let alert = &notification.alert;
    let state = State::of(notification);
    let title = one_line(&alert.title);
    let text = match state {
        State::Resolved => format!("{prefix} RESOLVED: {title}"),
        _ => format!("{prefix} {} {}: {title}", state.label(), alert.severity),
    };
    truncate_ellipsis(text.trim_start(), MAX_SUBJECT)
}

/// The mail for `notification`.
fn message(addressing: &Addressing, notification: &Notification) -> Result<Message, String> {
    let domain = addressing.from.email.domain().to_string();
    let thread = thread_id(&notification.alert, &domain);
    let mut builder = Message::builder()
        .from(addressing.from.clone())
        .subject(subject(&addressing.subject_prefix, notification))
        // RFC 3834: keeps vacation responders from answering alerts.
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-generated".into(),
        ));
    for to in &addressing.to {
        builder = builder.to(to.clone());
    }
    builder = match notification.action {
        Action::Trigger => builder.message_id(Some(thread)),
        Action::Test => builder.message_id(Some(delivery_id(notification, &domain))),
        Action::Update | Action::Repeat | Action::Resolve => builder
            .message_id(Some(delivery_id(notification, &domain)))
            .in_reply_to(thread.clone())
            .references(thread),
    };
    builder
        .multipart(MultiPart::alternative_plain_html(
            render::plain_text(notification),
            html(notification),
        ))
        .map_err(|err| format!("cannot build the mail: {err}"))
}

/// `text` safe inside HTML text and attribute values.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// `<a href>` for web and mail links; anything else is shown, not linked.
fn html_link(href: &str, text: &str) -> String {
    if render::is_clickable(href) {
        format!(
            "<a href=\"{}\">{}</a>",
            escape_html(href.trim()),
            escape_html(text)
        )
    } else if href == text {
        escape_html(href)
    } else {
        format!("{}: {}", escape_html(text), escape_html(href))
    }
}

/// The HTML part: the same facts as the text part, every value escaped.
fn html(notification: &Notification) -> String {
    let alert = &notification.alert;
    let state = State::of(notification);
    let colour = match state {
        State::Resolved => "#2e7d32",
        State::Test => "#555555",
        State::Firing | State::StillFiring => "#c62828",
    };
    let mut out = String::from(
        "<!DOCTYPE html>\n<html><body style=\"font-family: sans-serif; font-size: 14px\">\n",
    );
    out.push_str(&format!(
        "<h2 style=\"color: {colour}\">{} {}: {}</h2>\n",
        state.label(),
        escape_html(alert.severity.as_str()),
        escape_html(&one_line(&alert.title))
    ));
    if let (State::Resolved, Some(resolved_at)) = (state, alert.resolved_at) {
        out.push_str(&format!(
            "<p><strong>Resolved at {}.</strong></p>\n",
            render::time(resolved_at)
        ));
    }
    if !alert.summary.trim().is_empty() {
        out.push_str(&format!(
            "<p>{}</p>\n",
            escape_html(alert.summary.trim()).replace('\n', "<br>\n")
        ));
    }
    out.push_str("<table cellpadding=\"4\" style=\"border-collapse: collapse\">\n");
    for (label, value) in render::fields(alert) {
        out.push_str(&format!(
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>\n",
            escape_html(label),
            escape_html(&value)
        ));
    }
    out.push_str("</table>\n");
    if let Some(runbook) = &alert.runbook {
        let name = match &runbook.url {
            Some(url) => html_link(url, &runbook.name),
            None => escape_html(&runbook.name),
        };
        out.push_str(&format!("<h3>Runbook: {name}</h3>\n"));
        if !runbook.excerpt.trim().is_empty() {
            out.push_str(&format!(
                "<pre style=\"background: #f4f4f4; padding: 8px\">{}</pre>\n",
                escape_html(&runbook.excerpt)
            ));
        }
    }
    let links = render::own_links(alert);
    if !links.is_empty() {
        out.push_str("<h3>Links</h3>\n<ul>\n");
        for link in links {
            out.push_str(&format!("<li>{}</li>\n", html_link(&link.href, &link.text)));
        }
        out.push_str("</ul>\n");
    }
    let labels = render::labels(alert);
    if !labels.is_empty() {
        out.push_str(&format!("<p>Labels: {}</p>\n", escape_html(&labels)));
    }
    if !alert.details.is_null() {
        let details = serde_json::to_string_pretty(&alert.details).unwrap_or_default();
        out.push_str(&format!(
            "<h3>Details</h3>\n<pre>{}</pre>\n",
            escape_html(&truncate_marked(&details, 4000))
        ));
    }
    out.push_str(&format!(
        "<p style=\"color: #777777; font-size: 12px\">Key {} · delivery {} ({}) from patrol</p>\n",
        escape_html(&alert.key),
        notification.delivery_id,
        notification.action.as_str()
    ));
    out.push_str("</body></html>\n");
    out
}

/// 4xx replies, lost connections and timeouts may pass on a retry; 5xx
/// replies (unknown mailbox, relaying denied, bad credentials) and errors
/// in what patrol itself asked for will not.
fn smtp_error(relay: &str, err: &lettre::transport::smtp::Error) -> SendError {
    let retry = if err.is_permanent() || err.is_client() {
        Retry::Never
    } else {
        Retry::Later { retry_after: None }
    };
    let what = if err.is_timeout() {
        "timed out"
    } else {
        "failed"
    };
    SendError {
        retry,
        message: secret::redact(&format!(
            "SMTP send through {relay} {what}: {}",
            one_line(&err.to_string())
        )),
        http_status: None,
    }
}

#[async_trait]
impl Notifier for EmailNotifier {
    fn kind(&self) -> &'static str {
        "email"
    }

    fn wants(&self, action: Action) -> bool {
        action != Action::Update
    }

    async fn send(&self, notification: &Notification) -> Result<Sent, SendError> {
        let message = message(&self.envelope, notification).map_err(SendError::permanent)?;
        match tokio::time::timeout(self.timeout, self.transport.send(message)).await {
            Ok(Ok(_response)) => Ok(Sent::default()),
            Ok(Err(err)) => Err(smtp_error(&self.relay, &err)),
            Err(_) => Err(SendError::transient(format!(
                "SMTP send through {} timed out after {}",
                self.relay,
                HumanDuration(self.timeout)
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{notification, resolved, sample_alert};
    use super::*;

    fn addressing() -> Addressing {
        Addressing {
            from: "patrol <patrol@alerts.example>".parse().unwrap(),
            to: vec![
                "oncall@example.com".parse().unwrap(),
                "Data Owner <owner@example.com>".parse().unwrap(),
            ],
            subject_prefix: "[patrol]".into(),
        }
    }

    fn formatted(action: Action, alert: AlertView) -> String {
        let message = message(&addressing(), &notification(action, alert)).unwrap();
        String::from_utf8(message.formatted()).unwrap()
    }

    fn header<'a>(mail: &'a str, name: &str) -> Option<&'a str> {
        let head = mail.split("\r\n\r\n").next()?;
        head.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}: ")))
    }

    #[test]
    fn subjects_say_state_severity_and_title() {
        let alert = sample_alert();
        let n = notification(Action::Trigger, alert.clone());
        assert_eq!(
            subject("[patrol]", &n),
            "[patrol] FIRING critical: Traffic: export-spike (EU)"
        );
        let n = notification(Action::Resolve, resolved(alert.clone()));
        assert_eq!(
            subject("[patrol]", &n),
            "[patrol] RESOLVED: Traffic: export-spike (EU)"
        );
        let n = notification(Action::Repeat, alert.clone());
        assert_eq!(
            subject("", &n),
            "STILL FIRING critical: Traffic: export-spike (EU)"
        );
        let mut long = alert;
        long.title = format!("line\n{}", "x".repeat(500));
        let text = subject("[patrol]", &notification(Action::Trigger, long));
        assert!(text.chars().count() <= MAX_SUBJECT && text.ends_with('…'));
        assert!(!text.contains('\n'));
    }

    #[test]
    fn mail_is_multipart_alternative_with_text_and_html() {
        let mail = formatted(Action::Trigger, sample_alert());
        assert!(
            mail.contains("Content-Type: multipart/alternative"),
            "{mail}"
        );
        let plain = mail.find("Content-Type: text/plain").unwrap();
        let html = mail.find("Content-Type: text/html").unwrap();
        assert!(plain < html, "the preferred (HTML) part comes last");
        assert_eq!(header(&mail, "Auto-Submitted"), Some("auto-generated"));
        assert_eq!(
            header(&mail, "To"),
            Some("oncall@example.com, \"Data Owner\" <owner@example.com>")
        );
    }

    #[test]
    fn replies_thread_under_the_trigger() {
        let alert = sample_alert();
        let trigger = formatted(Action::Trigger, alert.clone());
        let thread = header(&trigger, "Message-ID").unwrap().to_string();
        assert!(thread.starts_with("<patrol.alert.42."), "{thread}");
        assert!(thread.ends_with("@alerts.example>"));
        assert_eq!(header(&trigger, "In-Reply-To"), None);
        for action in [Action::Repeat, Action::Resolve] {
            let mail = formatted(action, resolved(alert.clone()));
            assert_eq!(header(&mail, "In-Reply-To"), Some(thread.as_str()));
            assert_eq!(header(&mail, "References"), Some(thread.as_str()));
            let id = header(&mail, "Message-ID").unwrap();
            assert!(id.starts_with("<patrol.delivery.17."), "{id}");
        }
        // Deterministic: a retry of the same delivery has the same id.
        let again = formatted(Action::Trigger, alert);
        assert_eq!(header(&again, "Message-ID"), Some(thread.as_str()));
    }

    #[test]
    fn html_escapes_every_value_and_links_only_web_addresses() {
        let mut alert = sample_alert();
        alert.title = "<script>alert('x')</script>".into();
        alert.summary = "a & b\n\"c\"".into();
        alert.links.push(patrol_job_api::Link {
            href: "javascript:alert(1)".into(),
            text: Some("click".into()),
        });
        alert.runbook.as_mut().unwrap().excerpt = "<b>bold</b>".into();
        let page = html(&notification(Action::Trigger, alert));
        assert!(!page.contains("<script>"));
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(page.contains("a &amp; b<br>\n&quot;c&quot;"));
        assert!(page.contains(
            "<pre style=\"background: #f4f4f4; padding: 8px\">&lt;b&gt;bold&lt;/b&gt;</pre>"
        ));
        assert!(page
            .contains("<a href=\"https://runbooks.example/traffic-export.md\">traffic-export</a>"));
        assert!(page.contains("<a href=\"https://grafana.example/d/export\">Dashboard</a>"));
        assert!(page.contains("<li>click: javascript:alert(1)</li>"));
        assert!(!page.contains("href=\"javascript:"));
        for field in ["Window", "Delta", "Sample trace", "First seen", "Run"] {
            assert!(
                page.contains(&format!("<th align=\"left\">{field}</th>")),
                "{field}"
            );
        }
    }

    #[test]
    fn updates_are_not_mailed() {
        let settings: EmailSettings = serde_norway::from_str(
            "host: 127.0.0.1\ntls: plain\nfrom: patrol@example.com\nto: [a@example.com]\n",
        )
        .unwrap();
        let notifier = EmailNotifier::build(&settings, Path::new(".")).unwrap();
        assert!(!notifier.wants(Action::Update));
        assert!(notifier.wants(Action::Trigger));
        assert!(notifier.wants(Action::Resolve));
        assert_eq!(notifier.relay, "127.0.0.1:25");
    }

    #[test]
    fn check_reports_bad_fields() {
        let settings: EmailSettings = serde_norway::from_str(
            "host: 'smtp://mail'\nport: 0\ntls: plain\npassword: env:SMTP_PASS\n\
             from: not-an-address\nto: [ok@example.com, 'bad@']\nsubject_prefix: \"a\\nb\"\n",
        )
        .unwrap();
        let mut problems = Problems::default();
        settings.check(&mut problems);
        let fields: Vec<_> = problems.0.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "host",
                "port",
                "username",
                "tls",
                "from",
                "to[1]",
                "subject_prefix"
            ]
        );
        let empty: EmailSettings =
            serde_norway::from_str("host: mail\nfrom: p@example.com\nto: []\n").unwrap();
        let mut problems = Problems::default();
        empty.check(&mut problems);
        assert_eq!(problems.0[0].0, "to");
    }

    #[test]
    fn ports_default_by_tls_mode() {
        assert_eq!(EmailTls::Starttls.default_port(), 587);
        assert_eq!(EmailTls::Tls.default_port(), 465);
        assert_eq!(EmailTls::Plain.default_port(), 25);
    }
}
