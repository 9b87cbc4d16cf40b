//! The shipped anomaly schedule over the shipped fixtures, as on a fresh
//! clone: the injected incidents page through Slack with the seed's alert
//! fields, a repeat run pages nothing new and resolves what closed, a
//! backtest reports both methods per rule and stores what it tuned, and a
//! history too short for a baseline warms up instead of paging.

use std::path::Path;
use std::time::Duration;

use patrol_standins::SlackStandin;

use crate::support::{console_pages as pages, patrol as run, shipped_checkout, stderr, stdout};

const SLACK_TOKEN: &str = "xoxb-e2e-anomaly-SlackSecretToken-7";

fn time(text: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(text).unwrap().into()
}

/// The start a page's key ends with (`…/2026-11-18T08:40Z`).
fn key_start(key: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let stamp = key.rsplit('/').next()?;
    let stamp = if stamp.len() == "2026-11-18T08:40Z".len() {
        stamp.replace('Z', ":00Z")
    } else {
        stamp.to_string()
    };
    chrono::DateTime::parse_from_rfc3339(&stamp)
        .ok()
        .map(Into::into)
}

/// Whether `key` pages the labelled `incident`: same rule, same group (or
/// subject), starting within an hour of the incident.
fn pages_incident(key: &str, incident: &serde_json::Value) -> bool {
    let rule = incident["rule"].as_str().unwrap();
    if !key.starts_with(&format!("anomaly/{rule}/")) {
        return false;
    }
    let group_matches = match incident["subject"].as_str() {
        Some(subject) if rule == "impossible-travel" => {
            key.contains(&format!("subject={subject}/"))
        }
        _ => ["tenant", "region", "action"].iter().all(|field| {
            incident["group"][field]
                .as_str()
                .or(incident[field].as_str())
                .is_none_or(|value| key.contains(&format!("{field}={value}")))
        }),
    };
    let (start, end) = (
        time(incident["start"].as_str().unwrap()),
        time(incident["end"].as_str().unwrap()),
    );
    let near =
        key_start(key).is_some_and(|at| at >= start - chrono::Duration::hours(1) && at <= end);
    group_matches && near
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_incidents_page_with_the_seeds_alert_fields_once_and_resolve_when_closed() {
    let dir = tempfile::tempdir().unwrap();
    shipped_checkout(dir.path());
    let slack = SlackStandin::builder(SLACK_TOKEN)
        .channel("C0ONCALL", "oncall")
        .start()
        .await
        .unwrap();
    std::fs::write(dir.path().join("slack.token"), SLACK_TOKEN).unwrap();
    // Added to the checkout's patrol.yaml, which pins the residency plugin.
    let config = dir.path().join("patrol.yaml");
    let pinned = std::fs::read_to_string(&config).unwrap_or_default();
    std::fs::write(
        &config,
        format!(
            "{pinned}notifiers:\n  oncall:\n    kind: slack\n    token: file:slack.token\n    channel: \"#oncall\"\n    base_url: \"{}\"\n    timeout: 2s\n    rate_limit: 100/1s\n",
            slack.api_url()
        ),
    )
    .unwrap();

    let first = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || run(&dir, &["run", "anomaly", "--wait"])
    })
    .await
    .unwrap();
    let out = stdout(&first);
    assert_eq!(first.status.code(), Some(1), "{out}{}", stderr(&first));
    assert!(
        out.contains("6 bad row(s)"),
        "the fixture's bad lines are counted: {out}"
    );

    // Every page is a Slack message with the seed's actionable fields.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let incidents: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("fixtures/anomaly/incidents.json")).unwrap(),
    )
    .unwrap();
    let incidents = incidents["incidents"].as_array().unwrap().clone();
    let messages = loop {
        let messages = slack.messages();
        let texts: Vec<String> = messages
            .iter()
            .map(|m| m.blocks.clone().unwrap_or_default().to_string())
            .collect();
        let settled =
            std::time::Instant::now() > deadline || texts.len() == alert_keys(dir.path()).len();
        if settled {
            break texts;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let export = messages
        .iter()
        .find(|m| m.contains("Anomaly: export-spike ("))
        .unwrap_or_else(|| panic!("no export-spike page in {messages:?}"));
    for field in ["error", "x over baseline", "anomaly-export", "..", "trace"] {
        assert!(
            export.contains(field),
            "the export page lacks {field}: {export}"
        );
    }
    assert!(
        regex_like_window(export),
        "the window reads like 2025-12-05T10:00Z..10:10Z: {export}"
    );

    // The injected incidents are paged: every rule's, and most of them.
    let triggers = alert_keys(dir.path());
    assert_eq!(
        messages.len(),
        triggers.len(),
        "one Slack message per alert: {messages:#?}"
    );
    let paged: Vec<&serde_json::Value> = incidents
        .iter()
        .filter(|incident| triggers.iter().any(|key| pages_incident(key, incident)))
        .collect();
    for rule in [
        "impossible-travel",
        "admin-burst",
        "export-spike",
        "action-rate",
        "deny-ratio",
        "step-up-failures",
    ] {
        assert!(
            paged.iter().any(|i| i["rule"] == rule),
            "no {rule} incident paged; pages: {triggers:#?}"
        );
    }
    assert!(
        paged.len() * 4 >= incidents.len() * 3,
        "only {} of {} incidents paged: {triggers:#?}",
        paged.len(),
        incidents.len()
    );
    // No new data: nothing pages again; episodes that closed resolve.
    let again = run(dir.path(), &["run", "anomaly", "--wait"]);
    let out = stdout(&again);
    let runs = run(dir.path(), &["runs", "--json", "--limit", "1"]);
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap();
    let alerts = &runs[0]["details"]["alerts"];
    assert_eq!(
        alerts["triggered"], 0,
        "nothing new to page: {out} {alerts}"
    );
    assert!(
        alerts["resolved"].as_u64().unwrap() > 0,
        "closed episodes resolve: {alerts}"
    );
    assert_eq!(alert_keys(dir.path()).len(), triggers.len(), "no new alert");
}

/// The keys of every alert raised so far.
fn alert_keys(dir: &Path) -> Vec<String> {
    let alerts = run(dir, &["alerts", "--json", "--limit", "10000"]);
    let alerts: serde_json::Value = serde_json::from_slice(&alerts.stdout).unwrap();
    alerts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["key"].as_str().unwrap().to_string())
        .collect()
}

