//! The console notifier: one line per notification on stdout. The default
//! when no notifier is configured, and handy for trying routes locally.

use async_trait::async_trait;
use serde::Deserialize;

use super::super::notify::{Notification, Notifier, SendError, Sent};
use super::render::one_line;

/// `kind: console` takes no settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSettings {}

pub(super) struct ConsoleNotifier {
    name: String,
}

impl ConsoleNotifier {
    pub(super) fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
        }
    }
}

/// `[ops] TRIGGER critical traffic/x: Title (runbook: https://…)`.
pub(super) fn line(name: &str, notification: &Notification) -> String {
    let alert = &notification.alert;
    let mut line = format!(
        "[{name}] {} {} {}: {}",
        notification.action.as_str().to_uppercase(),
        alert.severity,
        one_line(&alert.key),
        one_line(&alert.title)
    );
    if let Some(runbook) = &alert.runbook {
        let target = runbook.url.as_deref().unwrap_or(&runbook.name);
        line.push_str(&format!(" (runbook: {})", one_line(target)));
    }
    line
}

#[async_trait]
impl Notifier for ConsoleNotifier {
    fn kind(&self) -> &'static str {
        "console"
    }

    async fn send(&self, notification: &Notification) -> Result<Sent, SendError> {
        println!("{}", line(&self.name, notification));
        Ok(Sent::default())
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::notify::Action;
    use super::super::fixtures::{notification, sample_alert};
    use super::*;

    #[test]
    fn one_line_with_action_severity_key_title_and_runbook() {
        let mut alert = sample_alert();
        alert.title = "two\nlines".into();
        let line = line("ops", &notification(Action::Resolve, alert.clone()));
        assert_eq!(
            line,
            "[ops] RESOLVE critical traffic/export-spike/eu: two lines \
             (runbook: https://runbooks.example/traffic-export.md)"
        );
        alert.runbook = None;
        let line = super::line("ops", &notification(Action::Trigger, alert));
        assert!(line.ends_with("two lines"), "{line}");
    }
}
