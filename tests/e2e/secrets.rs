//! Issue 20, item 3: whatever a job prints, reports or fails with, the
//! secrets patrol resolved — the config's and the job's own — and the
//! credentials inside URLs reach neither the ledger, `patrol runs --json`,
//! the log, nor an alert.

use std::time::Duration;

use patrol_standins::PagerDutyStandin;

use crate::support::{stdout, terminate, Db, Project};

const PD_ROUTING_KEY: &str = "R0utingKeyInAFile4411abcdefghijk";
/// Handed to the job through `secret_env` from patrol's environment.
const JOB_SECRET: &str = "job-secret-from-env-9034";
const JOB_SECRET_VAR: &str = "PATROL_E2E_JOB_SECRET";
/// In patrol's environment but named by no schedule: the job never sees it.
const RUNNER_ONLY: &str = "runner-only-value-5520";
const RUNNER_ONLY_VAR: &str = "PATROL_E2E_RUNNER_ONLY";
/// Never resolved by patrol: caught because it sits in a URL.
const URL_PASSWORD: &str = "url-password-6071";
const URL_TOKEN: &str = "url-query-token-3389";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_printing_every_secret_leaves_none_in_ledger_runs_log_or_alerts() {
    std::env::set_var(JOB_SECRET_VAR, JOB_SECRET);
    std::env::set_var(RUNNER_ONLY_VAR, RUNNER_ONLY);
    let pd = PagerDutyStandin::start(&[PD_ROUTING_KEY]).await.unwrap();
    let project = Project::new(
        Db::Sqlite,
        &format!(
            "notifiers:\n  oncall-pd:\n    kind: pagerduty\n    routing_key: file:secrets/pd\n    base_url: \"{}\"\n    timeout: 2s\n",
            pd.base_url()
        ),
    )
    .await;
    std::fs::create_dir_all(project.path().join("secrets")).unwrap();
    std::fs::write(project.path().join("secrets/pd"), PD_ROUTING_KEY).unwrap();
    let url =
        format!("https://bot:{URL_PASSWORD}@feed.example.com/x?since=1&access_token={URL_TOKEN}");
    // Everything a job can say: stdout, stderr, a finding (title, summary,
    // labels, details, link), its exit; every one carries each secret.
    let script = format!(
        r#"pd=$(cat secrets/pd); all="$pd $JOB_SECRET ${{{RUNNER_ONLY_VAR}:-unset}} {url}"
echo "stdout: $all"; echo "stderr: $all" >&2
printf '{{"finding": {{"key": "leak/%s", "severity": "critical", "title": "leak %s", "summary": "%s", "labels": {{"who": "%s"}}, "links": [{{"href": "{url}"}}], "details": {{"all": "%s"}}}}}}\n' "$pd" "$JOB_SECRET" "$all" "$pd" "$all"
exit 1"#
    );
    let schedule = serde_json::json!({
        "id": "leaky",
        "job": "command",
        "cron": "* * * * * *",
        "catchup": 0,
        "retries": {"max": 0},
        "params": {
            "shell": script,
            "workdir": ".",
            "secret_env": {"JOB_SECRET": format!("env:{JOB_SECRET_VAR}")},
        },
    });
    project.schedule("leaky.yaml", &serde_json::to_string(&schedule).unwrap());
    let mut server = project.serve("leaky");
    project
        .wait_for_runs("leaky", Duration::from_secs(60), |runs| {
            runs.iter().any(|run| run.finished_at.is_some())
        })
        .await;
    let delivered = crate::support::wait_until(Duration::from_secs(30), || {
        pd.events()
            .iter()
            .any(|event| event.dedup_key.contains("leak/"))
    })
    .await;
    terminate(&mut server, Duration::from_secs(20));
    assert!(delivered, "the finding was not paged: {:?}", pd.events());

    let secrets = [
        PD_ROUTING_KEY,
        JOB_SECRET,
        RUNNER_ONLY,
        URL_PASSWORD,
        URL_TOKEN,
    ];
    let leaks = |place: &str, text: &str| {
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} in {place}:\n{text}");
        }
    };
    // The job did print them: its output holds the marks left in their place.
    let runs = project.runs("leaky").await;
    let output = runs[0].output.clone().unwrap_or_default();
    assert!(output.contains("stdout: [redacted] [redacted] unset https://[redacted]@feed.example.com/x?since=1&access_token=[redacted]"), "{output}");
    assert!(output.contains("stderr: [redacted]"), "{output}");

    let listed = project.patrol(&["runs", "--json", "--schedule", "leaky"]);
    leaks("patrol runs --json", &stdout(&listed));
    assert!(
        stdout(&listed).contains("[redacted]"),
        "{}",
        stdout(&listed)
    );
    let alerts = project.patrol(&["alerts", "--json"]);
    leaks("patrol alerts --json", &stdout(&alerts));
    assert!(
        stdout(&alerts).contains("leak/[redacted]"),
        "{}",
        stdout(&alerts)
    );
    leaks("the serve log", &project.log("leaky"));
    for event in pd.events() {
        let mut sent = event.raw.clone();
        // The one place the routing key belongs.
        sent.as_object_mut().unwrap().remove("routing_key");
        leaks("a PagerDuty event", &sent.to_string());
    }
    for file in ["patrol.db", "patrol.db-wal"] {
        let bytes = std::fs::read(project.path().join(file)).unwrap_or_default();
        leaks(file, &String::from_utf8_lossy(&bytes));
    }
}
