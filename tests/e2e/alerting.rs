//! Findings → alerts → Slack, PagerDuty and email, through the real
//! notifier clients against local stand-ins of the services and a real
//! SMTP server: one page per problem, silence on repeats, resolve on clear,
//! nothing lost or doubled when the services fail or patrol is killed, and
//! no secret anywhere.

use std::path::Path;
use std::time::Duration;

use patrol_standins::{Failure, PagerDutyStandin, SlackStandin, SmtpConfig, SmtpMode, SmtpServer};

use crate::support::{kill_hard, stdout, terminate, Db, Project};

const SLACK_TOKEN: &str = "xoxb-e2e-4711-SlackSecretToken-q9z";
const PD_ROUTING_KEY: &str = "R0ut1ngKeyE2eSecret0000000000042";
const SMTP_PASSWORD: &str = "smtp-Secret-Passw0rd-e2e";

struct Services {
    slack: SlackStandin,
    pagerduty: PagerDutyStandin,
    smtp: SmtpServer,
}

impl Services {
    async fn start() -> Self {
        let slack = SlackStandin::builder(SLACK_TOKEN)
            .channel("C0ONCALL", "oncall")
            .start()
            .await
            .unwrap();
        let pagerduty = PagerDutyStandin::start(&[PD_ROUTING_KEY]).await.unwrap();
        let smtp = SmtpServer::start_with(
            SmtpConfig::new(SmtpMode::StartTls).with_auth("patrol", SMTP_PASSWORD),
        )
        .await
        .unwrap();
        Self {
            slack,
            pagerduty,
            smtp,
        }
    }

    /// The `notifiers:` and `delivery:` sections; secrets in files.
    fn config(&self, dir: &Path) -> String {
        let secrets = dir.join("secrets");
        std::fs::create_dir_all(&secrets).unwrap();
        std::fs::write(secrets.join("slack"), format!("{SLACK_TOKEN}\n")).unwrap();
        std::fs::write(secrets.join("pd"), PD_ROUTING_KEY).unwrap();
        std::fs::write(secrets.join("smtp"), SMTP_PASSWORD).unwrap();
        format!(
            r##"notifiers:
  oncall-slack:
    kind: slack
    token: file:secrets/slack
    channel: "#oncall"
    base_url: "{slack}"
    timeout: 2s
  oncall-pd:
    kind: pagerduty
    routing_key: file:secrets/pd
    base_url: "{pd}"
    timeout: 2s
  oncall-email:
    kind: email
    host: {smtp_host}
    port: {smtp_port}
    tls: starttls
    username: patrol
    password: file:secrets/smtp
    from: patrol@example.test
    to: [oncall@example.test]
    ca_file: "{ca}"
    timeout: 3s
delivery:
  retry_min: 200ms
  retry_max: 1s
  degraded_after: 3
  degraded_after_for: 1s
"##,
            slack = self.slack.api_url(),
            pd = self.pagerduty.base_url(),
            smtp_host = self.smtp.tls_domain(),
            smtp_port = self.smtp.port(),
            ca = self.smtp.ca_pem_path().display(),
        )
    }
}

/// A schedule whose command prints the finding lines in `findings.jsonl`
/// (the test edits that file to make problems appear and clear).
fn findings_schedule(project: &Project, id: &str) {
    std::fs::write(project.path().join("findings.jsonl"), "").unwrap();
    project.schedule(
        &format!("{id}.yaml"),
        &format!(
            "id: {id}\njob: command\ncron: \"*/2 * * * * *\"\nretries: {{max: 0}}\n\
             params: {{shell: 'cat {}'}}\n",
            project.path().join("findings.jsonl").display()
        ),
    );
}

