//! Text shared by several notifiers: the alert's state word, its fields in
//! a fixed order, its links (runbook first), times, and truncation that
//! says what it cut. Each notifier adds its own markup on top.

use chrono::{DateTime, Utc};

use super::super::notify::{Action, AlertView, Notification};

/// What a notification says about its alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Firing,
    StillFiring,
    Resolved,
    Test,
}

impl State {
    pub(super) fn of(notification: &Notification) -> Self {
        match notification.action {
            Action::Resolve => Self::Resolved,
            Action::Test => Self::Test,
            Action::Repeat => Self::StillFiring,
            // An update can arrive for an alert that cleared in the meantime;
            // show what the snapshot says rather than what the action implies.
            Action::Trigger | Action::Update if !notification.alert.firing => Self::Resolved,
            Action::Trigger | Action::Update => Self::Firing,
        }
    }

    /// `FIRING`, `STILL FIRING`, `RESOLVED`, `TEST`.
    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Firing => "FIRING",
            Self::StillFiring => "STILL FIRING",
            Self::Resolved => "RESOLVED",
            Self::Test => "TEST",
        }
    }
}

/// `2025-12-05 10:00:03 UTC`: readable, unambiguous, sortable.
pub(super) fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The alert's facts as (label, value), in the order every notifier shows
/// them; absent facts are left out. At most ten, Slack's limit for fields.
pub(super) fn fields(alert: &AlertView) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("Severity", alert.severity.as_str().to_string()),
        (
            "Schedule / job",
            format!("{} / {}", alert.schedule_id, alert.job),
        ),
    ];
    let optional = [
        ("Window", &alert.window),
        ("Delta", &alert.delta),
        ("Sample trace", &alert.sample_trace),
    ];
    for (label, value) in optional {
        if let Some(value) = value.as_deref().filter(|value| !value.trim().is_empty()) {
            fields.push((label, value.to_string()));
        }
    }
    fields.push(("First seen", time(alert.first_seen_at)));
    if alert.last_seen_at != alert.first_seen_at {
        fields.push(("Last seen", time(alert.last_seen_at)));
    }
    if let Some(resolved_at) = alert.resolved_at {
        fields.push(("Resolved", time(resolved_at)));
    }
    if let Some(run_id) = alert.run_id {
        fields.push(("Run", run_id.to_string()));
    }
    fields.push(("Node", alert.node.clone()));
    fields
}

/// A link to show: the runbook first (when it has a URL), then the
/// alert's own links. `text` falls back to the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ShownLink {
    pub text: String,
    pub href: String,
}

pub(super) fn links(alert: &AlertView) -> Vec<ShownLink> {
    let runbook = alert.runbook.as_ref().and_then(|runbook| {
        runbook.url.as_ref().map(|url| ShownLink {
            text: format!("Runbook: {}", runbook.name),
            href: url.clone(),
        })
    });
    runbook.into_iter().chain(own_links(alert)).collect()
}

/// The alert's own links, without the runbook.
pub(super) fn own_links(alert: &AlertView) -> Vec<ShownLink> {
    alert
        .links
        .iter()
        .map(|link| ShownLink {
            text: link
                .text
                .clone()
                .filter(|text| !text.trim().is_empty())
                .unwrap_or_else(|| link.href.clone()),
            href: link.href.clone(),
        })
        .collect()
}

/// Whether `href` is safe to make clickable: only web and mail addresses,
/// so that a finding cannot smuggle a `javascript:` link into a page.
pub(super) fn is_clickable(href: &str) -> bool {
    let lower = href.trim_start().to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://") || lower.starts_with("mailto:")
}

