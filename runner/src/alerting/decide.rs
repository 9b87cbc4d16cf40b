//! The paging rules, as a function of what is known: a run's findings, the
//! schedule's firing alerts with where each was paged, the active
//! silences, the policy and the time. No database: `record.rs` reads the
//! inputs and writes the decision in the run's transaction
//! (`ledger/alerts.rs`), and the rules are tested here on their own.
//!
//! New key → trigger; seen key → update if it changed, or a reminder after
//! `repeat_interval`; a notifier that never got the page (muted until now,
//! or a new route) gets it once unmuted; key gone from a complete
//! successful run → resolve, wherever it was paged, silenced or not.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use patrol_job_api::Finding;

use super::notify::{Action, AlertView};
use super::policy::AlertPolicy;
use super::record::{FindingsInput, Recorded};
use super::routing::Target;
use super::silences::Silence;

/// A firing alert of the schedule, as the rules need it.
#[derive(Debug, Clone)]
pub struct FiringAlert {
    pub id: i64,
    pub key: String,
    /// The key its notifiers know it by, as it was opened with.
    pub notify_key: String,
    pub fingerprint: String,
    pub finding: Finding,
    pub first_seen_at: DateTime<Utc>,
    /// Per notifier: where and when it was paged (trigger or reminder
    /// rows not suppressed or skipped).
    pub paged: BTreeMap<String, Paged>,
}

/// An alert's pages at one notifier.
#[derive(Debug, Clone)]
pub struct Paged {
    /// Last trigger or reminder not suppressed.
    pub last_page: Option<DateTime<Utc>>,
    pub route: String,
    pub group_key: String,
}

/// Which alert a delivery is for: one already firing, or the n-th of
/// [`Decision::opened`] (its id is known once it is written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertRef {
    Firing(i64),
    Opened(usize),
}

/// A finding seen again: the alert's row takes its latest content.
#[derive(Debug, Clone)]
pub struct Refreshed {
    pub id: i64,
    pub finding: Finding,
    pub fingerprint: String,
}

/// One outbox row to write. `view.alert_id` is 0 for an opened alert
/// until its row exists.
#[derive(Debug, Clone)]
pub struct PlannedDelivery {
    pub alert: AlertRef,
    pub view: AlertView,
    pub target: Target,
    pub action: Action,
    /// Why it is held back (a silence, a maintenance window): written
    /// `suppressed` with this reason instead of `pending`.
    pub muted_by: Option<String>,
}

/// Everything recording a run's findings changes.
#[derive(Debug, Clone, Default)]
pub struct Decision {
    /// New alerts, with their fingerprints.
    pub opened: Vec<(Finding, String)>,
    pub refreshed: Vec<Refreshed>,
    /// Alerts to close (ids).
    pub resolved: Vec<i64>,
    /// In the order they are to be written.
    pub deliveries: Vec<PlannedDelivery>,
    pub recorded: Recorded,
}

impl Decision {
    fn deliver(&mut self, delivery: PlannedDelivery) {
        if delivery.muted_by.is_some() {
            self.recorded.suppressed += 1;
        } else {
            self.recorded.deliveries += 1;
        }
        self.deliveries.push(delivery);
    }
}

/// What recording `input` changes, given the schedule's `firing` alerts
/// and the active `silences`. Findings repeating a key are ignored after
/// the first (callers filter them first, see `usable_findings`).
pub fn decide(
    policy: &AlertPolicy,
    input: &FindingsInput<'_>,
    firing: &[FiringAlert],
    silences: &[Silence],
    now: DateTime<Utc>,
) -> Decision {
    let mut decision = Decision::default();
    let mut firing_by_key: HashMap<&str, &FiringAlert> = firing
        .iter()
        .map(|alert| (alert.key.as_str(), alert))
        .collect();
    let mut reported = HashSet::new();
    for finding in input.findings {
        if !reported.insert(finding.key.as_str()) {
            continue;
        }
        let fingerprint = fingerprint(finding);
        match firing_by_key.remove(finding.key.as_str()) {
            None => open(
                policy,
                input,
                finding,
                fingerprint,
                silences,
                now,
                &mut decision,
            ),
            Some(alert) => refresh(
                policy,
                input,
                alert,
                finding,
                fingerprint,
                silences,
                now,
                &mut decision,
            ),
        }
    }
    let mut to_resolve: Vec<&FiringAlert> = if input.resolve_absent {
        firing_by_key.into_values().collect()
    } else {
        input
            .also_resolve
            .and_then(|key| firing_by_key.remove(key))
            .into_iter()
            .collect()
    };
    // Ids in order: the outbox rows come out the same on every node.
    to_resolve.sort_by_key(|alert| alert.id);
    for alert in to_resolve {
        resolve(policy, input, alert, now, &mut decision);
    }
    decision
}