/// `YYYY-MM-DDTHH:MMZ..HH:MMZ` somewhere in `text`.
fn regex_like_window(text: &str) -> bool {
    text.match_indices("Z..").any(|(at, _)| {
        let before = &text[..at];
        let start = before.len().saturating_sub(16);
        chrono::NaiveDateTime::parse_from_str(&before[start..], "%Y-%m-%dT%H:%M").is_ok()
    })
}

#[test]
fn a_backtest_reports_static_and_adaptive_per_rule_and_stores_what_it_tuned() {
    let dir = tempfile::tempdir().unwrap();
    shipped_checkout(dir.path());
    let backtest = run(
        dir.path(),
        &[
            "run",
            "anomaly",
            "--param",
            "backtest=fixtures/anomaly/incidents.json",
            "--wait",
        ],
    );
    let out = stdout(&backtest);
    assert!(
        backtest.status.code().is_some_and(|c| c <= 1),
        "{out}{}",
        stderr(&backtest)
    );
    let runs = run(dir.path(), &["runs", "--json", "--limit", "1"]);
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap();
    let report = &runs[0];
    let text = report["output"].as_str().unwrap();
    for rule in [
        "admin-burst",
        "export-spike",
        "action-rate",
        "deny-ratio",
        "step-up-failures",
    ] {
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(rule)).collect();
        assert!(
            lines.len() >= 2,
            "{rule}: reference and adaptive side by side:\n{text}"
        );
    }
    let totals = &report["details"]["backtest"]["totals"];
    let (reference_fp, adaptive_fp) = (
        totals["reference_fp"].as_u64().unwrap(),
        totals["adaptive_fp"].as_u64().unwrap(),
    );
    assert!(
        totals["adaptive_detected"].as_u64() >= totals["reference_detected"].as_u64(),
        "detection power at least the static rules': {totals}"
    );
    assert!(
        adaptive_fp * 10 <= reference_fp * 6,
        "false alarms down at least 40%: {totals}"
    );
    // Tuning that met min_power was stored and is what the next run uses.
    let rules = report["details"]["backtest"]["rules"].as_array().unwrap();
    let tuned: Vec<&str> = rules
        .iter()
        .filter(|r| r["tuned"]["outcome"] == "tuned")
        .map(|r| r["rule"].as_str().unwrap())
        .collect();
    assert!(!tuned.is_empty(), "some rule was tuned: {text}");
    for rule in rules.iter().filter(|r| r["tuned"]["outcome"] == "tuned") {
        assert!(
            rule["tuned"]["score"]["power"].as_f64().unwrap() >= 0.8,
            "{rule}"
        );
    }
    let next = run(dir.path(), &["run", "anomaly", "--wait"]);
    assert!(next.status.code().is_some_and(|c| c <= 1));
    let runs = run(dir.path(), &["runs", "--json", "--limit", "1"]);
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap();
    for rule in tuned {
        let used = &runs[0]["details"]["rules"][rule]["tuned"]["params"];
        assert!(
            used["z"].is_number(),
            "{rule} runs with its tuned params: {}",
            runs[0]["details"]
        );
    }
}

#[test]
fn a_history_too_short_for_a_baseline_warms_up_instead_of_paging() {
    let dir = tempfile::tempdir().unwrap();
    shipped_checkout(dir.path());
    // Keep the first two days of events only.
    let events = dir.path().join("fixtures/anomaly/events/audit.ndjson");
    let text = std::fs::read_to_string(&events).unwrap();
    let short: String = text
        .lines()
        .filter(|line| line.contains("\"ts\":\"2026-11-02") || line.contains("\"ts\":\"2026-11-03"))
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(&events, short).unwrap();
    std::fs::write(
        dir.path().join("schedules/anomaly.yaml"),
        std::fs::read_to_string(dir.path().join("schedules/anomaly.yaml"))
            .unwrap()
            .split("  # Metric series")
            .next()
            .unwrap(),
    )
    .unwrap();
    let out = run(dir.path(), &["run", "anomaly", "--wait"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(text.contains("warming up"), "{text}");
    assert!(pages(&text).is_empty(), "{text}");
}
