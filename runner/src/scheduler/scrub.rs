//! What a run hands back is the job's text: program output, errors that
//! quote a server's answer or a URL, findings built from input data. Any of
//! it may carry a secret patrol resolved (a notifier token a program
//! printed, a job's `secret_env`) or a credential inside a URL. It is
//! scrubbed here, once, before the ledger, the alerts or a log see it.

use patrol_job_api::secret::{redact, redact_json};
use patrol_job_api::Finding;

use crate::ledger::RunEnd;

/// `end`'s summary, output, details and error, scrubbed in place.
pub(super) fn run_end(end: &mut RunEnd) {
    for text in [&mut end.summary, &mut end.output, &mut end.error]
        .into_iter()
        .flatten()
    {
        *text = redact(text);
    }
    if let Some(details) = &mut end.details {
        redact_json(details);
    }
}

/// Every text field of `finding` (its key too), scrubbed.
pub(super) fn finding(mut finding: Finding) -> Finding {
    for text in [&mut finding.key, &mut finding.title, &mut finding.summary] {
        *text = redact(text);
    }
    for text in [
        &mut finding.window,
        &mut finding.delta,
        &mut finding.sample_trace,
        &mut finding.runbook,
    ]
    .into_iter()
    .flatten()
    {
        *text = redact(text);
    }
    for link in &mut finding.links {
        link.href = redact(&link.href);
        link.text = link.text.as_deref().map(redact);
    }
    finding.labels = std::mem::take(&mut finding.labels)
        .into_iter()
        .map(|(name, value)| (redact(&name), redact(&value)))
        .collect();
    redact_json(&mut finding.details);
    finding
}
