//! The notifier kinds `patrol.yaml` can configure under `notifiers:`.
//! (Stub: console only; slack, pagerduty, email and webhook follow.)

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::notify::{Notification, Notifier, SendError, Sent};
use super::secret::SecretRef;

/// At most `count` sends per `per`, to stay inside a service's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub count: u32,
    pub per: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NotifierSettings {
    Console(ConsoleSettings),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSettings {}

impl NotifierSettings {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Console(_) => "console",
        }
    }

    /// Problems serde cannot see, as (field path inside the notifier, message).
    pub fn check(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// The secrets this notifier needs, by field name.
    pub fn secrets(&self) -> Vec<(&'static str, &SecretRef)> {
        Vec::new()
    }

    pub fn rate_limit(&self) -> Option<RateLimit> {
        None
    }

    /// Builds the notifier, resolving its secrets (paths relative to `base`).
    pub fn build(&self, name: &str, base: &Path) -> Result<Arc<dyn Notifier>, String> {
        let _ = base;
        match self {
            Self::Console(_) => Ok(Arc::new(ConsoleNotifier {
                name: name.to_string(),
            })),
        }
    }
}

/// Prints alerts on stdout: the default when no notifier is configured.
struct ConsoleNotifier {
    name: String,
}

#[async_trait]
impl Notifier for ConsoleNotifier {
    fn kind(&self) -> &'static str {
        "console"
    }

    async fn send(&self, notification: &Notification) -> Result<Sent, SendError> {
        let alert = &notification.alert;
        println!(
            "[{}] {} {} {}: {}",
            self.name,
            notification.action.as_str().to_uppercase(),
            alert.severity,
            alert.key,
            alert.title
        );
        Ok(Sent::default())
    }
}
