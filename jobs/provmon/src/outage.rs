//! How long Rekor has been unreachable, across sweeps. While it cannot be
//! asked, `missing-rekor` and `deployed-unverified` wait (absence is not
//! shown) and the chains stay watched, so they are judged once it answers
//! again. An outage longer than `rekor_outage_page_after` is itself paged
//! (`provmon/rekor-unreachable`), so a dead Rekor cannot silence those
//! rules unnoticed. Decisions here are pure functions of (state, time).

use chrono::{DateTime, Utc};
use patrol_job_api::{Finding, Severity};

use crate::verify::VerifyStats;

/// The finding's key: one per schedule (the runner scopes keys to it).
pub const FINDING_KEY: &str = "provmon/rekor-unreachable";
/// `runbooks/<name>.md`.
pub const RUNBOOK: &str = "provmon-rekor-unreachable";

/// The outage as this sweep leaves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RekorOutage {
    /// When the outage still lasting was first met; `None`: no outage.
    pub since: Option<DateTime<Utc>>,
    /// What Rekor answered (or not) this sweep.
    pub reason: Option<String>,
    /// How many Rekor checks wait for it.
    pub waiting: u64,
    /// What the state held before this sweep.
    stored: Option<DateTime<Utc>>,
}

impl RekorOutage {
    /// `stored`: the outage start the state held; `verified`: what this
    /// sweep's Rekor requests met. A sweep that met no outage ends it (the
    /// checks an outage held back are asked again every sweep, so a lasting
    /// outage is met again by the next one).
    pub fn after_sweep(
        stored: Option<DateTime<Utc>>,
        verified: &VerifyStats,
        now: DateTime<Utc>,
    ) -> Self {
        let down = verified.unavailable > 0;
        Self {
            since: down.then(|| stored.unwrap_or(now)),
            reason: verified.outage.clone().filter(|_| down),
            waiting: verified.unavailable,
            stored,
        }
    }

    /// The new outage start to store (`Some(None)`: delete it), or `None`
    /// when the state already holds it.
    pub fn state_change(&self) -> Option<Option<DateTime<Utc>>> {
        (self.since != self.stored).then_some(self.since)
    }

    /// The page, once the outage has lasted `page_after`.
    pub fn finding(&self, page_after: std::time::Duration, now: DateTime<Utc>) -> Option<Finding> {
        let since = self.since?;
        let page_after = chrono::Duration::from_std(page_after).unwrap_or(chrono::Duration::MAX);
        let lasted = now.signed_duration_since(since);
        if lasted < page_after {
            return None;
        }
        let lasted_text = humantime::format_duration(lasted.to_std().unwrap_or_default());
        let mut finding = Finding::new(
            FINDING_KEY,
            Severity::Error,
            "provmon: Rekor unreachable; missing-rekor and deployed-unverified cannot be judged",
        );
        finding.summary = format!(
            "Rekor has been unreachable since {} ({lasted_text}); {} Rekor checks wait, and \
             missing-rekor and deployed-unverified are not evaluated for them until it answers: {}",
            since.to_rfc3339(),
            self.waiting,
            self.reason.as_deref().unwrap_or("no answer")
        );
        finding.runbook = Some(RUNBOOK.into());
        finding
            .labels
            .insert("rule".into(), "rekor-unreachable".into());
        finding.details = serde_json::json!({
            "since": since.to_rfc3339(),
            "checks_waiting": self.waiting,
            "last_error": self.reason,
        });
        Some(finding)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::TimeZone;

    use super::*;

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 20, 10, minute, 0).unwrap()
    }

    fn down() -> VerifyStats {
        VerifyStats {
            unavailable: 2,
            outage: Some("503 Service Unavailable".into()),
            ..VerifyStats::default()
        }
    }

    #[test]
    fn an_outage_pages_once_it_has_lasted_page_after_and_ends_when_rekor_answers() {
        let page_after = Duration::from_secs(30 * 60);
        let first = RekorOutage::after_sweep(None, &down(), at(0));
        assert_eq!(first.since, Some(at(0)));
        assert_eq!(first.state_change(), Some(Some(at(0))));
        assert!(first.finding(page_after, at(0)).is_none());

        let still = RekorOutage::after_sweep(Some(at(0)), &down(), at(29));
        assert_eq!(still.state_change(), None, "the start is kept, not moved");
        assert!(still.finding(page_after, at(29)).is_none());

        let long = RekorOutage::after_sweep(Some(at(0)), &down(), at(30));
        let finding = long.finding(page_after, at(30)).expect("paged at 30m");
        assert_eq!(finding.key, FINDING_KEY);
        assert_eq!(finding.runbook.as_deref(), Some(RUNBOOK));
        assert!(finding.summary.contains("30m"), "{}", finding.summary);
        assert!(finding.summary.contains("503"), "{}", finding.summary);

        let back = RekorOutage::after_sweep(Some(at(0)), &VerifyStats::default(), at(31));
        assert_eq!(back.since, None);
        assert_eq!(back.state_change(), Some(None));
        assert!(back.finding(page_after, at(31)).is_none());
        let calm = RekorOutage::after_sweep(None, &VerifyStats::default(), at(32));
        assert_eq!(calm.state_change(), None, "nothing to write");
    }
}