fn set_findings(project: &Project, findings: &[(&str, &str)]) {
    let lines: String = findings
        .iter()
        .map(|(key, title)| {
            format!(
                "{{\"finding\": {{\"key\": \"{key}\", \"severity\": \"critical\", \"title\": \"{title}\", \
                 \"summary\": \"sda1 at 97%\", \"window\": \"10:00Z..10:05Z\", \"delta\": \"3.2x over baseline\", \
                 \"sample_trace\": \"0f3a9c\", \"runbook\": \"run-failed\"}}}}\n"
            )
        })
        .collect();
    std::fs::write(project.path().join("findings.jsonl"), lines).unwrap();
}

async fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Successful runs of `schedule` so far.
async fn succeeded(project: &Project, schedule: &str) -> usize {
    project
        .runs(schedule)
        .await
        .iter()
        .filter(|run| run.status == patrol::ledger::RunStatus::Succeeded)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finding_pages_once_per_notifier_stays_quiet_on_repeats_and_resolves_when_cleared() {
    let services = Services::start().await;
    let project = Project::new(Db::Sqlite, "").await;
    let config = services.config(project.path());
    append_config(&project, &config);
    findings_schedule(&project, "disk-check");
    set_findings(&project, &[("disk/full/sda1", "Disk sda1 almost full")]);
    let mut serve = project.serve("a");

    let slack = &services.slack;
    let pd = &services.pagerduty;
    wait_until(
        "a page on all three notifiers",
        Duration::from_secs(30),
        || {
            slack.messages().len() == 1
                && pd.events().len() == 1
                && services.smtp.messages().len() == 1
        },
    )
    .await;
    let message = &slack.messages()[0];
    let blocks = message.blocks.clone().unwrap_or_default().to_string();
    for field in [
        "Disk sda1 almost full",
        "critical",
        "10:00Z..10:05Z",
        "3.2x over baseline",
        "0f3a9c",
        "run-failed",
    ] {
        assert!(
            blocks.contains(field),
            "Slack message lacks {field}: {blocks}"
        );
    }
    let incident = &pd.incidents()[0];
    assert_eq!(
        incident.dedup_key, "disk-check/disk/full/sda1",
        "namespaced by schedule"
    );
    assert!(incident.is_open());
    let mail = &services.smtp.messages()[0];
    assert!(mail.tls, "email went over STARTTLS");
    assert!(mail
        .subject
        .as_deref()
        .unwrap_or("")
        .contains("Disk sda1 almost full"));
    assert!(
        mail.text.is_some() && mail.html.is_some(),
        "plain-text and HTML bodies"
    );

    // Repeat runs: the same finding pages nothing new.
    let seen = succeeded(&project, "disk-check").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while succeeded(&project, "disk-check").await < seen + 3 {
        assert!(std::time::Instant::now() < deadline, "runs stopped");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(slack.messages().len(), 1);
    assert_eq!(slack.messages()[0].updates, 0, "no update without a change");
    assert_eq!(pd.events().len(), 1);
    assert_eq!(services.smtp.messages().len(), 1);

    // Cleared: PagerDuty resolves, the Slack message is updated in place.
    set_findings(&project, &[]);
    wait_until("the resolve", Duration::from_secs(30), || {
        pd.open_incidents().is_empty() && slack.messages().first().is_some_and(|m| m.updates == 1)
    })
    .await;
    assert_eq!(pd.events().len(), 2);
    assert_eq!(pd.events()[1].action, "resolve");
    assert_eq!(slack.messages().len(), 1, "resolve updates, never re-posts");
    let resolved = slack.messages()[0]
        .text
        .clone()
        .unwrap_or_default()
        .to_lowercase();
    assert!(resolved.contains("resolved"), "{resolved}");

    let listing = project.patrol(&["alerts", "--json"]);
    let alerts: serde_json::Value = serde_json::from_slice(&listing.stdout).unwrap();
    assert_eq!(alerts[0]["status"], "resolved");
    terminate(&mut serve, Duration::from_secs(15));

    // Secrets never appear in logs, ledger, `patrol alerts --json`.
    let mut haystacks = vec![
        ("serve log", project.log("a")),
        ("patrol alerts --json", stdout(&listing)),
    ];
    for file in ["patrol.db", "patrol.db-wal"] {
        if let Ok(bytes) = std::fs::read(project.path().join(file)) {
            haystacks.push((file, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    assert_no_secrets(&haystacks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_services_get_every_alert_once_in_order_and_a_kill_loses_none() {
    let services = Services::start().await;
    let project = Project::new(Db::Postgres, "").await;
    let config = services.config(project.path());
    append_config(&project, &config);
    findings_schedule(&project, "disk-check");

    // All three fail from the start, each its own way.
    let slack = &services.slack;
    let pd = &services.pagerduty;
    slack.fail_until_cleared(Failure::rate_limited(Duration::from_secs(1)));
    pd.fail_until_cleared(Failure::Status(500));
    services
        .smtp
        .reject_next(3, "451 4.3.0 try again later")
        .unwrap();
    let mut serve = project.serve("a");

    // Two keys fire; one changes, then clears, while nothing gets through.
    set_findings(&project, &[("disk/a", "A full"), ("disk/b", "B full")]);
    wait_for_outbox(&project, 6).await;
    set_findings(
        &project,
        &[("disk/a", "A full (worse)"), ("disk/b", "B full")],
    );
    wait_for_outbox(&project, 9).await;
    set_findings(&project, &[("disk/a", "A full (worse)")]);
    wait_for_outbox(&project, 12).await;

    // Now PagerDuty times out instead, and patrol is killed mid-retry.
    pd.clear_failures();
    pd.fail_until_cleared(Failure::Timeout);
    tokio::time::sleep(Duration::from_secs(3)).await;
    kill_hard(&mut serve);
    // Each failure was met and recorded as an attempt before the kill.
    let attempts = attempt_outcomes(&project).await;
    for (notifier, outcome, status) in [
        ("oncall-slack", "retry", Some(429)),
        ("oncall-pd", "retry", Some(500)),
        ("oncall-email", "retry", None),
    ] {
        assert!(
            attempts.iter().any(|(n, o, s)| n == notifier
                && o == outcome
                && (status.is_none() || *s == status)),
            "no {outcome} {status:?} attempt for {notifier}: {attempts:?}"
        );
    }
    // Slack said Retry-After: 1; no request came sooner than that.
    let calls = slack.calls();
    for pair in calls.windows(2) {
        let gap = pair[1].received_at - pair[0].received_at;
        assert!(
            gap >= Duration::from_millis(950),
            "Slack was retried after {gap:?}"
        );
    }
    assert!(
        !pd.events()
            .iter()
            .any(|e| e.dedup_key.starts_with("disk-check/disk/"))
            && disk_messages_now(slack) == 0,
        "nothing got through while the services failed"
    );

    // The services recover; a new patrol delivers everything, once, in order.
    slack.clear_failures();
    pd.clear_failures();
    let mut serve = project.serve("b");
    // patrol's own delivery-degraded alerts travel too; look at the disks.
    let disk_events = || -> Vec<patrol_standins::PdEvent> {
        pd.events()
            .into_iter()
            .filter(|event| event.dedup_key.starts_with("disk-check/disk/"))
            .collect()
    };
    let disk_messages = || -> Vec<(String, usize)> {
        slack
            .messages()
            .into_iter()
            .map(|m| (m.text.unwrap_or_default(), m.updates))
            .filter(|(text, _)| text.contains(" full"))
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !(disk_events().len() == 4
        && disk_messages().len() == 2
        && disk_messages()
            .iter()
            .map(|(_, updates)| updates)
            .sum::<usize>()
            == 2)
    {
        if std::time::Instant::now() > deadline {
            panic!(
                "not everything arrived: PagerDuty {:?}\nSlack {:?}\nalerts {}\nlog {}",
                disk_events()
                    .iter()
                    .map(|e| (e.dedup_key.clone(), e.action.clone()))
                    .collect::<Vec<_>>(),
                disk_messages(),
                stdout(&project.patrol(&["alerts", "--json"])),
                project.log("b"),
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Give stragglers a chance to show up doubled.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pd_actions = |key: &str| -> Vec<String> {
        disk_events()
            .into_iter()
            .filter(|event| event.dedup_key == key)
            .map(|event| event.action)
            .collect()
    };
    // The update of disk/a re-triggers with the same dedup key (no new incident).
    assert_eq!(pd_actions("disk-check/disk/a"), ["trigger", "trigger"]);
    assert_eq!(pd_actions("disk-check/disk/b"), ["trigger", "resolve"]);
    let incidents = pd.incidents();
    assert_eq!(
        incidents
            .iter()
            .filter(|i| i.dedup_key.starts_with("disk-check/disk/"))
            .count(),
        2,
        "one incident per key"
    );
    let messages = disk_messages();
    assert_eq!(messages.len(), 2, "one Slack message per key: {messages:?}");
    let b = messages
        .iter()
        .find(|(text, _)| text.contains("B full"))
        .unwrap();
    assert!(b.0.to_lowercase().contains("resolved"), "{}", b.0);
    let a = messages
        .iter()
        .find(|(text, _)| text.contains("A full"))
        .unwrap();
    assert!(
        a.0.contains("worse"),
        "the update reached the message: {}",
        a.0
    );
    let mails: Vec<String> = services
        .smtp
        .messages()
        .iter()
        .filter(|m| m.accepted)
        .filter_map(|m| m.subject.clone())
        .filter(|subject| subject.contains(" full"))
        .collect();
    assert_eq!(
        mails.len(),
        3,
        "two triggers and one resolve by email: {mails:?}"
    );

    // The degraded alert fired on the other notifiers while one was down.
    let listing = project.patrol(&["alerts", "--json"]);
    let text = stdout(&listing);
    assert!(text.contains("patrol/delivery-degraded/"), "{text}");
    terminate(&mut serve, Duration::from_secs(15));
    assert_no_secrets(&[
        ("serve log a", project.log("a")),
        ("serve log b", project.log("b")),
        ("patrol alerts --json", text),
    ]);
}

/// (notifier, outcome, HTTP status) of every finished delivery attempt.
async fn attempt_outcomes(project: &Project) -> Vec<(String, String, Option<i64>)> {
    let ledger = project.ledger().await;
    let rows = sqlx::query_as(
        "SELECT d.notifier, a.outcome, a.http_status FROM delivery_attempts a \
         JOIN deliveries d ON d.id = a.delivery_id WHERE a.outcome IS NOT NULL",
    )
    .fetch_all(ledger.pool())
    .await
    .unwrap();
    ledger.close().await;
    rows
}

fn disk_messages_now(slack: &SlackStandin) -> usize {
    slack
        .messages()
        .iter()
        .filter(|m| m.text.as_deref().unwrap_or("").contains(" full"))
        .count()
}

fn append_config(project: &Project, extra: &str) {
    let path = project.path().join("patrol.yaml");
    let mut config = std::fs::read_to_string(&path).unwrap();
    config.push_str(extra);
    std::fs::write(path, config).unwrap();
}

/// Waits until the outbox holds at least `count` deliveries (any state).
async fn wait_for_outbox(project: &Project, count: i64) {
    let ledger = project.ledger().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let rows: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE alert_key LIKE 'disk/%'")
                .fetch_one(ledger.pool())
                .await
                .unwrap();
        if rows >= count {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "outbox has {rows} rows, expected {count}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ledger.close().await;
}

fn assert_no_secrets(haystacks: &[(&str, String)]) {
    for (name, text) in haystacks {
        for secret in [SLACK_TOKEN, PD_ROUTING_KEY, SMTP_PASSWORD] {
            assert!(!text.contains(secret), "a secret appears in {name}");
        }
    }
}

// The CLI is run blocking; the stand-ins answer from the other worker thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_hold_pages_back_until_they_end_and_alert_test_reaches_every_notifier() {
    let services = Services::start().await;
    let project = Project::new(Db::Sqlite, "").await;
    let config = services.config(project.path());
    append_config(&project, &config);

    // `patrol alert test ROUTE` (no server running): every notifier answers.
    let test = project.patrol(&["alert", "test", "default"]);
    assert_eq!(
        test.status.code(),
        Some(0),
        "{}{}",
        stdout(&test),
        crate::support::stderr(&test)
    );
    for notifier in [
        "oncall-slack: sent",
        "oncall-pd: sent",
        "oncall-email: sent",
    ] {
        assert!(stdout(&test).contains(notifier), "{}", stdout(&test));
    }
    assert_eq!(services.slack.messages().len(), 1);
    assert_eq!(services.pagerduty.events().len(), 1);
    assert_eq!(services.smtp.messages().len(), 1);
    let unknown = project.patrol(&["alert", "test", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));

    // A silence: the alert is recorded, nothing is paged.
    let add = project.patrol(&[
        "silence",
        "add",
        "--match",
        "key=disk/*",
        "--match",
        "severity=critical",
        "--for",
        "2h",
        "--reason",
        "replacing sda",
    ]);
    assert_eq!(
        add.status.code(),
        Some(0),
        "{}",
        crate::support::stderr(&add)
    );
    let id = stdout(&add)
        .trim_start_matches("silence #")
        .split(':')
        .next()
        .unwrap()
        .to_string();
    let list = project.patrol(&["silence", "list"]);
    assert!(stdout(&list).contains("replacing sda"), "{}", stdout(&list));

    findings_schedule(&project, "disk-check");
    set_findings(&project, &[("disk/full/sda1", "Disk sda1 almost full")]);
    let run = project.patrol(&["run", "disk-check", "--wait"]);
    assert_eq!(
        run.status.code(),
        Some(1),
        "a run that found something exits 1: {}",
        crate::support::stderr(&run)
    );
    let open = project.patrol(&["alerts", "--open", "--json"]);
    let alerts: serde_json::Value = serde_json::from_slice(&open.stdout).unwrap();
    assert_eq!(
        alerts[0]["key"], "disk/full/sda1",
        "recorded while silenced"
    );
    assert_eq!(
        alerts[0]["deliveries"]["oncall-pd"][0]["status"],
        "suppressed"
    );
    assert_eq!(services.pagerduty.events().len(), 1, "nothing paged");

    // The silence ends: the next run pages, once.
    let expire = project.patrol(&["silence", "expire", &id]);
    assert_eq!(
        expire.status.code(),
        Some(0),
        "{}",
        crate::support::stderr(&expire)
    );
    let run = project.patrol(&["run", "disk-check", "--wait"]);
    assert_eq!(run.status.code(), Some(1));
    assert_eq!(services.pagerduty.events().len(), 2);
    assert_eq!(
        services.pagerduty.events()[1].dedup_key,
        "disk-check/disk/full/sda1"
    );
    assert_eq!(services.slack.messages().len(), 2);
}

/// A manual-only schedule whose command prints the finding lines of
/// `<id>.jsonl` (empty at first), failing with `exit` when it is not 0.
fn manual_findings_schedule(project: &Project, id: &str, exit: i32) {
    let file = project.path().join(format!("{id}.jsonl"));
    std::fs::write(&file, "").unwrap();
    project.schedule(
        &format!("{id}.yaml"),
        &format!(
            "id: {id}\njob: command\ncron: \"0 3 1 1 *\"\nretries: {{max: 0}}\n\
             params: {{shell: 'cat {}; exit {exit}'}}\n",
            file.display()
        ),
    );
}

fn finding_line(key: &str) -> String {
    format!(
        "{{\"finding\": {{\"key\": \"{key}\", \"severity\": \"critical\", \"title\": \"{key} is bad\"}}}}\n"
    )
}

/// Issue 20, item 8: alerts are per (schedule, key), and so are their
/// PagerDuty incidents — two schedules reporting one key open two — and
/// a job cannot speak as the runner: a finding keyed
/// `patrol/run-failed/<other schedule>` is refused, so reporting and then
/// dropping it resolves nobody's incident.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_never_share_an_incident_and_a_job_cannot_resolve_the_runners_alert() {
    let pd = PagerDutyStandin::start(&[PD_ROUTING_KEY]).await.unwrap();
    let project = Project::new(Db::Sqlite, "").await;
    std::fs::create_dir_all(project.path().join("secrets")).unwrap();
    std::fs::write(project.path().join("secrets/pd"), PD_ROUTING_KEY).unwrap();
    append_config(
        &project,
        &format!(
            "notifiers:\n  oncall-pd:\n    kind: pagerduty\n    routing_key: file:secrets/pd\n    base_url: \"{}\"\n    timeout: 2s\n",
            pd.base_url()
        ),
    );
    for id in ["left", "right", "evil"] {
        manual_findings_schedule(&project, id, 0);
    }
    manual_findings_schedule(&project, "victim", 3);
    for id in ["left", "right"] {
        std::fs::write(
            project.path().join(format!("{id}.jsonl")),
            finding_line("shared/key"),
        )
        .unwrap();
        let run = project.patrol(&["run", id, "--wait"]);
        assert_eq!(run.status.code(), Some(1), "{}", stdout(&run));
    }
    let mut shared: Vec<String> = pd
        .open_incidents()
        .iter()
        .map(|incident| incident.dedup_key.clone())
        .collect();
    shared.sort();
    assert_eq!(
        shared,
        ["left/shared/key", "right/shared/key"],
        "one incident per schedule: {:?}",
        pd.events()
    );

    // The victim fails for good: the runner pages `patrol/run-failed/victim`.
    let failed = project.patrol(&["run", "victim", "--wait"]);
    assert_eq!(failed.status.code(), Some(1));
    let victim_incident = |pd: &PagerDutyStandin| {
        pd.incidents()
            .into_iter()
            .find(|incident| incident.dedup_key.ends_with("patrol/run-failed/victim"))
    };
    assert!(victim_incident(&pd).is_some_and(|incident| incident.is_open()));
    let events_before = pd.events().len();

    // Another schedule's job reports the runner's key, then drops it.
    std::fs::write(
        project.path().join("evil.jsonl"),
        finding_line("patrol/run-failed/victim"),
    )
    .unwrap();
    let forged = project.patrol(&["run", "evil", "--wait"]);
    assert!(forged.status.code().is_some_and(|code| code <= 1));
    let evil_runs = project.runs("evil").await;
    let problems = evil_runs[0]
        .details
        .as_ref()
        .map(|details| details["finding_problems"].to_string())
        .unwrap_or_default();
    assert!(problems.contains("reserved"), "{problems}");
    std::fs::write(project.path().join("evil.jsonl"), "").unwrap();
    let cleared = project.patrol(&["run", "evil", "--wait"]);
    assert_eq!(cleared.status.code(), Some(0), "{}", stdout(&cleared));

    assert_eq!(
        pd.events().len(),
        events_before,
        "the job's key reached PagerDuty: {:?}",
        pd.events()
    );
    assert!(
        victim_incident(&pd).is_some_and(|incident| incident.is_open()),
        "the victim's incident was resolved by another schedule's job"
    );
    let open = project.patrol(&["alerts", "--open", "--json"]);
    let alerts: serde_json::Value = serde_json::from_slice(&open.stdout).unwrap();
    let open_keys: Vec<(&str, &str)> = alerts
        .as_array()
        .unwrap()
        .iter()
        .map(|alert| {
            (
                alert["schedule_id"].as_str().unwrap_or(""),
                alert["key"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(
        open_keys.contains(&("victim", "patrol/run-failed/victim")),
        "{open_keys:?}"
    );
    assert!(
        !open_keys.iter().any(|(schedule, _)| *schedule == "evil"),
        "{open_keys:?}"
    );
}