/// A key not firing: a new alert, paged wherever it routes.
fn open(
    policy: &AlertPolicy,
    input: &FindingsInput<'_>,
    finding: &Finding,
    fingerprint: String,
    silences: &[Silence],
    now: DateTime<Utc>,
    decision: &mut Decision,
) {
    let index = decision.opened.len();
    decision.opened.push((finding.clone(), fingerprint));
    decision.recorded.triggered += 1;
    let view = policy.view(0, input, finding, true, now, now, None);
    let mute = mute_reason(policy, silences, &view, now);
    for target in targets_for(policy, input, &view) {
        decision.deliver(PlannedDelivery {
            alert: AlertRef::Opened(index),
            view: view.clone(),
            target,
            action: Action::Trigger,
            muted_by: mute.clone(),
        });
    }
}

/// A key firing already: an update where its content changed, a page
/// where it never went out, a reminder where one is due.
#[allow(clippy::too_many_arguments)]
fn refresh(
    policy: &AlertPolicy,
    input: &FindingsInput<'_>,
    alert: &FiringAlert,
    finding: &Finding,
    fingerprint: String,
    silences: &[Silence],
    now: DateTime<Utc>,
    decision: &mut Decision,
) {
    let changed = alert.fingerprint != fingerprint;
    decision.refreshed.push(Refreshed {
        id: alert.id,
        finding: finding.clone(),
        fingerprint,
    });
    let mut view = policy.view(
        alert.id,
        input,
        finding,
        true,
        alert.first_seen_at,
        now,
        None,
    );
    view.notify_key.clone_from(&alert.notify_key);
    let mute = mute_reason(policy, silences, &view, now);
    for target in targets_for(policy, input, &view) {
        let action = match alert.paged.get(&target.notifier) {
            // Never paged here (muted until now, or a new route): page now
            // unless still muted.
            None if mute.is_none() => Action::Trigger,
            None => continue,
            Some(_) if changed => Action::Update,
            Some(seen) if mute.is_none() && is_due(seen.last_page, &target, now) => Action::Repeat,
            Some(_) => continue,
        };
        decision.deliver(PlannedDelivery {
            alert: AlertRef::Firing(alert.id),
            view: view.clone(),
            target,
            action,
            muted_by: None,
        });
    }
    if changed {
        decision.recorded.updated += 1;
    } else {
        decision.recorded.unchanged += 1;
    }
}

/// Resolves wherever the alert was paged (even if that route has changed
/// since); a silence does not hold back a resolve, or the page would stay
/// open.
fn resolve(
    policy: &AlertPolicy,
    input: &FindingsInput<'_>,
    alert: &FiringAlert,
    now: DateTime<Utc>,
    decision: &mut Decision,
) {
    decision.resolved.push(alert.id);
    decision.recorded.resolved += 1;
    let mut view = policy.view(
        alert.id,
        input,
        &alert.finding,
        false,
        alert.first_seen_at,
        now,
        Some(now),
    );
    view.notify_key.clone_from(&alert.notify_key);
    let targets = targets_for(policy, input, &view);
    for (notifier, seen) in &alert.paged {
        let target = targets
            .iter()
            .find(|target| &target.notifier == notifier)
            .cloned()
            .unwrap_or_else(|| Target {
                notifier: notifier.clone(),
                route: seen.route.clone(),
                group_key: seen.group_key.clone(),
                group_wait: std::time::Duration::ZERO,
                repeat_interval: std::time::Duration::MAX,
            });
        decision.deliver(PlannedDelivery {
            alert: AlertRef::Firing(alert.id),
            view: view.clone(),
            target,
            action: Action::Resolve,
            muted_by: None,
        });
    }
}

pub(super) fn targets_for(
    policy: &AlertPolicy,
    input: &FindingsInput<'_>,
    view: &AlertView,
) -> Vec<Target> {
    match input.notifiers {
        Some(notifiers) => notifiers
            .iter()
            .map(|notifier| Target {
                notifier: notifier.clone(),
                route: "patrol".into(),
                group_key: "patrol".into(),
                group_wait: std::time::Duration::ZERO,
                repeat_interval: std::time::Duration::from_secs(4 * 3600),
            })
            .collect(),
        None => policy.router.targets(view, input.named_route),
    }
}

