//! Where an alert goes: the schedule's named route, else the routes whose
//! matchers match, in order (stopping at the first unless `continue`).
//! Also whether a maintenance window mutes it right now.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::config::{AlertingConfig, Maintenance, Route};
use super::matcher::Subject;
use super::notify::AlertView;

/// One notifier an alert goes to, and the route that sent it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub notifier: String,
    pub route: String,
    /// Alerts with the same group key wait for each other (`group_wait`).
    pub group_key: String,
    pub group_wait: Duration,
    pub repeat_interval: Duration,
}

/// Routes, checked, ready to answer "where does this alert go".
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<Route>,
    maintenance: Vec<Maintenance>,
}

impl Router {
    pub fn new(config: &AlertingConfig) -> Self {
        Self {
            routes: config.routes.clone(),
            maintenance: config.maintenance.clone(),
        }
    }

    /// The notifiers for `alert`; `named_route` is the schedule's `route:`.
    /// A notifier reached by two routes gets the alert once (first route wins).
    pub fn targets(&self, alert: &AlertView, named_route: Option<&str>) -> Vec<Target> {
        let chosen: Vec<&Route> = match named_route.and_then(|name| self.route(name)) {
            Some(route) => vec![route],
            None => {
                let mut chosen = Vec::new();
                for route in &self.routes {
                    if route.matcher.matches(Subject::from(alert)) {
                        chosen.push(route);
                        if !route.continue_matching {
                            break;
                        }
                    }
                }
                chosen
            }
        };
        let mut seen = BTreeSet::new();
        let mut targets = Vec::new();
        for route in chosen {
            let group_key = group_key(route, alert);
            for notifier in &route.notifiers {
                if seen.insert(notifier.clone()) {
                    targets.push(Target {
                        notifier: notifier.clone(),
                        route: route.name.clone(),
                        group_key: group_key.clone(),
                        group_wait: route.group_wait,
                        repeat_interval: route.repeat_interval,
                    });
                }
            }
        }
        targets
    }

    pub fn route(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|route| route.name == name)
    }

    /// The maintenance window muting `alert` at `now`, if any.
    pub fn in_maintenance(&self, alert: &AlertView, now: DateTime<Utc>) -> Option<&str> {
        self.maintenance
            .iter()
            .find(|window| {
                window.matcher.matches(Subject::from(alert)) && window_is_open(window, now)
            })
            .map(|window| window.name.as_str())
    }
}

/// A window is open when it started at most `duration` ago: its first
/// start after `now - duration` is not after `now`.
pub fn window_is_open(window: &Maintenance, now: DateTime<Utc>) -> bool {
    let Ok(duration) = chrono::Duration::from_std(window.duration) else {
        return false;
    };
    // `next_after` is strict: a start exactly `duration` ago has closed.
    let after = now - duration;
    window
        .cron
        .next_after(after, &window.timezone)
        .is_some_and(|start| start <= now)
}

fn group_key(route: &Route, alert: &AlertView) -> String {
    let mut parts = vec![route.name.clone()];
    for field in &route.group_by {
        let value = match field.as_str() {
            "schedule" => alert.schedule_id.clone(),
            "job" => alert.job.clone(),
            "severity" => alert.severity.as_str().to_string(),
            "key" => alert.key.clone(),
            label => alert.labels.get(label).cloned().unwrap_or_default(),
        };
        parts.push(format!("{field}={value}"));
    }
    parts.join("|")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::alerting::config::{AlertingSpec, MaintenanceSpec, RouteSpec};
    use crate::alerting::matcher::{Matcher, OneOrMany};
    use crate::alerting::notifiers::NotifierSettings;

    fn alert(job: &str, severity: patrol_job_api::Severity) -> AlertView {
        let now = Utc::now();
        AlertView {
            alert_id: 1,
            key: format!("{job}/k"),
            notify_key: format!("s/{job}/k"),
            schedule_id: format!("{job}-sched"),
            job: job.into(),
            severity,
            title: "t".into(),
            summary: String::new(),
            window: None,
            delta: None,
            sample_trace: None,
            runbook: None,
            links: Vec::new(),
            labels: Default::default(),
            details: serde_json::Value::Null,
            firing: true,
            first_seen_at: now,
            last_seen_at: now,
            resolved_at: None,
            run_id: None,
            node: "n".into(),
        }
    }

    fn route(name: &str, matcher: Matcher, notifiers: &[&str], cont: bool) -> RouteSpec {
        RouteSpec {
            name: name.into(),
            matcher,
            notifiers: notifiers.iter().map(|n| n.to_string()).collect(),
            group_by: vec!["schedule".into()],
            group_wait: None,
            repeat_interval: None,
            continue_matching: cont,
        }
    }

    fn config(routes: Vec<RouteSpec>, maintenance: Vec<MaintenanceSpec>) -> AlertingConfig {
        let mut spec = AlertingSpec {
            routes,
            maintenance,
            ..Default::default()
        };
        for name in ["pager", "chat", "mail"] {
            spec.notifiers
                .insert(name.into(), NotifierSettings::Console(Default::default()));
        }
        AlertingConfig::check(spec, Path::new(""), None).unwrap()
    }

    #[test]
    fn first_matching_route_wins_unless_it_continues() {
        let critical = Matcher {
            severity: OneOrMany::One("critical".into()),
            ..Default::default()
        };
        let router = Router::new(&config(
            vec![
                route("page", critical, &["pager", "chat"], true),
                route("rest", Matcher::default(), &["chat", "mail"], false),
            ],
            vec![],
        ));
        let names = |targets: Vec<Target>| {
            targets
                .into_iter()
                .map(|t| format!("{}:{}", t.route, t.notifier))
                .collect::<Vec<_>>()
        };
        use patrol_job_api::Severity;
        assert_eq!(
            names(router.targets(&alert("backups", Severity::Critical), None)),
            ["page:pager", "page:chat", "rest:mail"]
        );
        assert_eq!(
            names(router.targets(&alert("backups", Severity::Warning), None)),
            ["rest:chat", "rest:mail"]
        );
        assert_eq!(
            names(router.targets(&alert("backups", Severity::Warning), Some("page"))),
            ["page:pager", "page:chat"]
        );
        let target = &router.targets(&alert("backups", Severity::Warning), None)[0];
        assert_eq!(target.group_key, "rest|schedule=backups-sched");
    }

    #[test]
    fn maintenance_windows_open_for_their_duration_after_each_start() {
        let window = MaintenanceSpec {
            name: "sunday".into(),
            cron: "0 2 * * SUN".into(),
            timezone: "Europe/Berlin".into(),
            duration: patrol_job_api::units::HumanDuration(Duration::from_secs(7200)),
            matcher: Matcher::default(),
        };
        let router = Router::new(&config(vec![], vec![window]));
        let a = alert("backups", patrol_job_api::Severity::Error);
        let at = |text: &str| DateTime::parse_from_rfc3339(text).unwrap().to_utc();
        // Sunday 2026-11-22 02:00 Berlin = 01:00 UTC.
        assert_eq!(router.in_maintenance(&a, at("2026-11-22T00:59:59Z")), None);
        assert_eq!(
            router.in_maintenance(&a, at("2026-11-22T01:00:00Z")),
            Some("sunday")
        );
        assert_eq!(
            router.in_maintenance(&a, at("2026-11-22T02:59:59Z")),
            Some("sunday")
        );
        assert_eq!(router.in_maintenance(&a, at("2026-11-22T03:00:00Z")), None);
    }
}