/// `labels` as `name=value, name=value`, empty when there are none.
pub(super) fn labels(alert: &AlertView) -> String {
    alert
        .labels
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `text` on one line: control characters (newlines included) become
/// spaces, so a title cannot break a header or a log line.
pub(super) fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `text` cut to at most `max` characters, ending in a marker that says
/// how much was cut: `… (truncated, 1234 more chars)`.
pub(super) fn truncate_marked(text: &str, max: usize) -> String {
    let total = text.chars().count();
    if total <= max {
        return text.to_string();
    }
    // The marker is longest when the cut count has as many digits as the
    // whole length; reserving that much keeps the result within `max`.
    let widest = marker(total).chars().count();
    if widest >= max {
        return text.chars().take(max).collect();
    }
    let keep = max - widest;
    let kept: String = text.chars().take(keep).collect();
    format!("{kept}{}", marker(total - keep))
}

fn marker(cut: usize) -> String {
    format!("… (truncated, {cut} more chars)")
}

/// `text` cut to at most `max` characters, ending in `…` when cut; for
/// fields too short for `truncate_marked`'s marker (titles, summaries).
pub(super) fn truncate_ellipsis(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let kept: String = text.chars().take(max - 1).collect();
    format!("{kept}…")
}

/// The plain-text rendering of a notification, for mail and other
/// text-only destinations.
pub(super) fn plain_text(notification: &Notification) -> String {
    let alert = &notification.alert;
    let state = State::of(notification);
    let mut out = String::new();
    out.push_str(&format!(
        "{} {}: {}\n",
        state.label(),
        alert.severity,
        one_line(&alert.title)
    ));
    if state == State::Resolved {
        if let Some(resolved_at) = alert.resolved_at {
            out.push_str(&format!("Resolved at {}.\n", time(resolved_at)));
        }
    }
    if !alert.summary.trim().is_empty() {
        out.push('\n');
        out.push_str(alert.summary.trim_end());
        out.push('\n');
    }
    out.push('\n');
    let fields = fields(alert);
    let width = fields
        .iter()
        .map(|(label, _)| label.chars().count())
        .max()
        .unwrap_or(0)
        + 1;
    for (label, value) in &fields {
        out.push_str(&format!("{:<width$} {}\n", format!("{label}:"), value));
    }
    if let Some(runbook) = &alert.runbook {
        out.push_str(&format!("\nRunbook: {}", runbook.name));
        if let Some(url) = &runbook.url {
            out.push_str(&format!(" <{url}>"));
        }
        out.push('\n');
        for line in runbook.excerpt.lines() {
            out.push_str(&format!("  | {line}\n"));
        }
    }
    let own_links = own_links(alert);
    if !own_links.is_empty() {
        out.push_str("\nLinks:\n");
        for link in own_links {
            if link.text == link.href {
                out.push_str(&format!("- {}\n", link.href));
            } else {
                out.push_str(&format!("- {}: {}\n", link.text, link.href));
            }
        }
    }
    let labels = labels(alert);
    if !labels.is_empty() {
        out.push_str(&format!("\nLabels: {labels}\n"));
    }
    if !alert.details.is_null() {
        let details = serde_json::to_string_pretty(&alert.details).unwrap_or_default();
        out.push_str(&format!(
            "\nDetails:\n{}\n",
            truncate_marked(&details, 4000)
        ));
    }
    out.push_str(&format!(
        "\nKey: {}\nDelivery {} ({}) from patrol.\n",
        alert.key,
        notification.delivery_id,
        notification.action.as_str()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{notification, sample_alert};
    use super::*;

    #[test]
    fn truncation_says_how_much_was_cut_and_stays_within_the_limit() {
        let text = "x".repeat(5000);
        let cut = truncate_marked(&text, 3000);
        assert_eq!(cut.chars().count(), 3000);
        assert!(cut.ends_with("x… (truncated, 2030 more chars)"));
        // When the cut count has fewer digits than the length, the result
        // is a little shorter than the limit, never longer.
        let cut = truncate_marked(&"y".repeat(1050), 1000);
        assert!(cut.chars().count() <= 1000);
        assert!(cut.ends_with("… (truncated, 80 more chars)"), "{cut}");
        assert_eq!(truncate_marked("short", 3000), "short");
        // Multi-byte text is cut on characters, not bytes.
        let cut = truncate_marked(&"é".repeat(200), 100);
        assert!(cut.chars().count() <= 100);
        assert!(cut.starts_with("éé"));
        // A limit too small for the marker still holds.
        assert_eq!(truncate_marked("abcdefghij", 5), "abcde");
    }

    #[test]
    fn ellipsis_truncation_is_visible() {
        assert_eq!(truncate_ellipsis("abcdef", 4), "abc…");
        assert_eq!(truncate_ellipsis("abc", 4), "abc");
        assert_eq!(truncate_ellipsis("abc", 0), "");
    }

    #[test]
    fn fields_follow_a_fixed_order_and_skip_absent_facts() {
        let mut alert = sample_alert();
        let labels: Vec<_> = fields(&alert).into_iter().map(|(label, _)| label).collect();
        assert_eq!(
            labels,
            [
                "Severity",
                "Schedule / job",
                "Window",
                "Delta",
                "Sample trace",
                "First seen",
                "Last seen",
                "Run",
                "Node"
            ]
        );
        alert.window = None;
        alert.delta = Some("  ".into());
        alert.resolved_at = Some(alert.last_seen_at);
        let labels: Vec<_> = fields(&alert).into_iter().map(|(label, _)| label).collect();
        assert!(!labels.contains(&"Window") && !labels.contains(&"Delta"));
        assert!(labels.contains(&"Resolved"));
        assert!(labels.len() <= 10);
    }

    #[test]
    fn runbook_link_comes_first_and_unsafe_links_are_not_clickable() {
        let alert = sample_alert();
        let links = links(&alert);
        assert_eq!(links[0].text, "Runbook: traffic-export");
        assert_eq!(links[1].text, "Dashboard");
        assert!(is_clickable("https://grafana.example/d/1"));
        assert!(!is_clickable("javascript:alert(1)"));
        assert!(!is_clickable("/relative/path"));
    }

    #[test]
    fn plain_text_carries_every_fact() {
        let text = plain_text(&notification(Action::Trigger, sample_alert()));
        for expected in [
            "FIRING critical: Traffic: export-spike (EU)",
            "Window:",
            "2025-12-05T10:00Z..10:10Z",
            "3.2x over baseline",
            "0f3a9c",
            "Runbook: traffic-export <https://runbooks.example/traffic-export.md>",
            "  | 1. Check the export queue",
            "- Dashboard: https://grafana.example/d/export",
            "Labels: region=eu, team=payments",
            "Key: traffic/export-spike/eu",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        assert_eq!(one_line("a\nb\tc"), "a b c");
    }
}