fn mute_reason(
    policy: &AlertPolicy,
    silences: &[Silence],
    view: &AlertView,
    now: DateTime<Utc>,
) -> Option<String> {
    if let Some(silence) = silences.iter().find(|silence| silence.matches(view)) {
        return Some(format!("silence #{}: {}", silence.id, silence.reason));
    }
    policy
        .router
        .in_maintenance(view, now)
        .map(|window| format!("maintenance window {window}"))
}

fn is_due(last_page: Option<DateTime<Utc>>, target: &Target, now: DateTime<Utc>) -> bool {
    let (Some(last), Ok(interval)) = (
        last_page,
        chrono::Duration::from_std(target.repeat_interval),
    ) else {
        return false;
    };
    now - last >= interval
}

/// The part of a finding that, when it changes, is worth an update.
/// Details are left out: counts that move every run are not news.
pub fn fingerprint(finding: &Finding) -> String {
    serde_json::json!([
        finding.severity,
        finding.title,
        finding.summary,
        finding.window,
        finding.delta,
        finding.sample_trace,
        finding.runbook,
        finding.links,
        finding.labels,
    ])
    .to_string()
}

#[cfg(test)]
mod tests {
    //! The paging rules without a database (the same rules against both
    //! ledgers: `alerting/tests.rs`).

    use std::path::Path;

    use chrono::TimeZone;
    use patrol_job_api::Severity;

    use super::*;
    use crate::alerting::config::{AlertingConfig, AlertingSpec};
    use crate::alerting::matcher::Matcher;
    use crate::alerting::notifiers::NotifierSettings;

