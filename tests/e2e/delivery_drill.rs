//! The delivery drill of issue 19 (acceptance 2): a slow Slack (every
//! answer 2 s late) and `patrol serve` killed with SIGKILL three times
//! while its requests wait for their answers. Slack has done the work of
//! each such request; patrol never heard. Afterwards every alert has
//! exactly one Slack message, updated when it resolved — no second post
//! of the same alert, no FIRING message left behind.

use std::time::{Duration, Instant};

use patrol_standins::SlackStandin;

use crate::support::{kill_hard, stdout, terminate, Db, Project};

const SLACK_TOKEN: &str = "xoxb-e2e-drill-SlackToken-5150";
const CHANNEL: &str = "C0DRILL";
/// How late the stand-in answers every call.
const ANSWER_DELAY: Duration = Duration::from_secs(2);
const DRILL_KEYS: [&str; 4] = ["drill/a", "drill/b", "drill/c", "drill/d"];

fn title(key: &str) -> String {
    format!("Disk {} full", key.replace('/', "-"))
}

fn set_findings(project: &Project, keys: &[&str]) {
    let lines: String = keys
        .iter()
        .map(|key| {
            format!(
                "{{\"finding\": {{\"key\": \"{key}\", \"severity\": \"critical\", \"title\": \"{}\"}}}}\n",
                title(key)
            )
        })
        .collect();
    std::fs::write(project.path().join("findings.jsonl"), lines).unwrap();
}

/// A project whose `drill` schedule reports the findings in
/// `findings.jsonl` every 2 s, alerting to the stand-in's channel by ID.
async fn drill_project(slack: &SlackStandin) -> Project {
    let project = Project::new(Db::Sqlite, "").await;
    let secrets = project.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("slack"), SLACK_TOKEN).unwrap();
    let config_path = project.path().join("patrol.yaml");
    let mut config = std::fs::read_to_string(&config_path).unwrap();
    config.push_str(&format!(
        "notifiers:\n  drill-slack:\n    kind: slack\n    token: file:secrets/slack\n    \
         channel: {CHANNEL}\n    base_url: \"{}\"\n    timeout: 10s\n\
         delivery:\n  retry_min: 200ms\n  retry_max: 1s\n",
        slack.api_url()
    ));
    std::fs::write(config_path, config).unwrap();
    set_findings(&project, &[]);
    project.schedule(
        "drill.yaml",
        &format!(
            "id: drill\njob: command\ncron: \"*/2 * * * * *\"\nretries: {{max: 0}}\n\
             params: {{shell: 'cat {}'}}\n",
            project.path().join("findings.jsonl").display()
        ),
    );
    project
}

fn calls_to(slack: &SlackStandin, method: &str) -> Vec<patrol_standins::RecordedCall> {
    let path = format!("/api/{method}");
    slack
        .calls()
        .into_iter()
        .filter(|call| call.path == path)
        .collect()
}

