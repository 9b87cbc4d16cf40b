//! Silences: "do not page about alerts matching this until then", kept in
//! the ledger so every node honours them. Muted alerts are still recorded;
//! their deliveries are written `suppressed` with the silence named. Their
//! rows are `ledger/silences.rs`.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::matcher::{Matcher, Subject};
use super::notify::AlertView;

#[derive(Debug, Clone, Serialize)]
pub struct Silence {
    pub id: i64,
    pub matcher: Matcher,
    pub reason: String,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub expired_at: Option<DateTime<Utc>>,
}

impl Silence {
    pub fn matches(&self, alert: &AlertView) -> bool {
        self.matcher.matches(Subject::from(alert))
    }

    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.expired_at.is_none() && self.starts_at <= now && now < self.ends_at
    }
}
