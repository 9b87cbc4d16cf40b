//! What `patrol serve` writes to its log when nobody watches a terminal.

use std::time::Duration;

use crate::support::{terminate, Db, Project};

/// Issue 18: logs sent to a file or journald carried ANSI colour codes.
#[tokio::test]
async fn a_log_written_to_a_file_has_no_colour_codes() {
    let project = Project::new(Db::Sqlite, "").await;
    project.schedule(
        "tick.yaml",
        "id: tick\njob: command\ncron: \"* * * * * *\"\ncatchup: 0\nparams: {program: \"true\"}\n",
    );
    let mut server = project.serve("plain");
    project
        .wait_for_runs("tick", Duration::from_secs(30), |runs| !runs.is_empty())
        .await;
    terminate(&mut server, Duration::from_secs(20));
    let log = project.log("plain");
    assert!(log.contains("ledger ready"), "{log}");
    assert!(!log.contains('\u{1b}'), "colour codes in the log:\n{log:?}");
}