/// Waits for a `method` call beyond the first `seen`, lets a quarter of
/// its answer delay pass, and kills serve while the answer is still due.
async fn kill_mid_request(
    slack: &SlackStandin,
    serve: &mut std::process::Child,
    method: &str,
    seen: usize,
) {
    let deadline = Instant::now() + Duration::from_secs(40);
    while calls_to(slack, method).len() <= seen {
        assert!(Instant::now() < deadline, "no {method} call came");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(ANSWER_DELAY / 4).await;
    let last = calls_to(slack, method)
        .last()
        .map(|call| call.received_at)
        .unwrap();
    kill_hard(serve);
    assert!(
        last.elapsed() < ANSWER_DELAY,
        "the kill came after Slack answered"
    );
}

/// Counts in the ledger: (open deliveries, firing alerts, sent drill triggers).
async fn ledger_counts(project: &Project) -> (i64, i64, i64) {
    let ledger = project.ledger().await;
    let count = |sql: &'static str| {
        let pool = ledger.pool().clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let counts = (
        count("SELECT COUNT(*) FROM deliveries WHERE status IN ('pending', 'sending')").await,
        count("SELECT COUNT(*) FROM alerts WHERE status = 'firing'").await,
        count(
            "SELECT COUNT(*) FROM deliveries WHERE action = 'trigger' AND status = 'sent' \
             AND alert_key LIKE 'drill/%'",
        )
        .await,
    );
    ledger.close().await;
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_kills_mid_request_leave_one_slack_message_per_alert_updated_on_resolve() {
    let slack = SlackStandin::builder(SLACK_TOKEN)
        .channel(CHANNEL, "drill")
        .answer_after(ANSWER_DELAY)
        .start()
        .await
        .unwrap();
    let project = drill_project(&slack).await;
    set_findings(&project, &DRILL_KEYS);

    // Kill 1: while the first post waits for its answer.
    let mut serve = project.serve("1");
    kill_mid_request(&slack, &mut serve, "chat.postMessage", 0).await;

    // Kill 2: while a post of the restarted node waits for its answer.
    let seen = calls_to(&slack, "chat.postMessage").len();
    let mut serve = project.serve("2");
    kill_mid_request(&slack, &mut serve, "chat.postMessage", seen).await;

    // Every alert paged; then all clear, and kill 3 while an update waits.
    let mut serve = project.serve("3");
    let deadline = Instant::now() + Duration::from_secs(40);
    while ledger_counts(&project).await.2 < DRILL_KEYS.len() as i64 {
        assert!(
            Instant::now() < deadline,
            "not every alert paged: {:?}\n{}",
            slack.messages(),
            project.log("3")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    set_findings(&project, &[]);
    kill_mid_request(&slack, &mut serve, "chat.update", 0).await;

    let mut serve = project.serve("4");
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (open, firing, _) = ledger_counts(&project).await;
        if open == 0 && firing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{open} deliveries still open, {firing} alerts firing\n{}",
            project.log("4")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    terminate(&mut serve, Duration::from_secs(15));

    // The stand-in's record: one post per alert, its message resolved.
    let listing = project.patrol(&["alerts", "--json"]);
    let alerts: serde_json::Value = serde_json::from_slice(&listing.stdout).unwrap();
    let alerts = alerts.as_array().cloned().unwrap_or_default();
    let messages: Vec<_> = slack
        .messages()
        .into_iter()
        .filter(|message| message.thread_ts.is_none())
        .collect();
    let summary: Vec<(String, usize, String)> = messages
        .iter()
        .map(|m| {
            let text = m.text.clone().unwrap_or_default();
            let posts = slack
                .writes()
                .iter()
                .filter(|w| w.method == "chat.postMessage" && w.ts == m.ts)
                .count();
            (text, posts, m.ts.clone())
        })
        .collect();
    for key in DRILL_KEYS {
        assert!(
            alerts.iter().any(|alert| alert["key"] == key),
            "no alert for {key}: {}",
            stdout(&listing)
        );
    }
    for alert in &alerts {
        let title = alert["title"].as_str().unwrap_or_default();
        let theirs: Vec<&(String, usize, String)> = summary
            .iter()
            .filter(|(text, _, _)| text.contains(title))
            .collect();
        assert_eq!(
            theirs.len(),
            1,
            "alert `{}` has {} Slack messages: {summary:#?}",
            alert["key"],
            theirs.len()
        );
        assert!(
            theirs[0].0.starts_with("RESOLVED"),
            "the message of `{}` was not updated on resolve: {summary:#?}",
            alert["key"]
        );
    }
    assert_eq!(
        messages.len(),
        alerts.len(),
        "a message that belongs to no alert: {summary:#?}"
    );
    let posts = slack
        .writes()
        .iter()
        .filter(|write| write.method == "chat.postMessage" && write.thread_ts.is_none())
        .count();
    assert_eq!(posts, alerts.len(), "posts beyond one per alert");
    // The posts whose answers were lost were found again, not re-posted.
    let adopted = ["2", "3", "4"]
        .iter()
        .map(|tag| {
            project
                .log(tag)
                .matches("adopting it instead of posting again")
                .count()
        })
        .sum::<usize>();
    assert!(adopted >= 1, "no earlier post was adopted");
    assert!(!calls_to(&slack, "conversations.history").is_empty());
}