    fn policy() -> AlertPolicy {
        let mut spec = AlertingSpec::default();
        for name in ["chat", "pager"] {
            spec.notifiers
                .insert(name.into(), NotifierSettings::Console(Default::default()));
        }
        AlertPolicy::new(&AlertingConfig::check(spec, Path::new(""), None).unwrap())
    }

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, 9, minute, 0).unwrap()
    }

    fn input(findings: &[Finding], resolve_absent: bool) -> FindingsInput<'_> {
        FindingsInput {
            schedule_id: "disk-check",
            job: "command",
            run_id: Some(7),
            findings,
            resolve_absent,
            also_resolve: None,
            named_route: None,
            notifiers: None,
            node: "node-a",
        }
    }

    fn firing(id: i64, finding: &Finding, paged_at: &[(&str, u32)]) -> FiringAlert {
        FiringAlert {
            id,
            key: finding.key.clone(),
            notify_key: finding.key.clone(),
            fingerprint: fingerprint(finding),
            finding: finding.clone(),
            first_seen_at: at(0),
            paged: paged_at
                .iter()
                .map(|(notifier, minute)| {
                    (
                        (*notifier).to_string(),
                        Paged {
                            last_page: Some(at(*minute)),
                            route: "default".into(),
                            group_key: "g".into(),
                        },
                    )
                })
                .collect(),
        }
    }

    fn silence(term: &str) -> Silence {
        Silence {
            id: 3,
            matcher: Matcher::from_terms(&[term.to_string()]).unwrap(),
            reason: "patching".into(),
            created_by: None,
            created_at: at(0),
            starts_at: at(0),
            ends_at: at(59),
            expired_at: None,
        }
    }

    /// (alert, notifier, action, muted) of each planned outbox row.
    fn rows(decision: &Decision) -> Vec<(AlertRef, String, Action, bool)> {
        decision
            .deliveries
            .iter()
            .map(|d| {
                (
                    d.alert,
                    d.target.notifier.clone(),
                    d.action,
                    d.muted_by.is_some(),
                )
            })
            .collect()
    }

    #[test]
    fn a_new_key_triggers_at_every_routed_notifier_and_a_silence_writes_it_suppressed() {
        let policy = policy();
        let disk = Finding::new("disk/db1", Severity::Error, "Disk full on db1");
        let decision = decide(
            &policy,
            &input(std::slice::from_ref(&disk), true),
            &[],
            &[],
            at(1),
        );
        assert_eq!(decision.opened.len(), 1);
        assert_eq!(
            rows(&decision),
            [
                (AlertRef::Opened(0), "chat".into(), Action::Trigger, false),
                (AlertRef::Opened(0), "pager".into(), Action::Trigger, false),
            ]
        );
        assert_eq!(
            (decision.recorded.triggered, decision.recorded.deliveries),
            (1, 2)
        );

        let muted = decide(
            &policy,
            &input(&[disk], true),
            &[],
            &[silence("key=disk/*")],
            at(1),
        );
        assert!(muted
            .deliveries
            .iter()
            .all(|d| d.muted_by.as_deref() == Some("silence #3: patching")));
        assert_eq!(
            (muted.recorded.deliveries, muted.recorded.suppressed),
            (0, 2)
        );
    }

    #[test]
    fn a_key_still_firing_is_quiet_until_it_changes_or_a_reminder_is_due() {
        let policy = policy();
        let disk = Finding::new("disk/db1", Severity::Error, "Disk full on db1");
        let open = [firing(5, &disk, &[("chat", 1), ("pager", 1)])];
        let same = decide(
            &policy,
            &input(std::slice::from_ref(&disk), true),
            &open,
            &[],
            at(2),
        );
        assert!(same.deliveries.is_empty(), "{:?}", rows(&same));
        assert_eq!(same.recorded.unchanged, 1);
        assert_eq!(same.refreshed.len(), 1, "last seen moves on anyway");

        let mut worse = disk.clone();
        worse.severity = Severity::Critical;
        let changed = decide(&policy, &input(&[worse], true), &open, &[], at(2));
        assert_eq!(
            rows(&changed),
            [
                (AlertRef::Firing(5), "chat".into(), Action::Update, false),
                (AlertRef::Firing(5), "pager".into(), Action::Update, false),
            ]
        );

        // Four hours later (the default repeat interval) a reminder is due.
        let later = at(1) + chrono::Duration::hours(4);
        let reminder = decide(&policy, &input(&[disk], true), &open, &[], later);
        assert!(
            rows(&reminder)
                .iter()
                .all(|(_, _, action, _)| *action == Action::Repeat),
            "{:?}",
            rows(&reminder)
        );
    }

    #[test]
    fn a_page_held_back_by_a_silence_goes_out_once_the_silence_is_over() {
        let policy = policy();
        let disk = Finding::new("disk/db1", Severity::Error, "Disk full on db1");
        // Paged at chat only: pager's trigger was suppressed.
        let open = [firing(5, &disk, &[("chat", 1)])];
        let still_muted = decide(
            &policy,
            &input(std::slice::from_ref(&disk), true),
            &open,
            &[silence("key=disk/*")],
            at(2),
        );
        assert!(
            still_muted.deliveries.is_empty(),
            "{:?}",
            rows(&still_muted)
        );
        let unmuted = decide(&policy, &input(&[disk], true), &open, &[], at(3));
        assert_eq!(
            rows(&unmuted),
            [(AlertRef::Firing(5), "pager".into(), Action::Trigger, false)]
        );
    }

    #[test]
    fn only_a_complete_run_resolves_what_it_no_longer_reports_and_where_it_was_paged() {
        let policy = policy();
        let disk = Finding::new("disk/db1", Severity::Error, "Disk full on db1");
        let cpu = Finding::new("cpu/db1", Severity::Warning, "CPU hot on db1");
        let open = [
            firing(5, &disk, &[("chat", 1)]),
            firing(6, &cpu, &[("chat", 1), ("old-pager", 1)]),
        ];
        let partial = decide(&policy, &input(&[], false), &open, &[], at(2));
        assert!(partial.resolved.is_empty());
        assert!(partial.deliveries.is_empty());

        let complete = decide(
            &policy,
            &input(std::slice::from_ref(&disk), true),
            &open,
            &[silence("key=*")],
            at(2),
        );
        assert_eq!(complete.resolved, [6]);
        // A notifier no route names any more still gets its resolve, and a
        // silence does not hold one back.
        assert_eq!(
            rows(&complete),
            [
                (AlertRef::Firing(6), "chat".into(), Action::Resolve, false),
                (
                    AlertRef::Firing(6),
                    "old-pager".into(),
                    Action::Resolve,
                    false
                ),
            ]
        );
        let resolve = &complete.deliveries[1];
        assert_eq!(resolve.target.route, "default");
        assert_eq!(resolve.view.resolved_at, Some(at(2)));
    }
}
